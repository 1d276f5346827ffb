"""What every attack shares: model mode, argument checks, the L-inf projection, a single-exit view.

* :func:`attack_mode` puts the model in eval mode and freezes its weights (``requires_grad``
  False) for the duration of an attack, then restores every module's mode and every
  parameter's flag exactly as they were (protocol section 6; the torchattacks convention that
  the harness, not the attack, handles model mode).
* :func:`validate_attack_args` raises a clear ``ValueError`` on bad budgets or tensors before
  any forward pass is spent.
* :func:`project` is the L-inf ball + [0,1] box projection of PGD and MI-FGSM (the same
  operation order as torchattacks, so results match theirs bit for bit).
* :class:`ExitView` exposes one exit of a DyNN as an ordinary single-tensor classifier, so
  standard libraries (torchattacks, AutoAttack) apply unchanged.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Iterator

import torch
from torch import nn

from ..early_exit import as_exit_list


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen weights inside the block; previous state restored on exit.

    The previous state is recorded per module (``training``) and per parameter
    (``requires_grad``), so a model with mixed modes (e.g. frozen BatchNorm inside a training
    model) comes back exactly as it was, even when the attack raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def validate_attack_args(eps: float, step: float | None = None, steps: int = 1,
                         x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` for an unusable attack configuration (called before any compute).

    Args:
        eps: L-inf budget on [0,1] pixels; must be a finite number in [0, 1].
        step: per-iteration step size (``None``: not used / derived); finite, in [0, 1].
        steps: number of iterations, an integer >= 1.
        x: optional images, float ``[B, 3, H, W]`` (any H, W) with values in [0, 1].
        y: optional labels, int64 ``[B]``.
    """
    if not _is_real(eps) or math.isnan(eps) or not 0.0 <= float(eps) <= 1.0:
        raise ValueError(f"eps is an L-inf budget on [0,1] pixels and must lie in [0, 1], got {eps!r}")
    if step is not None and (not _is_real(step) or math.isnan(step) or not 0.0 <= float(step) <= 1.0):
        raise ValueError(f"step is a step size on [0,1] pixels and must lie in [0, 1], got {step!r}")
    if not isinstance(steps, Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if x is not None:
        validate_images(x, y)


def validate_images(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """``ValueError`` unless ``x`` is float ``[B, C, H, W]`` in [0, 1] and ``y`` (if given) int64 ``[B]``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor [B, C, H, W] of [0,1] pixels, got a {desc}")
    if x.numel() and (x.min() < 0 or x.max() > 1 or x.isnan().any()):
        raise ValueError(f"x must hold [0,1] pixels, got values in [{x.min().item():.4g}, {x.max().item():.4g}]")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            desc = f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be an int64 tensor [B] of class indices, got a {desc}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} images but y has {y.shape[0]} labels")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf ball of radius ``eps`` around ``x`` and into [0,1] (detached)."""
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1).detach()


def uniform_like(x: torch.Tensor, low: float, high: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform [low, high) noise shaped like ``x``, drawn from ``generator`` (global RNG if None).

    Drawn on the generator's device and moved to ``x``'s, so a CPU generator seeds CUDA runs.
    """
    if generator is None:
        return torch.empty_like(x).uniform_(low, high)
    noise = torch.empty(x.shape, dtype=x.dtype, device=generator.device).uniform_(low, high, generator=generator)
    return noise.to(x.device)


class ExitView(nn.Module):
    """One exit of a multi-exit model as a plain classifier: ``forward(x) -> logits [B, C]``.

    Args:
        model: a DyNN (list output) or a CNN (tensor output, only exit 0 / -1 exists).
        exit: 0-based exit index; negative values count from the final exit (default -1).
    Example::

        import torchattacks
        atk = torchattacks.PGD(ExitView(dynn, exit=0), eps=8/255)   # attack the first IC alone
    """

    is_dynamic = False

    def __init__(self, model: nn.Module, exit: int = -1):
        super().__init__()
        n = int(getattr(model, "num_exits", 1))
        if not isinstance(exit, Integral) or isinstance(exit, bool) or not -n <= exit < n:
            raise ValueError(f"exit must be an integer in [{-n}, {n - 1}] for a {n}-exit model, got {exit!r}")
        self.model = model
        self.exit = int(exit) % n

    @property
    def num_exits(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return as_exit_list(self.model(x))[self.exit]
