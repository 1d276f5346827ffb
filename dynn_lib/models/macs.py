"""Multiply-accumulate (MAC) counts of the modules that actually run (protocol section 3).

Convention: one forward of a ``[1, 3, s, s]`` input with hooks on every ``Conv2d`` and
``Linear``; ``Conv2d`` costs ``out_elements * (in_channels / groups) * kh * kw`` (depthwise
convolutions counted correctly, not with the SDN profiler's ~8x over-count), ``Linear`` costs
``in_features * out_features``. Biases, BatchNorm, activations, pooling, normalisation and
the IC's mixing scalar are not counted. Units: MACs per input image (not FLOPs = 2 MACs).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .base import Backbone, DyNN, SDNN


def module_macs(m: nn.Module, out: torch.Tensor) -> int:
    """MACs of one ``Conv2d`` / ``Linear`` call producing ``out`` (0 for any other module)."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return out.numel() * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return (out.numel() // m.out_features) * m.in_features * m.out_features
    return 0


@contextmanager
def _counting(model: nn.Module) -> Iterator[list[int]]:
    """Yield a one-item list holding the running MAC total of ``model``'s Conv2d/Linear calls."""
    total = [0]

    def hook(m: nn.Module, inp, out) -> None:
        total[0] += module_macs(m, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def exit_macs(model: SDNN | DyNN, input_size: int | None = None, include_earlier_ics: bool = True) -> list[int]:
    """MACs per input of answering at each exit, ``[cost of exit 0, ..., cost of the final exit]``.

    Cost of exit i = the backbone stages up to exit i's position plus exit i's head, plus (with
    ``include_earlier_ics``, the default) the heads of exits 0..i-1, which early-exit inference
    also ran before reaching exit i. An :class:`SDNN` gives a 1-element list (the whole network).

    Args:
        model: an SDNN or DyNN.
        input_size: input side in pixels (default ``model.spec.input_size``; the heads only fit that size).
    """
    if not isinstance(model, (SDNN, DyNN)):
        raise TypeError(f"exit_macs expects an SDNN or DyNN, got {type(model).__name__}")
    bb: Backbone = model.backbone
    side = input_size or bb.spec.input_size
    p = next(model.parameters())
    x = torch.zeros(1, 3, side, side, device=p.device, dtype=p.dtype)
    ics = dict(zip(bb.ic_after, model.ics)) if isinstance(model, DyNN) else {}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with _counting(model) as total:
            costs, heads = [], 0
            h = bb.normalize(x)
            for i, stage in enumerate(bb.stages):
                h = stage(h)
                if i in ics:
                    before = total[0]
                    ics[i](h)
                    head = total[0] - before
                    costs.append(total[0] - (0 if include_earlier_ics else heads))
                    heads += head
            bb.final_head(h)
            costs.append(total[0] - (0 if include_earlier_ics else heads))
    finally:
        for m, mode in modes:
            m.training = mode
    return costs


def backbone_macs(model: SDNN | DyNN | Backbone, input_size: int | None = None) -> int:
    """MACs per input of the static network (the backbone alone, no IC heads)."""
    bb = model if isinstance(model, Backbone) else model.backbone
    return exit_macs(SDNN(bb), input_size)[0]
