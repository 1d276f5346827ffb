"""RQ3 Exit design (protocol section 8): when an attack flips the final exit's label, at which
exit does the prediction first change? Findings 6-8.

For each adversarial input whose final-exit prediction differs from the benign one, the first
exit (0-based) whose prediction differs from its *own* benign prediction
(:func:`dynn_lib.metrics.first_changed_exit`). White-box: attack the CNN's final output and read
its IC-only DyNN; black-box: the S2D pairs. Attacks use ``cfg.exit_loss_rq3`` ("final"); both
kinds of table are the cached ones of RQ1/RQ2 (the white-box and S2D attacks hit a CNN, whose
only loss is "final"), so nothing is attacked again. RQ3 does not depend on τ.

The paper does not say against what "the label is modified in the first exit" is read;
:func:`exit0_readings` gives the share at exit 0 under the protocol's reading and two others
(against the true label, against the benign final answer), which the RQ3 page shows beside it.

Example::

    out = rq3.run(ws)
    out["summary"][["setting", "pair", "attack", "n_flipped", "share_changed_exit0"]]
    rq3.finding_6(out["per_image"]), rq3.finding_7(out["per_image"])
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, models, verdicts
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
    early the first exit sits).

    Uncertainty: ``n_changed_exit0`` counts the flipped inputs changed at exit 0; flip_rate
    (over n), share_changed_exit0 and share_not_changed_exit0 (over n_flipped) have 95 % Wilson
    bounds ``X_lo``, ``X_hi`` (percent)."""
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
                     "n_flipped": int(flipped.sum()), "n_changed_exit0": int((first == 0).sum()),
                     "flip_rate": 100.0 * float(flipped.mean()),
                     "share_changed_exit0": share0,
                     "share_not_changed_exit0": 100.0 - share0 if not math.isnan(share0) else math.nan,
                     "mean_first_changed_exit": float(first[flipped].mean()) if flipped.any() else math.nan,
                     "first_exit_distribution": dist, "num_exits": E,
                     "first_exit_cost": float(macs[0]) / float(macs[-1])})
    out = pd.DataFrame(rows)
    if len(out):
        metrics.wilson_columns(out, "flip_rate", out["n_flipped"], out["n"])
        metrics.wilson_columns(out, "share_changed_exit0", out["n_changed_exit0"], out["n_flipped"])
        metrics.wilson_columns(out, "share_not_changed_exit0", out["n_flipped"] - out["n_changed_exit0"],
                               out["n_flipped"])
    return out


EXIT0_READINGS: dict[str, str] = {
    "changed": "its own benign answer (protocol)",
    "not_label": "the true label",
    "not_final": "the benign final answer",
}
"""Readings of the paper's "the label is modified in the first exit" (§5.2): exit 0's answer on
the adversarial input differs from ... (value); see :func:`exit0_readings`."""


def exit0_readings(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, model, attack, ε): the share (%) of flipped inputs (final answer changed)
    whose exit 0 counts as changed under each reading of :data:`EXIT0_READINGS`
    (``share_<reading>``, with counts ``n_<reading>`` and 95 % Wilson ``_lo``/``_hi``), and
    ``share_wrong_benign``: those whose exit 0 was already wrong (answer != label) on the benign
    input, which the last two readings count as changed whatever the attack did. ``n_flipped``
    is every share's denominator (shares NaN when it is 0).

    The paper does not say which reading its Figures 5-6 use; the protocol (section 8) takes the
    first, so :func:`summarise` and the findings use it, and this table shows how far the
    others would move the share."""
    df = per_image if "final_flipped" in per_image else add_first_changed(per_image)
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=False):
        flipped = g["final_flipped"].to_numpy(dtype=bool)
        pc0 = np.fromiter((v[0] for v in g["pred_clean"]), dtype=np.int64, count=len(g))[flipped]
        pa0 = np.fromiter((v[0] for v in g["pred_adv"]), dtype=np.int64, count=len(g))[flipped]
        final_clean = np.fromiter((v[-1] for v in g["pred_clean"]), dtype=np.int64, count=len(g))[flipped]
        label = g["label"].to_numpy(dtype=np.int64)[flipped]
        counts = {"changed": pa0 != pc0, "not_label": pa0 != label, "not_final": pa0 != final_clean,
                  "wrong_benign": pc0 != label}
        n = int(flipped.sum())
        row = {**dict(zip(GROUP_KEYS, key)), "model": key[GROUP_KEYS.index("target_arch")], "n": len(g), "n_flipped": n}
        for name, hit in counts.items():
            row[f"n_{name}"] = int(hit.sum())
            row[f"share_{name}"] = 100.0 * float(hit.mean()) if n else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        for name in (*EXIT0_READINGS, "wrong_benign"):
            metrics.wilson_columns(out, f"share_{name}", out[f"n_{name}"], out["n_flipped"])
    return out


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

def _per_image(per_image: pd.DataFrame, who: str) -> pd.DataFrame:
    missing = [c for c in ("image", *GROUP_KEYS) if c not in per_image.columns]
    if missing:
        raise ValueError(f"{who} decides with a bootstrap over images and needs the per-image table "
                         f"(run(...)['per_image']); the table given lacks {missing} (a summary?)")
    df = per_image if "first_changed_exit" in per_image.columns else add_first_changed(per_image)
    df = df.assign(flipped=df["first_changed_exit"].to_numpy() >= 0,
                   at_exit0=df["first_changed_exit"].to_numpy() == 0,
                   first_exit_cost=[float(m[0]) / float(m[-1]) for m in df["exit_macs"]])
    return df[df["num_exits"] > 1]


def _n_images(df: pd.DataFrame) -> int:
    return int(df[["dataset", "image"]].drop_duplicates().shape[0])


def finding_6(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 6: a first exit placed earlier makes the early exits more robust.

    Black-box, per (dataset, attack, ε): the target whose first exit is earliest (smallest
    ``exit_macs[0] / exit_macs[-1]``; VGG-16 with the protocol's architectures) against each
    other target. Deciding difference: the share of flipped inputs NOT changed at exit 0 on the
    earliest-exit target minus that share on the other (percentage points), with a seeded
    bootstrap over images (the targets are attacked on the same images; ``n_boot``, ``seed``).
    A comparison supports the finding when its 95 % interval lies above 0."""
    df = _per_image(per_image, "finding_6")
    bb = df[df["setting"] == "black-box"]
    comps = []
    for key, g in bb.groupby(["dataset", "attack", "eps_255"], sort=False):
        cost = g.groupby("target_arch")["first_exit_cost"].first()
        if len(cost) < 2:
            continue
        early = cost.idxmin()
        a = g[g["target_arch"] == early]
        for other in cost.index.drop(early):
            b = g[g["target_arch"] == other]
            d, lo, hi = metrics.bootstrap_rate_difference(a["image"], ~a["at_exit0"], a["flipped"], b["image"],
                                                          ~b["at_exit0"], b["flipped"], n_boot=n_boot, seed=seed)
            if math.isnan(d):
                continue
            comps.append({"dataset": key[0], "attack": key[1], "eps_255": float(key[2]), "earliest": early,
                          "other": other, "difference": d, "lo": lo, "hi": hi,
                          "n_flipped": (int(a["flipped"].sum()), int(b["flipped"].sum())),
                          "outcome": verdicts.compare(lo, hi, 0.0, ">")})
    claim = "an earlier first exit makes the early exits more robust"
    reason = "needs black-box results for at least two target models with flipped inputs"
    parts = "; ".join(f"{c['dataset']} {c['attack']} ε={c['eps_255']:g}/255: {c['earliest']} minus {c['other']} "
                      f"{fmt(c['difference'], ' pp', lo=c['lo'], hi=c['hi'])} (flipped inputs "
                      f"{c['n_flipped'][0]}/{c['n_flipped'][1]})" for c in comps)
    return {"finding": 6, "claim": claim, "verdict": verdict([c["outcome"] for c in comps], reason),
            "evidence": (f"black-box, share of flipped inputs NOT changed at exit 0, earliest-first-exit target minus "
                         f"each other target, 95 % bootstrap intervals over {_n_images(bb)} images: {parts}"
                         if comps else f"not testable: {reason}"),
            "n_images": _n_images(bb), "comparisons": len(comps),
            "comparisons_holding": sum(c["outcome"] == "supports" for c in comps), "details": comps}


def finding_7(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 7: black-box attacks hurt the early exits less than white-box ones.

    Per (dataset, target architecture, attack, ε): the share of flipped inputs changed at exit 0,
    black-box minus white-box (percentage points), with a seeded bootstrap over images (the same
    evaluation images; ``n_boot``, ``seed``); a comparison supports the finding when its 95 %
    interval lies below 0.

    Confounded by design (protocol sections 7-8, as in the paper): the white-box rows attack the
    CNN and read its IC-only DyNN, the black-box rows attack a CNN surrogate trained on the
    SDN-trained DyNN's answers and read that SDN-trained DyNN. The two settings differ in the
    attack *and* in the target's training recipe (and its surrogate), so a difference cannot be
    attributed to the attack setting alone."""
    df = _per_image(per_image, "finding_7")
    comps = []
    for key, g in df.groupby(["dataset", "target_arch", "attack", "eps_255"], sort=False):
        w, b = g[g["setting"] == "white-box"], g[g["setting"] == "black-box"]
        if not len(w) or not len(b):
            continue
        d, lo, hi = metrics.bootstrap_rate_difference(b["image"], b["at_exit0"], b["flipped"], w["image"],
                                                      w["at_exit0"], w["flipped"], n_boot=n_boot, seed=seed)
        if math.isnan(d):
            continue
        comps.append({"dataset": key[0], "target_arch": key[1], "attack": key[2], "eps_255": float(key[3]),
                      "difference": d, "lo": lo, "hi": hi, "outcome": verdicts.compare(lo, hi, 0.0, "<"),
                      "blackbox": 100.0 * b["at_exit0"].sum() / max(int(b["flipped"].sum()), 1),
                      "whitebox": 100.0 * w["at_exit0"].sum() / max(int(w["flipped"].sum()), 1)})
    claim = "black-box attacks change the first exit less often than white-box"
    confound = ("confounded: white-box reads the IC-only DyNN of the attacked CNN, black-box the SDN-trained "
                "DyNN through a CNN surrogate, so setting and training recipe differ together")
    reason = "needs white-box and black-box results with flipped inputs for the same model"
    parts = "; ".join(f"{c['dataset']} {c['target_arch']} {c['attack']} ε={c['eps_255']:g}/255: black-box "
                      f"{fmt(c['blackbox'], '%')} vs white-box {fmt(c['whitebox'], '%')}, difference "
                      f"{fmt(c['difference'], ' pp', lo=c['lo'], hi=c['hi'])}" for c in comps)
    out = {"finding": 7, "claim": claim, "verdict": verdict([c["outcome"] for c in comps], reason),
           "evidence": (f"share of flipped inputs changed at exit 0, black-box minus white-box, 95 % bootstrap "
                        f"intervals over {_n_images(df)} images: {parts}. {confound}" if comps
                        else f"not testable: {reason}. {confound}"),
           "n_images": _n_images(df), "comparisons": len(comps),
           "comparisons_holding": sum(c["outcome"] == "supports" for c in comps), "confounded": confound,
           "details": comps}
    if comps:
        out["mean_blackbox"] = float(np.mean([c["blackbox"] for c in comps]))
        out["mean_whitebox"] = float(np.mean([c["whitebox"] for c in comps]))
    return out


def finding_8(summaries: Sequence[pd.DataFrame]) -> dict:
    """Finding 8: in the black-box setting the early exits are less robust for the dataset with
    the larger models (CIFAR-100 vs CIFAR-10): the share of flipped inputs changed at exit 0 is
    higher there, in matched cells only (same pair, target kind, attack, ε), each with the 95 %
    Newcombe interval of the difference (two independent image sets,
    :func:`common.compare_datasets`); a cell supports the finding when it lies above 0. With one
    dataset the verdict is "not testable"."""
    if isinstance(summaries, pd.DataFrame):
        summaries = [summaries]
    bb = [s[s["setting"] == "black-box"] for s in summaries]
    comps, what = compare_datasets(bb, "share_changed_exit0", ["pair", "target_kind", "attack", "eps_255"],
                                   count="n_changed_exit0", total="n_flipped")
    claim = "black-box, early exits are less robust to examples from a larger surrogate model"
    if not comps:
        return {"finding": 8, "claim": claim, "verdict": verdict([], what), "evidence": f"not testable: {what}",
                "comparisons": 0, "n_images": 0}
    for c in comps:
        c["outcome"] = verdicts.compare(c["lo"], c["hi"], 0.0, ">")
    n_images = int(pd.concat(bb, ignore_index=True).groupby("dataset")["n"].max().sum())
    cells = "; ".join(f"{' '.join(str(k) for k in c['key'])}: {fmt(c['larger'], '%')} of {c['n_larger']} vs "
                      f"{fmt(c['smaller'], '%')} of {c['n_smaller']} flipped, difference "
                      f"{fmt(c['difference'], ' pp', lo=c['lo'], hi=c['hi'])}" for c in comps)
    return {"finding": 8, "claim": claim, "verdict": verdict([c["outcome"] for c in comps]),
            "evidence": (f"{what}: share changed at exit 0, matched cells only, 95 % Newcombe intervals; above 0 in "
                         f"{sum(c['outcome'] == 'supports' for c in comps)} of {len(comps)} cells ({cells})"),
            "comparisons": len(comps), "comparisons_holding": sum(c["outcome"] == "supports" for c in comps),
            "n_images": n_images}


__all__ = ["run", "add_first_changed", "summarise", "first_exit_table", "EXIT0_READINGS", "exit0_readings",
           "finding_6", "finding_7", "finding_8"]
