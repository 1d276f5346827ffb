"""MI-FGSM: Momentum Iterative Fast Gradient Sign Method (L-inf).

Paper: Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with Momentum",
CVPR 2018 (https://arxiv.org/abs/1710.06081). Threat model: L-inf on [0,1] pixels, untargeted.

Starting at ``x``, ``steps`` times: ``g <- decay * g + grad / mean|grad|`` (per image),
``x <- x + step * sign(g)`` projected into the eps-ball around ``x`` and into [0,1]. Same
update as ``torchattacks.MIFGSM`` (reproduced exactly for a single-exit model), except the
default step, which is ``eps / steps`` here (protocol section 6) and 2/255 there, and an
image whose gradient is exactly zero (saturated softmax), which stays put here instead of
turning into NaN.

Example::

    x_adv = mifgsm(model, x, y)                       # eps 8/255, 10 steps of eps/10, decay 1.0
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .harness import attack_mode, project, validate_attack_args
from .losses import AttackInfo, ExitLossArg, loss_gradient, loss_path, model_exits, resolve_exit_loss


def mifgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, step: float | None = None,
           steps: int = 10, decay: float = 1.0, exit_loss: ExitLossArg = "final",
           tau: float | Sequence[float] | None = None, generator: torch.Generator | None = None,
           return_info: bool = False, truncate: bool = True) -> torch.Tensor | tuple[torch.Tensor, AttackInfo]:
    """Untargeted L-inf MI-FGSM.

    Args:
        model: a CNN (``forward -> [B, C]``) or a DyNN (``forward -> list of [B, C]``, final last);
            its normalisation is inside it. Run in eval mode with frozen weights, then restored.
        x: images, float ``[B, 3, H, W]`` in [0, 1].
        y: labels, int64 ``[B]``.
        eps: L-inf budget in [0,1] pixel units (default 8/255).
        step: step size per iteration in [0,1] pixel units (default None: ``eps / steps``).
        steps: number of iterations (default 10).
        decay: momentum decay factor mu >= 0 (default 1.0).
        exit_loss: which exit's CE to maximise: "final" (default), "fired" (needs ``tau``;
            recomputed at every step), "mean", an exit index, or a hook.
        tau: early-exit threshold(s), used by ``exit_loss="fired"`` only.
        generator: unused (MI-FGSM is deterministic); accepted so all attacks share one signature.
        return_info: also return an :class:`AttackInfo`; ``exit_used`` is the exit
            differentiated at the last step, ``macs`` the forward MACs over all steps.
        truncate: stop each forward/backward at the exit the loss needs (default True; see
            :mod:`dynn_lib.attacks.losses`); same result as False, which computes every exit.
    Returns:
        ``x_adv`` ``[B, 3, H, W]``, detached, within ``eps`` of ``x`` in L-inf and inside [0, 1].
    """
    validate_attack_args(eps, step, steps, x, y)
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not decay >= 0:
        raise ValueError(f"decay must be a number >= 0, got {decay!r}")
    spec = resolve_exit_loss(exit_loss, model_exits(model), tau)
    if step is None:
        step = eps / steps
    x = x.detach()
    x_adv = x.clone()
    momentum = torch.zeros_like(x)
    with attack_mode(model):
        path = loss_path(model, spec, x.device, truncate)
        macs = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for _ in range(steps):
            grad, used, step_macs = loss_gradient(model, x_adv, y, path)
            macs = macs + step_macs
            scale = torch.mean(torch.abs(grad), dim=(1, 2, 3), keepdim=True)
            grad = grad / torch.where(scale > 0, scale, torch.ones_like(scale))  # 0/0 would give NaN
            grad = grad + momentum * decay
            momentum = grad
            x_adv = project(x_adv + step * grad.sign(), x, eps)
    return (x_adv, AttackInfo(used, exit_loss, macs)) if return_info else x_adv
