"""RQ1-RQ3 and appendix experiments: table schema, budgets, caching/reuse, deployed exits, findings.

Two workspaces on the ``synthetic`` dataset with a tiny profile:

* ``fake_ws``: the real Workspace, store and experiment code, but its model zoo returns tiny
  untrained 3-exit networks (conftest's backbone at 32x32, logits scaled up so confidences
  spread and exits vary) instead of training VGG/ResNet/MobileNet: every pair and architecture
  in seconds on a CPU.
* ``real_ws``: real training (1 epoch on 64 images, 8 query images) of the MobileNet models the
  S2D MobileNet -> MobileNet pair and its white-box setting need; the full six-pair run is
  ``slow`` (DYNN_SLOW=1).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from dynn_lib import attacks as attacks_mod
from dynn_lib import early_exit, metrics, models
from dynn_lib.blackbox import PAIRS, get_pairs
from dynn_lib.experiments import appendix, rq1, rq2, rq3
from dynn_lib.experiments.common import (COLUMNS, DEPLOYED_COLUMNS, ExperimentConfig, deployed, exit_outputs,
                                         run_attack, transfer_table, verdict, whitebox_table)
from dynn_lib.zoo import Workspace

from conftest import fake_zoo

TINY = dict(n_train=64, n_query=32, n_eval=16, attack_steps=2, batch_size=32)
CFG = ExperimentConfig(eps=(8 / 255,), attacks=("fgsm", "pgd"), batch_size=32)
S2D_MNET = next(p for p in PAIRS if p.direction == "S2D" and p.surrogate_arch == p.target_arch == "mobilenet")
D2S_MNET = next(p for p in PAIRS if p.direction == "D2S" and p.surrogate_arch == p.target_arch == "mobilenet")
VERDICTS = {"holds", "does not hold", "mixed", "not testable here"}


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def fake_ws(tmp_path_factory):
    ws = Workspace("synthetic", "smoke", store=tmp_path_factory.mktemp("store_fake"), device="cpu", **TINY)
    fake_zoo(ws)
    return ws


@pytest.fixture(scope="module")
def real_ws(tmp_path_factory):
    return Workspace("synthetic", "smoke", store=tmp_path_factory.mktemp("store_real"), device="cpu",
                     **{**TINY, "n_query": 8})


pytestmark = pytest.mark.usefixtures("one_thread")


def _raise(*a, **k):
    raise AssertionError("attack recomputed although the table is cached")


def _no_attacks(monkeypatch):
    for name in list(attacks_mod.ATTACKS):
        monkeypatch.setitem(attacks_mod.ATTACKS, name, _raise)


def _check_schema(df: pd.DataFrame, ws: Workspace, eps: float, n: int) -> None:
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == n
    assert (df["image"].to_numpy() == np.arange(n)).all()
    assert (df["label"].to_numpy() == ws.eval_half[1][:n].numpy()).all()
    assert (df["linf"] <= eps + 1e-6).all() and (df["linf"] > 0).any()
    # MSE <= eps^2, so PSNR >= 10 log10(1/eps^2)
    assert (df["psnr"] >= -20 * math.log10(eps) - 1e-6).all()
    assert (df["eps_255"] == round(eps * 255, 3)).all()
    for _, r in df.head(3).iterrows():
        E = len(r["pred_clean"])
        assert all(isinstance(r[c], list) and len(r[c]) == E
                   for c in ("conf_clean", "conf_adv", "pred_adv", "exit_macs"))
        assert all(0 < c <= 1 for c in r["conf_clean"]) and all(isinstance(p, int) for p in r["pred_clean"])
        assert list(r["exit_macs"]) == sorted(r["exit_macs"])
    assert df["gen_seconds"].ge(0).all()
    assert df["image"].dtype == np.int64 and df["surrogate_exit"].dtype == np.int64


# ---------------------------------------------------------------- config and building blocks

def test_config_validation():
    with pytest.raises(ValueError, match="accepted: fgsm, pgd, mifgsm"):
        ExperimentConfig(attacks=("fgsm", "cw"))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ExperimentConfig(eps=(8,))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ExperimentConfig(eps=0.0)
    with pytest.raises(ValueError, match="exit loss"):
        ExperimentConfig(exit_loss_surrogate="first")
    c = ExperimentConfig(eps=[4 / 255, 8 / 255], attacks=["pgd"])
    assert c.eps == (4 / 255, 8 / 255) and c.attacks == ("pgd",)
    assert ExperimentConfig(eps=8 / 255).eps == (8 / 255,)
    assert verdict([]) == "not testable here" and verdict([True, False]) == "mixed"


def test_exit_outputs_and_run_attack(fake_ws):
    x, y = fake_ws.eval_half
    dynn = fake_ws.model("mobilenet", "sdn")
    conf, pred = exit_outputs(dynn, x, "cpu")
    z = early_exit.all_exit_logits(dynn, x)
    assert conf.shape == pred.shape == (len(y), 3) and conf.dtype == torch.float32 and pred.dtype == torch.int64
    assert torch.equal(pred, z.argmax(-1).T) and torch.allclose(conf, z.softmax(-1).amax(-1).T)
    cnn_conf, _ = exit_outputs(fake_ws.model("mobilenet", "cnn"), x, "cpu")
    assert cnn_conf.shape == (len(y), 1)
    x_adv, used, secs = run_attack(dynn, x, y, "pgd", 4 / 255, replace(CFG, batch_size=5), exit_loss="fired",
                                   tau=0.5, device="cpu", generator=torch.Generator().manual_seed(0), steps=2)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32 and secs > 0
    assert used.shape == y.shape and ((used >= 0) & (used < 3)).all()
    assert (x_adv - x.float() / 255).abs().max() <= 4 / 255 + 1e-6


# ---------------------------------------------------------------- the two tables

@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_transfer_table_schema(fake_ws, attack):
    for pair in (S2D_MNET, D2S_MNET):
        df = transfer_table(fake_ws, pair, attack, 8 / 255, CFG)
        _check_schema(df, fake_ws, 8 / 255, 16)
        assert set(df["setting"]) == {"black-box"} and set(df["direction"]) == {pair.direction}
        assert set(df["pair"]) == {"mobilenet→mobilenet"}
        if pair.direction == "S2D":  # CNN surrogate, DyNN target
            assert (df["surrogate_exit"] == 0).all() and set(df["exit_loss"]) == {"final"}
            assert df["tau"].notna().all() and df["pred_clean"].map(len).eq(3).all()
        else:  # DyNN surrogate attacked at its fired exit, CNN target
            assert set(df["exit_loss"]) == {"fired"} and df["surrogate_exit"].between(0, 2).all()
            assert df["tau"].isna().all() and df["pred_clean"].map(len).eq(1).all()


def test_whitebox_table_schema(fake_ws):
    df = whitebox_table(fake_ws, "resnet56", "pgd", 4 / 255, CFG)
    _check_schema(df, fake_ws, 4 / 255, 16)
    assert set(df["direction"]) == {"white-box"} and set(df["pair"]) == {"resnet56"}
    assert set(df["target_kind"]) == {"ic_only"} and (df["surrogate_exit"] == 0).all()
    assert df["tau"].eq(fake_ws.tau("resnet56", "ic_only")).all()
    # the IC-only DyNN's final exit is the attacked CNN
    cnn_pred = fake_ws.model("resnet56", "cnn")(fake_ws.eval_half[0].float() / 255).argmax(-1)
    assert [p[-1] for p in df["pred_clean"]] == cnn_pred.tolist()
    with pytest.raises(ValueError, match="1-exit"):  # checked before any model is loaded
        whitebox_table(fake_ws, "vgg16", "fgsm", 8 / 255, CFG, exit_loss="fired")


def test_second_call_reuses_cache(fake_ws, monkeypatch):
    first_t = transfer_table(fake_ws, S2D_MNET, "fgsm", 2 / 255, CFG)
    first_w = whitebox_table(fake_ws, "mobilenet", "fgsm", 2 / 255, CFG)
    _no_attacks(monkeypatch)
    monkeypatch.setattr(fake_ws, "trained", _raise)  # no model is even loaded
    pd.testing.assert_frame_equal(transfer_table(fake_ws, S2D_MNET, "fgsm", 2 / 255, CFG), first_t)
    pd.testing.assert_frame_equal(whitebox_table(fake_ws, "mobilenet", "fgsm", 2 / 255, CFG), first_w)
    with pytest.raises(AssertionError, match="recomputed"):  # a different config is computed
        transfer_table(fake_ws, S2D_MNET, "fgsm", 3 / 255, CFG)


def test_deployed(fake_ws):
    df = pd.concat([transfer_table(fake_ws, S2D_MNET, "fgsm", 8 / 255, CFG),
                    transfer_table(fake_ws, D2S_MNET, "fgsm", 8 / 255, CFG)], ignore_index=True)
    E = df["pred_clean"].map(len).to_numpy()
    assert all(max(c[:-1], default=0) < 1.0 for c in df["conf_clean"])  # so tau=1.0 never fires
    d1 = deployed(df, tau=1.0)
    assert list(d1.columns) == list(COLUMNS) + list(DEPLOYED_COLUMNS)
    assert (d1["exit_clean"].to_numpy() == E - 1).all() and (d1["exit_adv"].to_numpy() == E - 1).all()
    assert (d1["deployed_pred_adv"] == d1["final_pred_adv"]).all()
    d0 = deployed(df, tau=0.0)
    assert (d0["exit_clean"] == 0).all() and (d0["exit_adv"] == 0).all()
    assert (d0["macs_clean"] == df["exit_macs"].map(lambda m: m[0])).all()
    # stored τ: the library's early-exit rule on the target's logits
    s2d = deployed(df[df["direction"] == "S2D"])
    tgt = fake_ws.model("mobilenet", "sdn")
    pred, ex = early_exit.early_exit_predict(early_exit.all_exit_logits(tgt, fake_ws.eval_half[0]),
                                             fake_ws.tau("mobilenet", "sdn"))
    assert s2d["exit_clean"].tolist() == ex.tolist() and s2d["deployed_pred_clean"].tolist() == pred.tolist()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        deployed(df, tau=1.5)


# ---------------------------------------------------------------- RQ1-RQ3 on every pair (fake zoo)

@pytest.fixture(scope="module")
def rq1_out(fake_ws):
    return rq1.run(fake_ws, CFG)


def test_rq1_success_rate_definition(rq1_out):
    per, summ = rq1_out["per_image"], rq1_out["summary"]
    assert len(summ) == 6 * 2 and set(summ["direction"]) == {"S2D", "D2S"}
    for _, r in summ.iterrows():
        g = per[(per["pair"] == r["pair"]) & (per["direction"] == r["direction"]) & (per["attack"] == r["attack"])]
        pc, pa, y = (g[c].to_numpy(copy=True) for c in ("deployed_pred_clean", "deployed_pred_adv", "label"))
        ref = metrics.success_rate(pc, pa, y)
        mine = 100 * g.loc[g["correct_clean"], "success"].mean() if g["correct_clean"].any() else math.nan
        assert (math.isnan(ref) and math.isnan(r["success_rate"]) and math.isnan(mine)) or \
            (ref == pytest.approx(r["success_rate"]) and ref == pytest.approx(mine))
        assert r["success_rate_all"] == pytest.approx(metrics.success_rate(pc, pa, y, over="all"))
        assert r["n"] == 16 and r["n_correct"] == int(g["correct_clean"].sum())


def test_rq1_exit_used_and_findings(rq1_out):
    eu = rq1_out["exit_used"]
    assert set(eu["pair"]) == {p.short for p in get_pairs("D2S")}
    for _, g in eu.groupby(["pair", "attack"]):
        assert g["fraction"].sum() == pytest.approx(1.0) and g["cumulative"].iloc[-1] == pytest.approx(1.0)
    gt = rq1_out["generation_time"]
    assert set(gt["surrogate"]) == {"DyNN", "SDNN"} and (gt["seconds_per_example"] > 0).all()
    f1, f2 = rq1.finding_1(rq1_out["summary"]), rq1.finding_2(gt, rq1_out["summary"])
    assert f1["verdict"] in VERDICTS and f2["verdict"] in VERDICTS and f1["evidence"] and f2["evidence"]
    assert f2["comparisons"] == 2 * 2  # MobileNet and ResNet-56 exist as both surrogate kinds, x 2 attacks
    assert len(rq1.share_early_exits(eu)) == 3 * 2


def test_rq2_rq3_reuse_rq1_tables(fake_ws, rq1_out, monkeypatch):
    calls = []
    real = dict(attacks_mod.ATTACKS)
    for name, fn in real.items():
        monkeypatch.setitem(attacks_mod.ATTACKS, name,
                            lambda model, *a, _fn=fn, **k: (calls.append(type(model).__name__), _fn(model, *a, **k))[1])
    out2 = rq2.run(fake_ws, CFG)
    assert calls == ["SDNN"] * (3 * 2)  # only the 3 white-box CNNs x 2 attacks; S2D tables are RQ1's
    _no_attacks(monkeypatch)
    out3 = rq3.run(fake_ws, CFG)  # white-box and S2D tables all cached already
    bb2 = out2["per_image"][out2["per_image"]["setting"] == "black-box"][list(COLUMNS)].reset_index(drop=True)
    bb1 = rq1_out["per_image"][rq1_out["per_image"]["direction"] == "S2D"][list(COLUMNS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(bb2, bb1)
    assert len(out3["per_image"]) == len(out2["per_image"]) == (3 + 3) * 2 * 16


def test_rq2_summary(fake_ws):
    out = rq2.run(fake_ws, CFG)
    per, s = out["per_image"], out["summary"]
    assert (per["delta_exit"] == per["exit_adv"] - per["exit_clean"]).all()
    assert np.allclose(per["delta_macs"], per["macs_adv"] - per["macs_clean"])
    for _, r in s.iterrows():
        g = per[(per["setting"] == r["setting"]) & (per["pair"] == r["pair"]) & (per["attack"] == r["attack"])]
        assert r["share_raised_gt1"] == pytest.approx(metrics.share_exit_raised(g["delta_exit"].to_numpy(copy=True)))
        assert r["mean_delta_exit"] == pytest.approx(g["delta_exit"].mean())
    assert set(s["setting"]) == {"white-box", "black-box"} and len(s) == 6 * 2
    s0 = rq2.summarise(per, tau=0.0)  # widget slider: everything leaves at exit 0
    assert (s0["mean_exit_clean"] == 0).all() and (s0["mean_delta_exit"] == 0).all() and (s0["tau"] == 0).all()
    for f in (rq2.finding_3(s), rq2.finding_4(s)):
        assert f["verdict"] in VERDICTS and f["evidence"]
    f5 = rq2.finding_5([s])
    assert f5["verdict"] == "not testable here" and "not testable here" in f5["evidence"]
    other = s.assign(dataset="cifar100", share_raised_gt1=s["share_raised_gt1"] + 1)
    assert rq2.finding_5([s.assign(dataset="cifar10"), other])["verdict"] == "holds"


def test_rq3(fake_ws):
    out = rq3.run(fake_ws, CFG)
    per, s = out["per_image"], out["summary"]
    for (_, _), g in per.groupby(["pair", "attack"]):
        E = len(g["pred_clean"].iloc[0])
        one_hot = lambda col: torch.nn.functional.one_hot(torch.tensor(np.stack(g[col].to_numpy())).T, 10).float()
        ref = metrics.first_changed_exit(one_hot("pred_clean"), one_hot("pred_adv"))
        assert g["first_changed_exit"].tolist() == ref.tolist() and (g["num_exits"] == E).all()
        assert (g["final_flipped"] == (ref >= 0).numpy()).all()
    for _, r in s.iterrows():
        g = per[(per["setting"] == r["setting"]) & (per["pair"] == r["pair"]) & (per["attack"] == r["attack"])]
        ref = metrics.share_first_exit(g["first_changed_exit"].to_numpy(copy=True))
        got = r["share_changed_exit0"]
        assert (math.isnan(ref) and math.isnan(got)) or ref == pytest.approx(got)
        if r["n_flipped"]:
            assert sum(r["first_exit_distribution"]) == pytest.approx(1.0)
    assert set(out["first_exit"]["exit"]) == {0, 1, 2}
    for f in (rq3.finding_6(s), rq3.finding_7(s), rq3.finding_8([s])):
        assert f["verdict"] in VERDICTS and f["evidence"]
    assert rq3.finding_8([s])["verdict"] == "not testable here"


def test_appendix(fake_ws):
    ps = appendix.psnr_table(fake_ws, CFG)
    assert set(ps["source"]) == {"SDNN", "DyNN"} and (ps["mean_psnr"] > 20 * math.log10(255 / 8) - 1e-6).all()
    sw = appendix.eps_sweep(fake_ws, replace(CFG, attacks=("fgsm",)), eps=(4 / 255, 8 / 255))
    assert sw["eps_255"].tolist() == [4.0, 8.0] and sw["psnr_sdnn"].is_monotonic_decreasing
    orig, adv_s, adv_d = appendix.image_grid(fake_ws, D2S_MNET, "pgd", 8 / 255, n=3, cfg=CFG)
    assert orig.dtype == torch.uint8 and orig.shape == adv_s.shape == adv_d.shape == (3, 3, 32, 32)
    assert (adv_s - orig.float() / 255).abs().max() <= 8 / 255 + 1e-6
    # the grid's DyNN-source images are the cached table's first rows (same attack, same labels)
    t = transfer_table(fake_ws, D2S_MNET, "pgd", 8 / 255, replace(CFG, n_images=3))
    assert np.allclose(t["psnr"], metrics.psnr(orig, adv_d).numpy())
    mi = appendix.mifgsm_transfer(fake_ws, CFG, pairs=[S2D_MNET])
    assert set(mi["summary"]["attack"]) == {"mifgsm"}
    assert appendix.reverse_pair(S2D_MNET) == D2S_MNET


def test_appendix_run(fake_ws):
    out = appendix.run(fake_ws, replace(CFG, attacks=("fgsm",)))
    assert set(out) == {"mifgsm_summary", "mifgsm_exit_used", "eps_sweep", "psnr", "grid_images"}
    assert out["eps_sweep"]["eps_255"].tolist() == [2.0, 4.0, 8.0, 16.0]
    assert set(out["psnr"]["attack"]) == {"fgsm", "mifgsm"}
    orig, adv_s, adv_d = appendix.grid_arrays(out["grid_images"])
    assert orig.shape == adv_s.shape == adv_d.shape == (8, 3, 32, 32)
    assert np.abs(adv_d.astype(int) - orig.astype(int)).max() <= 8


def test_finding_verdicts_on_hand_made_summaries():
    base = dict(dataset="cifar10", attack="pgd", eps=8 / 255, eps_255=8.0)
    s1 = pd.DataFrame([{**base, "direction": d, "success_rate": v} for d, v in
                       (("D2S", 50.0), ("D2S", 40.0), ("S2D", 30.0), ("S2D", 35.0))])
    assert rq1.finding_1(s1)["verdict"] == "holds"
    assert rq1.finding_1(s1.assign(direction=s1["direction"][::-1].to_numpy()))["verdict"] == "does not hold"
    gt = pd.DataFrame([{**base, "surrogate_arch": "mobilenet", "surrogate": k, "seconds_per_example": v}
                       for k, v in (("DyNN", 0.01), ("SDNN", 0.02))])
    assert rq1.finding_2(gt)["verdict"] == "holds"
    rows = [{**base, "setting": st, "pair": a, "target_arch": a,
             "target_kind": "sdn" if st == "black-box" else "ic_only",
             "first_exit_cost": cost, "share_changed_exit0": ch, "share_not_changed_exit0": 100 - ch}
            for st, a, cost, ch in (("black-box", "vgg16", 0.10, 40.0), ("black-box", "resnet56", 0.15, 60.0),
                                    ("black-box", "mobilenet", 0.20, 70.0), ("white-box", "vgg16", 0.10, 90.0),
                                    ("white-box", "resnet56", 0.15, 95.0), ("white-box", "mobilenet", 0.2, 65.0))]
    s3 = pd.DataFrame(rows)
    assert rq3.finding_6(s3)["verdict"] == "holds"
    assert rq3.finding_6(s3.assign(first_exit_cost=[0.3, 0.15, 0.2] * 2))["verdict"] == "does not hold"
    assert rq3.finding_7(s3)["verdict"] == "mixed"  # MobileNet: black-box 70 > white-box 65
    big = s3.assign(dataset="cifar100", share_changed_exit0=s3["share_changed_exit0"] + 5)
    assert rq3.finding_8([s3, big])["verdict"] == "holds"
    assert rq3.finding_8([s3, s3.assign(dataset="cifar10-jpeg")])["verdict"] == "not testable here"


# ---------------------------------------------------------------- real (trained) models

def test_real_models_one_pair(real_ws):
    out1 = rq1.run(real_ws, CFG, pairs=[S2D_MNET])
    _check_schema(out1["per_image"][list(COLUMNS)].iloc[:16], real_ws, 8 / 255, 16)
    assert len(out1["summary"]) == 2
    out2 = rq2.run(real_ws, CFG, archs=("mobilenet",), pairs=[S2D_MNET])
    assert out2["per_image"]["pred_clean"].map(len).eq(models.build("mobilenet", 10).num_exits).all()
    assert rq3.run(real_ws, CFG, archs=("mobilenet",), pairs=[S2D_MNET])["summary"]["n"].eq(16).all()


@pytest.mark.slow
def test_real_models_all_pairs(real_ws):
    out = rq1.run(real_ws, CFG)
    assert len(out["summary"]) == 6 * 2 and len(out["exit_used"]) > 0
    assert rq1.finding_1(out["summary"])["verdict"] in VERDICTS
    s2 = rq2.run(real_ws, CFG)["summary"]
    s3 = rq3.run(real_ws, CFG)["summary"]  # reuses RQ2's white-box and RQ1's S2D tables
    assert len(s2) == len(s3) == 6 * 2 and (s3["num_exits"] > 1).all()
    assert rq3.finding_6(s3)["verdict"] in VERDICTS and rq3.finding_7(s3)["verdict"] in VERDICTS


def test_generation_cost_counts_macs_up_to_the_exit_used():
    costs = rq1.exit_costs("mobilenet", "sdn")
    full_cnn = rq1.exit_costs("mobilenet", "cnn")[0]
    base = dict(dataset="synthetic", direction="D2S", pair="mobilenet→mobilenet", surrogate_arch="mobilenet",
                attack="pgd", eps=8 / 255, eps_255=8.0, gen_seconds=0.01)
    df = pd.DataFrame([{**base, "surrogate_kind": "sdn", "surrogate_exit": 0},
                       {**base, "surrogate_kind": "sdn", "surrogate_exit": 2},
                       {**base, "direction": "S2D", "surrogate_kind": "cnn", "surrogate_exit": 0}])
    gt = rq1.generation_time(df)
    dy = gt[gt["surrogate"] == "DyNN"].iloc[0]
    sd = gt[gt["surrogate"] == "SDNN"].iloc[0]
    assert dy["macs_per_step"] == pytest.approx((costs[0] + costs[2]) / 2)
    assert sd["macs_per_step"] == full_cnn and dy["full_macs"] == costs[-1]
    f2 = rq1.finding_2(gt)
    assert f2["compute_verdict"] == "holds" and "MACs per attack step" in f2["evidence"]
