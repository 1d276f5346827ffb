"""FGSM: Fast Gradient Sign Method.

Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015
(https://arxiv.org/abs/1412.6572). Threat model: L-inf on [0,1] pixels, untargeted.

One step ``x_adv = clip_[0,1](x + eps * sign(grad_x CE))``, the same as ``torchattacks.FGSM``
(its result is reproduced exactly for a single-exit model).

Example::

    x_adv = fgsm(model, x, y, eps=8/255)                               # CNN or DyNN final exit
    x_adv, info = fgsm(dynn, x, y, exit_loss="fired", tau=0.9, return_info=True)
    info.exit_used                                                      # [B] exit differentiated
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .harness import attack_mode, validate_attack_args
from .losses import AttackInfo, ExitLossArg, loss_gradient, loss_path, model_exits, resolve_exit_loss


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
         exit_loss: ExitLossArg = "final", tau: float | Sequence[float] | None = None,
         generator: torch.Generator | None = None, return_info: bool = False, truncate: bool = True
         ) -> torch.Tensor | tuple[torch.Tensor, AttackInfo]:
    """Untargeted one-step FGSM.

    Args:
        model: a CNN (``forward -> [B, C]``) or a DyNN (``forward -> list of [B, C]``, final last);
            its normalisation is inside it. Run in eval mode with frozen weights, then restored.
        x: images, float ``[B, 3, H, W]`` in [0, 1].
        y: labels, int64 ``[B]`` (ground truth, or the surrogate's prediction in black-box use).
        eps: L-inf budget in [0,1] pixel units (default 8/255); the single step has size eps.
        exit_loss: which exit's CE to maximise (see :mod:`dynn_lib.attacks.losses`):
            "final" (default), "fired" (needs ``tau``), "mean", an exit index, or a hook.
        tau: early-exit threshold(s), used by ``exit_loss="fired"`` only.
        generator: unused (FGSM is deterministic); accepted so all attacks share one signature.
        return_info: also return an :class:`AttackInfo` (``exit_used`` ``[B]`` int64, ``macs``).
        truncate: stop each forward/backward at the exit the loss needs (default True; see
            :mod:`dynn_lib.attacks.losses`); same result as False, which computes every exit.
    Returns:
        ``x_adv`` ``[B, 3, H, W]``, detached, within ``eps`` of ``x`` in L-inf and inside [0, 1]
        (and ``info`` when ``return_info``).
    """
    validate_attack_args(eps, None, 1, x, y)
    spec = resolve_exit_loss(exit_loss, model_exits(model), tau)
    x = x.detach()
    with attack_mode(model):
        path = loss_path(model, spec, x.device, truncate)
        grad, used, macs = loss_gradient(model, x, y, path)
        x_adv = torch.clamp(x + eps * grad.sign(), min=0, max=1).detach()
    return (x_adv, AttackInfo(used, exit_loss, macs)) if return_info else x_adv
