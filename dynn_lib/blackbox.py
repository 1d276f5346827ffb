"""Black-box protocol (section 7): query set, deployed-mode labels, surrogates, and the six pairs.

The attacker queries the deployed target with the query half of the test set and its
corruptions (Gaussian noise and brightness, severities 1-5: 11 x n_query images, 55,000 for
CIFAR), records the answers (a DyNN answers through early exit at its calibrated τ) and trains a
surrogate from scratch on those pairs with the surrogate's own recipe (``cnn``, or ``sdn`` for
a DyNN surrogate). A seeded stratified ``profile.surrogate_holdout`` of the clean query images
(10 % by default) and their corrupted copies are held out of that training: a DyNN surrogate's
τ is calibrated on them, never on its own training data. Each surrogate trains with a seed of
its own, derived from the workspace seed and the pair (:func:`surrogate_seed`), so it never starts
from its target's initial weights. The six surrogate/target pairs are data (:data:`PAIRS`), not code paths.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch
from torch import nn

from . import data, early_exit
from .store import config_key
from .zoo import Workspace

ARCH_LABEL = {"vgg16": "VGG-16", "resnet56": "ResNet-56", "mobilenet": "MobileNet"}
KIND_LABEL = {"cnn": "SDNN", "sdn": "DyNN", "ic_only": "DyNN (IC-only)"}


@dataclass(frozen=True)
class Pair:
    """One surrogate -> target pair. kinds: ``cnn`` (SDNN) or ``sdn`` (SDN-trained DyNN)."""

    direction: str  # "S2D" or "D2S"
    surrogate_arch: str
    surrogate_kind: str
    target_arch: str
    target_kind: str

    @property
    def name(self) -> str:
        return (f"{KIND_LABEL[self.surrogate_kind]} {ARCH_LABEL[self.surrogate_arch]} → "
                f"{KIND_LABEL[self.target_kind]} {ARCH_LABEL[self.target_arch]}")

    @property
    def short(self) -> str:
        return f"{self.surrogate_arch}→{self.target_arch}"


def _s2d(s: str, t: str) -> Pair:
    return Pair("S2D", s, "cnn", t, "sdn")


def _d2s(s: str, t: str) -> Pair:
    return Pair("D2S", s, "sdn", t, "cnn")


PAIRS: tuple[Pair, ...] = (
    _s2d("resnet56", "vgg16"), _s2d("mobilenet", "mobilenet"), _s2d("mobilenet", "resnet56"),
    _d2s("vgg16", "resnet56"), _d2s("mobilenet", "mobilenet"), _d2s("resnet56", "mobilenet"),
)
"""Protocol section 7: S2D = SDNN surrogate -> DyNN target; D2S = the reverse of each S2D pair."""


def get_pairs(direction: str | None = None) -> tuple[Pair, ...]:
    if direction not in (None, "S2D", "D2S"):
        raise ValueError(f"unknown direction {direction!r}; accepted: S2D, D2S (or None for both)")
    return tuple(p for p in PAIRS if direction in (None, p.direction))


@torch.no_grad()
def deployed_predict(model: nn.Module, images: torch.Tensor, tau, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction [N], exit number [N]) of a model as deployed: a CNN answers with its output
    (exit 0 of 1); a DyNN answers through early exit at ``tau``."""
    z = early_exit.all_exit_logits(model, images, device=device, desc="deployed inference")
    if z.shape[0] == 1:
        return z[0].argmax(-1), torch.zeros(z.shape[1], dtype=torch.long)
    return early_exit.early_exit_predict(z, tau)


def target_tau(ws: Workspace, arch: str, kind: str) -> float | tuple[float, ...] | None:
    return ws.tau(arch, kind) if kind != "cnn" else None


def query_set(ws: Workspace) -> torch.Tensor:
    """uint8 [11 * n_query, 3, H, W]: the query half and its 10 corrupted copies (order: see data.query_set)."""
    return data.query_set(ws.query_half[0], ws.dataset, seed=ws.seed)


def query_labels_key(ws: Workspace, arch: str, kind: str) -> tuple[dict, str]:
    """``(config, slug)`` under which :func:`query_labels` stores the target's answers (store kind
    ``"query_labels"``); :mod:`dynn_lib.plan` names its labelling jobs by this key."""
    cfg = {"target": asdict(ws.model_config(arch, kind)), "n_query": ws.profile.n_query, "seed": ws.seed,
           "dataset": ws.dataset, **({"fixed_tau": ws.profile.tau} if ws.profile.tau is not None else {})}
    return cfg, f"{ws.dataset}-{arch}-{kind}"


def query_labels(ws: Workspace, arch: str, kind: str) -> torch.Tensor:
    """The target's deployed-mode answers on the query set (int64 [11 * n_query]), stored."""
    cfg, slug = query_labels_key(ws, arch, kind)

    def compute():
        pred, ex = deployed_predict(ws.model(arch, kind), query_set(ws), target_tau(ws, arch, kind), ws.device)
        return pd.DataFrame({"label": pred.numpy(), "exit": ex.numpy()}), {"tau": target_tau(ws, arch, kind)}

    df = ws.store.cached_table("query_labels", cfg, compute, slug=slug, device=ws.device, recompute=ws.recompute)
    return torch.as_tensor(df["label"].to_numpy(copy=True), dtype=torch.long)


def calibration_holdout(ws: Workspace) -> torch.Tensor:
    """Positions (in the query half) of the clean images the attacker holds out of surrogate
    training to calibrate a DyNN surrogate's τ: a seeded class-stratified sample of
    ``profile.surrogate_holdout`` of the query half (at least one image), drawn with the
    workspace seed. Their corrupted copies are held out too, so the surrogate never saw them."""
    n = len(ws.query_half[1])
    k = max(1, int(round(ws.profile.surrogate_holdout * n)))
    return data.stratified_subset(ws.query_half[1], k, ws.seed)


def surrogate_training_rows(ws: Workspace) -> torch.Tensor:
    """Rows of :func:`query_set` a surrogate trains on: every copy (clean and corrupted) of every
    query-half image not in :func:`calibration_holdout`."""
    n = len(ws.query_half[1])
    held = torch.zeros(n, dtype=torch.bool)
    held[calibration_holdout(ws)] = True
    rows = torch.arange(data.QUERY_SET_COPIES * n)
    return rows[~held[rows % n]]


def surrogate_seed(seed: int, pair: Pair, target_key: str) -> int:
    """The training seed of a pair's surrogate (its initial weights, batch order and
    augmentation): a hash of the workspace ``seed``, the surrogate's architecture and kind and
    the target's artefact key, in [0, 2**31).

    The attacker trains from scratch (protocol section 7), so a surrogate must not start from
    its target's initial weights. With the workspace seed for both it would for MobileNet, whose
    layers keep torch's default initialisation drawn before the exit heads are built: its SDNN
    and its SDN-trained DyNN then begin with the same backbone, and MobileNet -> MobileNet is a
    pair in both directions. (VGG-16 and ResNet-56 re-initialise after building the heads.)"""
    text = f"surrogate:{seed}:{pair.surrogate_arch}:{pair.surrogate_kind}:{target_key}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def surrogate_config(ws: Workspace, pair: Pair):
    """Training config of the pair's surrogate: its own recipe, trained on the labelled query set
    less the calibration hold-out, with its own seed (:func:`surrogate_seed`)."""
    target = config_key(ws.model_config(pair.target_arch, pair.target_kind))
    base = ws.model_config(pair.surrogate_arch, pair.surrogate_kind)
    # the label source names the target, the query-set size, the seed of its corruptions and
    # the held-out fraction
    return replace(base, labels=(f"target:{target}:nq{ws.profile.n_query}:s{ws.seed}"
                                 f":holdout{ws.profile.surrogate_holdout:g}"),
                   train_source="query", n_train=None, seed=surrogate_seed(ws.seed, pair, target))


def surrogate(ws: Workspace, pair: Pair) -> nn.Module:
    """The pair's trained surrogate (trained now on the target's answers if not stored), on the
    query set less the calibration hold-out (:func:`surrogate_training_rows`)."""
    cfg = surrogate_config(ws, pair)

    def training_data():
        rows = surrogate_training_rows(ws)
        return query_set(ws)[rows], query_labels(ws, pair.target_arch, pair.target_kind)[rows]

    return ws.trained(cfg, training_data)


def surrogate_calibration(ws: Workspace, pair: Pair) -> dict | None:
    """The attacker's calibration of a DyNN surrogate (None for a CNN), on the clean query images it
    held out of surrogate training (:func:`calibration_holdout`: calibration never sees the
    surrogate's own training data), with the only labels it has, the target's answers (computed
    once and stored, as every calibration).

    Returns ``{"tau", "meets_rule", "accuracy", "final_accuracy", "mean_exit", "mean_macs",
    "macs_ratio", "exit_counts", "n_holdout"}``: τ by the protocol's rule; ``meets_rule`` False when
    no τ of the grid keeps early exit within one point of the final exit and the surrogate is
    deployed at the grid's largest (:func:`dynn_lib.early_exit.calibrate`); the accuracies are
    agreements (fractions) with the target's answers on the ``n_holdout`` images, early exit at τ
    and the final exit alone (:class:`dynn_lib.early_exit.EarlyExitReport` for the rest)."""
    if pair.surrogate_kind == "cnn":
        return None
    n = len(ws.query_half[1])
    held = calibration_holdout(ws)
    answers = query_labels(ws, pair.target_arch, pair.target_kind)[:n][held]
    # the workspace's stored calibration (what Workspace.calibrated_tau reads), here with the attacker's data
    row = ws._calibration(surrogate(ws, pair), surrogate_config(ws, pair), labels=answers,
                          label_source=f"target answers ({pair.target_arch}/{pair.target_kind})",
                          images=ws.query_half[0][held], image_source=f"hold-out {len(held)}").iloc[0].to_dict()
    return {**row, "n_holdout": len(held)}


def surrogate_tau(ws: Workspace, pair: Pair) -> float | None:
    """τ of a DyNN surrogate (None for a CNN), calibrated by the attacker
    (:func:`surrogate_calibration`)."""
    cal = surrogate_calibration(ws, pair)
    return None if cal is None else float(cal["tau"])


def target(ws: Workspace, pair: Pair) -> nn.Module:
    return ws.model(pair.target_arch, pair.target_kind)
