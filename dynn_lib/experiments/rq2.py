"""RQ2 Efficiency (protocol section 8): do adversarial examples change the exit an input takes
in a DyNN, and so its cost? Findings 3-5.

Per input, ``delta_exit = exit(adversarial) - exit(benign)`` of the DyNN at its τ, and the same
in MACs. White-box: attack the CNN, read its IC-only DyNN (:func:`common.whitebox_table`).
Black-box: the S2D pairs (:func:`common.transfer_table`, the *same* cached tables as RQ1).
Everything below is a pure function of those tables, so :func:`summarise` with another ``tau``
(the widgets' slider) recomputes no attack.

Example::

    out = rq2.run(ws, ExperimentConfig())
    out["summary"][["setting", "pair", "attack", "share_raised_gt1"]]
    rq2.finding_3(out["summary"]); rq2.finding_5([summary_c10, summary_c100])
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, models
from ..blackbox import Pair
from ..zoo import Workspace
from .common import (GROUP_KEYS, ExperimentConfig, _by_exits, _stack, compare_datasets, deployed, fmt, setting_tables,
                     verdict)

DERIVED_COLUMNS = ("delta_exit", "delta_macs", "rel_macs_change", "conf_internal_clean", "conf_internal_adv")
"""Columns :func:`add_deltas` adds (besides :data:`common.DEPLOYED_COLUMNS`)."""


def _internal_conf(df: pd.DataFrame, side: str) -> np.ndarray:
    """Mean max-softmax confidence over the internal exits (the final one for a CNN)."""
    out = np.zeros(len(df))
    for E, idx in _by_exits(df).items():
        c = _stack(df[f"conf_{side}"].iloc[idx]).reshape(len(idx), E)
        out[idx] = c[:, :-1].mean(1) if E > 1 else c[:, 0]
    return out


def add_deltas(df: pd.DataFrame, tau: float | None = None) -> pd.DataFrame:
    """:func:`common.deployed` columns plus delta_exit (exits), delta_macs (MACs),
    rel_macs_change (delta_macs / macs_clean, a fraction) and the mean internal-exit confidence
    on the benign and adversarial input."""
    out = deployed(df, tau)
    out["delta_exit"] = metrics.exit_change(out["exit_clean"].to_numpy(copy=True),
                                            out["exit_adv"].to_numpy(copy=True)).numpy()
    out["delta_macs"] = out["macs_adv"].to_numpy() - out["macs_clean"].to_numpy()
    out["rel_macs_change"] = out["delta_macs"].to_numpy() / out["macs_clean"].to_numpy()
    out["conf_internal_clean"] = _internal_conf(out, "clean")
    out["conf_internal_adv"] = _internal_conf(out, "adv")
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return math.nan
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def summarise(per_image: pd.DataFrame, tau: float | None = None) -> pd.DataFrame:
    """Per (setting, model, attack, ε): n, mean delta_exit, % raised by more than one exit
    (:func:`dynn_lib.metrics.share_exit_raised`), % raised / lowered at all, mean delta MACs,
    mean per-image relative MACs change (%), total MACs change (% of the benign total), mean
    exits, the internal-exit confidence drop and its Spearman correlation with delta_exit.
    Pure: recomputes the deployed exits at ``tau`` (None: the stored τ) from the table."""
    df = add_deltas(per_image, tau)
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=False):
        d = g["delta_exit"].to_numpy(copy=True)
        drop = g["conf_internal_clean"].to_numpy() - g["conf_internal_adv"].to_numpy()
        mc, ma = g["macs_clean"].to_numpy(), g["macs_adv"].to_numpy()
        rows.append({**dict(zip(GROUP_KEYS, key)), "model": key[GROUP_KEYS.index("target_arch")],
                     "tau": float(tau) if tau is not None else float(g["tau"].mean()),
                     "n": len(g), "mean_delta_exit": float(d.mean()),
                     "share_raised_gt1": metrics.share_exit_raised(d, more_than=1),
                     "share_raised": metrics.share_exit_raised(d, more_than=0),
                     "share_lowered": 100.0 * float((d < 0).mean()),
                     "mean_exit_clean": float(g["exit_clean"].mean()), "mean_exit_adv": float(g["exit_adv"].mean()),
                     "mean_delta_macs": float(g["delta_macs"].mean()),
                     "mean_rel_macs_change": 100.0 * float(g["rel_macs_change"].mean()),
                     "total_macs_change": 100.0 * (float(ma.sum()) / float(mc.sum()) - 1.0),
                     "mean_conf_drop": float(drop.mean()), "conf_drop_vs_delta_exit": _spearman(drop, d)})
    return pd.DataFrame(rows)


def run(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), archs: Sequence[str] = models.ARCHS,
        pairs: Sequence[Pair] | None = None, tau: float | None = None) -> dict[str, pd.DataFrame]:
    """RQ2 on ``ws``: ``per_image`` (white-box tables of ``archs`` + black-box S2D tables, with
    :func:`add_deltas` columns) and ``summary`` (:func:`summarise`)."""
    raw = setting_tables(ws, cfg, archs, pairs)
    return {"per_image": add_deltas(raw, tau), "summary": summarise(raw, tau)}


# ---------------------------------------------------------------- findings

def finding_3(summary: pd.DataFrame, threshold: float = 10.0) -> dict:
    """Finding 3: accuracy-based adversarial examples do not decrease a DyNN's efficiency
    significantly. "Significantly" = the total MACs change exceeds ``threshold`` % (a parameter;
    the paper gives no number); "holds" when every (setting, model, attack, ε) stays below it."""
    s = summary.dropna(subset=["total_macs_change"])
    checks = (s["total_macs_change"] < threshold).tolist()
    worst = s.loc[s["total_macs_change"].idxmax()] if len(s) else None
    ev = (f"total MACs change over benign inputs ranges {fmt(s['total_macs_change'].min(), '%')} to "
          f"{fmt(s['total_macs_change'].max(), '%')} (threshold {threshold:g} %); mean exit change "
          f"{s['mean_delta_exit'].mean():+.2f}; {sum(checks)} of {len(checks)} settings below the threshold")
    if worst is not None:
        ev += f"; largest: {worst['setting']} {worst['pair']} {worst['attack']} ε={worst['eps_255']:g}/255"
    return {"finding": 3, "claim": "accuracy-based adversarial examples do not decrease DyNN efficiency significantly",
            "verdict": verdict(checks), "evidence": ev, "threshold_pct": threshold,
            "max_total_macs_change": float(s["total_macs_change"].max()) if len(s) else math.nan,
            "mean_share_raised_gt1": float(s["share_raised_gt1"].mean()) if len(s) else math.nan,
            "settings": len(checks), "settings_holding": int(sum(checks))}


def finding_4(summary: pd.DataFrame) -> dict:
    """Finding 4: adversarial examples that lower the output confidence more decrease efficiency
    more. Per (setting, model, attack, ε): Spearman correlation, over images, between the drop of
    the mean internal-exit confidence and delta_exit; "holds" when it is positive everywhere.
    (Partly built in: an exit fires on confidence, so lower early confidence means a later exit.)
    Also reports, per attack, the mean confidence drop and % raised by more than one exit."""
    s = summary.dropna(subset=["conf_drop_vs_delta_exit"])
    checks = (s["conf_drop_vs_delta_exit"] > 0).tolist()
    median = float(s["conf_drop_vs_delta_exit"].median()) if len(s) else math.nan
    per_attack = summary.groupby("attack")[["mean_conf_drop", "share_raised_gt1"]].mean()
    att = "; ".join(f"{a}: confidence drop {r['mean_conf_drop']:.3f}, raised >1 {fmt(r['share_raised_gt1'], '%')}"
                    for a, r in per_attack.iterrows())
    return {"finding": 4, "claim": "examples with lower output confidence decrease efficiency more",
            "verdict": verdict(checks),
            "evidence": (f"Spearman(confidence drop, exit change) > 0 in {sum(checks)} of {len(checks)} settings "
                         f"(median correlation {fmt(median, digits=2)}); "
                         f"per attack: {att}"),
            "median_correlation": median,
            "settings": len(checks), "settings_holding": int(sum(checks))}


def finding_5(summaries: Sequence[pd.DataFrame]) -> dict:
    """Finding 5: examples generated on a larger model (CIFAR-100's, more parameters) decrease
    efficiency more. Compares % raised by more than one exit between datasets in matched
    (setting, model, attack, ε); with one dataset the verdict is "not testable here"."""
    if isinstance(summaries, pd.DataFrame):
        summaries = [summaries]
    keys = ["setting", "pair", "target_kind", "attack", "eps_255"]
    comps, what = compare_datasets(summaries, "share_raised_gt1", keys)
    checks = [x > y for _, x, y in comps]
    if not comps:
        return {"finding": 5, "claim": "examples from a larger model decrease efficiency more",
                "verdict": "not testable here", "evidence": f"not testable here: {what}", "comparisons": 0}
    return {"finding": 5, "claim": "examples from a larger model decrease efficiency more",
            "verdict": verdict(checks),
            "evidence": (f"{what}: % raised by more than one exit higher in {sum(checks)} of {len(checks)} matched "
                         f"settings (mean {np.mean([x for _, x, _ in comps]):.1f} % vs "
                         f"{np.mean([y for _, _, y in comps]):.1f} %)"),
            "comparisons": len(checks), "comparisons_holding": int(sum(checks))}


__all__ = ["run", "add_deltas", "summarise", "finding_3", "finding_4", "finding_5", "DERIVED_COLUMNS"]
