"""RQ3 Exit design (protocol section 8): when an attack flips the final exit's label, at which
exit does the prediction first change? Findings 6-8.

For each adversarial input whose final-exit prediction differs from the benign one, the first
exit (0-based) whose prediction differs from its *own* benign prediction
(:func:`dynn_lib.metrics.first_changed_exit`). White-box: attack the CNN's final output and read
its IC-only DyNN; black-box: the S2D pairs. Attacks use ``cfg.exit_loss_rq3`` ("final"); both
kinds of table are the cached ones of RQ1/RQ2 (the white-box and S2D attacks hit a CNN, whose
only loss is "final"), so nothing is attacked again. RQ3 does not depend on τ.

Example::

    out = rq3.run(ws)
    out["summary"][["setting", "pair", "attack", "n_flipped", "share_changed_exit0"]]
    rq3.finding_6(out["summary"]), rq3.finding_7(out["summary"])
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, models
from ..blackbox import Pair
from ..zoo import Workspace
from .common import GROUP_KEYS, ExperimentConfig, compare_datasets, final_flipped_and_first, fmt, setting_tables, \
    verdict


def add_first_changed(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with ``final_flipped`` (bool), ``first_changed_exit`` (int, -1 when the final
    prediction did not change) and ``num_exits`` (E of the target)."""
    out = df.copy()
    flipped, first = final_flipped_and_first(df)
    out["final_flipped"] = flipped
    out["first_changed_exit"] = first
    out["num_exits"] = np.fromiter((len(v) for v in df["pred_clean"]), dtype=np.int64, count=len(df))
    return out


def summarise(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, model, attack, ε): n, n_flipped, flip_rate (%), share_changed_exit0 (% of
    flipped inputs whose first changed exit is exit 0; nan when none flipped),
    share_not_changed_exit0, mean_first_changed_exit, first_exit_distribution (list of E
    fractions over the flipped inputs) and first_exit_cost (exit_macs[0] / exit_macs[-1]: how
    early the first exit sits)."""
    df = per_image if "first_changed_exit" in per_image else add_first_changed(per_image)
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=False):
        first = g["first_changed_exit"].to_numpy(copy=True)
        E = int(g["num_exits"].iloc[0])
        flipped = first >= 0
        share0 = metrics.share_first_exit(first, exit=0)
        dist = (np.bincount(first[flipped], minlength=E) / flipped.sum()).tolist() if flipped.any() else [math.nan] * E
        macs = g["exit_macs"].iloc[0]
        rows.append({**dict(zip(GROUP_KEYS, key)), "model": key[GROUP_KEYS.index("target_arch")], "n": len(g),
                     "n_flipped": int(flipped.sum()), "flip_rate": 100.0 * float(flipped.mean()),
                     "share_changed_exit0": share0,
                     "share_not_changed_exit0": 100.0 - share0 if not math.isnan(share0) else math.nan,
                     "mean_first_changed_exit": float(first[flipped].mean()) if flipped.any() else math.nan,
                     "first_exit_distribution": dist, "num_exits": E,
                     "first_exit_cost": float(macs[0]) / float(macs[-1])})
    return pd.DataFrame(rows)


def first_exit_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Tidy densities (Figs. 5, 6, 8, 9): one row per (setting, model, attack, ε, exit) with the
    count and fraction of flipped inputs whose first changed exit is that exit."""
    s = summarise(per_image)
    rows = []
    for _, r in s.iterrows():
        for e, frac in enumerate(r["first_exit_distribution"]):
            rows.append({**{k: r[k] for k in GROUP_KEYS}, "exit": e, "fraction": frac,
                         "count": int(round(frac * r["n_flipped"])) if not math.isnan(frac) else 0})
    return pd.DataFrame(rows, columns=list(GROUP_KEYS) + ["exit", "fraction", "count"])


def run(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), archs: Sequence[str] = models.ARCHS,
        pairs: Sequence[Pair] | None = None) -> dict[str, pd.DataFrame]:
    """RQ3 on ``ws``: ``per_image`` (white-box tables of ``archs`` + black-box S2D tables, with
    :func:`add_first_changed` columns), ``summary`` (:func:`summarise`) and ``first_exit``
    (:func:`first_exit_table`)."""
    raw = setting_tables(ws, cfg, archs, pairs, exit_loss_whitebox=cfg.exit_loss_rq3,
                         exit_loss_surrogate=cfg.exit_loss_rq3)
    per_image = add_first_changed(raw)
    return {"per_image": per_image, "summary": summarise(per_image), "first_exit": first_exit_table(per_image)}


# ---------------------------------------------------------------- findings

def finding_6(summary: pd.DataFrame) -> dict:
    """Finding 6: a first exit placed earlier makes the early exits more robust. In the black-box
    setting, per (dataset, attack, ε), the target whose first exit is earliest (smallest
    ``first_exit_cost``; VGG-16 with the protocol's architectures) should have the highest share
    of flipped inputs NOT changed at exit 0."""
    bb = summary[(summary["setting"] == "black-box")].dropna(subset=["share_not_changed_exit0"])
    checks, parts = [], []
    for key, g in bb.groupby(["dataset", "attack", "eps_255"], sort=False):
        if g["target_arch"].nunique() < 2:
            continue
        earliest = g.loc[g["first_exit_cost"].idxmin()]
        best = g.loc[g["share_not_changed_exit0"].idxmax()]
        checks.append(earliest["share_not_changed_exit0"] >= best["share_not_changed_exit0"])
        parts.append(f"{key[0]} {key[1]} ε={key[2]:g}/255: earliest first exit {earliest['target_arch']} "
                     f"{fmt(earliest['share_not_changed_exit0'], '%')} not changed at exit 0, highest "
                     f"{best['target_arch']} {fmt(best['share_not_changed_exit0'], '%')}")
    if not checks:
        return {"finding": 6, "claim": "an earlier first exit makes the early exits more robust",
                "verdict": "not testable here",
                "evidence": "not testable here: needs black-box results for at least two target models",
                "comparisons": 0}
    return {"finding": 6, "claim": "an earlier first exit makes the early exits more robust",
            "verdict": verdict(checks),
            "evidence": f"holds in {sum(checks)} of {len(checks)} (dataset, attack, ε) groups: " + "; ".join(parts),
            "comparisons": len(checks), "comparisons_holding": int(sum(checks))}


def finding_7(summary: pd.DataFrame) -> dict:
    """Finding 7: black-box attacks hurt the early exits less than white-box ones: per (dataset,
    model, attack, ε), the share of flipped inputs changed at exit 0 is lower black-box than
    white-box (the same architecture: IC-only DyNN white-box, SDN-trained DyNN black-box)."""
    keys = ["dataset", "target_arch", "attack", "eps_255"]
    s = summary.dropna(subset=["share_changed_exit0"])
    wb = s[s["setting"] == "white-box"].groupby(keys)["share_changed_exit0"].mean()
    bb = s[s["setting"] == "black-box"].groupby(keys)["share_changed_exit0"].mean()
    common = wb.index.intersection(bb.index)
    checks = [bb.loc[k] < wb.loc[k] for k in common]
    if not checks:
        return {"finding": 7, "claim": "black-box attacks change the first exit less often than white-box",
                "verdict": "not testable here",
                "evidence": "not testable here: needs white-box and black-box results for the same model",
                "comparisons": 0}
    return {"finding": 7, "claim": "black-box attacks change the first exit less often than white-box",
            "verdict": verdict(checks),
            "evidence": (f"share of flipped inputs changed at exit 0 lower black-box in {sum(checks)} of {len(checks)} "
                         f"(model, attack, ε); mean black-box {fmt(float(bb.loc[common].mean()), '%')} vs "
                         f"white-box {fmt(float(wb.loc[common].mean()), '%')}"),
            "mean_blackbox": float(bb.loc[common].mean()), "mean_whitebox": float(wb.loc[common].mean()),
            "comparisons": len(checks), "comparisons_holding": int(sum(checks))}


def finding_8(summaries: Sequence[pd.DataFrame]) -> dict:
    """Finding 8: in the black-box setting the early exits are less robust for the dataset with
    the larger models (CIFAR-100 vs CIFAR-10): share changed at exit 0 higher there, per matched
    (model, attack, ε). With one dataset the verdict is "not testable here"."""
    if isinstance(summaries, pd.DataFrame):
        summaries = [summaries]
    bb = [s[s["setting"] == "black-box"] for s in summaries]
    comps, what = compare_datasets(bb, "share_changed_exit0", ["pair", "target_kind", "attack", "eps_255"])
    claim = "black-box, early exits are less robust to examples from a larger surrogate model"
    if not comps:
        return {"finding": 8, "claim": claim, "verdict": "not testable here",
                "evidence": f"not testable here: {what}", "comparisons": 0}
    checks = [x > y for _, x, y in comps]
    return {"finding": 8, "claim": claim, "verdict": verdict(checks),
            "evidence": (f"{what}: share changed at exit 0 higher in {sum(checks)} of {len(checks)} matched settings "
                         f"(mean {np.mean([x for _, x, _ in comps]):.1f} % vs "
                         f"{np.mean([y for _, _, y in comps]):.1f} %)"),
            "comparisons": len(checks), "comparisons_holding": int(sum(checks))}


__all__ = ["run", "add_first_changed", "summarise", "first_exit_table", "finding_6", "finding_7", "finding_8"]
