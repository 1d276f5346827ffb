"""Early-Attack baselines: FGSM / PGD on the internal exits (protocol section 9, paper Table 1).

The baseline attacks push the internal exits away from p, the final exit's prediction on the
benign input, by maximising the mean cross-entropy of the internal exits against p; the final
exit is left out of the loss. They reuse :func:`~dynn_lib.attacks.fgsm.fgsm` and
:func:`~dynn_lib.attacks.pgd.pgd` unchanged through their ``exit_loss`` hook, and are scored with
Early Attack's own criterion (:func:`~dynn_lib.attacks.early_attack.early_attack_success`).
Threat model: L-inf on [0,1] pixels, budget ``eps``.

Example::

    x_adv, success = early_attack_baseline(dynn, x, attack="pgd", eps=8/255)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..early_exit import as_exit_list
from .early_attack import early_attack_success
from .fgsm import fgsm
from .harness import attack_mode, validate_attack_args
from .pgd import pgd

BASELINE_ATTACKS = {"fgsm": fgsm, "pgd": pgd}


def internal_exits_ce(outs: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean CE ``[B]`` of the internal exits (all exits but the last) against ``y``."""
    return torch.stack([F.cross_entropy(o, y, reduction="none") for o in outs[:-1]]).mean(0)


def early_attack_baseline(model: nn.Module, x: torch.Tensor, attack: str = "pgd", eps: float = 8 / 255,
                          **attack_kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the FGSM or PGD baseline of Early Attack on a batch.

    Args:
        model: a DyNN with at least one internal exit (``forward -> list of [B, C]``, final last).
        x: benign images, float ``[B, 3, H, W]`` in [0, 1].
        attack: "pgd" (default) or "fgsm".
        eps: L-inf budget in [0,1] pixel units (default 8/255).
        **attack_kw: passed to the attack (e.g. ``step``, ``steps``, ``random_start``,
            ``generator`` for PGD); ``exit_loss`` is fixed by the baseline.
    Returns:
        ``(x_adv [B, 3, H, W], success [B] bool)`` with the Early-Attack success criterion.
    """
    if not getattr(model, "is_dynamic", False) or int(getattr(model, "num_exits", 0)) < 2:
        raise TypeError(f"the Early-Attack baselines need a DyNN with internal exits, got {type(model).__name__}")
    if attack not in BASELINE_ATTACKS:
        raise ValueError(f"attack={attack!r} is not one of {tuple(BASELINE_ATTACKS)}")
    fixed = [k for k in ("exit_loss", "return_info") if k in attack_kw]
    if fixed:
        raise ValueError(f"{fixed[0]} is fixed by the baseline (its loss is the mean CE of the internal exits and "
                         f"it returns (x_adv, success)); the attack's other keywords are passed on (for PGD: "
                         f"step, steps, random_start, generator, truncate)")
    validate_attack_args(eps, attack_kw.get("step"), attack_kw.get("steps", 1), x)
    with attack_mode(model), torch.no_grad():
        p = as_exit_list(model(x))[-1].argmax(-1)
    x_adv = BASELINE_ATTACKS[attack](model, x, p, eps=eps, exit_loss=internal_exits_ce, **attack_kw)
    with attack_mode(model), torch.no_grad():
        success = early_attack_success(as_exit_list(model(x_adv)), p)
    return x_adv, success
