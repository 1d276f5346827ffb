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
* ``generation_time`` (Finding 2): seconds and forward MACs per adversarial example per
  surrogate model, SDNN and DyNN side by side.
* ``surrogates``: each DyNN surrogate's τ as the attacker calibrated it, whether it keeps the
  protocol's rule, and its agreement with the target's answers on the held-out images.

Example::

    ws = Workspace("cifar10", "paper")
    out = rq1.run(ws, ExperimentConfig(eps=(8/255,)))
    rq1.finding_1(out["per_image"]), rq1.finding_2(out["per_image"])
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, verdicts
from ..blackbox import PAIRS, Pair, surrogate_calibration
from ..progress import progress
from ..zoo import Workspace
from .common import exit_costs, ExperimentConfig, deployed, fmt, num_exits, transfer_table, verdict

SUMMARY_KEYS = ["dataset", "direction", "pair", "surrogate_arch", "surrogate_kind", "target_arch", "target_kind",
                "attack", "eps", "eps_255"]

SHOWN_COLUMNS = ("dataset", "direction", "pair", "attack", "eps_255", "success_rate", "success_rate_all", "n",
                 "n_correct", "clean_accuracy", "seconds_per_example", "mean_psnr")
"""The columns of :func:`summarise` that the book shows per pair (Table RQ1.1, and Table A.2 for
the second dataset), each with its interval columns (:func:`dynn_lib.display.with_intervals`)."""


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


def shared_seconds(rows: pd.DataFrame) -> bool:
    """Whether any of these attack rows was timed while other jobs of the run could use the same
    device (``gen_seconds_shared``; a Ray run sharing GPUs or nodes), so that its wall time says
    little about the attack itself. False for tables from before the column (TABLE_VERSION < 4)."""
    return bool(rows["gen_seconds_shared"].any()) if "gen_seconds_shared" in rows else False


def summarise(per_image: pd.DataFrame, tau: float | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Success rates per (dataset, direction, pair, attack, ε) from per-image rows (pure; ``tau``
    overrides the DyNN targets' τ as in :func:`common.deployed`).

    success_rate: % over images the target classifies correctly when benign (``nan`` if none),
    with ``n_correct`` images; success_rate_all: % of all ``n`` images misclassified after the
    attack; each with its 95 % Wilson interval (``<rate>_lo``, ``<rate>_hi``, percent; ``n_success``
    and ``n_wrong_adv`` are the numerators); clean_accuracy: % of the ``n`` images the target
    classifies correctly when benign, in its deployed mode, with its Wilson interval
    (``n_correct`` of ``n``). seconds_per_example: the surrogate's attack wall time
    per example (``seconds_shared``: timed while other jobs of the run could use the device, see
    :func:`shared_seconds`); mean_psnr (dB) with a seeded bootstrap-over-images interval
    (``mean_psnr_lo``, ``mean_psnr_hi``; ``n_boot`` replicates, ``seed``).
    """
    df = add_success(per_image, tau)
    rows = []
    for key, g in df.groupby(SUMMARY_KEYS, sort=False):
        pc, pa, y = (g[c].to_numpy(copy=True) for c in ("deployed_pred_clean", "deployed_pred_adv", "label"))
        psnr, lo, hi = metrics.bootstrap_mean(g["image"].to_numpy(), g["psnr"].to_numpy(dtype=float), n_boot=n_boot,
                                                seed=seed)
        rows.append({**dict(zip(SUMMARY_KEYS, key)),
                     "success_rate": metrics.success_rate(pc, pa, y, over="correct"),
                     "success_rate_all": metrics.success_rate(pc, pa, y, over="all"),
                     "n": len(g), "n_correct": int(g["correct_clean"].sum()),
                     "n_success": int(g["success"].sum()), "n_wrong_adv": int((pa != y).sum()),
                     "clean_accuracy": 100.0 * float(g["correct_clean"].mean()),
                     "seconds_per_example": metrics.time_per_example(float(g["gen_seconds"].sum()), len(g)),
                     "seconds_shared": shared_seconds(g),
                     "mean_psnr": metrics.mean_psnr(g["psnr"].to_numpy(copy=True)),
                     "mean_psnr_lo": lo, "mean_psnr_hi": hi})
    out = pd.DataFrame(rows)
    if len(out):
        metrics.wilson_columns(out, "success_rate", out["n_success"], out["n_correct"])
        metrics.wilson_columns(out, "success_rate_all", out["n_wrong_adv"], out["n"])
        metrics.wilson_columns(out, "clean_accuracy", out["n_correct"], out["n"])
    return out


def exit_used(per_image: pd.DataFrame, num_classes: int = 10, input_size: int = 32) -> pd.DataFrame:
    """Fig. 7: per D2S pair, attack and ε, the fraction of examples per surrogate exit used.

    Columns: dataset, pair, surrogate_arch, attack, eps, eps_255, exit, count, n (examples of the
    group), fraction (count / n, in [0, 1]) with its 95 % Wilson interval ``fraction_lo``,
    ``fraction_hi`` (fractions too), cumulative (share of examples from exits <= exit). Exit -1
    (several exits in the loss, ``exit_loss="mean"``) is its own row when present.
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
            lo, hi = metrics.wilson_interval(c, len(g))
            rows.append({**dict(zip(keys, key)), "exit": e, "count": c, "n": len(g), "fraction": c / len(g),
                         "fraction_lo": lo / 100, "fraction_hi": hi / 100, "cumulative": cum / len(g)})
    cols = keys + ["exit", "count", "n", "fraction", "fraction_lo", "fraction_hi", "cumulative"]
    return pd.DataFrame(rows, columns=cols)


GENERATION_KEYS = ["dataset", "direction", "pair", "surrogate_arch", "surrogate_kind", "attack", "eps", "eps_255"]
"""One surrogate attack table (what :func:`generation_time` groups by)."""


def generation_time(per_image: pd.DataFrame, num_classes: int = 10, input_size: int = 32, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Finding 2: cost per adversarial example of each surrogate model (one per pair), per attack
    and ε, SDNN ("cnn") and DyNN surrogates side by side (column ``surrogate``).

    ``seconds_per_example``: measured attack wall time per example (``gen_seconds``; DyNN
    surrogates run the truncated path, stopping each step at the exit it uses), from
    ``n_batches`` timed batches (``seconds_shared``: see :func:`shared_seconds`).
    ``macs_per_example``: mean forward MACs the attack spent per example over all its steps
    (``gen_macs``: each step up to the exit it stopped at), with a seeded bootstrap-over-images
    95 % interval (``macs_per_example_lo``, ``_hi``; ``n_boot`` replicates, ``seed``).
    ``macs_per_step``: mean MACs of the forward up to the exit each example's *last* step used
    (from a freshly built model of the architecture); ``full_macs``: the whole surrogate (every
    exit). ``n``: examples. MACs count forward passes only (a backward pass costs about twice its
    forward, for either kind).
    """
    rows = []
    for k, g in per_image.groupby(GENERATION_KEYS, sort=False):
        costs = exit_costs(k[3], k[4], num_classes, input_size)
        used = g["surrogate_exit"].to_numpy()
        macs = [costs[e] if 0 <= e < len(costs) else costs[-1] for e in used]
        if "gen_macs" in g:
            mpe, lo, hi = metrics.bootstrap_mean(g["image"].to_numpy(), g["gen_macs"].to_numpy(dtype=float),
                                                 n_boot=n_boot, seed=seed)
        else:  # a table from before the MAC count (TABLE_VERSION < 3)
            mpe = lo = hi = math.nan
        rows.append({**dict(zip(GENERATION_KEYS, k)), "surrogate": ("DyNN" if k[4] != "cnn" else "SDNN"),
                     "seconds_per_example": metrics.time_per_example(float(g["gen_seconds"].sum()), len(g)),
                     "seconds_shared": shared_seconds(g),
                     "n_batches": int(g["gen_batch"].nunique()) if "gen_batch" in g else math.nan,
                     "macs_per_example": mpe, "macs_per_example_lo": lo, "macs_per_example_hi": hi,
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
            "generation_time": generation_time(raw, ws.info.num_classes, ws.info.input_size),
            "surrogates": surrogates(ws, pairs)}


SURROGATE_COLUMNS = ["dataset", "direction", "pair", "surrogate_arch", "target_arch", "target_kind", "tau",
                     "tau_meets_rule", "n_holdout", "early_exit_agreement", "final_agreement", "mean_exit",
                     "macs_ratio"]

SURROGATE_LABELS = {"tau_meets_rule": "τ keeps the rule", "n_holdout": "held-out images", "target_kind": "target kind",
                    "early_exit_agreement": "early-exit agreement (%)", "final_agreement": "final-exit agreement (%)",
                    "mean_exit": "mean exit", "macs_ratio": "MACs ratio"}
"""Column headings of :func:`surrogates` in the book (Table RQ1.3, and Table A.3 for a second dataset)."""


def surrogates(ws: Workspace, pairs: Sequence[Pair] | None = None) -> pd.DataFrame:
    """The DyNN surrogates of ``pairs`` (default all of :data:`PAIRS`; CNN surrogates have no τ) as
    the attacker deploys them (:func:`dynn_lib.blackbox.surrogate_calibration`), one row per pair.

    ``tau``: the calibrated τ; ``tau_meets_rule``: False when no τ of the grid keeps the rule and
    the surrogate runs at the grid's largest, so that it rarely exits early (None: a calibration
    stored before the flag existed). ``early_exit_agreement`` and ``final_agreement`` (%, with 95 %
    Wilson ``_lo``/``_hi``): how often its early-exit answer at τ, and its final exit's, equal the
    target's answer on the ``n_holdout`` held-out clean query images; ``mean_exit`` (0-based) and
    ``macs_ratio`` (mean MACs over the whole DyNN's) of early exit there.
    """
    rows = []
    for pair in (PAIRS if pairs is None else pairs):
        cal = surrogate_calibration(ws, pair)
        if cal is None:
            continue
        meets = cal.get("meets_rule")
        rows.append({"dataset": ws.dataset, "direction": pair.direction, "pair": pair.short,
                     "surrogate_arch": pair.surrogate_arch, "target_arch": pair.target_arch,
                     "target_kind": pair.target_kind, "tau": float(cal["tau"]),
                     "tau_meets_rule": None if meets is None else bool(meets), "n_holdout": int(cal["n_holdout"]),
                     "early_exit_agreement": 100.0 * float(cal["accuracy"]),
                     "final_agreement": 100.0 * float(cal["final_accuracy"]), "mean_exit": float(cal["mean_exit"]),
                     "macs_ratio": float(cal["macs_ratio"]) if cal.get("macs_ratio") is not None else math.nan})
    out = pd.DataFrame(rows, columns=SURROGATE_COLUMNS)
    for col in ("early_exit_agreement", "final_agreement"):
        metrics.wilson_columns(out, col, (out[col] / 100 * out["n_holdout"]).round(), out["n_holdout"])
    return out


def fallback_note(table: pd.DataFrame) -> str:
    """One sentence for the RQ1 page from :func:`surrogates`: which DyNN surrogates run at the
    fallback τ (their ``tau_meets_rule`` is False), or that every one keeps the rule."""
    if table.empty:
        return "This run has no early-exit surrogate."
    missed = table[table["tau_meets_rule"].eq(False)]
    n, unknown = len(table), int(table["tau_meets_rule"].isna().sum())
    if len(missed):
        names = ", ".join(f"{p} (τ {t:g})" for p, t in zip(missed["pair"], missed["tau"]))
        one = len(missed) == 1
        said = (f"{len(missed)} of the {n} early-exit surrogates {'keeps' if one else 'keep'} no τ of the grid "
                f"within the rule and {'is' if one else 'are'} deployed at its largest: {names}. "
                "A surrogate deployed so rarely exits early, which works against Finding 2.")
    elif unknown == 0:
        said = "The early-exit surrogate keeps the rule." if n == 1 else f"All {n} early-exit surrogates keep the rule."
    else:
        said = f"{n - unknown} of the {n} early-exit surrogates keep the rule."
    if unknown:
        said += (f" {unknown} of them {'has' if unknown == 1 else 'have'} no recorded flag (calibrated before it "
                 "was recorded).")
    return said.strip()


# ---------------------------------------------------------------- findings

def _per_image_rows(table: pd.DataFrame, who: str, needs: Sequence[str]) -> None:
    missing = [c for c in needs if c not in table.columns]
    if missing:
        raise ValueError(f"{who} decides with a bootstrap over images and needs the per-image table "
                         f"(run(...)['per_image']); the table given lacks {missing} (a summary?)")


def finding_1(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 1: D2S transferability is higher than S2D.

    Deciding difference, per (dataset, attack, ε): the D2S success rate pooled over the D2S
    pairs minus the S2D rate pooled over the S2D pairs (both over target-correct images,
    percentage points), with a seeded bootstrap over images (``n_boot`` replicates, ``seed``;
    an image's rows in every pair move together, :func:`dynn_lib.metrics.bootstrap_rate_difference`).
    A group supports the finding when its 95 % interval lies above 0, is against it when below,
    inconclusive when it contains 0; the verdict combines the groups
    (:func:`dynn_lib.verdicts.combine`).

    Args:
        per_image: ``run(...)["per_image"]`` (or the raw transfer tables), one row per image,
            pair, attack and ε.
    Returns:
        ``{"finding", "claim", "verdict", "evidence", "n_images", "groups", "groups_holding",
        "comparisons": [{dataset, attack, eps_255, d2s, s2d, difference, lo, hi, outcome}],
        "mean_d2s", "mean_s2d"}`` (pooled rates, %).
    """
    _per_image_rows(per_image, "finding_1", ["image", "direction", "attack", "eps_255"])
    df = per_image if "success" in per_image.columns else add_success(per_image)
    comps = []
    for key, g in df.groupby(["dataset", "attack", "eps_255"], sort=False):
        d, s = g[g["direction"] == "D2S"], g[g["direction"] == "S2D"]
        if not len(d) or not len(s):
            continue
        diff, lo, hi = metrics.bootstrap_rate_difference(
            d["image"], d["success"], d["correct_clean"], s["image"], s["success"], s["correct_clean"],
            n_boot=n_boot, seed=seed)
        if math.isnan(diff):
            continue
        rd, rs = (100.0 * x["success"].sum() / max(int(x["correct_clean"].sum()), 1) for x in (d, s))
        comps.append({"dataset": key[0], "attack": key[1], "eps_255": float(key[2]), "d2s": float(rd),
                      "s2d": float(rs), "difference": diff, "lo": lo, "hi": hi,
                      "outcome": verdicts.compare(lo, hi, 0.0, ">")})

    def pooled(direction):
        x = df[df["direction"] == direction]
        n = int(x["correct_clean"].sum())
        return 100.0 * float(x["success"].sum()) / n if n else math.nan

    mean_d2s, mean_s2d = pooled("D2S"), pooled("S2D")
    n_images = int(df[["dataset", "image"]].drop_duplicates().shape[0])
    detail = "; ".join(f"{c['dataset']} {c['attack']} ε={c['eps_255']:g}/255: D2S {fmt(c['d2s'], '%')} vs S2D "
                       f"{fmt(c['s2d'], '%')}, difference {fmt(c['difference'], ' pp', lo=c['lo'], hi=c['hi'])} "
                       f"({c['outcome']})" for c in comps)
    holding = sum(c["outcome"] == "supports" for c in comps)
    return {"finding": 1, "claim": "D2S transferability is higher than S2D transferability",
            "verdict": verdict([c["outcome"] for c in comps], "no (dataset, attack, ε) with both directions"),
            "evidence": (f"success over target-correct images, pooled over pairs: D2S {fmt(mean_d2s, '%')}, S2D "
                         f"{fmt(mean_s2d, '%')} on {n_images} images; D2S minus S2D with a 95 % bootstrap "
                         f"interval over images ({n_boot} replicates, seed {seed}) above 0 in {holding} of "
                         f"{len(comps)} (dataset, attack, ε) groups" + (f" ({detail})" if detail else "")),
            "n_images": n_images, "mean_d2s": mean_d2s, "mean_s2d": mean_s2d, "groups": len(comps),
            "groups_holding": int(holding), "comparisons": comps}


def _t975(df: float) -> float:
    """Two-sided 95 % Student-t quantile for ``df`` degrees of freedom rounded down (fewer degrees,
    a wider interval): exact for 1 and 2, the Cornish-Fisher expansion (Abramowitz-Stegun 26.7.5)
    above, which can fall short of the exact quantile by up to 0.004 (3.1786 for 3.1824 at df 3,
    0.1 %; less above)."""
    d = math.floor(df)
    if d < 1:
        return math.nan
    if d == 1:
        return math.tan(math.pi * 0.475)
    if d == 2:
        return 0.95 / math.sqrt(2 * 0.975 * 0.025)
    z = metrics.Z95
    g = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
         (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
         (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(c / d ** (i + 1) for i, c in enumerate(g))


def welch_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Difference of two means ``mean(a) - mean(b)`` with a 95 % Welch interval (unequal variances,
    Welch-Satterthwaite degrees of freedom): ``(difference, lo, hi)``; NaN bounds when a side has
    fewer than 2 samples (one timing says nothing about its noise)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        return math.nan, math.nan, math.nan
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    d = ma - mb
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = _t975(df) * se
    return d, d - h, d + h


def _batch_seconds(rows: pd.DataFrame) -> list[float]:
    """Seconds per example of each timed attack batch (one sample per batch of each attack table)."""
    keys = [c for c in ("dataset", "pair", "attack", "eps_255", "gen_batch") if c in rows]
    return [float(g["gen_seconds"].mean()) for _, g in rows.groupby(keys, sort=False)]


def finding_2(per_image: pd.DataFrame, summary: pd.DataFrame | None = None, n_boot: int = 1000,
              seed: int = 0) -> dict:
    """Finding 2: DyNN surrogates generate adversarial examples more efficiently (and effectively).

    Comparisons: the DyNN and the SDNN surrogate of the *same architecture* (MobileNet and
    ResNet-56 exist as both), per (dataset, attack, ε); each gives two verdicts, DyNN minus
    SDNN with a 95 % interval, "supports" when the interval lies below 0:

    * ``verdict`` (the paper's argument): forward MACs per example over all attack steps
      (``gen_macs``; each step stops at the exit it uses), a seeded paired bootstrap over images
      (``n_boot``, ``seed``; both surrogates attack the same images);
    * ``time_verdict``: wall time per example. The samples are the timed attack batches (one
      per batch: its seconds per example), compared with a Welch interval; a side with fewer
      than 2 batches gives no interval, so "inconclusive". Wall time depends on the machine and
      its load; MACs do not. A comparison whose tables were timed while other jobs of the run
      could use the device (:func:`shared_seconds`) is left out of this verdict
      (``time_outcome`` "shared device"; none left: "not testable").

    Each verdict combines its comparisons (:func:`dynn_lib.verdicts.combine`). With ``summary``
    given (any table), ``effectiveness`` adds Finding 1's verdict on ``per_image``.

    Args:
        per_image: ``run(...)["per_image"]`` (or the raw transfer tables): needs ``image``,
            ``surrogate_kind``, ``gen_macs``, ``gen_seconds``, ``gen_batch``.
    Returns:
        ``{"finding", "claim", "verdict", "time_verdict", "evidence", "n_images",
        "comparisons": [{dataset, attack, eps_255, arch, macs_dynn, macs_sdnn, macs_difference,
        macs_lo, macs_hi, macs_outcome, seconds_dynn, seconds_sdnn, seconds_difference,
        seconds_lo, seconds_hi, time_outcome, seconds_shared, batches_dynn, batches_sdnn}],
        "comparisons_holding",
        "time_comparisons_holding", "mean_macs_dynn", "mean_macs_sdnn", "mean_seconds_dynn",
        "mean_seconds_sdnn"}`` (MACs per example, seconds per example; each mean over the
        same-architecture comparisons).
    """
    _per_image_rows(per_image, "finding_2", ["image", "surrogate_kind", "surrogate_arch", "gen_macs", "gen_seconds",
                                             "gen_batch"])
    comps = []
    for key, g in per_image.groupby(["dataset", "attack", "eps_255", "surrogate_arch"], sort=False):
        dy, sd = g[g["surrogate_kind"] != "cnn"], g[g["surrogate_kind"] == "cnn"]
        if not len(dy) or not len(sd):
            continue
        md, mlo, mhi = metrics.bootstrap_mean_difference(dy["image"], dy["gen_macs"].astype(float), sd["image"],
                                                         sd["gen_macs"].astype(float), paired=True, n_boot=n_boot,
                                                         seed=seed)
        bdy, bsd = _batch_seconds(dy), _batch_seconds(sd)
        td, tlo, thi = welch_interval(bdy, bsd)
        shared = shared_seconds(dy) or shared_seconds(sd)
        comps.append({"dataset": key[0], "attack": key[1], "eps_255": float(key[2]), "arch": key[3],
                      "macs_dynn": float(dy["gen_macs"].mean()), "macs_sdnn": float(sd["gen_macs"].mean()),
                      "macs_difference": md, "macs_lo": mlo, "macs_hi": mhi,
                      "macs_outcome": verdicts.compare(mlo, mhi, 0.0, "<"),
                      "seconds_dynn": float(dy["gen_seconds"].mean()), "seconds_sdnn": float(sd["gen_seconds"].mean()),
                      "seconds_difference": td, "seconds_lo": tlo, "seconds_hi": thi,
                      "time_outcome": "shared device" if shared else verdicts.compare(tlo, thi, 0.0, "<"),
                      "seconds_shared": shared, "batches_dynn": len(bdy), "batches_sdnn": len(bsd)})
    reason = "no architecture with both a DyNN and an SDNN surrogate"
    macs_v = verdict([c["macs_outcome"] for c in comps], reason)
    n_shared = sum(c["seconds_shared"] for c in comps)
    time_v = verdict([c["time_outcome"] for c in comps if not c["seconds_shared"]],
                     "the attacks were timed while other jobs of the run could use the same device"
                     if comps and n_shared == len(comps) else reason)
    # headline means over the same-architecture comparisons only (VGG-16 is a DyNN surrogate alone, and
    # MobileNet has two SDNN surrogates: a mean over all rows would compare other networks)
    mean = {(q, k): float(np.mean([c[f"{col}_{k.lower()}"] for c in comps])) if comps else math.nan
            for q, col in (("gen_macs", "macs"), ("gen_seconds", "seconds")) for k in ("DyNN", "SDNN")}
    n_images = int(per_image[["dataset", "image"]].drop_duplicates().shape[0])
    m_hold = sum(c["macs_outcome"] == "supports" for c in comps)
    t_hold = sum(c["time_outcome"] == "supports" for c in comps)

    def time_difference(c):
        return fmt(c["seconds_difference"] * 1e3, " ms", 2, c["seconds_lo"] * 1e3, c["seconds_hi"] * 1e3,
                   missing="a side has under 2 timed batches")

    parts = [f"{c['dataset']} {c['attack']} ε={c['eps_255']:g}/255 {c['arch']}: MACs DyNN {c['macs_dynn'] / 1e6:.1f} M "
             f"vs SDNN {c['macs_sdnn'] / 1e6:.1f} M, difference "
             f"{fmt(c['macs_difference'] / 1e6, ' M', lo=c['macs_lo'] / 1e6, hi=c['macs_hi'] / 1e6)} "
             f"({c['macs_outcome']}); time DyNN {c['seconds_dynn'] * 1e3:.2f} ms vs SDNN {c['seconds_sdnn'] * 1e3:.2f} ms, "
             f"difference {time_difference(c)} "
             f"over {c['batches_dynn']}+{c['batches_sdnn']} batches ({c['time_outcome']})" for c in comps]
    out = {"finding": 2, "claim": "DyNN surrogates generate adversarial examples more efficiently (and effectively)",
           "verdict": macs_v, "time_verdict": time_v,
           "evidence": (f"forward MACs per example over all attack steps (the paper's argument; each step stops at "
                        f"the exit it uses): DyNN {fmt(mean['gen_macs', 'DyNN'] / 1e6, ' M')} vs SDNN "
                        f"{fmt(mean['gen_macs', 'SDNN'] / 1e6, ' M')} (means over the comparisons), DyNN cheaper "
                        f"(95 % bootstrap interval over "
                        f"images below 0, {n_boot} replicates, seed {seed}) in {m_hold} of {len(comps)} "
                        f"same-architecture comparisons: {macs_v}. Wall time per example: DyNN "
                        f"{fmt(mean['gen_seconds', 'DyNN'] * 1e3, ' ms', 2)} vs SDNN "
                        f"{fmt(mean['gen_seconds', 'SDNN'] * 1e3, ' ms', 2)}, DyNN faster (95 % Welch interval over "
                        f"timed batches below 0) in {t_hold} of {len(comps)}"
                        + (f" ({n_shared} left out: timed while other jobs could use the device)" if n_shared else "")
                        + f": {time_v}. {n_images} images"
                        + (f": {'; '.join(parts)}" if parts else "")),
           "n_images": n_images, "comparisons": comps, "comparisons_holding": int(m_hold),
           "time_comparisons_holding": int(t_hold),
           "mean_macs_dynn": mean["gen_macs", "DyNN"], "mean_macs_sdnn": mean["gen_macs", "SDNN"],
           "mean_seconds_dynn": mean["gen_seconds", "DyNN"], "mean_seconds_sdnn": mean["gen_seconds", "SDNN"]}
    if summary is not None:
        f1 = finding_1(per_image, n_boot=n_boot, seed=seed)
        out["effectiveness"] = f1["verdict"]
        out["evidence"] += f"; effectiveness (Finding 1): {f1['verdict']}"
    return out


def share_early_exits(exit_used_df: pd.DataFrame, upto: int = 2) -> pd.DataFrame:
    """Share (%) of D2S examples generated from exits 0..``upto`` per pair, attack and ε (the
    paper: over 70 % from exits 0-2 for PGD), with ``n`` examples and the 95 % Wilson interval
    (``share_exits_0_<upto>_lo``, ``_hi``, percent)."""
    keys = ["dataset", "pair", "attack", "eps", "eps_255"]
    col = f"share_exits_0_{upto}"
    if exit_used_df.empty:
        return pd.DataFrame(columns=keys + [col, f"{col}_lo", f"{col}_hi", "n"])
    sel = exit_used_df.assign(early=(exit_used_df["exit"] >= 0) & (exit_used_df["exit"] <= upto))
    rows = []
    for k, g in sel.groupby(keys, sort=False):
        n = int(g["n"].iloc[0]) if "n" in g else int(g["count"].sum())
        c = int(g.loc[g["early"], "count"].sum())
        rows.append({**dict(zip(keys, k)), col: 100.0 * c / n if n else math.nan, "n": n, "count": c})
    out = pd.DataFrame(rows)
    metrics.wilson_columns(out, col, out["count"], out["n"])
    return out.drop(columns="count")


__all__ = ["run", "transfer_tables", "add_success", "summarise", "exit_used", "generation_time", "finding_1",
           "finding_2", "share_early_exits", "welch_interval", "surrogates", "fallback_note", "SUMMARY_KEYS",
           "SHOWN_COLUMNS", "GENERATION_KEYS", "SURROGATE_COLUMNS",
           "SURROGATE_LABELS"]
