"""Early Attack: keep the final exit's answer, make every internal exit disagree with it.

Paper: the reproduced submission, section 6 and Algorithm 1 (arXiv 2308.08709); protocol
section 9 fixes the details. Threat model: unbounded L2-penalised perturbation on [0,1]
pixels (Carlini-Wagner style tanh change of variables), one DyNN with N exits.

With p the final exit's prediction on the benign x and y^i the softmax of exit i:

* L1 = -sum_{j != p} max(y^N_p - y^N_j, 0) over all classes (keeps the final answer p);
* L2 = sum_{i < N} y^i_p over the internal exits (pushes them off p);
* x' = (tanh(w) + 1) / 2; minimise ||x' - x||_2^2 + c * (alpha * L1 + L2) over w with Adam.

Algorithm 1, per sample: compute x', run the model, return x' if it is a success (final
prediction == p and every internal prediction != p), else take one Adam step; after ``iters``
steps return the last x'. Batched: per-sample losses are **summed** (so a sample's gradient is
its own, whatever the batch) and a sample that succeeds is frozen: its x' is copied out at that
iteration and its loss leaves the sum. Adam's moments would still move its w, but that w is
never read again, so the batched result equals running each sample alone from the same w (up
to floating-point rounding: another batch size can select other convolution kernels; a tiny
DyNN on a CPU differed by at most 2.4e-7 of a pixel after 300 iterations). For the same reason
``alpha`` may differ per sample (a ``[B]`` tensor): one batch runs a whole alpha grid, each row
equal to its own single-alpha run in the same batch layout (bit for bit).

No host synchronisation inside the loop: success bookkeeping is done with device masks
(``torch.where``; the loss is ``(loss * ~done).sum()``), and the host reads "is every sample
done?" only every ``check_every`` iterations. Every sample still stops at its *first* success
(the check itself runs every iteration on the device); only the loop's exit is delayed, by at
most ``check_every - 1`` iterations whose gradients are zero for every sample, so the result
equals checking every iteration.

Example::

    res = early_attack(dynn, x, alpha=1.0, generator=torch.Generator().manual_seed(0))
    res.success.float().mean()            # success rate; res.x_adv [B, 3, H, W]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Sequence

import torch
from torch import nn

from ..early_exit import as_exit_list, stack_exits
from ..metrics import early_attack_success  # the criterion's one definition
from .harness import attack_mode, validate_images

EARLY_ATTACK_INITS: tuple[str, ...] = ("random", "input")
"""w initialisations: "random" = uniform [0,1) (released code); "input" = atanh(2x-1), x' = x."""

INIT_LABELS: dict[str, str] = {"random": "random w (paper)", "input": "at the image"}
"""How the book names each of :data:`EARLY_ATTACK_INITS` in a table."""


@dataclass(frozen=True)
class EarlyAttackResult:
    """Outcome of :func:`early_attack` for a batch of B images.

    x_adv: ``[B, 3, H, W]`` in [0,1], detached (the first successful x', else the last one);
    success: ``[B]`` bool, the success criterion on ``x_adv``; iters_used: ``[B]`` int64, Adam
    updates applied before ``x_adv`` (0 = the initial x' already succeeded; ``iters`` for
    samples that ran to the end); p: ``[B]`` int64, the final exit's benign prediction.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    iters_used: torch.Tensor
    p: torch.Tensor


def early_attack_losses(outs: torch.Tensor | Sequence[torch.Tensor], p: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (L1 ``[B]``, L2 ``[B]``) of protocol section 9, over all C classes."""
    probs = stack_exits(outs).float().softmax(-1)  # [E, B, C]
    idx = p.view(1, -1, 1).expand(probs.shape[0], -1, 1)
    probs_p = probs.gather(-1, idx).squeeze(-1)  # [E, B]
    # the j = p term is max(0, 0) = 0, so summing over all classes equals the sum over j != p
    l1 = -torch.clamp(probs_p[-1][:, None] - probs[-1], min=0).sum(-1)
    l2 = probs_p[:-1].sum(0)
    return l1, l2


def initial_w(x: torch.Tensor, init: str = "random", generator: torch.Generator | None = None) -> torch.Tensor:
    """Starting w ``[B, 3, H, W]``: "random" = uniform [0,1) from ``generator`` (global RNG if None),
    drawn as one tensor for the batch; "input" = atanh(2x-1), clamped so that x' starts at x."""
    if init == "random":
        device = generator.device if generator is not None else x.device
        return torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    if init == "input":
        return torch.atanh(torch.clamp(2 * x - 1, min=-1 + 1e-6, max=1 - 1e-6))
    raise ValueError(f"init={init!r} is not one of {EARLY_ATTACK_INITS}")


def _check(model: nn.Module, x: torch.Tensor, alpha: float | torch.Tensor, c: float, iters: int, lr: float,
           init: str, min_iters: int, w0: torch.Tensor | None, check_every: int = 1) -> None:
    if not getattr(model, "is_dynamic", False):
        raise TypeError(f"early_attack needs a DyNN (model.is_dynamic True), got {type(model).__name__}")
    if int(getattr(model, "num_exits", 0)) < 2:
        raise ValueError("early_attack needs at least one internal exit besides the final exit")
    validate_images(x)
    if isinstance(alpha, torch.Tensor):
        if alpha.shape != (x.shape[0],) or not alpha.is_floating_point():
            raise ValueError(f"a per-sample alpha must be a float tensor [B] = [{x.shape[0]}], got a {alpha.dtype} "
                             f"tensor of shape {tuple(alpha.shape)}")
        if not bool((torch.isfinite(alpha) & (alpha >= 0)).all()):
            bad = alpha[~(torch.isfinite(alpha) & (alpha >= 0))][0].item()
            raise ValueError(f"alpha must be a finite number >= 0 for every sample, got {bad!r}")
    checks = (("c", c, lambda v: v > 0), ("lr", lr, lambda v: v > 0))
    if not isinstance(alpha, torch.Tensor):
        checks = (("alpha", alpha, lambda v: v >= 0),) + checks
    for name, v, ok in checks:
        if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or not ok(v):
            raise ValueError(f"{name} must be a finite number {'>= 0' if name == 'alpha' else '> 0'}, got {v!r}")
    if not isinstance(iters, Integral) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, got {iters!r}")
    if not isinstance(check_every, Integral) or isinstance(check_every, bool) or check_every < 1:
        raise ValueError(f"check_every must be an integer >= 1 (iterations between host reads), got {check_every!r}")
    if not isinstance(min_iters, Integral) or isinstance(min_iters, bool) or not 0 <= min_iters <= iters:
        raise ValueError(f"min_iters must be an integer in [0, iters={iters}], got {min_iters!r}")
    if init not in EARLY_ATTACK_INITS:
        raise ValueError(f"init={init!r} is not one of {EARLY_ATTACK_INITS}")
    if w0 is not None and (not isinstance(w0, torch.Tensor) or w0.shape != x.shape):
        raise ValueError(f"w0 must be a tensor shaped like x {tuple(x.shape)}, got {getattr(w0, 'shape', w0)}")


CHECK_EVERY = 25
"""Default iterations between two host reads of "every sample done?" in :func:`early_attack`."""


def early_attack(model: nn.Module, x: torch.Tensor, alpha: float | torch.Tensor, c: float = 50.0,
                 iters: int = 1000, lr: float = 0.01, init: str = "random", min_iters: int = 0,
                 generator: torch.Generator | None = None, w0: torch.Tensor | None = None,
                 check_every: int = CHECK_EVERY) -> EarlyAttackResult:
    """Early Attack on a batch (protocol section 9).

    Args:
        model: a DyNN (``is_dynamic``; ``forward -> list of [B, C]`` logits, final exit last).
            Run in eval mode with frozen weights, then restored.
        x: benign images, float ``[B, 3, H, W]`` in [0, 1] (any size, any number of classes).
        alpha: weight of L1 (keep the final answer) against L2 (move the internal exits), >= 0;
            one number, or a float tensor ``[B]`` with one alpha per sample (a whole grid in
            one batch; each row equals its single-alpha run). The paper's grid is
            {0.001, 0.01, 0.1, 1, 20, 40}.
        c: weight of the attack loss against the squared L2 distance (default 50).
        iters: most Adam updates per sample (default 1000).
        lr: Adam learning rate on w (default 0.01).
        init: "random" (w ~ U[0,1), released code; default) or "input" (x' starts at x).
        min_iters: a success only counts from this iteration on (released code: 200; default 0).
        generator: ``torch.Generator`` for the "random" init (global RNG when None).
        w0: explicit initial w ``[B, 3, H, W]`` (overrides ``init``); running one sample with
            ``w0[i:i+1]`` reproduces row i of the batched run.
        check_every: iterations between two host reads of "is every sample done?" (default
            :data:`CHECK_EVERY` = 25; 1 = every iteration). Speed only: the result is the same
            for every value (module docstring).
    Returns:
        :class:`EarlyAttackResult` (x_adv, success, iters_used, p).
    """
    _check(model, x, alpha, c, iters, lr, init, min_iters, w0, check_every)
    x = x.detach()
    B = x.shape[0]
    if isinstance(alpha, torch.Tensor):
        alpha_t = alpha.detach().to(device=x.device, dtype=x.dtype)
    else:  # the same per-sample product whether alpha comes as a number or a tensor
        alpha_t = torch.full((B,), float(alpha), dtype=x.dtype, device=x.device)
    with attack_mode(model), torch.enable_grad():  # also under a caller's no_grad, as the L-inf attacks
        with torch.no_grad():
            p = as_exit_list(model(x))[-1].argmax(-1)
        w = (w0.detach().to(x) if w0 is not None else initial_w(x, init, generator)).clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        x_out = torch.empty_like(x)
        done = torch.zeros(B, dtype=torch.bool, device=x.device)
        iters_used = torch.full((B,), iters, dtype=torch.long, device=x.device)
        for it in range(iters + 1):
            last = it == iters
            with torch.set_grad_enabled(not last):
                x_adv = (torch.tanh(w) + 1) / 2
                outs = as_exit_list(model(x_adv))
            if it >= min_iters:  # device-side bookkeeping: no host read
                new = early_attack_success([o.detach() for o in outs], p) & ~done
                x_out = torch.where(new.view(-1, 1, 1, 1), x_adv.detach(), x_out)
                iters_used = iters_used.masked_fill(new, it)
                done = done | new
            if last:
                x_out = torch.where(done.view(-1, 1, 1, 1), x_out, x_adv.detach())
                break
            if (it + 1) % check_every == 0 and bool(done.all()):  # the only host read, every check_every
                break
            l1, l2 = early_attack_losses(outs, p)
            dist = (x_adv - x).pow(2).flatten(1).sum(1)
            loss = dist + c * (alpha_t * l1 + l2)
            opt.zero_grad(set_to_none=True)
            (loss * ~done).sum().backward()
            opt.step()
    return EarlyAttackResult(x_out.detach(), done.clone(), iters_used, p)
