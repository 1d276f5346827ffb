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

Truncated path (the paper's mechanism for Finding 2; :func:`loss_path`, on by default): an
attack on an early-exit surrogate stops computing at the exit it uses. On this library's
:class:`~dynn_lib.models.DyNN`, exit index k runs only the stages up to exit k and exit k's
head (:meth:`~dynn_lib.models.DyNN.forward_exit`; ``"final"`` is the backbone without any IC
head), and ``"fired"`` runs early-exit inference with the graph kept
(:meth:`~dynn_lib.models.DyNN.forward_fired`: samples that fired leave the batch, the forward
and backward stop at the deepest exit the batch needs). The loss, its gradient and
``exit_used`` equal the full path's (every exit computed, then the loss's exit selected);
``"mean"``, hooks and models other than this library's SDNN/DyNN always take the full path.
``AttackInfo.macs`` counts the forward MACs each sample cost over all steps
(:func:`dynn_lib.models.exit_macs` up to the exit each step stopped at; backward passes not
counted; on the full path every step costs the whole DyNN, all IC heads included).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Callable, Sequence, Union

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..early_exit import as_exit_list, exit_numbers, fired_logits, resolve_taus, stack_exits, tau_tensor
from ..models.base import DyNN, SDNN
from ..models.macs import exit_macs
from .harness import validate_attack_args  # re-exported: part of this module's documented API

__all__ = ["EXIT_LOSSES", "ALL_EXITS", "ExitLoss", "AttackInfo", "LossPath", "resolve_exit_loss", "attack_logits",
           "attack_loss", "loss_path", "path_loss", "loss_gradient", "validate_attack_args"]

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
    macs: ``[B]`` float64, forward multiply-accumulates spent on each sample over all the
    attack's steps (per step: the model's cost up to the exit that step stopped at; NaN when
    the model is not this library's SDNN/DyNN; None from code that does not count).
    """

    exit_used: torch.Tensor
    exit_loss: ExitLossArg
    macs: torch.Tensor | None = None


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


def _loss_from_outputs(outs: list[torch.Tensor], y: torch.Tensor, spec: ExitLoss,
                       taus: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss ``[B]`` and ``exit_used`` ``[B]`` from every exit's logits (the full path)."""
    B = y.shape[0]
    if spec.kind == "index":
        loss = F.cross_entropy(outs[spec.index], y, reduction="none")
        used = torch.full((B,), spec.index, dtype=torch.long, device=y.device)
    elif spec.kind == "fired":
        z = stack_exits(outs)
        used = exit_numbers(z.detach(), spec.taus if taus is None else taus)
        loss = F.cross_entropy(z[used, torch.arange(B, device=z.device)], y, reduction="none")
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


def attack_loss(out: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, exit_loss: ExitLossArg | ExitLoss,
                tau: float | Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample attack loss ``[B]`` (to be maximised) and ``exit_used`` ``[B]`` int64, from a
    model output holding every exit (the full path)."""
    spec = resolve_exit_loss(exit_loss, len(as_exit_list(out)), tau)
    return _loss_from_outputs(_outs(out, spec), y, spec)


@dataclass(frozen=True)
class LossPath:
    """How an attack computes its loss at every step, fixed once per attack by :func:`loss_path`.

    spec: the resolved exit loss. truncated: the forward (and so the backward) stops at the
    exit the loss needs (module docstring); False = every exit of the model runs. taus:
    ``[E-1]`` float32 thresholds on the attack's device ("fired" only), built once per attack.
    step_macs: ``[E]`` float64 on the device, the forward MACs one step spends on a sample,
    indexed by its ``exit_used`` (a constant row on the full path; NaN when unknown).
    """

    spec: ExitLoss
    truncated: bool
    taus: torch.Tensor | None
    step_macs: torch.Tensor


_COSTS: "weakref.WeakKeyDictionary[nn.Module, tuple[list[int], list[int]]]" = weakref.WeakKeyDictionary()


def _exit_costs(model: nn.Module) -> tuple[list[int], list[int]] | None:
    """(cost of each exit with the earlier IC heads, without them), cached per model; None when unknown."""
    if not isinstance(model, (SDNN, DyNN)):
        return None
    if model not in _COSTS:
        _COSTS[model] = (exit_macs(model), exit_macs(model, include_earlier_ics=False))
    return _COSTS[model]


def loss_path(model: nn.Module, spec: ExitLoss, device: torch.device | str, truncate: bool = True) -> LossPath:
    """Prepare an attack's loss once: truncated or full path, τ as a device tensor, MACs per step.

    Args:
        model: the attacked model (an SDNN/DyNN of this library gets the truncated path).
        spec: from :func:`resolve_exit_loss`.
        device: where the attack runs (τ and the MACs table are put there once).
        truncate: use the truncated path where it applies (exit index, "final", "fired";
            default True); False forces the full path (for comparison and tests).
    """
    truncated = bool(truncate) and isinstance(model, (SDNN, DyNN)) and spec.kind in ("index", "fired")
    taus = tau_tensor(spec.taus, spec.num_exits, device) if spec.kind == "fired" else None
    costs = _exit_costs(model)
    E = spec.num_exits
    if costs is None or len(costs[0]) != E:
        table = [float("nan")] * E
    elif not truncated:
        table = [float(costs[0][-1])] * E  # every stage and every head, each step
    elif spec.kind == "fired":
        table = [float(c) for c in costs[0]]  # up to the fired exit, the earlier heads included
    else:
        table = [float(c) for c in costs[1]]  # up to exit k and its head alone
    return LossPath(spec, truncated, taus, torch.tensor(table, dtype=torch.float64, device=device))


def path_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, path: LossPath
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample loss ``[B]``, ``exit_used`` ``[B]`` and forward MACs ``[B]`` of one step along ``path``."""
    spec = path.spec
    if path.truncated and spec.kind == "index":
        logits = model.forward_exit(x, spec.index) if isinstance(model, DyNN) else model(x)
        loss = F.cross_entropy(logits, y, reduction="none")
        used = torch.full((y.shape[0],), spec.index, dtype=torch.long, device=y.device)
    elif path.truncated:
        logits, used = model.forward_fired(x, path.taus)
        loss = F.cross_entropy(logits, y, reduction="none")
    else:
        loss, used = _loss_from_outputs(_outs(model(x), spec), y, spec, path.taus)
    return loss, used, path.step_macs[used.clamp(min=0)]


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, path: LossPath
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of the batch-summed attack loss w.r.t. the images ``x``, ``exit_used`` and MACs.

    Returns ``(grad [B, 3, H, W], exit_used [B] int64, forward MACs of this step [B] float64)``;
    the model's parameters get no ``.grad``.
    """
    with torch.enable_grad():  # attacks also work when called under torch.no_grad()
        x = x.detach().requires_grad_(True)
        loss, used, macs = path_loss(model, x, y, path)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return grad, used, macs
