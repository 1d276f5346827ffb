"""Adversarial attacks on [0,1] pixels, one per file (protocol sections 6 and 9).

    fgsm, pgd, mifgsm    L-inf gradient-sign attacks; ``exit_loss`` picks the DyNN exit(s)
    early_attack         keep the final exit, flip every internal exit (Algorithm 1)
    baselines            FGSM / PGD baselines of the Early Attack
    losses               the ``exit_loss`` choices, the per-sample attack loss, the truncated path
    harness              eval mode + frozen weights, argument checks, projection, ExitView

Shared signature of the L-inf attacks::

    attack(model, x [B,3,H,W] in [0,1], y [B] int64, eps=8/255, ..., exit_loss="final",
           tau=None, generator=None, return_info=False, truncate=True) -> x_adv (, AttackInfo)

``truncate=True`` (default) stops each step's forward and backward at the exit the loss uses
(same result as the full path; :mod:`dynn_lib.attacks.losses`).
"""
from .baselines import early_attack_baseline, internal_exits_ce
from .early_attack import (EarlyAttackResult, early_attack, early_attack_losses, early_attack_success,
                           initial_w)
from .fgsm import fgsm
from .harness import ExitView, attack_mode, validate_attack_args, validate_images
from .losses import (ALL_EXITS, EXIT_LOSSES, AttackInfo, LossPath, attack_logits, attack_loss, loss_path,
                     resolve_exit_loss)
from .mifgsm import mifgsm
from .pgd import pgd

ATTACKS = {"fgsm": fgsm, "pgd": pgd, "mifgsm": mifgsm}
"""The L-inf attacks by name (same signature)."""

__all__ = ["ATTACKS", "ALL_EXITS", "EXIT_LOSSES", "AttackInfo", "EarlyAttackResult", "ExitView", "LossPath",
           "attack_logits", "loss_path",
           "attack_loss", "attack_mode", "early_attack", "early_attack_baseline", "early_attack_losses",
           "early_attack_success", "fgsm", "initial_w", "internal_exits_ce", "mifgsm", "pgd",
           "resolve_exit_loss", "validate_attack_args", "validate_images"]
