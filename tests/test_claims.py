"""The claims ledger (dynn_lib.claims): built only from published results, every paper cell present,
verdicts computed, reproduced values traceable to the stored tables, seeds aggregated.

The results folders are made by hand but through the library's own pure table functions
(``rq1.summarise``, ``rq2.summarise``, ``rq3.summarise``, ``rq4.table1/2/3``,
``appendix.psnr_summary``) from random per-image rows of the published schemas, and written with
``runner.write_results``: the ledger sees exactly what ``runner.publish`` would have written, in
seconds and without training. A slow test runs the real RQ4 on the synthetic dataset.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dynn_lib import claims, metrics, verdicts
from dynn_lib.blackbox import PAIRS
from dynn_lib.experiments import appendix, rq1, rq2, rq3, rq4
from dynn_lib.experiments.common import COLUMNS, eps_255
from dynn_lib.experiments.runner import results_path, write_results

ARCHS = ("vgg16", "mobilenet", "resnet56")
EXITS = {"vgg16": 7, "resnet56": 7, "mobilenet": 6}
EPS = 8 / 255


# ---------------------------------------------------------------- hand-made results through the library

def _attack_rows(rng, dataset: str, n: int = 12) -> pd.DataFrame:
    """Per-image rows of the common schema (white-box of every arch + the six pairs, FGSM and PGD)."""
    settings = [("white-box", "white-box", a, a, "cnn", a, "ic_only") for a in ARCHS]
    settings += [("black-box", p.direction, p.short, p.surrogate_arch, p.surrogate_kind, p.target_arch, p.target_kind)
                 for p in PAIRS]
    rows = []
    for setting, direction, pair, s_arch, s_kind, t_arch, t_kind in settings:
        E = 1 if t_kind == "cnn" else EXITS[t_arch]
        macs = list(np.cumsum(rng.uniform(1e6, 5e6, E)))
        for attack in ("fgsm", "pgd"):
            for i in range(n):
                pc = rng.integers(0, 10, E).tolist()
                pa = [p if rng.random() < 0.5 else int(rng.integers(0, 10)) for p in pc]
                rows.append({
                    "dataset": dataset, "setting": setting, "direction": direction, "pair": pair,
                    "surrogate_arch": s_arch, "surrogate_kind": s_kind, "target_arch": t_arch, "target_kind": t_kind,
                    "attack": attack, "eps": EPS, "eps_255": eps_255(EPS), "exit_loss": "final", "image": i,
                    "label": int(pc[-1] if rng.random() < 0.7 else rng.integers(0, 10)),
                    "tau": math.nan if t_kind == "cnn" else 0.8,
                    "surrogate_exit": int(rng.integers(0, EXITS[s_arch])) if s_kind != "cnn" else 0,
                    "gen_seconds": float(rng.uniform(0.001, 0.01)), "psnr": float(rng.uniform(28, 34)),
                    "linf": EPS, "conf_clean": rng.uniform(0.2, 1, E).tolist(), "pred_clean": pc,
                    "conf_adv": rng.uniform(0.2, 1, E).tolist(), "pred_adv": pa, "exit_macs": macs, "seed": 0,
                    "taus": [] if t_kind == "cnn" else [0.8] * (E - 1), "gen_macs": math.nan, "gen_batch": 0,
                    "gen_seconds_shared": False})
    return pd.DataFrame(rows)[list(COLUMNS)]


def _rq4_rows(rng, dataset: str, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, trows = [], []
    for arch in ARCHS:
        blocks = [("early_attack", a) for a in rq4.PAPER_ALPHAS] + [("pgd", math.nan), ("fgsm", math.nan)]
        for method, alpha in blocks:
            for i in range(n):
                rows.append({"dataset": dataset, "arch": arch, "kind": "sdn", "method": method, "alpha": alpha,
                             "image": i, "label": i % 10, "p": i % 10, "success": bool(rng.random() < 0.4),
                             "iters_used": 5, "l2": 0.5, "linf": 0.1, "psnr": 30.0, "final_pred_adv": i % 10,
                             "pred_adv": [0] * EXITS[arch], "internal_changed": 1, "seconds": 0.01, "seed": 0})
    for a in ARCHS:
        for b in ARCHS:
            if a == b:
                continue
            E = EXITS[b]
            for i in range(n):
                pc = [int(v) for v in rng.integers(0, 10, E)]
                pa = [p if rng.random() < 0.5 else (p + 1) % 10 for p in pc]
                trows.append({"dataset": dataset, "kind": "sdn", "surrogate_arch": a, "target_arch": b, "alpha": 1.0,
                              "image": i, "label": i % 10, "p_b": pc[-1], "a_success": bool(rng.random() < 0.5),
                              "b_pred_clean": pc, "b_pred_adv": pa, "b_final_kept": pa[-1] == pc[-1],
                              "b_internal_changed": sum(x != pc[-1] for x in pa[:-1]),
                              "b_full_success": False, "seed": 0})
    return pd.DataFrame(rows), pd.DataFrame(trows)


def _record(question: str, dataset: str, seed: int) -> dict:
    return {"config": {"question": question, "dataset": dataset, "profile": {"name": "smoke"}, "seed": seed,
                       "experiment": {"seed": 0}},
            "wall_time_s": 1.0, "dataset_label": dataset, "generated_data": dataset == "synthetic",
            "git_commit": "test", "device": "cpu", "device_name": "cpu", "created": "2026-01-01T00:00:00Z"}


def publish_fake(root, dataset: str, seed: int) -> dict[str, dict[str, pd.DataFrame]]:
    """Write rq1, rq2, rq3, rq4 and appendix tables for ``dataset`` at profile smoke; return them."""
    rng = np.random.default_rng(1000 + seed)
    raw = _attack_rows(rng, dataset)
    rq1_raw = raw[raw["setting"] == "black-box"]
    s2d = raw[(raw["setting"] == "white-box") | (raw["direction"] == "S2D")]
    per4, trans = _rq4_rows(rng, dataset)
    exits = {a: EXITS[a] for a in ARCHS}
    tables = {
        "rq1": {"per_image": rq1.add_success(rq1_raw), "summary": rq1.summarise(rq1_raw, n_boot=100),
                "exit_used": rq1.exit_used(rq1_raw), "generation_time": rq1.generation_time(rq1_raw)},
        "rq2": {"per_image": rq2.add_deltas(s2d), "summary": rq2.summarise(s2d, n_boot=100)},
        "rq3": {"per_image": rq3.add_first_changed(s2d), "summary": rq3.summarise(s2d)},
        "rq4": {"per_image": per4, "table1": rq4.table1(per4, exits), "table2": rq4.table2(per4),
                "transfer": trans, "table3": rq4.table3(trans)},
        "appendix": {"psnr": appendix.psnr_summary(rq1_raw, n_boot=100),
                     "psnr_equivalence": appendix.psnr_equivalence(rq1_raw, n_boot=100)},
    }
    for q, t in tables.items():
        write_results(results_path(root, "smoke", dataset, q), t, _record(q, dataset, seed))
    return tables


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    t0 = publish_fake(root, "cifar10-jpeg", seed=0)
    t1 = publish_fake(root / "seed-1", "cifar10-jpeg", seed=1)
    return root, (t0, t1)


@pytest.fixture(scope="module")
def ledger(two_seeds):
    root, _ = two_seeds
    return claims.claims_ledger(claims.results_dirs(root), "smoke", ["cifar10-jpeg"])


# ---------------------------------------------------------------- tests

OLD_WORDS = ("mixed", "matches", "differs", "not comparable", "not run")


def test_columns_and_verdict_vocabulary(ledger):
    assert list(ledger.columns[:len(claims.COLUMNS)]) == list(claims.COLUMNS)
    assert ledger["claim_id"].is_unique
    for v in ledger["verdict"]:
        assert verdicts.family(v) in verdicts.VERDICTS, v
        assert not v.startswith(OLD_WORDS), v
    assert claims.VERDICTS == verdicts.VERDICTS
    assert set(ledger.loc[ledger.claim_id.str.startswith("F"), "claim_id"]) == {f"F{i}" for i in range(1, 11)}
    assert (ledger["n_images"] >= 0).all()


def test_every_table2_cell_of_the_paper_is_a_row(ledger):
    t2 = ledger[ledger["claim_id"].str.startswith("T2-")].set_index("claim_id")
    for (fam, arch), per_alpha in rq4.PAPER_TABLE2.items():
        for alpha, paper in per_alpha.items():
            cid = f"T2-{fam}-{arch}-a{alpha:g}"
            assert cid in t2.index, cid
            row = t2.loc[cid]
            assert row["paper_number"] == paper
            if fam == "cifar10":
                assert verdicts.family(row["verdict"]) in ("holds", "does not hold", "inconclusive", "partly")
                assert row["dataset_used"].startswith("cifar10-jpeg") and "CIFAR-10" in row["dataset_used"]
                assert row["n_seeds"] == 2 and row["n_images"] == 10
            else:
                assert row["verdict"].startswith("not testable: the paper's dataset (CIFAR-100)")
    assert len(t2) == sum(len(v) for v in rq4.PAPER_TABLE2.values())


def test_tables_1_and_3_cells_present(ledger):
    ids = set(ledger["claim_id"])
    for (fam, arch) in rq4.PAPER_TABLE1:
        for col in ("early_attack", "best_alpha", "pgd", "fgsm"):
            assert f"T1-{fam}-{arch}-{col}" in ids
    for (fam, sur), targets in rq4.PAPER_TABLE3.items():
        for tgt in targets:
            assert {f"T3-{fam}-{sur}-{tgt}-t1", f"T3-{fam}-{sur}-{tgt}-t2"} <= ids


def test_table3_cells_count_the_examples_each_value_rests_on(ledger, two_seeds):
    """T1 is a share of all of a pair's examples, T2 a mean over those that kept the target's answer."""
    _, runs = two_seeds
    t3 = runs[0]["rq4"]["table3"].set_index(["surrogate_arch", "target_arch"])
    rows = ledger.set_index("claim_id")
    checked = 0
    for (fam, sur), targets in rq4.PAPER_TABLE3.items():
        for tgt in targets:
            if fam != "cifar10" or (sur, tgt) not in t3.index:
                continue
            r = t3.loc[(sur, tgt)]
            assert f"over {int(r['n'])} images" in rows.loc[f"T3-{fam}-{sur}-{tgt}-t1", "evidence"]
            if r["n_t1_kept"]:
                assert f"over {int(r['n_t1_kept'])} images" in rows.loc[f"T3-{fam}-{sur}-{tgt}-t2", "evidence"]
                checked += int(r["n_t1_kept"] != r["n"])
    assert checked  # at least one pair where the two counts differ


def test_reproduced_values_come_from_the_stored_tables(ledger, two_seeds):
    """Recompute each CIFAR-10 Table 2 cell from the stored per-image rows, independently: mean ± std
    over the two seeds, each seed's Wilson interval, and the verdict each seed's interval gives."""
    _, runs = two_seeds
    t2 = ledger.set_index("claim_id")
    for (fam, arch), per_alpha in rq4.PAPER_TABLE2.items():
        if fam != "cifar10":
            continue
        for alpha, paper in per_alpha.items():
            per_seed, seed_verdicts = [], []
            for t in runs:
                pi = t["rq4"]["per_image"]
                sel = pi[(pi["arch"] == arch) & (pi["method"] == "early_attack") & np.isclose(pi["alpha"], alpha)]
                per_seed.append(100.0 * sel["success"].mean())
                lo, hi = metrics.wilson_interval(int(sel["success"].sum()), len(sel))
                seed_verdicts.append(verdicts.agreement(lo, hi, paper, 10.0))
            row = t2.loc[f"T2-{fam}-{arch}-a{alpha:g}"]
            assert row["reproduced_mean"] == pytest.approx(np.mean(per_seed))
            assert row["reproduced_std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert "over 2 seeds" in row["reproduced_value"] and "n=10 images" in row["reproduced_value"]
            assert row["verdict"] == verdicts.combine_verdicts(seed_verdicts)
            # 10 images give a Wilson interval far wider than ±10 points: never "holds"
            assert row["verdict"] in ("inconclusive", "does not hold", "partly")


def test_table_cell_rule_on_a_changed_table(tmp_path):
    """A sentinel written into the stored Table 2 shows up in the ledger (nothing is typed in), and
    the verdict follows the interval rule: inside and narrow -> holds, outside -> does not hold,
    inside but too wide -> inconclusive."""
    t = publish_fake(tmp_path, "cifar10-jpeg", seed=0)
    table2 = t["rq4"]["table2"].copy()
    c = rq4.alpha_column(1.0)
    table2["n_images"] = 100
    table2.loc[table2["arch"] == "resnet56", [c, c + "_lo", c + "_hi"]] = [81.25, 72.5, 87.8]  # paper 81
    table2.loc[table2["arch"] == "vgg16", [c, c + "_lo", c + "_hi"]] = [3.0, 1.0, 8.5]  # paper 35
    table2.loc[table2["arch"] == "mobilenet", [c, c + "_lo", c + "_hi"]] = [10.0, 0.0, 40.0]  # paper 4, too wide
    write_results(results_path(tmp_path, "smoke", "cifar10-jpeg", "rq4"), {**t["rq4"], "table2": table2},
                  _record("rq4", "cifar10-jpeg", 0))
    led = claims.claims_ledger(tmp_path, "smoke", ["cifar10-jpeg"]).set_index("claim_id")
    assert led.loc["T2-cifar10-resnet56-a1", "reproduced_mean"] == 81.25
    assert led.loc["T2-cifar10-resnet56-a1", "verdict"] == "holds"
    assert led.loc["T2-cifar10-resnet56-a1", "reproduced_value"] == "81.2% [72.5, 87.8] (n=100 images)"
    assert (led.loc["T2-cifar10-resnet56-a1", "reproduced_lo"], led.loc["T2-cifar10-resnet56-a1", "reproduced_hi"]) \
        == (72.5, 87.8)
    assert led.loc["T2-cifar10-vgg16-a1", "verdict"] == "does not hold"
    assert led.loc["T2-cifar10-mobilenet-a1", "verdict"] == "inconclusive"
    assert led.loc["T2-cifar10-vgg16-a1", "n_seeds"] == 1


def test_rq4_cells_of_another_dynn_kind_are_not_testable(tmp_path, ledger):
    """Tables 1-3 of the paper attacked the SDN-trained DyNNs: a run with -p kind ic_only publishes
    tables of other networks, so their cells are not compared with the paper's numbers."""
    assert claims.PAPER_RQ4_KIND in rq4.DYNN_KINDS
    t = publish_fake(tmp_path, "cifar10-jpeg", seed=0)
    other = {k: v.assign(kind="ic_only") if "kind" in v.columns else v for k, v in t["rq4"].items()}
    write_results(results_path(tmp_path, "smoke", "cifar10-jpeg", "rq4"), other, _record("rq4", "cifar10-jpeg", 0))
    led = claims.claims_ledger(tmp_path, "smoke", ["cifar10-jpeg"]).set_index("claim_id")
    sdn = ledger.set_index("claim_id")
    for cid in ("T1-cifar10-resnet56-early_attack", "T1-cifar10-vgg16-best_alpha", "T2-cifar10-vgg16-a1",
                "T3-cifar10-vgg16-mobilenet-t1", "T3-cifar10-resnet56-vgg16-t2"):
        assert led.loc[cid, "verdict"].startswith(
            "not testable: the published rq4 results of cifar10-jpeg attacked the ic_only DyNNs"), cid
        assert led.loc[cid, "reproduced_value"] == "—"
        assert not sdn.loc[cid, "verdict"].startswith("not testable"), cid  # the same tables as sdn are judged


def test_agreement_rule():
    assert verdicts.agreement(40.4, 59.6, 55.0, 10.0) == "holds"  # 50 of 100
    assert verdicts.agreement(40.4, 59.6, 75.0, 10.0) == "does not hold"
    assert verdicts.agreement(23.7, 76.3, 55.0, 10.0) == "inconclusive"  # 5 of 10
    assert verdicts.agreement(23.7, 76.3, 95.0, 10.0) == "does not hold"
    assert verdicts.agreement(math.nan, math.nan, 5.0, 10.0).startswith("not testable")
    assert verdicts.within(26, 30, 25, 37) == "supports" and verdicts.within(20, 30, 25, 37) == "inconclusive"
    assert verdicts.within(40, 50, 25, 37) == "against"
    assert verdicts.equivalence(-0.2, 0.3, 0.5) == "supports" and verdicts.equivalence(0.6, 0.9, 0.5) == "against"


def test_findings_use_the_finding_functions(ledger, two_seeds):
    _, runs = two_seeds
    f = ledger.set_index("claim_id")
    v = [rq4.finding_9(t["rq4"]["table1"], per_image=t["rq4"]["per_image"])["verdict"] for t in runs]
    assert f.loc["F9", "verdict"] == verdicts.combine_verdicts(v)
    v1 = [rq1.finding_1(t["rq1"]["per_image"])["verdict"] for t in runs]
    assert f.loc["F1", "verdict"] == verdicts.combine_verdicts(v1)
    assert f.loc["F1", "n_images"] == 12 and "bootstrap" in f.loc["F1", "evidence"]
    assert f.loc["F5", "verdict"] == "not testable: needs CIFAR-100 beside CIFAR-10; of those only cifar10-jpeg ran"
    assert f.loc["F8", "verdict"] == "not testable: needs CIFAR-100 beside CIFAR-10; of those only cifar10-jpeg ran"
    assert f.loc["F1", "n_seeds"] == 2 and f.loc["F1", "seeds"] == "0, 1"
    assert "confounded" in f.loc["F7", "evidence"]
    for n in (1, 3, 4, 6, 7, 9, 10):
        assert not f.loc[f"F{n}", "verdict"].startswith("not testable"), (n, f.loc[f"F{n}", "evidence"])


def test_text_statements_measured(ledger, two_seeds):
    _, runs = two_seeds
    s = ledger.set_index("claim_id")
    # white-box FGSM MobileNet: share of inputs raised by more than one exit, from the RQ2 summary
    vals, seed_v = [], []
    for t in runs:
        sm = t["rq2"]["summary"]
        r = sm[(sm.setting == "white-box") & (sm.attack == "fgsm") & (sm.target_arch == "mobilenet")].iloc[0]
        vals.append(float(r["share_raised_gt1"]))
        seed_v.append(verdicts.combine([verdicts.within(r["share_raised_gt1_lo"], r["share_raised_gt1_hi"], 25, 37)]))
    row = s.loc["S-wb-fgsm-raised-cifar10-mobilenet"]
    assert row["reproduced_mean"] == pytest.approx(np.mean(vals))
    assert row["verdict"] == verdicts.combine_verdicts(seed_v)
    assert s.loc["S-wb-fgsm-raised-cifar100-vgg16", "verdict"].startswith("not testable")
    assert s.loc["S-tiny-d2s-gt-s2d", "verdict"].startswith("not testable")
    assert s.loc["S-psnr-sdnn", "verdict"].startswith("not testable: the paper states no ε")
    assert "ε nearest" in s.loc["S-psnr-sdnn", "verdict"]
    # the same PSNR statement, the same verdict as the appendix's function on each run
    same = [appendix.psnr_statement(t["appendix"]["psnr_equivalence"], 0.5)["verdict"] for t in runs]
    assert s.loc["S-psnr-same", "verdict"] == verdicts.combine_verdicts(same)


def test_missing_question_reads_not_testable(tmp_path):
    led = claims.claims_ledger(tmp_path, "smoke", ["cifar10"]).set_index("claim_id")
    assert led.loc["F1", "verdict"].startswith("not testable: no published rq1 results")
    assert led.loc["T2-cifar10-vgg16-a1", "verdict"].startswith("not testable: no published rq4 results")
    assert led.loc["T2-cifar100-vgg16-a1", "verdict"].startswith("not testable: the paper's dataset")
    counts = claims.summary_counts(led.reset_index())
    assert counts.loc["total", "total"] == len(led)
    assert set(counts.index) - {"total"} <= set(verdicts.VERDICTS)


def test_tiny_imagenet_never_stands_in_for_cifar(tmp_path):
    """Only Tiny ImageNet ran: the findings are not judged on it (today's fallback removed), while
    its own statement is."""
    publish_fake(tmp_path, "tinyimagenet", seed=0)
    led = claims.claims_ledger(tmp_path, "smoke", ["tinyimagenet"]).set_index("claim_id")
    for n in range(1, 11):
        assert led.loc[f"F{n}", "verdict"].startswith("not testable: the findings are judged on CIFAR"), n
    assert not led.loc["S-tiny-d2s-gt-s2d", "verdict"].startswith("not testable")
    assert led.loc["S-tiny-lower", "verdict"].startswith("not testable: needs CIFAR-10")


def test_cross_dataset_statements_use_matched_cells_per_direction(tmp_path):
    """CIFAR-100 vs CIFAR-10 and Tiny ImageNet vs CIFAR-10: only matched (pair, attack, ε) cells, each
    direction on its own. CIFAR-100 ran one pair more than CIFAR-10 shares: that cell is ignored."""
    t10 = publish_fake(tmp_path, "cifar10-jpeg", seed=0)
    t100 = publish_fake(tmp_path, "cifar100", seed=0)
    publish_fake(tmp_path, "tinyimagenet", seed=0)
    keep = t10["rq1"]["summary"]
    keep = keep[keep["pair"] != keep["pair"].iloc[0]]
    write_results(results_path(tmp_path, "smoke", "cifar10-jpeg", "rq1"), {**t10["rq1"], "summary": keep},
                  _record("rq1", "cifar10-jpeg", 0))
    led = claims.claims_ledger(tmp_path, "smoke", ["cifar10-jpeg", "cifar100", "tinyimagenet"]).set_index("claim_id")
    for sid in ("S-c100-gt-c10", "S-tiny-lower"):
        ev = led.loc[sid, "evidence"]
        assert "matched cells only" in ev and "D2S:" in ev and "S2D:" in ev, ev
        assert ev.count("pp [") == len(keep), ev  # one interval per matched cell
    big = t100["rq1"]["summary"].set_index(["direction", "pair", "attack", "eps_255"])
    small = keep.set_index(["direction", "pair", "attack", "eps_255"])
    k = small.index[0]
    d, lo, hi = metrics.newcombe_interval(big.loc[k, "n_success"], big.loc[k, "n_correct"],
                                          small.loc[k, "n_success"], small.loc[k, "n_correct"])
    assert f"{d:.1f} pp [{lo:.1f}, {hi:.1f}]" in led.loc["S-c100-gt-c10", "evidence"]
    # Findings 5 and 8 now have two datasets: matched cells with Newcombe intervals
    for n in (5, 8):
        v = led.loc[f"F{n}", "verdict"]
        assert verdicts.family(v) != "not testable" and "Newcombe" in led.loc[f"F{n}", "evidence"], v
    # the CIFAR findings never read Tiny ImageNet
    assert "tinyimagenet" not in led.loc["F1", "dataset_used"]


def test_page_overrides_split_like_reproduce():
    prof, conf = claims.page_overrides("rq1", {"n_train": 64, "steps": 3, "alphas": [1.0]})
    assert prof == {"n_train": 64} and conf == {"steps": 3}  # alphas belongs to RQ4: ignored here
    prof, conf = claims.page_overrides("rq4", {"n_train": 64, "steps": 3, "alphas": [1.0]})
    assert conf == {"alphas": [1.0]}
    prof, conf = claims.page_overrides("zoo", {"cnn_milestones": "(35, 60)", "ic_milestones": [15],
                                               "archs": ["vgg16"]})
    assert prof == {"cnn_milestones": (35, 60), "ic_milestones": (15,)}  # papermill turns tuples into strings
    # archs restricts RQ4 only: the zoo page asks for the zoo `dynn reproduce` published (every architecture),
    # so `dynn reproduce -p archs ...` neither recomputes the zoo on its page nor fails with --no-experiments
    from dynn_lib.reproduce import _accepted
    assert conf == {} and "archs" not in _accepted("zoo") and "archs" in _accepted("rq4")
    with pytest.raises(ValueError, match="unknown override"):
        claims.page_overrides("rq1", {"n_trian": 64})


def test_data_note_is_loud_about_generated_data():
    rec = _record("rq1", "synthetic", 0)
    note = claims.data_note(rec)
    assert "GENERATED" in note._repr_html_() and "meaningless" in repr(note)


@pytest.mark.slow
def test_ledger_from_a_real_rq4_run(tmp_path):
    """The real RQ4 on generated data (which stands in for CIFAR-10, loudly), two architectures."""
    from dynn_lib.experiments import runner
    from dynn_lib.zoo import Workspace

    ws = Workspace("synthetic", "smoke", store=tmp_path / "store", device="cpu", n_train=64, n_query=32, n_eval=16,
                   ea_images=4, ea_iters=5, attack_steps=2, batch_size=32)
    runner.publish("rq4", ws, tmp_path / "res", {"archs": ["mobilenet", "resnet56"]})
    led = claims.claims_ledger(tmp_path / "res", "smoke", ["synthetic"]).set_index("claim_id")
    row = led.loc["T2-cifar10-resnet56-a1"]
    assert verdicts.family(row["verdict"]) in verdicts.VERDICTS and "GENERATED" in row["dataset_used"]
    assert row["n_images"] == 4 and row["verdict"] in ("inconclusive", "does not hold")  # 4 images never hold
    assert led.loc["T2-cifar10-vgg16-a1", "verdict"].startswith("not testable")
    assert verdicts.family(led.loc["F9", "verdict"]) in verdicts.VERDICTS


def test_provenance_names_the_profile_fields_each_result_changed(two_seeds, tmp_path):
    root, _ = two_seeds
    prov = claims.provenance_table(claims.results_dirs(root), "smoke", ["cifar10-jpeg"])
    assert len(prov) == 10 and set(prov["profile changes"]) == {"none"}  # {"name": "smoke"}: nothing differs
    rec = _record("zoo", "cifar10-jpeg", 0)
    rec["config"]["profile"] = {"name": "smoke", "n_eval": 50, "lr": 0.02}
    write_results(results_path(tmp_path, "smoke", "cifar10-jpeg", "zoo"), {}, rec)
    one = claims.provenance_table(tmp_path, "smoke", ["cifar10-jpeg"])
    assert list(one["profile changes"]) == ["n_eval 50 (smoke: 200)"]


def test_best_alpha_cell_holds_when_the_papers_alpha_ties_for_the_best_rate():
    """The paper's CIFAR-100 ResNet-56 row ties (96 % at alpha 1 and 20); Table 1 names the smallest tied
    alpha, and the paper's alpha among the tied ones is the same best alpha."""
    rows = [{"dataset": "cifar10", "arch": "vgg16", "kind": "sdn", "method": "early_attack", "alpha": a, "image": i,
             "success": i < k} for a, k in ((0.1, 96), (1.0, 96), (20.0, 50)) for i in range(100)]
    pi = pd.DataFrame(rows)
    tables = {"table1": rq4.table1(pi), "table2": rq4.table2(pi)}
    tie = claims._best_alpha_measure(tables, "vgg16", paper_alpha=1.0)
    assert tables["table1"]["best_alpha"].item() == 0.1 and tie.verdict == "holds" and "ties" in tie.evidence
    worse = claims._best_alpha_measure(tables, "vgg16", paper_alpha=20.0)
    assert worse.verdict == "does not hold"  # 50 % [40, 60] against 96 % [90, 98]: told apart


def test_best_alpha_cell_is_not_decided_when_no_alpha_stands_out():
    def tables(k_per_alpha):
        rows = [{"dataset": "cifar10", "arch": "vgg16", "kind": "sdn", "method": "early_attack", "alpha": a,
                 "image": i, "success": i < k} for a, k in k_per_alpha for i in range(100)]
        pi = pd.DataFrame(rows)
        return {"table1": rq4.table1(pi), "table2": rq4.table2(pi)}

    none = claims._best_alpha_measure(tables([(0.1, 0), (1.0, 0)]), "vgg16", paper_alpha=1.0)
    assert none.verdict == "not testable: no α succeeded, so there is no best α"
    flat = claims._best_alpha_measure(tables([(0.1, 100), (1.0, 100)]), "vgg16", paper_alpha=1.0)
    assert flat.verdict.startswith("inconclusive: every α gives the same rate") and "100.0% at every α" in flat.evidence
