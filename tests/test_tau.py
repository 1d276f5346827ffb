"""Per-exit thresholds end to end (protocol section 5): profile field, Workspace.tau, the stored
tables, deployed() and the black-box labels all accept one τ per internal exit."""
import numpy as np
import pytest
import torch

from dynn_lib import blackbox, early_exit, profiles
from dynn_lib.experiments import common
from dynn_lib.zoo import Workspace, tau_setting_for

from conftest import fake_zoo

TINY = dict(n_train=32, n_query=20, n_eval=12, batch_size=16, attack_steps=1)


def _ws(tmp_path, **kw):
    ws = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", **TINY, **kw)
    fake_zoo(ws)  # tiny 3-exit DyNNs for every arch
    return ws


def test_tau_setting_validation():
    assert tau_setting_for(None, "vgg16", 7) is None
    assert tau_setting_for(0.9, "vgg16", 7) == 0.9
    assert tau_setting_for([0.9] * 6, "vgg16", 7) == (0.9,) * 6
    assert tau_setting_for({"mobilenet": [0.8] * 5}, "mobilenet", 6) == (0.8,) * 5
    assert tau_setting_for({"mobilenet": 0.8}, "vgg16", 7) is None  # not listed: calibrated
    with pytest.raises(ValueError, match="mobilenet has 5, got 6"):
        tau_setting_for([0.9] * 6, "mobilenet", 6)
    for bad in (1.5, [0.9, "x"], {"vgg16": 2.0}, "high", [[0.9]]):
        with pytest.raises(ValueError, match="profile field tau"):
            profiles.get_profile("smoke", tau=bad)
    assert profiles.get_profile("smoke", tau=[0.9, 0.8]).tau == (0.9, 0.8)  # papermill/-p give lists


def test_per_exit_tau_flows_into_tables_and_labels(tmp_path):
    taus = [0.6, 0.95]  # the fake DyNNs have 3 exits: 2 internal ones
    ws = _ws(tmp_path, tau=taus)
    assert ws.tau("vgg16", "sdn") == tuple(taus)
    df = common.whitebox_table(ws, "resnet56", "fgsm", 8 / 255, common.ExperimentConfig())
    assert all(list(t) == taus for t in df["taus"]) and df["tau"].isna().all()
    dep = common.deployed(df)
    conf = np.asarray(df["conf_clean"].tolist())
    expect = np.where(conf[:, 0] >= np.float32(0.6), 0, np.where(conf[:, 1] >= np.float32(0.95), 1, 2))
    assert (dep["exit_clean"].to_numpy() == expect).all()
    # a global override and a per-arch dict give what the stored thresholds give when equal
    assert (common.deployed(df, tau={"resnet56": taus})["exit_clean"] == dep["exit_clean"]).all()
    g = common.deployed(df, tau=0.6)
    assert (g["exit_clean"].to_numpy() == np.where(conf[:, 0] >= np.float32(0.6), 0,
                                                   np.where(conf[:, 1] >= np.float32(0.6), 1, 2))).all()
    with pytest.raises(ValueError, match="no entry for target 'resnet56'"):
        common.deployed(df, tau={"vgg16": 0.5})
    with pytest.raises(ValueError, match="one threshold per internal exit"):
        common.deployed(df, tau=[0.5, 0.5, 0.5])
    # the black-box answers of a DyNN target use the same per-exit thresholds
    labels = blackbox.query_labels(ws, "vgg16", "sdn")
    z = early_exit.all_exit_logits(ws.model("vgg16", "sdn"), blackbox.query_set(ws))
    assert torch.equal(labels, early_exit.early_exit_predict(z, taus)[0])


def test_fixed_tau_is_part_of_the_table_keys(tmp_path):
    a = _ws(tmp_path)
    b = _ws(tmp_path, tau=0.7)
    ka = common._common_key(a, common.ExperimentConfig(), "fgsm", 8 / 255, 4)
    kb = common._common_key(b, common.ExperimentConfig(), "fgsm", 8 / 255, 4)
    assert ka != kb and kb["fixed_tau"] == 0.7
    assert b.tau("vgg16", "sdn") == 0.7


def test_calibrated_tau_says_whether_it_meets_the_rule(tmp_path, monkeypatch):
    """Workspace.tau_meets_rule is the rule re-checked on the query half at the stored τ; False
    when calibration fell back to the grid's largest (here a grid of one τ that cannot keep the
    final exit's accuracy); None for a fixed τ."""
    ws = _ws(tmp_path)
    z = early_exit.all_exit_logits(ws.model("vgg16", "sdn"), ws.query_half[0])
    tau = ws.tau("vgg16", "sdn")
    assert ws.tau_meets_rule("vgg16", "sdn") is early_exit.meets_rule(z, ws.query_half[1], tau) is True
    # a grid of one τ that breaks the rule: at τ 0 every answer is exit 0's, which (for these seeded
    # fake DyNNs) is worse than the final exit's by more than a point
    assert not early_exit.meets_rule(z, ws.query_half[1], 0.0)
    calibrate = early_exit.calibrate
    monkeypatch.setattr(early_exit, "TAU_GRID", (0.0,))  # part of the calibration key: computed anew
    monkeypatch.setattr(early_exit, "calibrate", lambda z, y: calibrate(z, y, grid=early_exit.TAU_GRID))
    assert ws.tau("vgg16", "sdn") == 0.0 and ws.tau_meets_rule("vgg16", "sdn") is False
    assert _ws(tmp_path, tau=0.7).tau_meets_rule("vgg16", "sdn") is None
