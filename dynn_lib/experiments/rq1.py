"""RQ1 Transferability (protocol sections 7-8): do adversarial examples crafted on a DyNN
surrogate fool an SDNN target (D2S) more often than the reverse (S2D)? Findings 1-2.

For every pair of :data:`dynn_lib.blackbox.PAIRS`, attack and ε, :func:`common.transfer_table`
gives one row per evaluation image (cached; RQ2/RQ3 reuse the S2D tables). This module only
reads those tables:

* ``per_image``: the transfer tables plus ``correct_clean`` (target deployed-correct on the
  benign image) and ``success`` (correct on benign AND wrong on adversarial).
* ``summary``: success rate over target-correct images (the headline, %), over all images,
  n, n_correct and the surrogate's attack seconds per example, per (dataset, pair, attack, ε).
* ``exit_used`` (Fig. 7): per D2S pair, attack and ε, the share of examples per surrogate exit
  differentiated at the last attack step (``exit_loss="fired"`` by default).
* ``generation_time`` (Finding 2): seconds per adversarial example per surrogate model.

Example::

    ws = Workspace("cifar10", "paper")
    out = rq1.run(ws, ExperimentConfig(eps=(8/255,)))
    rq1.finding_1(out["summary"]), rq1.finding_2(out["generation_time"])
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .. import metrics
from ..blackbox import PAIRS, Pair
from ..progress import progress
from ..zoo import Workspace
from .common import exit_costs, ExperimentConfig, deployed, fmt, num_exits, transfer_table, verdict

SUMMARY_KEYS = ["dataset", "direction", "pair", "surrogate_arch", "surrogate_kind", "target_arch", "target_kind",
                "attack", "eps", "eps_255"]


def transfer_tables(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(),
                    pairs: Sequence[Pair] | None = None) -> pd.DataFrame:
    """The concatenated transfer tables of ``pairs`` (default all six) x ``cfg.attacks`` x ``cfg.eps``."""
    pairs = tuple(PAIRS if pairs is None else pairs)
    jobs = [(p, a, e) for p in pairs for a in cfg.attacks for e in cfg.eps]
    frames = [transfer_table(ws, p, a, e, cfg) for p, a, e in progress(jobs, desc="RQ1 transfer")]
    return pd.concat(frames, ignore_index=True)


def add_success(df: pd.DataFrame, tau: float | None = None) -> pd.DataFrame:
    """``deployed`` columns plus ``correct_clean`` and ``success`` (target deployed-correct on the
    benign image and wrong on its adversarial version, protocol section 7)."""
    out = deployed(df, tau)
    out["correct_clean"] = out["deployed_pred_clean"].to_numpy() == out["label"].to_numpy()
    out["success"] = out["correct_clean"].to_numpy() & (out["deployed_pred_adv"].to_numpy()
                                                        != out["label"].to_numpy())
    return out


def summarise(per_image: pd.DataFrame, tau: float | None = None) -> pd.DataFrame:
    """Success rates per (dataset, direction, pair, attack, ε) from per-image rows (pure; ``tau``
    overrides the DyNN targets' τ as in :func:`common.deployed`).

    success_rate: % over images the target classifies correctly when benign (``nan`` if none);
    success_rate_all: % of all images misclassified after the attack; seconds_per_example: the
    surrogate's attack wall time per example.
    """
    df = add_success(per_image, tau)
    rows = []
    for key, g in df.groupby(SUMMARY_KEYS, sort=False):
        pc, pa, y = (g[c].to_numpy(copy=True) for c in ("deployed_pred_clean", "deployed_pred_adv", "label"))
        rows.append({**dict(zip(SUMMARY_KEYS, key)),
                     "success_rate": metrics.success_rate(pc, pa, y, over="correct"),
                     "success_rate_all": metrics.success_rate(pc, pa, y, over="all"),
                     "n": len(g), "n_correct": int(g["correct_clean"].sum()),
                     "clean_accuracy": 100.0 * float(g["correct_clean"].mean()),
                     "seconds_per_example": metrics.time_per_example(float(g["gen_seconds"].sum()), len(g)),
                     "mean_psnr": metrics.mean_psnr(g["psnr"].to_numpy(copy=True))})
    return pd.DataFrame(rows)


def exit_used(per_image: pd.DataFrame, num_classes: int = 10, input_size: int = 32) -> pd.DataFrame:
    """Fig. 7: per D2S pair, attack and ε, the fraction of examples per surrogate exit used.

    Columns: dataset, pair, surrogate_arch, attack, eps, eps_255, exit, count, fraction,
    cumulative (share of examples from exits <= exit). Exit -1 (several exits in the loss,
    ``exit_loss="mean"``) is its own row when present.
    """
    d2s = per_image[per_image["surrogate_kind"] != "cnn"]
    keys = ["dataset", "pair", "surrogate_arch", "attack", "eps", "eps_255"]
    rows = []
    for key, g in d2s.groupby(keys, sort=False):
        E = num_exits(key[2], "sdn", num_classes, input_size)
        ex = g["surrogate_exit"].to_numpy()
        counts = {e: int((ex == e).sum()) for e in range(E)}
        if (ex < 0).any():
            counts = {-1: int((ex < 0).sum()), **counts}
        cum = 0
        for e, c in counts.items():
            cum += c
            rows.append({**dict(zip(keys, key)), "exit": e, "count": c, "fraction": c / len(g),
                         "cumulative": cum / len(g)})
    cols = keys + ["exit", "count", "fraction", "cumulative"]
    return pd.DataFrame(rows, columns=cols)


def generation_time(per_image: pd.DataFrame, num_classes: int = 10, input_size: int = 32) -> pd.DataFrame:
    """Finding 2: cost per adversarial example of each surrogate model (one per pair), per attack
    and ε, with the surrogate's kind ("cnn" = SDNN, "sdn" = DyNN).

    ``seconds_per_example``: measured wall time (the attack computes every exit of a DyNN).
    ``macs_per_step``: mean MACs of the forward pass up to the exit each example's last attack
    step used (the whole network for an SDNN, or for ``exit_loss="mean"``): the computation a
    DyNN surrogate needs if it stops at that exit, which is the paper's argument for Finding 2.
    """
    keys = ["dataset", "direction", "pair", "surrogate_arch", "surrogate_kind", "attack", "eps", "eps_255"]
    rows = []
    for k, g in per_image.groupby(keys, sort=False):
        costs = exit_costs(k[3], k[4], num_classes, input_size)
        used = g["surrogate_exit"].to_numpy()
        macs = [costs[e] if 0 <= e < len(costs) else costs[-1] for e in used]
        rows.append({**dict(zip(keys, k)), "surrogate": ("DyNN" if k[4] != "cnn" else "SDNN"),
                     "seconds_per_example": metrics.time_per_example(float(g["gen_seconds"].sum()), len(g)),
                     "macs_per_step": float(sum(macs) / len(macs)), "full_macs": float(costs[-1]), "n": len(g)})
    return pd.DataFrame(rows)


def run(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), pairs: Sequence[Pair] | None = None,
        tau: float | None = None) -> dict[str, pd.DataFrame]:
    """RQ1 on ``ws``: tables ``per_image``, ``summary``, ``exit_used``, ``generation_time``.

    ``pairs`` restricts the surrogate/target pairs (default all six of :data:`PAIRS`); ``tau``
    overrides the DyNN targets' calibrated τ (analysis only; the attacks do not depend on it).
    Tiny ImageNet (Fig. 16) is this same function on ``Workspace("tinyimagenet", ...)``.
    """
    raw = transfer_tables(ws, cfg, pairs)
    per_image = add_success(raw, tau)
    return {"per_image": per_image, "summary": summarise(raw, tau),
            "exit_used": exit_used(raw, ws.info.num_classes, ws.info.input_size),
            "generation_time": generation_time(raw, ws.info.num_classes, ws.info.input_size)}


# ---------------------------------------------------------------- findings

def finding_1(summary: pd.DataFrame) -> dict:
    """Finding 1: D2S transferability is higher than S2D.

    Compares the mean success rate (over target-correct images) of the D2S pairs with that of the
    S2D pairs within each (dataset, attack, ε); "holds" when D2S > S2D in every such group.
    """
    groups = []
    for key, g in summary.groupby(["dataset", "attack", "eps_255"], sort=False):
        d2s = g.loc[g["direction"] == "D2S", "success_rate"].mean()
        s2d = g.loc[g["direction"] == "S2D", "success_rate"].mean()
        if not (math.isnan(d2s) or math.isnan(s2d)):
            groups.append((key, d2s, s2d))
    checks = [d > s for _, d, s in groups]
    mean_d2s = float(summary.loc[summary["direction"] == "D2S", "success_rate"].mean())
    mean_s2d = float(summary.loc[summary["direction"] == "S2D", "success_rate"].mean())
    detail = "; ".join(f"{k[0]} {k[1]} ε={k[2]:g}/255: D2S {fmt(d, '%')} vs S2D {fmt(s, '%')}" for k, d, s in groups)
    return {"finding": 1, "claim": "D2S transferability is higher than S2D transferability",
            "verdict": verdict(checks),
            "evidence": (f"mean success rate over target-correct images: D2S {fmt(mean_d2s, '%')}, "
                         f"S2D {fmt(mean_s2d, '%')}; D2S higher in {sum(checks)} of {len(checks)} "
                         f"(dataset, attack, ε) groups" + (f" ({detail})" if detail else "")),
            "mean_d2s": mean_d2s, "mean_s2d": mean_s2d, "groups": len(checks), "groups_holding": int(sum(checks))}


def finding_2(generation_time: pd.DataFrame, summary: pd.DataFrame | None = None) -> dict:
    """Finding 2: DyNN surrogates generate adversarial examples faster (and more effectively).

    Efficiency: seconds per example of DyNN vs SDNN surrogates of the *same architecture*
    (MobileNet and ResNet-56 exist as both), per (dataset, attack, ε); "holds" when the DyNN
    surrogate is faster in every comparison. Note: the attack differentiates a loss computed
    from a full batched forward pass through every exit, so a DyNN surrogate is never cheaper
    here unless compute stops at the fired exit. Effectiveness (given ``summary``) is Finding 1.
    """
    gt = generation_time
    checks, parts = [], []
    for key, g in gt.groupby(["dataset", "attack", "eps_255", "surrogate_arch"], sort=False):
        dy = g.loc[g["surrogate"] == "DyNN", "seconds_per_example"].mean()
        sd = g.loc[g["surrogate"] == "SDNN", "seconds_per_example"].mean()
        if not (math.isnan(dy) or math.isnan(sd)):
            checks.append(dy < sd)
            parts.append(f"{key[0]} {key[1]} ε={key[2]:g}/255 {key[3]}: DyNN {dy * 1e3:.2f} ms vs "
                         f"SDNN {sd * 1e3:.2f} ms")
    mean_dy = float(gt.loc[gt["surrogate"] == "DyNN", "seconds_per_example"].mean())
    mean_sd = float(gt.loc[gt["surrogate"] == "SDNN", "seconds_per_example"].mean())
    out = {"finding": 2, "claim": "DyNN surrogates generate adversarial examples more efficiently (and effectively)",
           "verdict": verdict(checks),
           "evidence": (f"seconds per example, mean over surrogates: DyNN {mean_dy * 1e3:.2f} ms, SDNN "
                        f"{mean_sd * 1e3:.2f} ms; DyNN faster in {sum(checks)} of {len(checks)} same-architecture "
                        f"comparisons" + (f" ({'; '.join(parts)})" if parts else "")),
           "mean_seconds_dynn": mean_dy, "mean_seconds_sdnn": mean_sd,
           "comparisons": len(checks), "comparisons_holding": int(sum(checks))}
    if "macs_per_step" in gt:
        mc = []
        for _, g in gt.groupby(["dataset", "attack", "eps_255", "surrogate_arch"], sort=False):
            dy = g.loc[g["surrogate"] == "DyNN", "macs_per_step"].mean()
            sd = g.loc[g["surrogate"] == "SDNN", "macs_per_step"].mean()
            if not (math.isnan(dy) or math.isnan(sd)):
                mc.append(dy < sd)
        out["compute_verdict"] = verdict(mc)
        out["mean_macs_dynn"] = float(gt.loc[gt["surrogate"] == "DyNN", "macs_per_step"].mean())
        out["mean_macs_sdnn"] = float(gt.loc[gt["surrogate"] == "SDNN", "macs_per_step"].mean())
        out["evidence"] += (f"; compute up to the exit used (MACs per attack step, the paper's argument): DyNN "
                            f"{out['mean_macs_dynn'] / 1e6:.1f} M vs SDNN {out['mean_macs_sdnn'] / 1e6:.1f} M, "
                            f"DyNN cheaper in {sum(mc)} of {len(mc)} comparisons ({out['compute_verdict']})")
    if summary is not None:
        f1 = finding_1(summary)
        out["effectiveness"] = f1["verdict"]
        out["evidence"] += f"; effectiveness (Finding 1): {f1['verdict']}"
    return out


def share_early_exits(exit_used_df: pd.DataFrame, upto: int = 2) -> pd.DataFrame:
    """Share (%) of D2S examples generated from exits 0..``upto`` per pair, attack and ε (the
    paper: over 70 % from exits 0-2 for PGD)."""
    keys = ["dataset", "pair", "attack", "eps", "eps_255"]
    sel = exit_used_df[(exit_used_df["exit"] >= 0) & (exit_used_df["exit"] <= upto)]
    out = sel.groupby(keys, sort=False)["fraction"].sum().mul(100).rename(f"share_exits_0_{upto}")
    return out.reset_index()


__all__ = ["run", "transfer_tables", "add_success", "summarise", "exit_used", "generation_time", "finding_1",
           "finding_2", "share_early_exits", "SUMMARY_KEYS"]
