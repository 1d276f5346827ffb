"""RQ4 (Early Attack, Tables 1-3, Findings 9-10) on a tiny synthetic workspace."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dynn_lib import metrics, verdicts
from dynn_lib.early_exit import all_exit_logits
from dynn_lib.experiments import rq4
from dynn_lib.zoo import Workspace

ARCHS = ("mobilenet", "resnet56")
ALPHAS = (0.1, 1.0)
ITERS = 5
N_IMAGES = 4


def _ws(store) -> Workspace:
    return Workspace("synthetic", "smoke", store=store, device="cpu", n_train=64, n_query=32, n_eval=16,
                     ea_images=N_IMAGES, ea_iters=ITERS, attack_steps=2, batch_size=32)


CFG = rq4.RQ4Config(archs=ARCHS, alphas=ALPHAS, transfer_alpha=1.0, attack_batch_size=N_IMAGES)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    store = tmp_path_factory.mktemp("rq4store")
    ws = _ws(store)
    return store, ws, rq4.run(ws, CFG)


def test_per_image_schema_and_consistency(result):
    _, _, out = result
    pi = out["per_image"]
    assert list(pi.columns) == ["dataset", "arch", "kind", "method", "alpha", "image", "label", "p", "success",
                                "iters_used", "l2", "linf", "psnr", "final_pred_adv", "pred_adv",
                                "internal_changed", "seconds", "seed"]
    assert len(pi) == len(ARCHS) * (len(ALPHAS) + 2) * N_IMAGES
    assert set(pi["method"]) == {"early_attack", "pgd", "fgsm"}
    assert pi["success"].dtype == bool and set(pi["success"].astype(int)) <= {0, 1}
    ea, base = pi[pi["method"] == "early_attack"], pi[pi["method"] != "early_attack"]
    assert set(ea["alpha"]) == set(ALPHAS) and base["alpha"].isna().all()
    assert ea["iters_used"].between(0, ITERS).all() and (base["iters_used"] == -1).all()
    assert (base["linf"] <= CFG.baseline_eps + 1e-6).all()
    assert sorted(pi["image"].unique()) == list(range(N_IMAGES)) and (pi["seed"] == CFG.seed).all()
    n_exits = {"mobilenet": 6, "resnet56": 7}
    for r in pi.itertuples():
        assert isinstance(r.pred_adv, list) and len(r.pred_adv) == n_exits[r.arch]
        assert r.final_pred_adv == r.pred_adv[-1]
        assert r.internal_changed == sum(v != r.p for v in r.pred_adv[:-1])
        assert r.success == (r.pred_adv[-1] == r.p and r.internal_changed == n_exits[r.arch] - 1)
    assert (pi["seconds"] >= 0).all()


def test_table2_and_table1_follow_per_image(result):
    _, _, out = result
    pi, t2, t1 = out["per_image"], out["table2"], out["table1"]
    assert len(t2) == len(ARCHS)
    assert [rq4.alpha_column(a) for a in ALPHAS] == ["alpha=0.1", "alpha=1"]
    for r in t2.itertuples(index=False):
        row = r._asdict()
        for a in ALPHAS:
            s = pi[(pi["arch"] == row["arch"]) & (pi["alpha"] == a)]["success"]
            assert t2.loc[t2["arch"] == row["arch"], rq4.alpha_column(a)].item() == pytest.approx(100 * s.mean())
            assert math.isnan(t2.loc[t2["arch"] == row["arch"], rq4.paper_column(a)].item())  # synthetic
    assert {"early_attack", "best_alpha", "pgd", "fgsm", "exits", "paper_early_attack"} <= set(t1.columns)
    for arch in ARCHS:
        row = t1[t1["arch"] == arch].iloc[0]
        best = t2.loc[t2["arch"] == arch, ["alpha=0.1", "alpha=1"]].max(axis=1).item()
        assert row["early_attack"] == pytest.approx(best)
        s = pi[(pi["arch"] == arch) & (pi["method"] == "pgd")]["success"]
        assert row["pgd"] == pytest.approx(100 * s.mean())
    assert dict(zip(t1["arch"], t1["exits"])) == {"mobilenet": 6, "resnet56": 7}


def test_table1_best_alpha_tie_takes_smallest():
    rows = [{"dataset": "cifar10", "arch": "vgg16", "kind": "sdn", "method": "early_attack", "alpha": a,
             "image": i, "success": s} for a, ss in ((1.0, (1, 0)), (0.1, (0, 1)), (20.0, (0, 0)))
            for i, s in enumerate(ss)]
    rows += [{"dataset": "cifar10", "arch": "vgg16", "kind": "sdn", "method": m, "alpha": np.nan, "image": i,
              "success": False} for m in ("pgd", "fgsm") for i in range(2)]
    t1 = rq4.table1(pd.DataFrame(rows))
    assert t1["early_attack"].item() == 50.0 and t1["best_alpha"].item() == 0.1 and t1["alpha_decides"].item()
    # every alpha at the same rate (none succeeding): no alpha decides, the smallest is only a placeholder
    flat = pd.DataFrame([{**r, "success": False} for r in rows])
    assert not rq4.table1(flat)["alpha_decides"].item() and rq4.table1(flat)["best_alpha"].item() == 0.1
    assert t1["paper_early_attack"].item() == 35 and t1["paper_best_alpha"].item() == 1.0
    t2 = rq4.table2(pd.DataFrame(rows))
    assert t2["paper alpha=1"].item() == 35 and t2["paper alpha=20"].item() == 10


def test_success_detail_counts_successes_before_any_update():
    """Successes with iters_used == 0 are the random start itself; counted at the best alpha and over
    the grid, with the medians over the best alpha's successes."""
    def row(alpha, image, success, iters, psnr):
        return {"dataset": "cifar10", "arch": "vgg16", "kind": "sdn", "method": "early_attack", "alpha": alpha,
                "image": image, "success": success, "iters_used": iters, "l2": 40.0 / psnr, "psnr": psnr}
    rows = [row(1.0, 0, True, 0, 8.0), row(1.0, 1, True, 120, 30.0), row(1.0, 2, True, 300, 32.0),
            row(1.0, 3, False, 1000, 20.0), row(0.1, 0, True, 0, 8.5), row(0.1, 1, False, 1000, 25.0),
            row(0.1, 2, False, 1000, 25.0), row(0.1, 3, False, 1000, 25.0)]
    pi = pd.DataFrame(rows)
    t1 = pd.DataFrame([{"dataset": "cifar10", "arch": "vgg16", "best_alpha": 1.0}])
    d = rq4.success_detail(pi, t1).iloc[0]
    assert (d["alpha"], d["n_images"], d["successes"], d["at_start"]) == (1.0, 4, 3, 1)
    assert d["at_start_pct"] == pytest.approx(100 / 3) and d["median_iters"] == 120 and d["median_psnr"] == 30.0
    assert (d["successes_all_alphas"], d["at_start_all_alphas"]) == (4, 2)
    assert rq4.success_detail(pi).iloc[0]["alpha"] == 1.0  # without Table 1: the alpha with the most successes
    none = rq4.success_detail(pi.assign(success=False), t1).iloc[0]
    assert none["successes"] == 0 and math.isnan(none["at_start_pct"]) and math.isnan(none["median_psnr"])


def test_transfer_t1_t2_match_metrics(result):
    store, ws, out = result
    tr, t3 = out["transfer"], out["table3"]
    assert len(tr) == 2 * N_IMAGES and len(t3) == 2
    assert set(zip(t3["surrogate_arch"], t3["target_arch"])) == {("mobilenet", "resnet56"), ("resnet56", "mobilenet")}
    for r in t3.itertuples():
        g = tr[(tr["surrogate_arch"] == r.surrogate_arch) & (tr["target_arch"] == r.target_arch)]
        pc = torch.tensor(list(g["b_pred_clean"])).T  # [E, N]
        pa = torch.tensor(list(g["b_pred_adv"])).T
        zc, za = (torch.nn.functional.one_hot(p, 10).float() for p in (pc, pa))
        t1, t2 = metrics.t1_t2(zc, za)
        assert r.t1 == pytest.approx(t1) and (r.t2 == pytest.approx(t2) or (math.isnan(t2) and math.isnan(r.t2)))
        assert r.full_success_on_b == pytest.approx(100 * g["b_full_success"].mean())
        assert r.t1 == pytest.approx(100 * g["b_final_kept"].mean())
        assert r.target_internal_exits == pc.shape[0] - 1
        # the stored adversarial images are the surrogate's exact alpha=1 examples; B's predictions match
        x_adv = rq4.load_adversarial(ws, CFG, r.surrogate_arch, "early_attack", 1.0)
        assert x_adv.dtype == torch.float32 and x_adv.shape == (N_IMAGES, 3, 32, 32)
        z = all_exit_logits(ws.model(r.target_arch, "sdn"), x_adv, device="cpu")
        assert torch.equal(z.argmax(-1), pa)
        a_rows = out["per_image"].query("arch == @r.surrogate_arch and alpha == 1.0").sort_values("image")
        x, _, _ = ws.eval_subset(N_IMAGES)  # RQ4's images: a stratified sample of the evaluation half
        assert np.allclose(metrics.psnr(x, x_adv).numpy(), a_rows["psnr"].to_numpy())
        assert list(g["a_success"]) == list(a_rows["success"])


def test_rerun_uses_cache_and_resumes_one_block(result, monkeypatch):
    store, _, out = result

    def boom(*a, **k):
        raise AssertionError("attack called although every block is cached")

    monkeypatch.setattr(rq4, "early_attack", boom)
    monkeypatch.setattr(rq4, "early_attack_baseline", boom)
    again = rq4.run(_ws(store), CFG)  # a fresh workspace on the same store
    assert set(again) == set(out)
    for k in out:
        pd.testing.assert_frame_equal(again[k], out[k])

    # an interrupted run: one block missing -> only that block runs again, identically
    monkeypatch.undo()
    ws = _ws(store)
    d = ws.store.dir("rq4", rq4._block_config(ws, CFG, "mobilenet", "early_attack", 0.1),
                     rq4._slug(ws, CFG, "mobilenet", "early_attack", 0.1))
    assert (d / "record.json").is_file() and (d / "x_adv.pt").is_file()
    (d / "record.json").unlink()
    calls = []
    real = rq4.early_attack
    monkeypatch.setattr(rq4, "early_attack", lambda *a, **k: calls.append(sorted({round(v, 6) for v in
                                                                                 k["alpha"].tolist()})) or real(*a, **k))
    monkeypatch.setattr(rq4, "early_attack_baseline", boom)
    resumed = rq4.run(ws, CFG)
    assert calls == [[0.1]]
    pd.testing.assert_frame_equal(resumed["per_image"].drop(columns="seconds"),
                                  out["per_image"].drop(columns="seconds"))


def test_alpha_grid_runs_as_one_batch_equal_to_per_alpha_runs(result, monkeypatch):
    _, ws, out = result
    # the whole grid of an architecture is one early_attack call with a per-sample alpha ...
    calls = []
    real = rq4.early_attack
    monkeypatch.setattr(rq4, "early_attack", lambda m, x, **k: calls.append(k["alpha"].clone()) or real(m, x, **k))
    runs = [(a, "random") for a in ALPHAS]
    joint = rq4._early_attack_runs(ws, CFG, "resnet56", runs)
    assert len(calls) == 1 and torch.equal(calls[0], torch.tensor(ALPHAS).repeat_interleave(N_IMAGES))
    # ... and each alpha's rows equal that alpha run alone (and the stored blocks of run())
    for a in ALPHAS:
        alone = rq4._early_attack_runs(ws, CFG, "resnet56", [(a, "random")])[(a, "random")]
        assert torch.allclose(joint[(a, "random")][0], alone[0], atol=1e-5)
        assert torch.equal(joint[(a, "random")][1], alone[1])
        rows = out["per_image"].query("arch == 'resnet56' and method == 'early_attack' and alpha == @a")
        assert rows["iters_used"].tolist() == joint[(a, "random")][1].tolist()
        stored = rq4.load_adversarial(ws, CFG, "resnet56", "early_attack", a)
        assert torch.allclose(stored, joint[(a, "random")][0], atol=1e-5)
    with pytest.raises(ValueError, match="unknown init 'zeros'; accepted: random, input"):
        rq4._early_attack_runs(ws, CFG, "resnet56", [(1.0, "zeros")])


def test_start_contrast_joins_the_grid_batch_and_equals_its_own_run(result, monkeypatch):
    store, _, out = result
    ws = _ws(store)
    # run() computed the contrast (the other start at transfer_alpha) in the grid's batch: one call per
    # architecture on a fresh store, with the contrast's rows after the grid's
    calls = []
    real = rq4.early_attack
    monkeypatch.setattr(rq4, "early_attack", lambda m, x, **k: calls.append(k["w0"].clone()) or real(m, x, **k))
    fresh = _ws(store.parent / "rq4-contrast-store")
    rq4.early_attack_grid(fresh, CFG, "resnet56")
    assert len(calls) == 1 and calls[0].shape[0] == (len(ALPHAS) + 1) * N_IMAGES
    x, _, _ = fresh.eval_subset(N_IMAGES)
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    xprime = (torch.tanh(calls[0][-N_IMAGES:]) + 1) / 2  # the contrast rows start at x itself
    assert torch.allclose(xprime, x, atol=1e-5)
    monkeypatch.undo()
    # its rows equal the attack run on its own with init="input"
    alone = rq4.run(ws, dataclasses.replace(CFG, init="input", alphas=(1.0,), init_contrast=False))
    ip = out["init_per_image"]
    assert list(ip["init"].unique()) == ["random", "input"] and len(ip) == 2 * len(ARCHS) * N_IMAGES
    mine = ip[ip["init"] == "input"].drop(columns=["init", "seconds"]).reset_index(drop=True)
    theirs = alone["per_image"].query("method == 'early_attack'").drop(columns="seconds").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[["arch", "image", "success", "iters_used", "final_pred_adv"]],
                                  theirs[["arch", "image", "success", "iters_used", "final_pred_adv"]])
    assert np.allclose(mine["l2"], theirs["l2"], atol=1e-4)
    # the protocol's start in the contrast is per_image's transfer-alpha block, row for row
    base = out["per_image"].query("method == 'early_attack' and alpha == 1.0").reset_index(drop=True)
    pd.testing.assert_frame_equal(ip[ip["init"] == "random"].drop(columns="init").reset_index(drop=True), base)
    # and the other start's transfer pairs equal that run's Table 3; the protocol's start's, run()'s own
    t3 = out["init_table3"]
    for init, ref in (("random", out["table3"]), ("input", alone["table3"])):
        got = t3[t3["init"] == init].drop(columns="init").reset_index(drop=True)
        assert list(t3["init"]) == ["random", "input"] * len(ref)  # each pair's two starts together
        pd.testing.assert_frame_equal(got, ref.reset_index(drop=True))


def test_init_table_follows_its_rows(result):
    _, _, out = result
    ip, it = out["init_per_image"], out["init_table"]
    assert list(it.columns[:6]) == ["dataset", "arch", "kind", "alpha", "init", "n_images"]
    assert len(it) == 2 * len(ARCHS) and (it["alpha"] == CFG.transfer_alpha).all()
    for r in it.itertuples():
        g = ip[(ip["arch"] == r.arch) & (ip["init"] == r.init)]
        won = g[g["success"]]
        assert r.n_images == N_IMAGES and r.successes == int(g["success"].sum())
        assert r.success == pytest.approx(100 * g["success"].mean())
        assert (r.success_lo, r.success_hi) == pytest.approx(metrics.wilson_interval(r.successes, N_IMAGES))
        assert r.at_start == int((won["iters_used"] == 0).sum())
        assert r.median_l2_all == pytest.approx(g["l2"].median())
        assert (math.isnan(r.median_l2) if won.empty else r.median_l2 == pytest.approx(won["l2"].median()))
    # starting at x, an image's distance can only grow from 0, never start at the noise image's
    rnd, inp = it[it["init"] == "random"], it[it["init"] == "input"]
    assert (inp["median_l2_all"].to_numpy() < rnd["median_l2_all"].to_numpy()).all()


def test_no_contrast_without_a_transfer_study_or_when_off(result, monkeypatch):
    store, _, out = result
    monkeypatch.setattr(rq4, "early_attack", lambda *a, **k: pytest.fail("attacked"))
    monkeypatch.setattr(rq4, "early_attack_baseline", lambda *a, **k: pytest.fail("attacked"))
    for cfg in (dataclasses.replace(CFG, init_contrast=False), dataclasses.replace(CFG, transfer_alpha=None)):
        assert rq4.contrast_config(cfg) is None
        got = rq4.run(_ws(store), cfg)
        for k in ("init_per_image", "init_transfer", "init_table", "init_table3"):
            assert got[k].empty and list(got[k].columns) == list(out[k].columns), k
        with pytest.raises(ValueError, match="no start contrast"):
            rq4.contrast_block(_ws(store), cfg, "resnet56")
    assert rq4.contrast_config(CFG).init == "input"
    assert rq4.contrast_config(dataclasses.replace(CFG, init="input")).init == "random"


def test_missing_adversarial_file_is_recomputed(result, monkeypatch):
    store, ws, out = result
    before = rq4.load_adversarial(ws, CFG, "resnet56", "early_attack", 1.0)
    d = ws.store.dir("rq4", rq4._block_config(ws, CFG, "resnet56", "early_attack", 1.0),
                     rq4._slug(ws, CFG, "resnet56", "early_attack", 1.0))
    (d / "x_adv.pt").unlink()
    calls = []
    real = rq4.early_attack
    monkeypatch.setattr(rq4, "early_attack", lambda *a, **k: calls.append(1) or real(*a, **k))
    after = rq4.load_adversarial(ws, CFG, "resnet56", "early_attack", 1.0)
    # the block runs alone now, in a smaller batch than the grid's (which also holds the start
    # contrast): other CPU kernels, so equal up to float rounding, not bit for bit
    assert calls == [1] and torch.allclose(before, after, atol=1e-5)
    rows = out["per_image"].query("arch == 'resnet56' and method == 'early_attack' and alpha == 1.0")
    again = rq4._attack_block(ws, CFG, "resnet56", "early_attack", 1.0, need_adv=True)
    assert again["iters_used"].tolist() == rows["iters_used"].tolist()


def test_paper_constants_match_protocol():
    text = (Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "PROTOCOL.md")
    if text.is_file():
        assert "C10 ResNet 7 32 73 81 49 32" in text.read_text()
    assert rq4.PAPER_TABLE1[("cifar10", "resnet56")] == {"early_attack": 81, "best_alpha": 1.0, "pgd": 0, "fgsm": 0}
    assert rq4.PAPER_TABLE1[("cifar100", "vgg16")] == {"early_attack": 86, "best_alpha": 20.0, "pgd": 0, "fgsm": 1}
    assert rq4.PAPER_TABLE1[("cifar10", "mobilenet")]["best_alpha"] == 0.1
    assert [rq4.PAPER_TABLE2[("cifar10", "resnet56")][a] for a in rq4.PAPER_ALPHAS] == [7, 32, 73, 81, 49, 32]
    assert [rq4.PAPER_TABLE2[("cifar100", "mobilenet")][a] for a in rq4.PAPER_ALPHAS] == [0, 16, 74, 97, 92, 77]
    assert rq4.PAPER_TABLE3[("cifar10", "mobilenet")]["resnet56"] == {"t1": 74, "t2": 2.3}
    assert rq4.PAPER_TABLE3[("cifar100", "vgg16")]["resnet56"] == {"t1": 39, "t2": 2.69}
    assert rq4.PAPER_TABLE3[("cifar100", "resnet56")]["mobilenet"] == {"t1": 75, "t2": 1.28}
    assert rq4.dataset_family("cifar10-jpeg") == "cifar10" and rq4.dataset_family("tinyimagenet") is None
    # Table 1 is Table 2's best cell, the tie (C100 ResNet: 96 at alpha 1 and 20) going to the smallest alpha
    for key, t1 in rq4.PAPER_TABLE1.items():
        row = rq4.PAPER_TABLE2[key]
        best = max(row.values())
        assert best == t1["early_attack"] and min(a for a, v in row.items() if v == best) == t1["best_alpha"]


@pytest.mark.parametrize("kw, pattern", [
    ({"alphas": (0.1, -1.0)}, "alpha must be a finite number >= 0"),
    ({"alphas": (float("nan"),)}, "alpha must be a finite number >= 0"),
    ({"alphas": ()}, "at least one"),
    ({"archs": ("mobilenet", "resnet18")}, "unknown architecture 'resnet18'; accepted: vgg16, resnet56, mobilenet"),
    ({"kind": "cnn"}, "accepted: sdn, ic_only"),
    ({"transfer_alpha": 0.5}, "transfer_alpha=0.5 must be one of alphas"),
    ({"init": "zeros"}, "accepted: random, input"),
    ({"init_contrast": "false"},
     "init_contrast must be True or False (capitalised, also on the command line), got 'false'"),
    ({"n_images": 0}, "n_images must be an integer >= 1"),
    ({"transfer_examples": "some"}, "accepted: all, successful"),
])
def test_config_errors(kw, pattern):
    with pytest.raises(ValueError, match=re.escape(pattern)):
        rq4.RQ4Config(**kw)


def test_too_many_images_fails_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(rq4, "early_attack", lambda *a, **k: pytest.fail("attacked"))
    with pytest.raises(ValueError, match="exceeds the evaluation half"):
        rq4.run(_ws(tmp_path), rq4.RQ4Config(archs=ARCHS, n_images=17))


def test_findings_on_paper_numbers_and_synthetic_tables():
    t1 = pd.DataFrame([{"dataset": fam, "arch": arch, "exits": 7, "early_attack": v["early_attack"],
                        "best_alpha": v["best_alpha"], "n_images": 100}
                       for (fam, arch), v in rq4.PAPER_TABLE1.items()])
    f9 = rq4.finding_9(t1)
    # CIFAR-10: ResNet 81 > VGG 35, MobileNet 11; CIFAR-100: ResNet 96 > VGG 86 (Newcombe interval above 0
    # at n=100) but 96 vs MobileNet 97 cannot be told apart: inconclusive, never "holds" nor "mixed"
    assert f9["verdict"] == "inconclusive" and f9["paper_verdict"] == "inconclusive" and len(f9["comparisons"]) == 4
    out = {(c["dataset"], c["other"]): c["outcome"] for c in f9["comparisons"]}
    assert out == {("cifar10", "vgg16"): "supports", ("cifar10", "mobilenet"): "supports",
                   ("cifar100", "vgg16"): "supports", ("cifar100", "mobilenet"): "inconclusive"}
    assert f9["n_images"] == 200 and f9["verdict"] in verdicts.VERDICTS
    f9c10 = rq4.finding_9(t1[t1["dataset"] == "cifar10"])
    assert f9c10["verdict"] == "holds" and "81.0%" in f9c10["evidence"]
    with pytest.raises(ValueError, match="resnet56"):
        rq4.finding_9(t1[t1["arch"] != "resnet56"])
    # the same 60 % vs 40 % is inconclusive on 10 images and holds on 1,000
    small = pd.DataFrame([{"dataset": "cifar10", "arch": a, "early_attack": r, "best_alpha": 1.0, "n_images": n}
                          for a, r in (("resnet56", 60.0), ("vgg16", 40.0)) for n in (10,)])
    assert rq4.finding_9(small)["verdict"] == "inconclusive"
    assert rq4.finding_9(small.assign(n_images=1000))["verdict"] == "holds"

    def t3(full, n=100):
        return pd.DataFrame({"surrogate_arch": ["a", "b"], "target_arch": ["b", "a"], "n": n, "t1": [80.0, 70.0],
                             "t2": [1.0, 2.0], "full_success_on_b": full, "paper_t1": np.nan, "paper_t2": np.nan,
                             "dataset": "cifar10"})

    assert rq4.finding_10(t3([5.0, 10.0]))["verdict"] == "holds"
    assert rq4.finding_10(t3([5.0, 30.0]))["verdict"] == "partly"  # pooled inconclusive, one pair above 20 %
    assert rq4.finding_10(t3([5.0, 10.0], n=10))["verdict"] == "inconclusive"  # 10 examples cannot decide
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 100\] \(%\), got 250"):
        rq4.finding_10(t3([5.0, 10.0]), threshold=250)
    f10 = rq4.finding_10(t3([40.0, 30.0]))
    assert f10["verdict"] == "does not hold" and f10["mean_t1"] == 75.0 and f10["mean_t2"] == 1.5
    assert f10["n_images"] == 100 and "[" in f10["evidence"]


def test_finding_10_resamples_each_datasets_images_as_their_own_units():
    """Image ids restart at 0 in every dataset: CIFAR-10 image 3 and CIFAR-100 image 3 are two
    resampling units, not one."""
    rng = np.random.default_rng(1)
    rows = [{"dataset": ds, "surrogate_arch": a, "target_arch": b, "image": i, "a_success": True,
             "b_full_success": bool(rng.random() < 0.1)}
            for ds in ("cifar10", "cifar100") for a, b in (("vgg16", "resnet56"), ("resnet56", "vgg16"))
            for i in range(30)]
    transfer = pd.DataFrame(rows)
    t3 = (transfer.groupby(["dataset", "surrogate_arch", "target_arch"], as_index=False)["b_full_success"]
          .agg(n="size", n_full_success="sum"))
    t3 = t3.assign(full_success_on_b=100 * t3["n_full_success"] / t3["n"], t1=80.0, t2=1.0, paper_t1=np.nan,
                   paper_t2=np.nan)
    f10 = rq4.finding_10(t3, transfer=transfer, n_boot=400)
    units = transfer.groupby(["dataset", "image"]).ngroup()
    assert units.nunique() == 60 and f10["n_images"] == 60
    want = metrics.bootstrap_rate(units, transfer["b_full_success"], n_boot=400)
    assert (f10["pooled_full_success_on_b"], f10["pooled_lo"], f10["pooled_hi"]) == pytest.approx(want)
    merged = metrics.bootstrap_rate(transfer["image"], transfer["b_full_success"], n_boot=400)
    assert (f10["pooled_lo"], f10["pooled_hi"]) != pytest.approx(merged[1:])  # what clustering by image alone gave


def test_finding_9_bootstrap_is_paired_over_images():
    """ResNet-56 succeeds exactly on the images VGG-16 succeeds on, plus 3 more: a paired bootstrap
    sees a difference that is never negative; the verdict follows from the interval."""
    rng = np.random.default_rng(0)
    base = rng.random(60) < 0.5
    extra = np.zeros(60, bool)
    extra[np.flatnonzero(~base)[:3]] = True
    rows = [{"dataset": "cifar10", "arch": arch, "kind": "sdn", "method": "early_attack", "alpha": 1.0, "image": i,
             "success": bool(s)} for arch, ss in (("resnet56", base | extra), ("vgg16", base)) for i, s in enumerate(ss)]
    rows += [{"dataset": "cifar10", "arch": arch, "kind": "sdn", "method": m, "alpha": np.nan, "image": i,
              "success": False} for arch in ("resnet56", "vgg16") for m in ("pgd", "fgsm") for i in range(60)]
    pi = pd.DataFrame(rows)
    t1 = rq4.table1(pi)
    paired = rq4.finding_9(t1, per_image=pi, n_boot=500)
    c = paired["comparisons"][0]
    assert c["interval"] == "bootstrap" and c["difference"] == pytest.approx(5.0) and c["lo"] >= 0
    unpaired = rq4.finding_9(t1)["comparisons"][0]
    assert unpaired["lo"] < 0 < unpaired["hi"]  # Newcombe ignores the pairing: 5 points on 60 images is noise
    assert paired["n_images"] == 60


def test_tables_carry_wilson_intervals(result, monkeypatch):
    _, _, out = result
    assert out["table3"]["t2_lo"].isna().all()  # a bootstrap over fewer than MIN_BOOTSTRAP_IMAGES images: none
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 2)
    out = {**out, "table3": rq4.table3(out["transfer"])}
    t1, t2, t3 = out["table1"], out["table2"], out["table3"]
    for r in t1.itertuples():
        for col in ("early_attack", "pgd", "fgsm"):
            v, lo, hi = getattr(r, col), getattr(r, col + "_lo"), getattr(r, col + "_hi")
            assert 0 <= lo <= v <= hi <= 100
            assert (lo, hi) == pytest.approx(metrics.wilson_interval(round(v * r.n_images / 100), r.n_images))
    cols = list(t2.columns)
    for a in ALPHAS:
        c = rq4.alpha_column(a)
        assert cols[cols.index(c) + 1: cols.index(c) + 3] == [c + "_lo", c + "_hi"]
        assert ((t2[c + "_lo"] <= t2[c]) & (t2[c] <= t2[c + "_hi"])).all()
    for r in t3.itertuples():
        assert (r.t1_lo, r.t1_hi) == pytest.approx(metrics.wilson_interval(r.n_t1_kept, r.n))
        assert r.t1 == pytest.approx(100 * r.n_t1_kept / r.n)
        assert r.full_success_on_b_lo <= r.full_success_on_b <= r.full_success_on_b_hi
        if r.n_t1_kept:
            assert r.t2_lo <= r.t2 + 1e-9 and r.t2 <= r.t2_hi + 1e-9
    f10 = rq4.finding_10(t3, transfer=out["transfer"])
    assert f10["verdict"] in verdicts.VERDICTS and f10["n_images"] == N_IMAGES


def test_transfer_options_reuse_cached_blocks(result, monkeypatch):
    store, _, out = result
    monkeypatch.setattr(rq4, "early_attack", lambda *a, **k: pytest.fail("attacked"))
    monkeypatch.setattr(rq4, "early_attack_baseline", lambda *a, **k: pytest.fail("attacked"))
    ws = _ws(store)
    none = rq4.run(ws, dataclasses.replace(CFG, transfer_alpha=None))
    assert none["transfer"].empty and none["table3"].empty
    assert list(none["table3"].columns) == list(out["table3"].columns)
    succ = rq4.run(ws, dataclasses.replace(CFG, transfer_examples="successful"))
    tr = out["transfer"]
    for r in succ["table3"].itertuples():
        assert r.n == int(tr.loc[tr["surrogate_arch"] == r.surrogate_arch, "a_success"].sum())
    # Finding 10 pools the examples Table 3 counted (its examples column), not every transfer row
    assert set(succ["table3"]["examples"]) == {"successful"} and set(out["table3"]["examples"]) == {"all"}
    f10 = rq4.finding_10(succ["table3"], transfer=succ["transfer"])
    kept = tr[tr["a_success"]]
    assert f10["pooled_full_success_on_b"] == pytest.approx(100 * kept["b_full_success"].mean())
    assert f10["n_images"] == kept[["dataset", "image"]].drop_duplicates().shape[0]
    with pytest.raises(ValueError, match="made with examples='successful'"):
        rq4.finding_10(succ["table3"], transfer=succ["transfer"], examples="all")
    old = succ["table3"].drop(columns="examples")  # a table from before the column takes the value given
    assert rq4.finding_10(old, transfer=succ["transfer"], examples="successful") == f10
