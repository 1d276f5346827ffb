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
    rq2.finding_3(out["per_image"]); rq2.finding_5([summary_c10, summary_c100])
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, models, verdicts
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


def _tau_label(tau, g: pd.DataFrame) -> float | str:
    """The τ a summary row used: a number for one global τ, else the per-exit list as text."""
    if tau is None:
        t = g["tau"].astype(float)
        if t.notna().all():
            return float(t.mean())
        return str([round(float(v), 4) for v in g["taus"].iloc[0]]) if "taus" in g.columns else float("nan")
    if isinstance(tau, dict):
        tau = tau.get(str(g["target_arch"].iloc[0]))
    return float(tau) if isinstance(tau, (int, float)) else str([float(v) for v in tau])


def summarise(per_image: pd.DataFrame, tau: float | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (setting, model, attack, ε): n (images), mean delta_exit, % raised by more than one exit
    (:func:`dynn_lib.metrics.share_exit_raised`), % raised / lowered at all, mean delta MACs,
    mean per-image relative MACs change (%), total MACs change (% of the benign total), mean
    exits, the internal-exit confidence drop and its Spearman correlation with delta_exit.
    Pure: recomputes the deployed exits at ``tau`` (None: the stored τ) from the table.

    Uncertainty: each share ``X`` (percent) has its count ``n_X`` and 95 % Wilson bounds ``X_lo``,
    ``X_hi``; ``mean_delta_exit`` and ``total_macs_change`` have seeded bootstrap-over-images
    intervals (``_lo``/``_hi``, ``n_boot`` replicates, ``seed``; the latter is Finding 3's)."""
    df = add_deltas(per_image, tau)
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=False):
        d = g["delta_exit"].to_numpy(copy=True)
        drop = g["conf_internal_clean"].to_numpy() - g["conf_internal_adv"].to_numpy()
        _, dlo, dhi = metrics.bootstrap_mean(g["image"].to_numpy(), d.astype(np.float64), n_boot=n_boot, seed=seed)
        total, tlo, thi = total_macs_change(g, n_boot, seed)
        rows.append({**dict(zip(GROUP_KEYS, key)), "model": key[GROUP_KEYS.index("target_arch")],
                     "tau": _tau_label(tau, g),
                     "n": len(g), "mean_delta_exit": float(d.mean()), "mean_delta_exit_lo": dlo,
                     "mean_delta_exit_hi": dhi,
                     "share_raised_gt1": metrics.share_exit_raised(d, more_than=1),
                     "share_raised": metrics.share_exit_raised(d, more_than=0),
                     "share_lowered": 100.0 * float((d < 0).mean()),
                     "n_raised_gt1": int((d > 1).sum()), "n_raised": int((d > 0).sum()),
                     "n_lowered": int((d < 0).sum()),
                     "mean_exit_clean": float(g["exit_clean"].mean()), "mean_exit_adv": float(g["exit_adv"].mean()),
                     "mean_delta_macs": float(g["delta_macs"].mean()),
                     "mean_rel_macs_change": 100.0 * float(g["rel_macs_change"].mean()),
                     "total_macs_change": total, "total_macs_change_lo": tlo, "total_macs_change_hi": thi,
                     "mean_conf_drop": float(drop.mean()), "conf_drop_vs_delta_exit": _spearman(drop, d)})
    out = pd.DataFrame(rows)
    for col in ("share_raised_gt1", "share_raised", "share_lowered"):
        if len(out):
            metrics.wilson_columns(out, col, out["n_" + col.removeprefix("share_")], out["n"])
    return out


def run(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), archs: Sequence[str] = models.ARCHS,
        pairs: Sequence[Pair] | None = None, tau: float | None = None) -> dict[str, pd.DataFrame]:
    """RQ2 on ``ws``: ``per_image`` (white-box tables of ``archs`` + black-box S2D tables, with
    :func:`add_deltas` columns) and ``summary`` (:func:`summarise`)."""
    raw = setting_tables(ws, cfg, archs, pairs)
    return {"per_image": add_deltas(raw, tau), "summary": summarise(raw, tau)}


# ---------------------------------------------------------------- findings

def _settings(per_image: pd.DataFrame, who: str, tau: float | None = None):
    """(key, rows) per (setting, model, attack, ε) of the per-image table (deltas added when absent)."""
    missing = [c for c in ("image", *GROUP_KEYS) if c not in per_image.columns]
    if missing:
        raise ValueError(f"{who} decides with a bootstrap over images and needs the per-image table "
                         f"(run(...)['per_image']); the table given lacks {missing} (a summary?)")
    df = per_image if "delta_exit" in per_image.columns and tau is None else add_deltas(per_image, tau)
    return df, list(df.groupby(list(GROUP_KEYS), sort=False))


def _boot_positions(image: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights float64 [n_boot, images], position of each row's image) of a bootstrap over images."""
    ids, pos = np.unique(image, return_inverse=True)
    return metrics.bootstrap_weights(ids.size, n_boot, seed).astype(np.float64), pos


def total_macs_change(g: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """``(change, lo, hi)``: the total MACs on the adversarial inputs of ``g`` (one setting), % of
    the benign total (``100 * (sum macs_adv / sum macs_clean - 1)``), and its 95 % seeded
    bootstrap-over-images interval (NaN bounds below :data:`dynn_lib.metrics.MIN_BOOTSTRAP_IMAGES`
    images)."""
    mc, ma = g["macs_clean"].to_numpy(np.float64), g["macs_adv"].to_numpy(np.float64)
    W, pos = _boot_positions(g["image"].to_numpy(), n_boot, seed)
    sc = W @ np.bincount(pos, weights=mc)
    sa = W @ np.bincount(pos, weights=ma)
    lo, hi = metrics.percentile_interval(100.0 * (sa / sc - 1.0), n_images=W.shape[1])
    return float(100.0 * (ma.sum() / mc.sum() - 1.0)), lo, hi


def _label(key) -> str:
    k = dict(zip(GROUP_KEYS, key))
    return f"{k['dataset']} {k['setting']} {k['pair']} {k['attack']} ε={k['eps_255']:g}/255"


def finding_3(per_image: pd.DataFrame, threshold: float = 10.0, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 3: accuracy-based adversarial examples do not decrease a DyNN's efficiency
    significantly.

    Deciding quantity, per (setting, model, attack, ε): the total MACs change on adversarial
    inputs, % of the benign total (``100 * (sum macs_adv / sum macs_clean - 1)``), with a seeded
    bootstrap over images (``n_boot``, ``seed``). "Significantly" = above ``threshold`` % (a
    parameter, default 10: the paper gives no number). A setting supports the finding when its
    95 % interval lies below the threshold, is against it when above, inconclusive otherwise.
    """
    threshold = verdicts.check_threshold("threshold", threshold)
    df, groups = _settings(per_image, "finding_3")
    comps = []
    for key, g in groups:
        if (g["target_kind"] == "cnn").all():
            continue
        est, lo, hi = total_macs_change(g, n_boot, seed)
        comps.append({"key": key, "label": _label(key), "change": float(est), "lo": lo, "hi": hi, "n": len(g),
                      "outcome": verdicts.compare(lo, hi, threshold, "<")})
    n_images = int(df[["dataset", "image"]].drop_duplicates().shape[0])
    worst = max(comps, key=lambda c: c["hi"] if not math.isnan(c["hi"]) else -math.inf) if comps else None
    ev = (f"total MACs change over benign inputs, with 95 % bootstrap intervals over {n_images} images: "
          + "; ".join(f"{c['label']}: {fmt(c['change'], ' %', lo=c['lo'], hi=c['hi'])}" for c in comps)
          + f". Threshold {threshold:g} %: {sum(c['outcome'] == 'supports' for c in comps)} of {len(comps)} "
          f"settings' intervals lie below it")
    if worst is not None:
        ev += f"; highest upper bound: {worst['label']}"
    return {"finding": 3, "claim": "accuracy-based adversarial examples do not decrease DyNN efficiency significantly",
            "verdict": verdict([c["outcome"] for c in comps], "no DyNN target in the table"), "evidence": ev,
            "threshold_pct": threshold, "n_images": n_images,
            "max_total_macs_change": max((c["change"] for c in comps), default=math.nan),
            "settings": len(comps), "settings_holding": sum(c["outcome"] == "supports" for c in comps),
            "comparisons": comps}


def _weighted_corr(W: np.ndarray, pos: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per replicate (row of W), the Pearson correlation of ``a`` and ``b`` weighted by how often
    each row's image was drawn."""
    w = W[:, pos]
    sw = w.sum(1)
    ma, mb = (w @ a) / sw, (w @ b) / sw
    cov = (w @ (a * b)) / sw - ma * mb
    va, vb = (w @ (a * a)) / sw - ma ** 2, (w @ (b * b)) / sw - mb ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((va > 1e-12) & (vb > 1e-12), cov / np.sqrt(np.maximum(va * vb, 1e-300)), np.nan)


def finding_4(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 4: adversarial examples that lower the output confidence more decrease efficiency
    more.

    Deciding quantity, per (setting, model, attack, ε) of a DyNN target: the Spearman
    correlation, over images, between the drop of the mean internal-exit confidence and
    delta_exit, with a seeded bootstrap over images (``n_boot``, ``seed``; each replicate is the
    correlation of the full-sample ranks weighted by how often each image is drawn, a standard
    cheap approximation of re-ranking every replicate). A setting supports the finding when the
    95 % interval lies above 0. (Partly built in: an exit fires on confidence, so lower early
    confidence means a later exit.) The evidence also gives, per attack, the mean confidence
    drop and % raised by more than one exit."""
    df, groups = _settings(per_image, "finding_4")
    comps = []
    for key, g in groups:
        if (g["target_kind"] == "cnn").all() or len(g) < 3:
            continue
        drop = (g["conf_internal_clean"] - g["conf_internal_adv"]).to_numpy(np.float64)
        d = g["delta_exit"].to_numpy(np.float64)
        rho = _spearman(drop, d)
        if math.isnan(rho):
            continue
        ra, rb = pd.Series(drop).rank().to_numpy(), pd.Series(d).rank().to_numpy()
        W, pos = _boot_positions(g["image"].to_numpy(), n_boot, seed)
        lo, hi = metrics.percentile_interval(_weighted_corr(W, pos, ra, rb), n_images=W.shape[1])
        comps.append({"key": key, "label": _label(key), "rho": rho, "lo": lo, "hi": hi, "n": len(g),
                      "outcome": verdicts.compare(lo, hi, 0.0, ">")})
    n_images = int(df[["dataset", "image"]].drop_duplicates().shape[0])
    median = float(np.median([c["rho"] for c in comps])) if comps else math.nan
    dyn = df[df["target_kind"] != "cnn"]
    att = "; ".join(f"{a}: confidence drop {float((g['conf_internal_clean'] - g['conf_internal_adv']).mean()):.3f}, "
                    f"raised >1 {fmt(100.0 * float((g['delta_exit'] > 1).mean()), '%')}"
                    for a, g in dyn.groupby("attack", sort=False))
    return {"finding": 4, "claim": "examples with lower output confidence decrease efficiency more",
            "verdict": verdict([c["outcome"] for c in comps], "no setting with a defined correlation"),
            "evidence": (f"Spearman(confidence drop, exit change) with 95 % bootstrap intervals over {n_images} "
                         f"images: " + "; ".join(f"{c['label']}: {fmt(c['rho'], digits=2, lo=c['lo'], hi=c['hi'])}"
                                                  for c in comps)
                         + f". Above 0 in {sum(c['outcome'] == 'supports' for c in comps)} of {len(comps)} settings "
                         f"(median {fmt(median, digits=2)}); per attack: {att}"),
            "median_correlation": median, "n_images": n_images, "settings": len(comps),
            "settings_holding": sum(c["outcome"] == "supports" for c in comps), "comparisons": comps}


def finding_5(summaries: Sequence[pd.DataFrame]) -> dict:
    """Finding 5: examples generated on a larger model (CIFAR-100's, more parameters) decrease
    efficiency more.

    Compares % raised by more than one exit between the two datasets in matched cells only
    (same setting, pair, target kind, attack and ε; each setting, white-box and black-box, on
    its own), each with the 95 % Newcombe interval of the difference (two independent image
    sets, :func:`common.compare_datasets`); a cell supports the finding when the interval lies
    above 0. With one dataset the verdict is "not testable"."""
    if isinstance(summaries, pd.DataFrame):
        summaries = [summaries]
    keys = ["setting", "pair", "target_kind", "attack", "eps_255"]
    claim = "examples from a larger model decrease efficiency more"
    comps, what = compare_datasets(summaries, "share_raised_gt1", keys, count="n_raised_gt1", total="n")
    if not comps:
        return {"finding": 5, "claim": claim, "verdict": verdict([], what), "evidence": f"not testable: {what}",
                "comparisons": 0, "n_images": 0}
    for c in comps:
        c["outcome"] = verdicts.compare(c["lo"], c["hi"], 0.0, ">")
    per_setting = {}
    for c in comps:
        per_setting.setdefault(c["key"][0], []).append(c["outcome"])
    n_images = max(c["n_larger"] for c in comps) + max(c["n_smaller"] for c in comps)
    cells = "; ".join(f"{' '.join(str(k) for k in c['key'])}: {fmt(c['larger'], '%')} vs {fmt(c['smaller'], '%')}, "
                      f"difference {fmt(c['difference'], ' pp', lo=c['lo'], hi=c['hi'])}" for c in comps)
    return {"finding": 5, "claim": claim, "verdict": verdict([c["outcome"] for c in comps]),
            "evidence": (f"{what}: % raised by more than one exit, matched cells only, 95 % Newcombe intervals; "
                         + "; ".join(f"{s}: {verdict(o)} ({o.count('supports')} of {len(o)} cells above 0)"
                                     for s, o in per_setting.items()) + f" ({cells})"),
            "comparisons": len(comps), "comparisons_holding": sum(c["outcome"] == "supports" for c in comps),
            "per_setting": {s: verdict(o) for s, o in per_setting.items()}, "n_images": n_images}


__all__ = ["run", "add_deltas", "summarise", "finding_3", "finding_4", "finding_5", "DERIVED_COLUMNS"]
