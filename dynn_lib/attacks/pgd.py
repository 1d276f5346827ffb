"""PGD: Projected Gradient Descent (L-inf).

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018 (https://arxiv.org/abs/1706.06083). Threat model: L-inf on
[0,1] pixels, untargeted.

Optional uniform start in the eps-ball, then ``steps`` times: ``x <- x + step * sign(grad_x CE)``
projected back into the eps-ball around the benign image and into [0,1]. Same update and
projection order as ``torchattacks.PGD`` (reproduced exactly for a single-exit model; with
``generator=None`` the random start uses the global RNG the way torchattacks does).

Example::

    x_adv = pgd(model, x, y)                                  # eps 8/255, 10 steps of 2/255
    x_adv = pgd(dynn, x, y, exit_loss="fired", tau=0.9, generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .harness import attack_mode, project, uniform_like, validate_attack_args
from .losses import AttackInfo, ExitLossArg, loss_gradient, loss_path, model_exits, resolve_exit_loss


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, step: float = 2 / 255,
        steps: int = 10, random_start: bool = True, exit_loss: ExitLossArg = "final",
        tau: float | Sequence[float] | None = None, generator: torch.Generator | None = None,
        return_info: bool = False, truncate: bool = True) -> torch.Tensor | tuple[torch.Tensor, AttackInfo]:
    """Untargeted L-inf PGD.

    Args:
        model: a CNN (``forward -> [B, C]``) or a DyNN (``forward -> list of [B, C]``, final last);
            its normalisation is inside it. Run in eval mode with frozen weights, then restored.
        x: images, float ``[B, 3, H, W]`` in [0, 1].
        y: labels, int64 ``[B]``.
        eps: L-inf budget in [0,1] pixel units (default 8/255).
        step: step size per iteration in [0,1] pixel units (default 2/255).
        steps: number of iterations (default 10).
        random_start: start from ``x + U(-eps, eps)`` clipped to [0,1] (default True).
        exit_loss: which exit's CE to maximise: "final" (default), "fired" (needs ``tau``;
            recomputed at every step), "mean", an exit index, or a hook.
        tau: early-exit threshold(s), used by ``exit_loss="fired"`` only.
        generator: ``torch.Generator`` seeding the random start (global RNG when None).
        return_info: also return an :class:`AttackInfo`; ``exit_used`` is the exit
            differentiated at the last step, ``macs`` the forward MACs over all steps.
        truncate: stop each forward/backward at the exit the loss needs (default True; see
            :mod:`dynn_lib.attacks.losses`); same result as False, which computes every exit.
    Returns:
        ``x_adv`` ``[B, 3, H, W]``, detached, within ``eps`` of ``x`` in L-inf and inside [0, 1].
    """
    validate_attack_args(eps, step, steps, x, y)
    spec = resolve_exit_loss(exit_loss, model_exits(model), tau)
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        x_adv = torch.clamp(x_adv + uniform_like(x, -eps, eps, generator), min=0, max=1)
    with attack_mode(model):
        path = loss_path(model, spec, x.device, truncate)
        macs = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for _ in range(steps):
            grad, used, step_macs = loss_gradient(model, x_adv, y, path)
            macs = macs + step_macs
            x_adv = project(x_adv + step * grad.sign(), x, eps)
    return (x_adv, AttackInfo(used, exit_loss, macs)) if return_info else x_adv
