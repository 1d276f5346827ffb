"""RQ1-RQ3 and appendix experiments: table schema, budgets, caching/reuse, deployed exits, findings.

Two workspaces on the ``synthetic`` dataset with a tiny profile:

* ``fake_ws``: the real Workspace, store and experiment code, but its model zoo returns tiny
  untrained 3-exit networks (conftest's backbone at 32x32, logits scaled up so confidences
  spread and exits vary) instead of training VGG/ResNet/MobileNet: every pair and architecture
  in seconds on a CPU.
* ``real_ws``: real training (1 epoch on 64 images, 8 query images) of the MobileNet models the
  S2D MobileNet -> MobileNet pair and its white-box setting need. RQ1-RQ3 on every pair with
  trained networks is the book's run (tests/test_book.py, ``slow``), checked there.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from dynn_lib import attacks as attacks_mod
from dynn_lib import blackbox, early_exit, metrics, models, verdicts
from dynn_lib.blackbox import PAIRS, get_pairs
from dynn_lib.experiments import appendix, rq1, rq2, rq3
from dynn_lib.experiments.common import (COLUMNS, DEPLOYED_COLUMNS, ExperimentConfig, deployed, exit_outputs,
                                         run_attack, transfer_table, verdict, whitebox_table)
from dynn_lib.zoo import Workspace

from conftest import fake_zoo

TINY = dict(n_train=64, n_query=32, n_eval=16, attack_steps=2, batch_size=32)
CFG = ExperimentConfig(eps=(8 / 255,), attacks=("fgsm", "pgd"), attack_batch_size=32)
S2D_MNET = next(p for p in PAIRS if p.direction == "S2D" and p.surrogate_arch == p.target_arch == "mobilenet")
D2S_MNET = next(p for p in PAIRS if p.direction == "D2S" and p.surrogate_arch == p.target_arch == "mobilenet")
VERDICTS = set(verdicts.VERDICTS)


def _is_verdict(v: str) -> bool:
    return verdicts.family(v) in VERDICTS


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
    with pytest.raises(ValueError, match=r"eps has duplicates: \[0.03137254901960784, 0.03137254901960784\]"):
        ExperimentConfig(eps=(8 / 255, 8 / 255))  # would count every image twice
    with pytest.raises(ValueError, match=r"attacks has duplicates: \['pgd', 'pgd'\]"):
        ExperimentConfig(attacks=("pgd", "pgd"))
    c = ExperimentConfig(eps=[4 / 255, 8 / 255], attacks=["pgd"])
    assert c.eps == (4 / 255, 8 / 255) and c.attacks == ("pgd",)
    assert ExperimentConfig(eps=8 / 255).eps == (8 / 255,)
    assert verdict([]) == "not testable" and verdict([True, False]) == "partly"
    assert verdict(["supports", "inconclusive"]) == "inconclusive" and verdict([], "x") == "not testable: x"
    with pytest.raises(ValueError, match="attack_batch_size must be an integer >= 1, got 0"):
        ExperimentConfig(attack_batch_size=0)


def test_training_and_attack_batches_are_separate_parameters():
    """``-p batch_size`` is the profile's training batch and ``-p attack_batch_size`` the attacks' (they
    once shared the name ``batch_size``, and one override set both)."""
    from dynn_lib.experiments.runner import split_overrides
    for q in ("rq1", "rq2", "rq3", "appendix", "rq4"):
        assert split_overrides(q, {"batch_size": 64}) == ({"batch_size": 64}, {}), q
        assert split_overrides(q, {"attack_batch_size": 128}) == ({}, {"attack_batch_size": 128}), q
    assert ExperimentConfig().attack_batch_size == 512
    # the same for the learning rates: the profile's lr trains, RQ4's ea_lr drives the Early Attack's Adam
    assert split_overrides("rq4", {"lr": 0.05}) == ({"lr": 0.05}, {})
    assert split_overrides("rq4", {"ea_lr": 0.05}) == ({}, {"ea_lr": 0.05})


def test_cuda_warm_up_is_one_step_on_the_first_batch_and_leaves_the_seeded_stream(fake_ws):
    """The untimed warm-up before a CUDA attack table's first timed batch runs the attack once on
    that whole batch (kernels are chosen by shape) at one step, without the seeded generator: the
    timed batches then draw the same random starts as with no warm-up."""
    from dynn_lib.experiments import common
    x, y = fake_ws.eval_half
    x = early_exit.to_float_pixels(x[:12])
    y = y[:12]
    dynn = fake_ws.model("mobilenet", "sdn")
    calls = []

    def recording(fn):
        def call(model, xb, yb, **kw):
            calls.append((len(yb), kw.get("steps"), kw["generator"]))
            return fn(model, xb, yb, **kw)
        return call

    for attack, steps in (("pgd", 5), ("mifgsm", 5), ("fgsm", None)):
        calls.clear()
        gen = torch.Generator().manual_seed(3)
        state = gen.get_state()
        kw = dict(common._call_kwargs(attack, 8 / 255, CFG, steps or 1), eps=8 / 255, exit_loss="final",
                  tau=None, generator=gen, return_info=True)
        common._warm_up(recording(attacks_mod.ATTACKS[attack]), dynn, x, y, kw)
        assert calls == [(12, 1 if steps else None, None)], attack
        assert torch.equal(gen.get_state(), state), attack
        assert kw["generator"] is gen and kw.get("steps") == steps  # the timed call's arguments are untouched


def test_cuda_tables_warm_up_once_per_batch_size_and_time_the_same_attack(fake_ws, monkeypatch):
    """On CUDA (forced here) an attack table warms up before the first timed batch of each batch
    size, the first and the smaller last, never twice for one size; the timed results equal a
    run without warm-ups (the seeded random starts are untouched)."""
    from dynn_lib.experiments import common
    x, y = fake_ws.eval_half
    x, y = x[:12], y[:12]
    dynn = fake_ws.model("mobilenet", "sdn")
    cfg = replace(CFG, attack_batch_size=5)
    events = []
    real_warm_up, real_pgd = common._warm_up, attacks_mod.ATTACKS["pgd"]

    def warm_up(fn, model, xb, yb, kw):
        events.append(("warm", len(yb)))
        real_warm_up(fn, model, xb, yb, kw)

    def timed_pgd(model, xb, yb, **kw):
        if kw["generator"] is not None:  # the timed call (a warm-up passes none)
            events.append(("timed", len(yb)))
        return real_pgd(model, xb, yb, **kw)

    monkeypatch.setitem(attacks_mod.ATTACKS, "pgd", timed_pgd)
    runs = {}
    for warm in (False, True):
        monkeypatch.setattr(common, "_warms_up", lambda device, warm=warm: warm)
        monkeypatch.setattr(common, "_warm_up", warm_up)
        events.clear()
        runs[warm] = common._run_attack_batches(dynn, x, y, "pgd", 8 / 255, cfg, "fired", 0.5, "cpu",
                                                torch.Generator().manual_seed(0), 2)
        if warm:
            assert events == [("warm", 5), ("timed", 5), ("timed", 5), ("warm", 2), ("timed", 2)]
        else:
            assert events == [("timed", 5), ("timed", 5), ("timed", 2)]
    assert torch.equal(runs[True].x_adv, runs[False].x_adv) and torch.equal(runs[True].exit_used, runs[False].exit_used)


def test_exit_outputs_and_run_attack(fake_ws):
    x, y = fake_ws.eval_half
    dynn = fake_ws.model("mobilenet", "sdn")
    conf, pred = exit_outputs(dynn, x, "cpu")
    z = early_exit.all_exit_logits(dynn, x)
    assert conf.shape == pred.shape == (len(y), 3) and conf.dtype == torch.float32 and pred.dtype == torch.int64
    assert torch.equal(pred, z.argmax(-1).T) and torch.allclose(conf, z.softmax(-1).amax(-1).T)
    cnn_conf, _ = exit_outputs(fake_ws.model("mobilenet", "cnn"), x, "cpu")
    assert cnn_conf.shape == (len(y), 1)
    x_adv, used, secs = run_attack(dynn, x, y, "pgd", 4 / 255, replace(CFG, attack_batch_size=5), exit_loss="fired",
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


def test_tables_record_whether_their_timing_shared_the_device(tmp_path, monkeypatch):
    """gen_seconds_shared is what the engine said when the table was timed (a Ray worker that may
    share its GPU sets DYNN_SHARED_DEVICE=1); a plain process times alone."""
    from dynn_lib.engines import SHARED_DEVICE_ENV
    ws = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", **TINY)
    fake_zoo(ws)
    monkeypatch.delenv(SHARED_DEVICE_ENV, raising=False)
    alone = whitebox_table(ws, "mobilenet", "fgsm", 2 / 255, CFG)
    monkeypatch.setenv(SHARED_DEVICE_ENV, "1")
    shared = whitebox_table(ws, "mobilenet", "fgsm", 4 / 255, CFG)
    assert alone["gen_seconds_shared"].dtype == bool and not alone["gen_seconds_shared"].any()
    assert shared["gen_seconds_shared"].all()


def test_second_call_reuses_cache(fake_ws, monkeypatch):
    first_t = transfer_table(fake_ws, S2D_MNET, "fgsm", 2 / 255, CFG)
    first_w = whitebox_table(fake_ws, "mobilenet", "fgsm", 2 / 255, CFG)
    _no_attacks(monkeypatch)
    monkeypatch.setattr(fake_ws, "trained", _raise)  # no model is even loaded
    pd.testing.assert_frame_equal(transfer_table(fake_ws, S2D_MNET, "fgsm", 2 / 255, CFG), first_t)
    pd.testing.assert_frame_equal(whitebox_table(fake_ws, "mobilenet", "fgsm", 2 / 255, CFG), first_w)
    with pytest.raises(AssertionError, match="recomputed"):  # a different config is computed
        transfer_table(fake_ws, S2D_MNET, "fgsm", 3 / 255, CFG)


def test_clean_outputs_and_surrogate_labels_computed_once_per_workspace(tmp_path, monkeypatch):
    """Every table of a target reads the target's clean outputs, and every attack and ε through a
    surrogate its labels: computed once per workspace, and the tables equal those of workspaces that
    compute them afresh for each table."""
    from dynn_lib.experiments import common

    tables = [(table, source, a, e) for table, source in ((transfer_table, S2D_MNET), (whitebox_table, "mobilenet"))
              for a in ("fgsm", "pgd") for e in (2 / 255, 8 / 255)]

    def new_ws(name):
        ws = Workspace("synthetic", "smoke", store=tmp_path / name, device="cpu", **TINY)
        fake_zoo(ws)
        return ws

    fresh = [t(new_ws(f"fresh{i}"), src, a, e, CFG) for i, (t, src, a, e) in enumerate(tables)]  # empty memo each
    calls = {"exit_outputs": 0, "deployed_predict": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(common, "exit_outputs", counting("exit_outputs", common.exit_outputs))
    monkeypatch.setattr(common.blackbox, "deployed_predict",
                        counting("deployed_predict", common.blackbox.deployed_predict))
    ws = new_ws("memo")
    for (t, src, a, e), b in zip(tables, fresh):
        pd.testing.assert_frame_equal(t(ws, src, a, e, CFG).drop(columns="gen_seconds"), b.drop(columns="gen_seconds"))
    # 8 tables: 8 adversarial evaluations + the clean outputs of 2 targets (S2D target, IC-only DyNN);
    # one set of surrogate labels
    assert calls == {"exit_outputs": 8 + 2, "deployed_predict": 1}
    y = common.clean_surrogate_labels(ws, common.blackbox.surrogate(ws, S2D_MNET), *common._images(ws, CFG)[::2],
                                      common.blackbox.surrogate_tau(ws, S2D_MNET))
    y[:] = -1  # a caller's copy: the memo is untouched
    assert (common.clean_surrogate_labels(ws, common.blackbox.surrogate(ws, S2D_MNET),
                                          *common._images(ws, CFG)[::2], common.blackbox.surrogate_tau(ws, S2D_MNET))
            >= 0).all()


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


def test_rq1_exit_used_and_findings(rq1_out, fake_ws):
    eu = rq1_out["exit_used"]
    assert set(eu["pair"]) == {p.short for p in get_pairs("D2S")}
    for _, g in eu.groupby(["pair", "attack"]):
        assert g["fraction"].sum() == pytest.approx(1.0) and g["cumulative"].iloc[-1] == pytest.approx(1.0)
    gt = rq1_out["generation_time"]
    assert set(gt["surrogate"]) == {"DyNN", "SDNN"} and (gt["seconds_per_example"] > 0).all()
    sur = rq1_out["surrogates"]  # one row per DyNN surrogate, as the attacker calibrated it
    assert list(sur.columns[:3]) == ["dataset", "direction", "pair"] and set(sur["direction"]) == {"D2S"}
    assert sorted(sur["pair"]) == sorted(p.short for p in get_pairs("D2S"))
    for r in sur.itertuples():
        pair = next(p for p in get_pairs("D2S") if p.short == r.pair)
        assert r.tau == blackbox.surrogate_tau(fake_ws, pair) and isinstance(r.tau_meets_rule, bool)
        assert r.early_exit_agreement_lo <= r.early_exit_agreement <= r.early_exit_agreement_hi
        assert 0 <= r.final_agreement <= 100 and r.n_holdout >= 1
    assert rq1.fallback_note(sur).startswith(("All 3 early-exit surrogates keep", "1 of the 3", "2 of the 3", "3 of the 3"))
    assert rq1.fallback_note(sur.assign(tau_meets_rule=True)) == "All 3 early-exit surrogates keep the rule."
    assert rq1.fallback_note(sur.iloc[:1].assign(tau_meets_rule=True)) == "The early-exit surrogate keeps the rule."
    assert rq1.fallback_note(sur.assign(tau_meets_rule=[True, None, None])) == (
        "1 of the 3 early-exit surrogates keep the rule. 2 of them have no recorded flag (calibrated before it was recorded).")
    missed = sur.assign(tau_meets_rule=[False, True, True], tau=[0.999, 0.5, 0.5])
    assert rq1.fallback_note(missed).startswith("1 of the 3 early-exit surrogates keeps no τ") and "(τ 0.999)" in rq1.fallback_note(missed)
    assert rq1.fallback_note(sur.iloc[:0]) == "This run has no early-exit surrogate."
    f1, f2 = rq1.finding_1(rq1_out["per_image"]), rq1.finding_2(rq1_out["per_image"], rq1_out["summary"])
    assert _is_verdict(f1["verdict"]) and _is_verdict(f2["verdict"]) and f1["evidence"] and f2["evidence"]
    assert f1["n_images"] == 16 and len(f1["comparisons"]) == 2
    assert len(f2["comparisons"]) == 2 * 2  # MobileNet and ResNet-56 exist as both surrogate kinds, x 2 attacks
    with pytest.raises(ValueError, match="per-image"):
        rq1.finding_1(rq1_out["summary"])
    sh = rq1.share_early_exits(eu)
    assert len(sh) == 3 * 2 and (sh["n"] == 16).all()
    assert ((sh["share_exits_0_2_lo"] <= sh["share_exits_0_2"]) & (sh["share_exits_0_2"] <= sh["share_exits_0_2_hi"])).all()
    for r in eu.itertuples():
        assert (r.fraction_lo, r.fraction_hi) == pytest.approx(
            tuple(v / 100 for v in metrics.wilson_interval(r.count, r.n)))


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


def test_rq2_summary(fake_ws, monkeypatch):
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
    for f in (rq2.finding_3(per), rq2.finding_4(per)):
        assert _is_verdict(f["verdict"]) and f["evidence"] and f["n_images"] == 16
    f5 = rq2.finding_5([s])
    assert f5["verdict"].startswith("not testable") and "not testable" in f5["evidence"]
    # Wilson columns beside every share, from its count
    for col in ("share_raised_gt1", "share_raised", "share_lowered"):
        for r in s.itertuples():
            k = getattr(r, "n_" + col.removeprefix("share_"))
            assert getattr(r, col) == pytest.approx(100 * k / r.n)
            assert (getattr(r, col + "_lo"), getattr(r, col + "_hi")) == pytest.approx(metrics.wilson_interval(k, r.n))
    assert s["mean_delta_exit_lo"].isna().all()  # 16 images: under MIN_BOOTSTRAP_IMAGES, no bootstrap interval
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 2)
    s = rq2.summarise(per)
    assert ((s["mean_delta_exit_lo"] <= s["mean_delta_exit"] + 1e-9)
            & (s["mean_delta_exit"] <= s["mean_delta_exit_hi"] + 1e-9)).all()
    assert ((s["total_macs_change_lo"] <= s["total_macs_change"] + 1e-9)
            & (s["total_macs_change"] <= s["total_macs_change_hi"] + 1e-9)).all()


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
    for f in (rq3.finding_6(per), rq3.finding_7(per), rq3.finding_8([s])):
        assert _is_verdict(f["verdict"]) and f["evidence"]
    assert rq3.finding_8([s])["verdict"].startswith("not testable")
    assert "confounded" in rq3.finding_7(per)["evidence"]
    for r in s.itertuples():
        assert (r.share_changed_exit0_lo, r.share_changed_exit0_hi) == pytest.approx(
            metrics.wilson_interval(r.n_changed_exit0, r.n_flipped), nan_ok=True)
    # the three readings of "changed at the first exit", counted row by row; the protocol's equals the summary's
    readings = rq3.exit0_readings(per)
    assert readings["n_changed"].tolist() == s["n_changed_exit0"].tolist() and readings["n_flipped"].sum() > 0
    assert readings["n_flipped"].tolist() == s["n_flipped"].tolist()
    seen = dict.fromkeys(("changed", "not_label", "not_final", "wrong_benign"), 0)
    for r in readings.itertuples():
        g = per[(per["setting"] == r.setting) & (per["pair"] == r.pair) & (per["attack"] == r.attack)]
        want = dict.fromkeys(("changed", "not_label", "not_final", "wrong_benign"), 0)
        for pc, pa, y in zip(g["pred_clean"], g["pred_adv"], g["label"]):
            if pa[-1] != pc[-1]:
                want["changed"] += pa[0] != pc[0]
                want["not_label"] += pa[0] != y
                want["not_final"] += pa[0] != pc[-1]
                want["wrong_benign"] += pc[0] != y
        for name, k in want.items():
            assert getattr(r, f"n_{name}") == k, name
            seen[name] += k
            assert (getattr(r, f"share_{name}_lo"), getattr(r, f"share_{name}_hi")) == pytest.approx(
                metrics.wilson_interval(k, r.n_flipped), nan_ok=True)
    assert seen["not_label"] != seen["changed"]  # the data tell the readings apart: the loop checks something


def test_appendix(fake_ws):
    ps = appendix.psnr_table(fake_ws, CFG)
    assert set(ps["source"]) == {"SDNN", "DyNN"} and (ps["mean_psnr"] > 20 * math.log10(255 / 8) - 1e-6).all()
    sw = appendix.eps_sweep(fake_ws, replace(CFG, attacks=("fgsm",)), eps=(4 / 255, 8 / 255))
    assert sw["eps_255"].tolist() == [4.0, 8.0] and sw["psnr_sdnn"].is_monotonic_decreasing
    orig, adv_s, adv_d = appendix.image_grid(fake_ws, D2S_MNET, "pgd", 8 / 255, n=3, cfg=CFG)
    assert orig.dtype == torch.uint8 and orig.shape == adv_s.shape == adv_d.shape == (3, 3, 32, 32)
    assert (adv_s - orig.float() / 255).abs().max() <= 8 / 255 + 1e-6
    # the grid's DyNN-source images are the cached table's rows (same stratified images, attack, labels)
    t = transfer_table(fake_ws, D2S_MNET, "pgd", 8 / 255, replace(CFG, n_images=3))
    assert np.allclose(t["psnr"], metrics.psnr(orig, adv_d).numpy())
    mi = appendix.mifgsm_transfer(fake_ws, CFG, pairs=[S2D_MNET])
    assert set(mi["summary"]["attack"]) == {"mifgsm"}
    assert appendix.reverse_pair(S2D_MNET) == D2S_MNET


def test_appendix_run(fake_ws, monkeypatch):
    out = appendix.run(fake_ws, replace(CFG, attacks=("fgsm",)))
    assert set(out) == {"mifgsm_summary", "mifgsm_per_image", "mifgsm_exit_used", "eps_sweep", "psnr",
                        "psnr_equivalence", "grid_images"}
    sw = out["eps_sweep"]  # pooled rates: a bootstrap over the images, given from MIN_BOOTSTRAP_IMAGES images on
    n_img = len(fake_ws.eval_half[1])
    assert n_img < metrics.MIN_BOOTSTRAP_IMAGES and sw["wb_raised_gt1_lo"].isna().all()
    assert (sw["wb_raised_gt1_n"] == n_img).all()  # three white-box models pooled, each image counted once
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 2)
    sw = appendix.eps_sweep(fake_ws, replace(CFG, attacks=("fgsm",)))
    per = rq2.run(fake_ws, replace(CFG, attacks=("fgsm",), eps=(8 / 255,)), pairs=[])["per_image"]
    wb = per[per["setting"] == "white-box"]
    assert wb["image"].value_counts().eq(3).all()  # the rows a Wilson interval would have taken as 3n images
    row = sw[sw["eps_255"] == 8.0].iloc[0]
    boot = metrics.bootstrap_rate(wb["image"], wb["delta_exit"] > 1)
    assert (row["wb_raised_gt1"], row["wb_raised_gt1_lo"], row["wb_raised_gt1_hi"]) == pytest.approx(boot)
    for c in ("s2d_success", "d2s_success", "wb_raised_gt1", "bb_raised_gt1"):
        ok = sw[c].notna()
        assert ((sw.loc[ok, f"{c}_lo"] <= sw.loc[ok, c] + 1e-9) & (sw.loc[ok, c] <= sw.loc[ok, f"{c}_hi"] + 1e-9)).all()
    mi = out["mifgsm_per_image"]  # what Finding 1 on MI-FGSM is judged from (the appendix page)
    assert set(mi["attack"]) == {"mifgsm"} and len(mi) == 6 * len(fake_ws.eval_half[1])
    assert rq1.finding_1(mi)["verdict"].split(":")[0] in verdicts.VERDICTS
    eq = out["psnr_equivalence"]
    assert set(eq["eps_255"]) == {2.0, 4.0, 8.0, 16.0} and eq["verdict"].map(_is_verdict).all()
    assert eq.groupby("attack")["nearest_paper"].sum().eq(1).all()
    assert out["eps_sweep"]["eps_255"].tolist() == [2.0, 4.0, 8.0, 16.0]
    assert set(out["psnr"]["attack"]) == {"fgsm", "mifgsm"}
    orig, adv_s, adv_d = appendix.grid_arrays(out["grid_images"])
    assert orig.shape == adv_s.shape == adv_d.shape == (8, 3, 32, 32)
    assert np.abs(adv_d.astype(int) - orig.astype(int)).max() <= 8


def _rq1_rows(n: int, d2s_rate: float, s2d_rate: float, seed: int = 0) -> pd.DataFrame:
    """Per-image RQ1 rows: one D2S and one S2D pair on ``n`` images, every image target-correct."""
    rng = np.random.default_rng(seed)
    base = dict(dataset="cifar10", attack="pgd", eps=8 / 255, eps_255=8.0, correct_clean=True)
    return pd.DataFrame([{**base, "direction": d, "pair": d, "image": i, "success": bool(rng.random() < r)}
                         for d, r in (("D2S", d2s_rate), ("S2D", s2d_rate)) for i in range(n)])


def test_finding_1_decides_with_a_bootstrap_interval(monkeypatch):
    big = _rq1_rows(400, 0.6, 0.3)
    f = rq1.finding_1(big, n_boot=300)
    c = f["comparisons"][0]
    assert f["verdict"] == "holds" and c["lo"] > 0 and f["n_images"] == 400
    assert f"[{c['lo']:.1f}, {c['hi']:.1f}]" in f["evidence"]
    assert rq1.finding_1(big.assign(direction=big["direction"].map({"D2S": "S2D", "S2D": "D2S"})),
                         n_boot=300)["verdict"] == "does not hold"
    assert rq1.finding_1(big, n_boot=300) == f  # seeded: reproducible from its record
    # D2S succeeds on every one of 5 images, S2D on none: a percentile bootstrap collapses to [100, 100],
    # so under MIN_BOOTSTRAP_IMAGES images there is no interval and the verdict is "inconclusive"
    few = _rq1_rows(5, 0, 0).assign(success=[True] * 5 + [False] * 5)
    f5 = rq1.finding_1(few, n_boot=300)
    assert f5["verdict"] == "inconclusive" and f5["comparisons"][0]["difference"] == 100.0
    assert "[no interval: too few images]" in f5["evidence"]
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 2)
    c = rq1.finding_1(few, n_boot=300)["comparisons"][0]
    assert (c["lo"], c["hi"]) == (100.0, 100.0)  # the collapse the minimum guards against
    # a 25-point gap on 8 images (D2S succeeds on 5, S2D on 3 of them): the interval reaches 0, so
    # "inconclusive", never "holds"
    small = _rq1_rows(8, 0, 0).assign(success=[True] * 5 + [False] * 3 + [True] * 3 + [False] * 5)
    small = rq1.finding_1(small, n_boot=300)
    c = small["comparisons"][0]
    assert small["verdict"] == "inconclusive" and c["difference"] == 25.0 and c["lo"] <= 0 < c["hi"]


def _rq3_rows(n: int, changed: dict, seed: int = 0) -> pd.DataFrame:
    """Per-image RQ3 rows: ``changed[(setting, arch)]`` = probability that a flipped input changes at
    exit 0 (every input flipped); VGG has the earliest first exit."""
    rng = np.random.default_rng(seed)
    cost = {"vgg16": 0.1, "resnet56": 0.15, "mobilenet": 0.2}
    rows = []
    for (setting, arch), p in changed.items():
        for i in range(n):
            rows.append({"dataset": "cifar10", "setting": setting, "direction": "S2D" if setting == "black-box"
                         else "white-box", "pair": arch, "surrogate_arch": arch, "surrogate_kind": "cnn",
                         "target_arch": arch, "target_kind": "sdn" if setting == "black-box" else "ic_only",
                         "attack": "pgd", "eps": 8 / 255, "eps_255": 8.0, "image": i,
                         "first_changed_exit": 0 if rng.random() < p else 1, "num_exits": 3,
                         "exit_macs": [cost[arch], 0.5, 1.0]})
    return pd.DataFrame(rows)


def test_rq3_findings_decide_with_intervals():
    changed = {("black-box", "vgg16"): 0.2, ("black-box", "resnet56"): 0.6, ("black-box", "mobilenet"): 0.7,
               ("white-box", "vgg16"): 0.9, ("white-box", "resnet56"): 0.95, ("white-box", "mobilenet"): 0.65}
    per = _rq3_rows(300, changed)
    f6 = rq3.finding_6(per, n_boot=300)
    assert f6["verdict"] == "holds" and f6["comparisons"] == 2 and f6["n_images"] == 300
    f7 = rq3.finding_7(per, n_boot=300)
    # VGG and ResNet: black-box far below white-box; MobileNet 70 vs 65 on 300 images cannot be told apart
    assert f7["verdict"] == "inconclusive" and "confounded" in f7["evidence"] and "confounded" in rq3.finding_7.__doc__.lower()
    worse = {**changed, ("black-box", "mobilenet"): 0.95, ("white-box", "mobilenet"): 0.3}
    assert rq3.finding_7(_rq3_rows(300, worse), n_boot=300)["verdict"] == "partly"
    assert rq3.finding_6(_rq3_rows(6, changed), n_boot=300)["verdict"] == "inconclusive"


def test_cross_dataset_findings_compare_matched_cells_with_newcombe():
    def summ(dataset, k, n=200, extra=False):
        rows = [{"dataset": dataset, "setting": st, "pair": "resnet56→vgg16", "target_kind": "sdn", "attack": a,
                 "eps_255": 8.0, "n": n, "n_raised_gt1": k, "share_raised_gt1": 100 * k / n, "n_flipped": n,
                 "n_changed_exit0": k, "share_changed_exit0": 100 * k / n}
                for st in ("white-box", "black-box") for a in ("fgsm", "pgd")]
        if extra:  # a cell the other dataset does not have: never compared
            rows.append({**rows[0], "attack": "mifgsm", "n_raised_gt1": 0, "share_raised_gt1": 0.0,
                         "n_changed_exit0": 0, "share_changed_exit0": 0.0})
        return pd.DataFrame(rows)

    c10, c100 = summ("cifar10", 60), summ("cifar100", 120, extra=True)
    f5 = rq2.finding_5([c10, c100])
    assert f5["verdict"] == "holds" and f5["comparisons"] == 4 and set(f5["per_setting"]) == {"white-box", "black-box"}
    d, lo, hi = metrics.newcombe_interval(120, 200, 60, 200)
    assert f"{d:.1f} pp [{lo:.1f}, {hi:.1f}]" in f5["evidence"]
    assert rq3.finding_8([c10, c100])["verdict"] == "holds" and rq3.finding_8([c10, c100])["comparisons"] == 2
    assert rq2.finding_5([summ("cifar10", 6, 20), summ("cifar100", 8, 20)])["verdict"] == "inconclusive"
    assert rq3.finding_8([c10, c10.assign(dataset="cifar10-jpeg")])["verdict"].startswith("not testable")
    # two seeds' summaries of one dataset concatenated: an error naming the cell, not one row picked silently
    with pytest.raises(ValueError, match="2 summary rows share their cell .*'attack': 'fgsm'"):
        rq2.finding_5([pd.concat([c10, c10.iloc[[0]].assign(n_raised_gt1=5)]), c100])


def test_rq2_findings_decide_with_intervals():
    rng = np.random.default_rng(0)
    n = 200
    drop = rng.random(n)
    rows = pd.DataFrame({"dataset": "cifar10", "setting": "white-box", "direction": "white-box", "pair": "vgg16",
                         "surrogate_arch": "vgg16", "surrogate_kind": "cnn", "target_arch": "vgg16",
                         "target_kind": "ic_only", "attack": "fgsm", "eps": 8 / 255, "eps_255": 8.0,
                         "image": np.arange(n), "macs_clean": 100.0, "macs_adv": 100.0 + 5 * rng.random(n),
                         "delta_exit": (drop * 4).astype(int), "conf_internal_clean": 0.9,
                         "conf_internal_adv": 0.9 - drop})
    f3 = rq2.finding_3(rows, threshold=10.0, n_boot=300)
    assert f3["verdict"] == "holds" and f3["comparisons"][0]["hi"] < 10 and f3["n_images"] == n
    assert rq2.finding_3(rows, threshold=2.5, n_boot=300)["verdict"] == "inconclusive"  # change ≈ 2.5 %
    assert rq2.finding_3(rows, threshold=1.0, n_boot=300)["verdict"] == "does not hold"
    # the summary table carries the same interval for its total MACs change (Table RQ2.1)
    c = f3["comparisons"][0]
    assert rq2.total_macs_change(rows, n_boot=300) == pytest.approx((c["change"], c["lo"], c["hi"]))
    for bad in (-5, float("nan"), "10", True):
        with pytest.raises(ValueError, match=r"threshold must be a number >= 0 \(%\), got"):
            rq2.finding_3(rows, threshold=bad)
    f4 = rq2.finding_4(rows, n_boot=300)
    assert f4["verdict"] == "holds" and f4["comparisons"][0]["lo"] > 0.5
    noise = rows.assign(delta_exit=rng.integers(0, 4, n))
    assert rq2.finding_4(noise, n_boot=300)["verdict"] in ("inconclusive", "does not hold")
    with pytest.raises(ValueError, match="per-image"):
        rq2.finding_3(rows.drop(columns="image"))


def test_psnr_equivalence_per_eps_and_the_nearest_eps():
    rng = np.random.default_rng(0)
    rows = []
    for e, base in ((4, 35.0), (8, 30.0), (16, 24.0)):
        for i in range(300):
            v = base + rng.normal(0, 1)
            for kind, shift in (("cnn", 0.0), ("sdn", 0.05 if e != 16 else 2.0)):
                rows.append({"dataset": "cifar10", "surrogate_kind": kind, "attack": "pgd", "eps": e / 255,
                             "eps_255": float(e), "image": i, "psnr": v + shift + rng.normal(0, 0.05),
                             "linf": e / 255})
    per = pd.DataFrame(rows)
    eq = appendix.psnr_equivalence(per, tol=0.5, n_boot=300)
    v = dict(zip(eq["eps_255"], eq["verdict"]))
    assert v == {4.0: "holds", 8.0: "holds", 16.0: "does not hold"}
    assert eq.loc[eq["nearest_paper"], "eps_255"].tolist() == [16.0]
    st = appendix.psnr_statement(eq, 0.5)
    assert st["verdict"] == "partly" and st["nearest"]["pgd"][0] == 16.0 and "ε=16/255" in st["evidence"]
    assert appendix.psnr_statement(eq, 0.01)["verdict"] != st["verdict"]  # the margin is a parameter
    ps = appendix.psnr_summary(per, n_boot=300)
    assert ((ps["mean_psnr_lo"] <= ps["mean_psnr"]) & (ps["mean_psnr"] <= ps["mean_psnr_hi"])).all()
    assert (ps["n_images"] == 300).all()


# ---------------------------------------------------------------- real (trained) models

def test_real_models_one_pair(real_ws):
    out1 = rq1.run(real_ws, CFG, pairs=[S2D_MNET])
    _check_schema(out1["per_image"][list(COLUMNS)].iloc[:16], real_ws, 8 / 255, 16)
    assert len(out1["summary"]) == 2
    out2 = rq2.run(real_ws, CFG, archs=("mobilenet",), pairs=[S2D_MNET])
    assert out2["per_image"]["pred_clean"].map(len).eq(models.build("mobilenet", 10).num_exits).all()
    assert rq3.run(real_ws, CFG, archs=("mobilenet",), pairs=[S2D_MNET])["summary"]["n"].eq(16).all()


def test_generation_cost_counts_macs_up_to_the_exit_used(monkeypatch):
    costs = rq1.exit_costs("mobilenet", "sdn")
    full_cnn = rq1.exit_costs("mobilenet", "cnn")[0]
    base = dict(dataset="synthetic", direction="D2S", pair="mobilenet→mobilenet", surrogate_arch="mobilenet",
                attack="pgd", eps=8 / 255, eps_255=8.0, gen_seconds=0.01, gen_batch=0)
    df = pd.DataFrame([{**base, "surrogate_kind": "sdn", "surrogate_exit": 0, "image": 0, "gen_macs": 10 * costs[0]},
                       {**base, "surrogate_kind": "sdn", "surrogate_exit": 2, "image": 1, "gen_macs": 10 * costs[2]},
                       {**base, "direction": "S2D", "surrogate_kind": "cnn", "surrogate_exit": 0, "image": 0,
                        "gen_macs": 10 * full_cnn}])
    gt = rq1.generation_time(df)
    dy = gt[gt["surrogate"] == "DyNN"].iloc[0]
    sd = gt[gt["surrogate"] == "SDNN"].iloc[0]
    assert dy["macs_per_step"] == pytest.approx((costs[0] + costs[2]) / 2)
    assert sd["macs_per_step"] == full_cnn and dy["full_macs"] == costs[-1]
    assert dy["macs_per_example"] == pytest.approx(5 * (costs[0] + costs[2])) and sd["macs_per_example"] == 10 * full_cnn
    f2 = rq1.finding_2(df)  # MACs: DyNN cheaper on both images, but 2 images give no bootstrap interval
    assert f2["verdict"] == "inconclusive" and "MACs per example" in f2["evidence"]
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 1)  # the SDNN side has one image
    f2 = rq1.finding_2(df)  # time: one batch each, no interval
    assert f2["verdict"] == "holds" and f2["time_verdict"] == "inconclusive"
    assert "[no interval: a side has under 2 timed batches]" in f2["evidence"]
