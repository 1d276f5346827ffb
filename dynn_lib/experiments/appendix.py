"""Appendix experiments (protocol sections 1, 6 and 8): MI-FGSM transfer (Fig. 12), PSNR of
adversarial images from SDNN vs DyNN sources (the paper: 23.20 vs 23.19 dB), the headline metrics
over ε (the paper states no ε), image grids (Figs. 13-15) and Tiny ImageNet RQ1 (Fig. 16).

Everything except :func:`image_grid` reads the cached per-image tables of :mod:`.common`.

Tiny ImageNet (Fig. 16) needs no code of its own: it is :func:`dynn_lib.experiments.rq1.run`
on ``Workspace("tinyimagenet", profile)`` (64x64 inputs; the models, query set and τ are that
workspace's). :func:`tinyimagenet_rq1` is that one line.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import pandas as pd
import torch

from .. import blackbox, metrics, models, verdicts
from ..blackbox import PAIRS, Pair
from ..zoo import Workspace
from . import rq1, rq2, rq3
from .common import (ExperimentConfig, _check_attack, _images, _run_attack_batches, attack_steps,
                     clean_surrogate_labels, eps_255, surrogate_exit_loss)

PAPER_EPS: tuple[float, ...] = (2 / 255, 4 / 255, 8 / 255, 16 / 255)
"""The ε sweep of the book (protocol section 6)."""


def mifgsm_transfer(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(),
                    pairs: Sequence[Pair] | None = None) -> dict[str, pd.DataFrame]:
    """RQ1 with MI-FGSM (Fig. 12): :func:`rq1.run` with ``attacks=("mifgsm",)``."""
    return rq1.run(ws, replace(cfg, attacks=("mifgsm",)), pairs=pairs)


def psnr_table(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(),
               pairs: Sequence[Pair] | None = None) -> pd.DataFrame:
    """Mean PSNR (dB, per image, identical images left out) of the adversarial images made on
    SDNN (CNN) surrogates vs DyNN surrogates, per attack and ε, from the transfer tables.

    Columns: dataset, source ("SDNN"|"DyNN"), attack, eps, eps_255, mean_psnr, mean_linf, n.
    """
    return psnr_summary(rq1.transfer_tables(ws, cfg, pairs))


PAPER_PSNR: dict[str, float] = {"SDNN": 23.20, "DyNN": 23.19}
"""The paper's mean PSNR (dB) of adversarial images by source (appendix F; no ε stated)."""

PSNR_TOL = 0.5
"""Default equivalence margin (dB) of "the two sources give the same PSNR" (a parameter of
:func:`psnr_equivalence` and :func:`psnr_statement`; the paper's two numbers differ by 0.01 dB)."""


def _with_source(per_image: pd.DataFrame) -> pd.DataFrame:
    return per_image.assign(source=per_image["surrogate_kind"].map(lambda k: "SDNN" if k == "cnn" else "DyNN"))


def psnr_summary(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`psnr_table` from per-image rows (pure): per (dataset, source, attack, ε) the mean
    PSNR (dB; identical images, PSNR +inf, left out) pooled over the source's pairs, with a
    seeded bootstrap-over-images interval (``mean_psnr_lo``, ``mean_psnr_hi``; ``n_boot``,
    ``seed``), the mean L-inf ([0,1] pixels), ``n`` rows and ``n_images`` images."""
    df = _with_source(per_image)
    keys = ["dataset", "source", "attack", "eps", "eps_255"]
    rows = []
    for k, g in df.groupby(keys, sort=False):
        _, lo, hi = metrics.bootstrap_mean(g["image"].to_numpy(), g["psnr"].to_numpy(dtype=float), n_boot=n_boot,
                                           seed=seed)
        rows.append({**dict(zip(keys, k)), "mean_psnr": metrics.mean_psnr(g["psnr"].to_numpy(copy=True)),
                     "mean_psnr_lo": lo, "mean_psnr_hi": hi, "mean_linf": float(g["linf"].mean()), "n": len(g),
                     "n_images": int(g["image"].nunique())})
    return pd.DataFrame(rows, columns=keys + ["mean_psnr", "mean_psnr_lo", "mean_psnr_hi", "mean_linf", "n",
                                              "n_images"])


def psnr_equivalence(per_image: pd.DataFrame, tol: float = PSNR_TOL, n_boot: int = 1000, seed: int = 0
                     ) -> pd.DataFrame:
    """The paper's statement "adversarial images from SDNN and DyNN sources have the same PSNR"
    (23.20 vs 23.19 dB) at each (dataset, attack, ε), from per-image transfer rows.

    Columns: dataset, attack, eps, eps_255, psnr_sdnn, psnr_dynn (mean dB pooled over each
    source's pairs), difference (SDNN minus DyNN, dB) with its 95 % paired bootstrap interval
    over images (``difference_lo``, ``difference_hi``; the sources attack the same images;
    ``n_boot``, ``seed``), n_images, tol, verdict (:func:`psnr_verdict`) and nearest_paper (True
    on the ε, per dataset and attack, whose mean PSNR over both sources is nearest the paper's
    23.2 dB: FGSM at 8/255 cannot go below about 30 dB, so the paper's number belongs to a
    larger budget).
    """
    df = _with_source(per_image)
    rows = []
    for (ds, atk, e, e255), g in df.groupby(["dataset", "attack", "eps", "eps_255"], sort=False):
        a, b = g[g["source"] == "SDNN"], g[g["source"] == "DyNN"]
        if not len(a) or not len(b):
            continue
        d, lo, hi = metrics.bootstrap_mean_difference(a["image"], a["psnr"].astype(float), b["image"],
                                                      b["psnr"].astype(float), n_boot=n_boot, seed=seed)
        rows.append({"dataset": ds, "attack": atk, "eps": float(e), "eps_255": float(e255),
                     "psnr_sdnn": metrics.mean_psnr(a["psnr"].to_numpy(copy=True)),
                     "psnr_dynn": metrics.mean_psnr(b["psnr"].to_numpy(copy=True)),
                     "difference": d, "difference_lo": lo, "difference_hi": hi,
                     "n_images": int(g["image"].nunique()), "tol": float(tol), "verdict": psnr_verdict(lo, hi, tol)})
    cols = ["dataset", "attack", "eps", "eps_255", "psnr_sdnn", "psnr_dynn", "difference", "difference_lo",
            "difference_hi", "n_images", "tol", "verdict", "nearest_paper"]
    out = pd.DataFrame(rows, columns=cols[:-1])
    paper = (PAPER_PSNR["SDNN"] + PAPER_PSNR["DyNN"]) / 2
    out["nearest_paper"] = False
    for _, g in out.groupby(["dataset", "attack"], sort=False):
        gap = ((g["psnr_sdnn"] + g["psnr_dynn"]) / 2 - paper).abs()
        if gap.notna().any():
            out.loc[gap.idxmin(), "nearest_paper"] = True
    return out


def psnr_verdict(lo: float, hi: float, tol: float = PSNR_TOL) -> str:
    """Verdict of "same PSNR" at one ε from the 95 % interval of SDNN minus DyNN (dB):
    :func:`dynn_lib.verdicts.equivalence` with margin ``tol`` ("holds" when the interval lies in
    ``[-tol, tol]``, "does not hold" when outside it, "inconclusive" otherwise)."""
    return verdicts.combine([verdicts.equivalence(lo, hi, tol)])


def psnr_statement(equivalence: pd.DataFrame, tol: float = PSNR_TOL, attacks: Sequence[str] = ("fgsm", "pgd")
                   ) -> dict:
    """The PSNR statement judged over every ε of ``attacks`` in a :func:`psnr_equivalence` table
    (what the appendix page and the claims ledger both call, so it reads the same on both).

    Each (attack, ε) is one comparison (:func:`psnr_verdict` with ``tol``, recomputed from the
    stored interval); the verdict combines them (:func:`dynn_lib.verdicts.combine`). The evidence
    names, per attack, the ε whose PSNR is nearest the paper's 23.2 dB.

    Returns ``{"verdict", "evidence", "n_images", "per_eps": [...], "nearest": {attack: (eps_255,
    psnr_sdnn, psnr_dynn)}}``.
    """
    t = equivalence[equivalence["attack"].isin(list(attacks))] if len(equivalence) else equivalence
    if not len(t):
        return {"verdict": verdicts.combine([], "no FGSM/PGD PSNR rows"), "evidence": "no PSNR rows", "n_images": 0,
                "per_eps": [], "nearest": {}}
    outcomes, parts = [], []
    for r in t.itertuples():
        outcomes.append(verdicts.equivalence(r.difference_lo, r.difference_hi, tol))
        parts.append(f"{r.attack} ε={r.eps_255:g}/255: SDNN {r.psnr_sdnn:.2f} dB, DyNN {r.psnr_dynn:.2f} dB, "
                     f"difference {r.difference:+.3f} dB [{r.difference_lo:+.3f}, {r.difference_hi:+.3f}] "
                     f"({psnr_verdict(r.difference_lo, r.difference_hi, tol)})")
    nearest = {r.attack: (float(r.eps_255), float(r.psnr_sdnn), float(r.psnr_dynn))
               for r in t[t["nearest_paper"]].itertuples()}
    near = "; ".join(f"{a}: ε={e:g}/255 ({s:.2f} / {d:.2f} dB)" for a, (e, s, d) in nearest.items())
    n_images = int(t.groupby("dataset")["n_images"].max().sum())
    return {"verdict": verdicts.combine(outcomes),
            "evidence": (f"same PSNR within ±{tol:g} dB, SDNN minus DyNN with 95 % paired bootstrap intervals over "
                         f"{n_images} images: {'; '.join(parts)}. ε nearest the paper's 23.2 dB: {near or 'n/a'} "
                         "(the paper states no ε)"),
            "n_images": n_images, "per_eps": parts, "nearest": nearest}


def eps_sweep(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), eps: Sequence[float] = PAPER_EPS,
              archs: Sequence[str] = models.ARCHS, pairs: Sequence[Pair] | None = None) -> pd.DataFrame:
    """Headline metrics per ε and attack (one row each):

    s2d_success / d2s_success (RQ1: success rate % over target-correct images, pooled over the
    pairs of a direction), wb_raised_gt1 / bb_raised_gt1 (RQ2: % of inputs whose exit rises by
    more than one, pooled over models / pairs), wb_changed_exit0 / bb_changed_exit0 (RQ3: % of
    flipped inputs changed at exit 0, pooled), each with ``_lo``/``_hi`` and ``_n``. A pooled rate
    counts one row per image and pair (or model), so an image enters it several times: its 95 %
    interval is a seeded bootstrap over images (:func:`dynn_lib.metrics.bootstrap_rate`; a Wilson
    interval on the pooled counts would treat those rows as independent and be too narrow), and
    ``_n`` counts the distinct images in its denominator (target-correct images, or images with a
    flipped input); psnr_sdnn / psnr_dynn (mean PSNR dB of adversarial images by source).
    ``pairs`` restricts the black-box pairs (default all six; RQ2/RQ3 use the S2D ones among them).
    """
    c = replace(cfg, eps=tuple(eps))
    pairs = tuple(PAIRS if pairs is None else pairs)
    s2d = tuple(p for p in pairs if p.direction == "S2D")
    r1 = rq1.run(ws, c, pairs=pairs)
    r2 = rq2.run(ws, c, archs=archs, pairs=s2d)["per_image"]
    r3 = rq3.run(ws, c, archs=archs, pairs=s2d)["per_image"]
    ps = psnr_summary(r1["per_image"])
    p1 = rq1.add_success(r1["per_image"])
    p1 = p1.assign(hit=p1["success"], base=p1["correct_clean"])
    r2 = r2.assign(hit=r2["delta_exit"] > 1, base=True)
    r3 = r3.assign(hit=r3["first_changed_exit"] == 0, base=r3["first_changed_exit"] >= 0)
    rows = []
    for atk in c.attacks:
        for e in c.eps:
            e255 = eps_255(e)

            def rows_of(df, **eq):
                """Rows of this attack and ε with the given column values."""
                m = (df["attack"] == atk) & (df["eps_255"] == e255)
                for key, v in eq.items():
                    m &= df[key] == v
                return df.loc[m]

            def mean(df, col, **eq):
                return float(rows_of(df, **eq)[col].mean())

            def pooled(name, df, **eq):
                """Rate % of ``hit`` over the ``base`` rows, a bootstrap over images, distinct images."""
                sub = rows_of(df, **eq)
                base = sub["base"].to_numpy(dtype=bool)
                rate, lo, hi = (metrics.bootstrap_rate(sub["image"], sub["hit"], base) if base.any()
                                else (math.nan, math.nan, math.nan))
                return {name: rate, f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_n": int(sub["image"][base].nunique())}

            rows.append({"dataset": ws.dataset, "attack": atk, "eps": e, "eps_255": e255,
                         **pooled("s2d_success", p1, direction="S2D"),
                         **pooled("d2s_success", p1, direction="D2S"),
                         **pooled("wb_raised_gt1", r2, setting="white-box"),
                         **pooled("bb_raised_gt1", r2, setting="black-box"),
                         **pooled("wb_changed_exit0", r3, setting="white-box"),
                         **pooled("bb_changed_exit0", r3, setting="black-box"),
                         "psnr_sdnn": mean(ps, "mean_psnr", source="SDNN"),
                         "psnr_dynn": mean(ps, "mean_psnr", source="DyNN")})
    return pd.DataFrame(rows)


def reverse_pair(pair: Pair) -> Pair:
    """The protocol pair with surrogate and target swapped (S2D <-> D2S)."""
    for p in PAIRS:
        if (p.surrogate_arch, p.surrogate_kind, p.target_arch, p.target_kind) == (
                pair.target_arch, pair.target_kind, pair.surrogate_arch, pair.surrogate_kind):
            return p
    raise ValueError(f"{pair} has no reverse among blackbox.PAIRS")


def image_grid(ws: Workspace, pair: Pair, attack: str, eps: float, n: int = 8,
               cfg: ExperimentConfig = ExperimentConfig()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Originals and adversarial images from an SDNN and a DyNN source (Figs. 13-15).

    The SDNN source is the CNN surrogate of the S2D member of {pair, its reverse}, the DyNN source
    the DyNN surrogate of the D2S member; both are attacked exactly as in
    :func:`common.transfer_table` (own deployed labels; ``cfg.exit_loss_surrogate`` for the DyNN),
    on a class-stratified sample of ``n`` evaluation images (recomputed: a few images, not stored).

    Returns:
        ``(orig uint8 [n,3,H,W], adv_from_sdnn float32 [n,3,H,W], adv_from_dynn float32 [n,3,H,W])``,
        adversarial images as [0,1] pixels on the CPU (multiply by 255 and round for uint8).
    """
    _check_attack(attack, eps)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    c = replace(cfg, n_images=n)
    images, _, ids = _images(ws, c)
    s2d, d2s = (pair, reverse_pair(pair)) if pair.direction == "S2D" else (reverse_pair(pair), pair)
    out = []
    for p in (s2d, d2s):
        sur = blackbox.surrogate(ws, p)
        tau = blackbox.surrogate_tau(ws, p)
        y = clean_surrogate_labels(ws, sur, images, ids, tau)
        x_adv, *_ = _run_attack_batches(sur, images, y, attack, eps, c, surrogate_exit_loss(p, c), tau, ws.device,
                                        torch.Generator().manual_seed(c.seed), attack_steps(ws, c))
        out.append(x_adv)
    return images.clone(), out[0], out[1]


def tinyimagenet_rq1(cfg: ExperimentConfig = ExperimentConfig(), profile: str = "paper",
                     **workspace_kwargs) -> dict[str, pd.DataFrame]:
    """RQ1 on Tiny ImageNet (Fig. 16): exactly ``rq1.run(Workspace("tinyimagenet", profile, ...), cfg)``."""
    return rq1.run(Workspace("tinyimagenet", profile, **workspace_kwargs), cfg)


__all__ = ["PAPER_EPS", "PAPER_PSNR", "PSNR_TOL", "psnr_equivalence", "psnr_verdict", "psnr_statement",
           "mifgsm_transfer", "psnr_table", "psnr_summary", "eps_sweep", "reverse_pair", "image_grid",
           "tinyimagenet_rq1"]


# ---------------------------------------------------------------- the published tables (runner / book)

GRID_IMAGES = 8
"""Images per grid (Figs. 13-15) stored by :func:`run`."""


def _grid_rows(ws: Workspace, pair: Pair, attack: str, eps: float, n: int, cfg: ExperimentConfig) -> pd.DataFrame:
    """:func:`image_grid` as a long table: one row per (role, image), pixels as uint8 CHW bytes."""
    orig, adv_s, adv_d = image_grid(ws, pair, attack, eps, n=n, cfg=cfg)
    _, labels, ids = _images(ws, replace(cfg, n_images=n))
    s2d = pair if pair.direction == "S2D" else reverse_pair(pair)
    rows = []
    for role, imgs in (("original", orig), ("SDNN", adv_s), ("DyNN", adv_d)):
        u8 = imgs if imgs.dtype == torch.uint8 else (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
        for j in range(len(u8)):
            c, h, w = (int(v) for v in u8[j].shape)
            rows.append({"dataset": ws.dataset, "pair": s2d.short, "attack": attack, "eps": float(eps),
                         "eps_255": eps_255(eps), "image": int(ids[j]), "label": int(labels[j]), "role": role,
                         "channels": c, "height": h, "width": w,
                         "pixels": u8[j].contiguous().numpy().tobytes()})
    return pd.DataFrame(rows)


def grid_arrays(grid: pd.DataFrame, eps: float | None = None) -> tuple:
    """``(orig, adv_sdnn, adv_dynn)`` uint8 arrays ``[n, C, H, W]`` from the ``grid_images`` table
    (at ``eps``; default the stored ε closest to 8/255), ready for :func:`dynn_lib.plots.image_grid`."""
    import numpy as np

    if eps is None:
        values = sorted(set(grid["eps"]))
        eps = min(values, key=lambda e: abs(e - 8 / 255))
    g = grid[(grid["eps"] - eps).abs() < 1e-9].sort_values("image")
    out = []
    for role in ("original", "SDNN", "DyNN"):
        r = g[g["role"] == role]
        out.append(np.stack([np.frombuffer(p, dtype=np.uint8).reshape(c, h, w)
                             for p, c, h, w in zip(r["pixels"], r["channels"], r["height"], r["width"])]))
    return tuple(out)


def run(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig()) -> dict[str, pd.DataFrame]:
    """The appendix on ``ws`` (what :func:`dynn_lib.experiments.runner.publish` stores):

    * ``mifgsm_summary`` (Fig. 12): :func:`mifgsm_transfer`'s RQ1 summary at ``cfg.eps``.
    * ``mifgsm_per_image``: its per-image rows (what Finding 1 on MI-FGSM is judged on).
    * ``mifgsm_exit_used``: its Fig. 7-style exit counts of the DyNN surrogates.
    * ``eps_sweep``: :func:`eps_sweep` over {2, 4, 8, 16}/255 and ``cfg.eps``, attacks ``cfg.attacks``.
    * ``psnr``: :func:`psnr_summary` (SDNN vs DyNN sources) for every attack and ε above,
      MI-FGSM included; ``psnr_equivalence``: :func:`psnr_equivalence` (the paper's "same
      PSNR" statement per attack and ε, default margin :data:`PSNR_TOL`).
    * ``grid_images`` (Figs. 13-15): :func:`image_grid` for the S2D MobileNet pair and its
      reverse (same architecture as both sources), PGD when ``cfg.attacks`` has it, at every ε
      of the sweep, a stratified sample of :data:`GRID_IMAGES` evaluation images; pixels as uint8 bytes
      (:func:`grid_arrays` turns them back into arrays), so the book draws them without models.
    """
    sweep_eps = tuple(sorted(set(PAPER_EPS) | set(cfg.eps)))
    mi = mifgsm_transfer(ws, cfg)
    sweep = eps_sweep(ws, cfg, eps=sweep_eps)
    per_image = rq1.transfer_tables(ws, replace(cfg, eps=sweep_eps))  # cached by eps_sweep
    both = pd.concat([per_image, mi["per_image"]], ignore_index=True)
    psnr = psnr_summary(both)
    psnr_eq = psnr_equivalence(both)
    attack = "pgd" if "pgd" in cfg.attacks else cfg.attacks[0]
    pair = next((p for p in PAIRS if p.direction == "S2D" and p.surrogate_arch == p.target_arch), PAIRS[0])
    n = min(GRID_IMAGES, len(_images(ws, cfg)[1]))
    grid = pd.concat([_grid_rows(ws, pair, attack, e, n, cfg) for e in sweep_eps], ignore_index=True)
    return {"mifgsm_summary": mi["summary"], "mifgsm_per_image": mi["per_image"],
            "mifgsm_exit_used": mi["exit_used"], "eps_sweep": sweep,
            "psnr": psnr, "psnr_equivalence": psnr_eq, "grid_images": grid}


__all__ += ["run", "grid_arrays", "GRID_IMAGES"]
