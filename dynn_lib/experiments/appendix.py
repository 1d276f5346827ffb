"""Appendix experiments (protocol sections 1, 6 and 8): MI-FGSM transfer (Fig. 12), PSNR of
adversarial images from SDNN vs DyNN sources (the paper: 23.20 vs 23.19 dB), the headline metrics
over ε (the paper states no ε), image grids (Figs. 13-15) and Tiny ImageNet RQ1 (Fig. 16).

Everything except :func:`image_grid` reads the cached per-image tables of :mod:`.common`.

Tiny ImageNet (Fig. 16) needs no code of its own: it is :func:`dynn_lib.experiments.rq1.run`
on ``Workspace("tinyimagenet", profile)`` (64x64 inputs; the models, query set and τ are that
workspace's). :func:`tinyimagenet_rq1` is that one line.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd
import torch

from .. import blackbox, metrics, models
from ..blackbox import PAIRS, Pair
from ..zoo import Workspace
from . import rq1, rq2, rq3
from .common import (ExperimentConfig, _check_attack, _images, _run_attack_batches, attack_steps, eps_255,
                     surrogate_exit_loss, surrogate_labels)

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


def psnr_summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """:func:`psnr_table` from per-image rows (pure)."""
    df = per_image.assign(source=per_image["surrogate_kind"].map(lambda k: "SDNN" if k == "cnn" else "DyNN"))
    keys = ["dataset", "source", "attack", "eps", "eps_255"]
    rows = [{**dict(zip(keys, k)), "mean_psnr": metrics.mean_psnr(g["psnr"].to_numpy(copy=True)),
             "mean_linf": float(g["linf"].mean()), "n": len(g)} for k, g in df.groupby(keys, sort=False)]
    return pd.DataFrame(rows, columns=keys + ["mean_psnr", "mean_linf", "n"])


def eps_sweep(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), eps: Sequence[float] = PAPER_EPS,
              archs: Sequence[str] = models.ARCHS, pairs: Sequence[Pair] | None = None) -> pd.DataFrame:
    """Headline metrics per ε and attack (one row each):

    s2d_success / d2s_success (RQ1: mean success rate % over target-correct images, by direction),
    wb_raised_gt1 / bb_raised_gt1 (RQ2: mean % of inputs whose exit rises by more than one),
    wb_changed_exit0 / bb_changed_exit0 (RQ3: mean % of flipped inputs changed at exit 0),
    psnr_sdnn / psnr_dynn (mean PSNR dB of adversarial images by source).
    ``pairs`` restricts the black-box pairs (default all six; RQ2/RQ3 use the S2D ones among them).
    """
    c = replace(cfg, eps=tuple(eps))
    pairs = tuple(PAIRS if pairs is None else pairs)
    s2d = tuple(p for p in pairs if p.direction == "S2D")
    r1 = rq1.run(ws, c, pairs=pairs)
    r2 = rq2.run(ws, c, archs=archs, pairs=s2d)["summary"]
    r3 = rq3.run(ws, c, archs=archs, pairs=s2d)["summary"]
    ps = psnr_summary(r1["per_image"])
    rows = []
    for atk in c.attacks:
        for e in c.eps:
            e255 = eps_255(e)

            def mean(df, col, **eq):
                m = (df["attack"] == atk) & (df["eps_255"] == e255)
                for k, v in eq.items():
                    m &= df[k] == v
                return float(df.loc[m, col].mean())

            s = r1["summary"]
            rows.append({"dataset": ws.dataset, "attack": atk, "eps": e, "eps_255": e255,
                         "s2d_success": mean(s, "success_rate", direction="S2D"),
                         "d2s_success": mean(s, "success_rate", direction="D2S"),
                         "wb_raised_gt1": mean(r2, "share_raised_gt1", setting="white-box"),
                         "bb_raised_gt1": mean(r2, "share_raised_gt1", setting="black-box"),
                         "wb_changed_exit0": mean(r3, "share_changed_exit0", setting="white-box"),
                         "bb_changed_exit0": mean(r3, "share_changed_exit0", setting="black-box"),
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
    on the first ``n`` evaluation images (recomputed: a few images, not stored).

    Returns:
        ``(orig uint8 [n,3,H,W], adv_from_sdnn float32 [n,3,H,W], adv_from_dynn float32 [n,3,H,W])``,
        adversarial images as [0,1] pixels on the CPU (multiply by 255 and round for uint8).
    """
    _check_attack(attack, eps)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    c = replace(cfg, n_images=n)
    images, _ = _images(ws, c)
    s2d, d2s = (pair, reverse_pair(pair)) if pair.direction == "S2D" else (reverse_pair(pair), pair)
    out = []
    for p in (s2d, d2s):
        sur = blackbox.surrogate(ws, p)
        tau = blackbox.surrogate_tau(ws, p)
        y = surrogate_labels(sur, images, tau, ws.device)
        x_adv, _, _ = _run_attack_batches(sur, images, y, attack, eps, c, surrogate_exit_loss(p, c), tau, ws.device,
                                          torch.Generator().manual_seed(c.seed), attack_steps(ws, c))
        out.append(x_adv)
    return images.clone(), out[0], out[1]


def tinyimagenet_rq1(cfg: ExperimentConfig = ExperimentConfig(), profile: str = "paper",
                     **workspace_kwargs) -> dict[str, pd.DataFrame]:
    """RQ1 on Tiny ImageNet (Fig. 16): exactly ``rq1.run(Workspace("tinyimagenet", profile, ...), cfg)``."""
    return rq1.run(Workspace("tinyimagenet", profile, **workspace_kwargs), cfg)


__all__ = ["PAPER_EPS", "mifgsm_transfer", "psnr_table", "psnr_summary", "eps_sweep", "reverse_pair", "image_grid",
           "tinyimagenet_rq1"]


# ---------------------------------------------------------------- the published tables (runner / book)

GRID_IMAGES = 8
"""Images per grid (Figs. 13-15) stored by :func:`run`."""


def _grid_rows(ws: Workspace, pair: Pair, attack: str, eps: float, n: int, cfg: ExperimentConfig) -> pd.DataFrame:
    """:func:`image_grid` as a long table: one row per (role, image), pixels as uint8 CHW bytes."""
    orig, adv_s, adv_d = image_grid(ws, pair, attack, eps, n=n, cfg=cfg)
    labels = ws.eval_half[1][:len(orig)]
    s2d = pair if pair.direction == "S2D" else reverse_pair(pair)
    rows = []
    for role, imgs in (("original", orig), ("SDNN", adv_s), ("DyNN", adv_d)):
        u8 = imgs if imgs.dtype == torch.uint8 else (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
        for j in range(len(u8)):
            c, h, w = (int(v) for v in u8[j].shape)
            rows.append({"dataset": ws.dataset, "pair": s2d.short, "attack": attack, "eps": float(eps),
                         "eps_255": eps_255(eps), "image": j, "label": int(labels[j]), "role": role,
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
    * ``mifgsm_exit_used``: its Fig. 7-style exit counts of the DyNN surrogates.
    * ``eps_sweep``: :func:`eps_sweep` over {2, 4, 8, 16}/255 and ``cfg.eps``, attacks ``cfg.attacks``.
    * ``psnr``: :func:`psnr_summary` (SDNN vs DyNN sources) for every attack and ε above,
      MI-FGSM included.
    * ``grid_images`` (Figs. 13-15): :func:`image_grid` for the S2D MobileNet pair and its
      reverse (same architecture as both sources), PGD when ``cfg.attacks`` has it, at every ε
      of the sweep, first :data:`GRID_IMAGES` evaluation images; pixels as uint8 bytes
      (:func:`grid_arrays` turns them back into arrays), so the book draws them without models.
    """
    sweep_eps = tuple(sorted(set(PAPER_EPS) | set(cfg.eps)))
    mi = mifgsm_transfer(ws, cfg)
    sweep = eps_sweep(ws, cfg, eps=sweep_eps)
    per_image = rq1.transfer_tables(ws, replace(cfg, eps=sweep_eps))  # cached by eps_sweep
    psnr = psnr_summary(pd.concat([per_image, mi["per_image"]], ignore_index=True))
    attack = "pgd" if "pgd" in cfg.attacks else cfg.attacks[0]
    pair = next((p for p in PAIRS if p.direction == "S2D" and p.surrogate_arch == p.target_arch), PAIRS[0])
    n = min(GRID_IMAGES, len(_images(ws, cfg)[1]))
    grid = pd.concat([_grid_rows(ws, pair, attack, e, n, cfg) for e in sweep_eps], ignore_index=True)
    return {"mifgsm_summary": mi["summary"], "mifgsm_exit_used": mi["exit_used"], "eps_sweep": sweep,
            "psnr": psnr, "grid_images": grid}


__all__ += ["run", "grid_arrays", "GRID_IMAGES"]
