"""Which exit(s) an attack differentiates: the ``exit_loss`` choice (protocol section 6).

A DyNN returns one logits tensor per exit, so a gradient attack on it must say which loss it
maximises. ``exit_loss`` is one of

* ``"final"``: cross-entropy (CE) at the final exit;
* ``"fired"``: CE at the exit where early-exit inference at ``tau`` stops for the *current*
  iterate (recomputed at every step with :func:`dynn_lib.early_exit.fired_logits`);
* ``"mean"``: the mean over all exits of the per-exit CE;
* an ``int`` k: CE at exit k (negative k counts from the final exit);
* a callable ``hook(outs, y) -> loss [B]`` (``outs`` the list of per-exit logits): any other
  per-sample loss, e.g. the Early-Attack baselines' mean CE over the internal exits.

A CNN (tensor output) has one exit, so only ``"final"``, 0 or -1 (or a hook) apply.

Reduction: per-sample losses are **summed** over the batch. torchattacks averages; the two
gradients differ by the positive factor 1/B, so their signs, and hence FGSM/PGD/MI-FGSM
steps, are the same, while a sample's step never depends on the rest of its batch.

``exit_used`` (``AttackInfo.exit_used``, RQ1's Fig. 7 "exit used to generate") is the 0-based
exit whose loss gave a sample's last gradient step: the fired exit of the last iterate the
gradient was taken at for ``"fired"``, the fixed index for ``"final"``/k, and
:data:`ALL_EXITS` (-1) when several exits enter the loss (``"mean"``, hooks).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..early_exit import as_exit_list, exit_numbers, fired_logits, resolve_taus, stack_exits
from .harness import validate_attack_args  # re-exported: part of this module's documented API

__all__ = ["EXIT_LOSSES", "ALL_EXITS", "ExitLoss", "AttackInfo", "resolve_exit_loss", "attack_logits",
           "attack_loss", "loss_gradient", "validate_attack_args"]

EXIT_LOSSES: tuple[str, ...] = ("final", "fired", "mean")
"""Named exit losses; an int exit index or a callable hook is accepted too."""

ALL_EXITS = -1
"""``exit_used`` value when the loss combines several exits (``"mean"`` or a hook)."""

LossHook = Callable[[list, torch.Tensor], torch.Tensor]
ExitLossArg = Union[str, int, LossHook]


@dataclass(frozen=True)
class ExitLoss:
    """A resolved ``exit_loss``: ``kind`` in {"index", "fired", "mean", "hook"}.

    index: the non-negative exit index for "index"; taus: per-internal-exit thresholds for
    "fired"; hook: the callable for "hook"; num_exits: exits of the model it was resolved for.
    """

    kind: str
    num_exits: int
    index: int | None = None
    taus: tuple[float, ...] | None = None
    hook: LossHook | None = None


@dataclass(frozen=True)
class AttackInfo:
    """Extra output of an attack run with ``return_info=True``.

    exit_used: ``[B]`` int64, the exit whose loss gave each sample's last gradient step
    (:data:`ALL_EXITS` when several exits enter the loss). exit_loss: the choice used.
    """

    exit_used: torch.Tensor
    exit_loss: ExitLossArg


def _accepted(num_exits: int) -> str:
    if num_exits == 1:
        return "'final', 0 or -1 (a CNN has a single exit), or a callable hook"
    return f"{EXIT_LOSSES}, an exit index in [{-num_exits}, {num_exits - 1}], or a callable hook"


def resolve_exit_loss(exit_loss: ExitLossArg | ExitLoss, num_exits: int,
                      tau: float | Sequence[float] | None = None) -> ExitLoss:
    """Check ``exit_loss`` against a model with ``num_exits`` exits; ``ValueError`` if unusable.

    ``tau`` (one global threshold or one per internal exit) is required by ``"fired"`` and
    ignored otherwise.
    """
    if isinstance(exit_loss, ExitLoss):
        if exit_loss.num_exits != num_exits:
            raise ValueError(f"exit_loss was resolved for {exit_loss.num_exits} exits, the model has {num_exits}")
        return exit_loss
    if callable(exit_loss):
        return ExitLoss("hook", num_exits, hook=exit_loss)
    if isinstance(exit_loss, Integral) and not isinstance(exit_loss, bool):
        if not -num_exits <= exit_loss < num_exits:
            raise ValueError(f"exit_loss={exit_loss!r} is out of range; accepted: {_accepted(num_exits)}")
        return ExitLoss("index", num_exits, index=int(exit_loss) % num_exits)
    if exit_loss == "final":
        return ExitLoss("index", num_exits, index=num_exits - 1)
    if exit_loss in ("fired", "mean") and num_exits > 1:
        if exit_loss == "mean":
            return ExitLoss("mean", num_exits)
        if tau is None:
            raise ValueError("exit_loss='fired' needs tau (the early-exit threshold(s)) to know where inference stops")
        return ExitLoss("fired", num_exits, taus=resolve_taus(tau, num_exits))
    raise ValueError(f"exit_loss={exit_loss!r} is not usable for a {num_exits}-exit model; "
                     f"accepted: {_accepted(num_exits)}")


def model_exits(model: nn.Module) -> int:
    """Number of exits of a model: ``model.num_exits`` if it has one, else 1 (a plain CNN)."""
    return int(getattr(model, "num_exits", 1))


def _outs(out: torch.Tensor | Sequence[torch.Tensor], spec: ExitLoss) -> list[torch.Tensor]:
    outs = as_exit_list(out)
    if len(outs) != spec.num_exits:
        raise ValueError(f"the model returned {len(outs)} exits, expected {spec.num_exits}")
    return outs


def attack_logits(out: torch.Tensor | Sequence[torch.Tensor], exit_loss: ExitLossArg | ExitLoss,
                  tau: float | Sequence[float] | None = None) -> torch.Tensor:
    """The logits that enter the attack's CE for one model output.

    Returns ``[B, C]`` for "final", "fired" (the exit each sample leaves at, at ``tau``) and an
    index; the ``[E, B, C]`` stack of all exits for "mean". Differentiable w.r.t. ``out``.
    """
    spec = resolve_exit_loss(exit_loss, len(as_exit_list(out)), tau)
    outs = _outs(out, spec)
    if spec.kind == "index":
        return outs[spec.index]
    if spec.kind == "fired":
        return fired_logits(outs, spec.taus)
    if spec.kind == "mean":
        return stack_exits(outs)
    raise ValueError("a loss hook has no single logits tensor; use attack_loss")


def attack_loss(out: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, exit_loss: ExitLossArg | ExitLoss,
                tau: float | Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample attack loss ``[B]`` (to be maximised) and ``exit_used`` ``[B]`` int64."""
    spec = resolve_exit_loss(exit_loss, len(as_exit_list(out)), tau)
    outs = _outs(out, spec)
    B = y.shape[0]
    if spec.kind == "index":
        loss = F.cross_entropy(outs[spec.index], y, reduction="none")
        used = torch.full((B,), spec.index, dtype=torch.long, device=y.device)
    elif spec.kind == "fired":
        loss = F.cross_entropy(fired_logits(outs, spec.taus), y, reduction="none")
        used = exit_numbers([o.detach() for o in outs], spec.taus)
    elif spec.kind == "mean":
        loss = torch.stack([F.cross_entropy(o, y, reduction="none") for o in outs]).mean(0)
        used = torch.full((B,), ALL_EXITS, dtype=torch.long, device=y.device)
    else:
        loss = spec.hook(outs, y)
        if not isinstance(loss, torch.Tensor) or loss.shape != (B,):
            raise ValueError(f"a loss hook must return a per-sample loss of shape [{B}], "
                             f"got {getattr(loss, 'shape', type(loss).__name__)}")
        used = torch.full((B,), ALL_EXITS, dtype=torch.long, device=y.device)
    return loss, used


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: ExitLoss
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the batch-summed attack loss w.r.t. the images ``x``, and ``exit_used``.

    Returns ``(grad [B, 3, H, W], exit_used [B])``; the model's parameters get no ``.grad``.
    """
    with torch.enable_grad():  # attacks also work when called under torch.no_grad()
        x = x.detach().requires_grad_(True)
        loss, used = attack_loss(model(x), y, spec)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return grad, used
