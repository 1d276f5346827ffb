"""The two model kinds built on one backbone.

A :class:`Backbone` is ``normalize -> stages[0] -> ... -> stages[S-1] -> final_head``. The
stages are cut so that every internal-classifier (IC) position is the output of one stage
(``ic_after`` holds those stage indices, in increasing order).

* :class:`SDNN` (static CNN): ``forward(x) -> logits [B, C]``.
* :class:`DyNN` (early-exit network): ``forward(x) -> list of logits``, one ``[B, C]`` tensor
  per exit, ICs first and the final exit last (``num_exits = len(ic_after) + 1``).

``attach_exits(cnn)`` builds the IC-only DyNN of a trained CNN: it *shares* the CNN's backbone
module, so its final exit equals the CNN's output exactly.

Inputs are always [0,1] pixels ``[B, 3, H, W]``; normalisation is the backbone's first layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .heads import InternalClassifier, Normalize


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: architecture name, number of classes, input side in pixels."""

    arch: str
    num_classes: int
    input_size: int


class Backbone(nn.Module):
    """The static network split into stages.

    Args:
        spec: architecture, classes, input size.
        normalize: the input normalisation layer.
        stages: sequential pieces; stage i maps the output of stage i-1 to the next feature map.
        final_head: maps the last stage's output to logits.
        ic_after: indices of the stages whose outputs feed an internal classifier.
        ic_shapes: (channels, side) of the feature map at each IC position.
    """

    def __init__(self, spec: ModelSpec, normalize: Normalize, stages: Sequence[nn.Module],
                 final_head: nn.Module, ic_after: Sequence[int], ic_shapes: Sequence[tuple[int, int]]):
        super().__init__()
        if list(ic_after) != sorted(set(ic_after)) or (ic_after and ic_after[-1] >= len(stages) - 1):
            raise ValueError(f"ic_after must be increasing stage indices below {len(stages) - 1}, got {ic_after}")
        self.spec = spec
        self.normalize = normalize
        self.stages = nn.ModuleList(stages)
        self.final_head = final_head
        self.ic_after = tuple(ic_after)
        self.ic_shapes = tuple(ic_shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.normalize(x)
        for stage in self.stages:
            h = stage(h)
        return self.final_head(h)


class SDNN(nn.Module):
    """Static CNN: ``forward(x [B,3,H,W] in [0,1]) -> logits [B, num_classes]``."""

    is_dynamic = False

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    @property
    def spec(self) -> ModelSpec:
        return self.backbone.spec

    @property
    def num_exits(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class DyNN(nn.Module):
    """Early-exit network: ``forward(x) -> [logits_exit0, ..., logits_final]``, each ``[B, C]``.

    ``ics[i]`` reads the output of ``backbone.stages[backbone.ic_after[i]]``.
    """

    is_dynamic = True

    def __init__(self, backbone: Backbone, ics: Sequence[nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        if ics is None:
            ics = [InternalClassifier(c, s, backbone.spec.num_classes) for c, s in backbone.ic_shapes]
        if len(ics) != len(backbone.ic_after):
            raise ValueError(f"{len(ics)} IC heads for {len(backbone.ic_after)} IC positions")
        self.ics = nn.ModuleList(ics)

    @property
    def spec(self) -> ModelSpec:
        return self.backbone.spec

    @property
    def num_exits(self) -> int:
        return len(self.ics) + 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bb = self.backbone
        h = bb.normalize(x)
        outs: list[torch.Tensor] = []
        positions = dict(zip(bb.ic_after, self.ics))
        for i, stage in enumerate(bb.stages):
            h = stage(h)
            ic = positions.get(i)
            if ic is not None:
                outs.append(ic(h))
        outs.append(bb.final_head(h))
        return outs

    def forward_exit(self, x: torch.Tensor, exit: int) -> torch.Tensor:
        """Logits ``[B, C]`` of one exit alone, equal to ``self(x)[exit]``.

        Runs only the stages up to the exit's position and the exit's own head: no later
        stage, no other IC head (``exit = -1`` / the final exit is the backbone alone, the
        static network). Differentiable, so an attack on exit k pays forward *and* backward
        only up to exit k. ``exit``: 0-based, negative counts from the final exit.
        """
        n = self.num_exits
        if isinstance(exit, bool) or not isinstance(exit, int) or not -n <= exit < n:
            raise ValueError(f"exit must be an integer in [{-n}, {n - 1}] for a {n}-exit DyNN, got {exit!r}")
        exit %= n
        bb = self.backbone
        if exit == n - 1:
            return bb(x)
        h = bb.normalize(x)
        for stage in bb.stages[:bb.ic_after[exit] + 1]:
            h = stage(h)
        return self.ics[exit](h)

    def forward_fired(self, x: torch.Tensor, taus: float | Sequence[float] | torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Early-exit forward that keeps the autograd graph: each sample stops at its first firing exit.

        Args:
            x: [B, 3, H, W] pixels in [0,1].
            taus: thresholds of the internal exits: one float, one per internal exit, or a
                prepared ``[E-1]`` tensor (:func:`dynn_lib.early_exit.tau_tensor`; build it once
                per attack). An input leaves at exit i when its max softmax probability
                (float32) is >= taus[i]; the final exit always answers.
        Returns:
            (logits ``[B, C]`` of the exit each sample leaves at, in input order and
            differentiable w.r.t. ``x``; exit number ``[B]`` int64, 0-based).
        Samples that fired leave the batch, so each later stage and head runs only on the
        samples still in, and the forward (and backward) stop at the deepest exit the batch
        needs: the computation early-exit deployment does. Equal to selecting
        :func:`dynn_lib.early_exit.fired_logits` from the full forward ``self(x)``. On CUDA each
        internal exit that is reached costs one synchronisation (the shapes of the groups).
        The samples still running are padded with zero rows to a multiple of
        :func:`dynn_lib.numerics.fired_bucket` rows (at most ``B``; on CUDA 64 by default, none on
        a CPU), so that the layers after an exit see few distinct batch sizes; padded rows are
        sliced off before any decision or output and get no gradient (the real rows can still move
        in their last bits: another batch size may run other kernels).
        """
        from .. import numerics  # models do not depend on numerics or early_exit at import time
        from ..early_exit import tau_tensor

        t = tau_tensor(taus, self.num_exits, x.device)
        bb = self.backbone
        B = x.shape[0]
        bucket = numerics.fired_bucket(x.device)
        alive = torch.arange(B, device=x.device)
        idx_parts: list[torch.Tensor] = []
        logit_parts: list[torch.Tensor] = []
        exit_parts: list[torch.Tensor] = []
        h = bb.normalize(x)
        ic_index = {s: k for k, s in enumerate(bb.ic_after)}
        for i, stage in enumerate(bb.stages):
            h = stage(h)
            k = ic_index.get(i)
            if k is None:
                continue
            logits = self.ics[k](h)[:alive.numel()]  # the real rows (a no-op when nothing is padded)
            fire = logits.detach().float().softmax(-1).amax(-1) >= t[k]
            n_fire = int(fire.sum())  # the one synchronisation per exit reached
            if n_fire:
                perm = torch.argsort((~fire).to(torch.uint8), stable=True)  # fired first, input order kept
                sel, keep = perm[:n_fire], perm[n_fire:]
                idx_parts.append(alive[sel])
                logit_parts.append(logits[sel])
                exit_parts.append(torch.full((n_fire,), k, dtype=torch.long, device=x.device))
                alive = alive[keep]
                if alive.numel() == 0:
                    break
                h = _pad_rows(h[keep], min(B, -(-alive.numel() // bucket) * bucket))
        if alive.numel() or not idx_parts:  # (an empty batch still returns [0, C])
            idx_parts.append(alive)
            logit_parts.append(bb.final_head(h)[:alive.numel()])
            exit_parts.append(torch.full((alive.numel(),), len(self.ics), dtype=torch.long, device=x.device))
        idx = torch.cat(idx_parts)
        order = torch.empty_like(idx)
        order[idx] = torch.arange(B, device=x.device)  # inverse permutation: back to input order
        return torch.cat(logit_parts)[order], torch.cat(exit_parts)[order]

    @torch.no_grad()
    def forward_early_exit(self, x: torch.Tensor, taus: float | Sequence[float]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real early-stopping inference: computation stops for a sample at its first firing exit.

        Args:
            x: [B, 3, H, W] pixels in [0,1].
            taus: one global threshold, or one per internal exit (length ``num_exits - 1``; any
                other length is a ValueError); an input leaves at exit i when its max softmax
                probability is >= taus[i]; the final exit always answers.
        Returns:
            (logits [B, C] float32 of the answering exit, exit number [B] int64, 0-based).
        Only the still-running samples are carried through each later stage, so the work done
        is the work early-exit deployment does (:meth:`forward_fired` without the graph).
        """
        logits, ex = self.forward_fired(x, taus)
        return logits.float(), ex


def _pad_rows(h: torch.Tensor, rows: int) -> torch.Tensor:
    """``h`` with zero rows appended up to ``rows`` (its memory format kept; the gradient of the
    padding is dropped by the pad's backward)."""
    extra = rows - h.shape[0]
    return torch.nn.functional.pad(h, (0, 0) * (h.dim() - 1) + (0, extra)) if extra > 0 else h


def attach_exits(cnn: SDNN) -> DyNN:
    """IC-only DyNN of a CNN: new IC heads on the CNN's own (shared) backbone module."""
    if not isinstance(cnn, SDNN):
        raise TypeError(f"attach_exits expects an SDNN (static CNN), got {type(cnn).__name__}")
    return DyNN(cnn.backbone)
