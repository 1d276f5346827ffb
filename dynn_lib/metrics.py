"""One function per reported quantity (protocol sections 7, 8 and 9).

Each function's docstring gives its exact definition, units and shapes. Conventions:

* Inputs are torch tensors; numpy arrays and lists are accepted and converted.
* ``B`` = number of inputs (images), ``E`` = number of exits (final exit last), ``C`` = classes.
* Per-exit logits are ``[E, B, C]`` tensors or lists of E ``[B, C]`` tensors
  (:func:`dynn_lib.early_exit.stack_exits` conventions). A CNN is a 1-exit network.
* Exit numbers are 0-based (:func:`dynn_lib.early_exit.exit_numbers`).
* Percentages are in [0, 100], not fractions.
* A rate whose denominator is empty is ``nan`` (never an error, never 0): the caller can
  tell "no qualifying input" apart from "0 %".
* Shape mismatches raise ``ValueError`` naming both shapes.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .early_exit import stack_exits

__all__ = [
    "success_rate",
    "exit_change", "macs_change", "share_exit_raised",
    "final_flipped", "first_changed_exit", "share_first_exit",
    "early_attack_success", "t1_t2",
    "psnr", "mean_psnr", "linf", "l2",
    "time_per_example", "exit_distribution", "mean_std",
]


# ---------------------------------------------------------------- input checking

def _tensor(x, name: str) -> torch.Tensor:
    """``x`` as a tensor (numpy arrays, lists and scalars are converted)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from e


def _vector(x, name: str) -> torch.Tensor:
    """A 1-D tensor ``[B]`` (one value per input)."""
    t = _tensor(x, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must have shape [B] (one value per input), got {tuple(t.shape)}")
    return t


def _int_vector(x, name: str) -> torch.Tensor:
    """A 1-D integer tensor ``[B]`` (predictions, labels, exit numbers)."""
    t = _vector(x, name)
    if t.numel() == 0:
        return t.long()  # an empty list converts to float32
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers (class or exit indices), got dtype {t.dtype}; "
                         "pass predictions (argmax), not logits or probabilities")
    return t.long()


def _same_shape(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {na} has shape {tuple(a.shape)}, {nb} has shape {tuple(b.shape)}")


def _exits(logits, name: str) -> torch.Tensor:
    """Per-exit logits as ``[E, B, C]``."""
    if isinstance(logits, (list, tuple)):
        if len(logits) == 0:
            raise ValueError(f"{name} is an empty list of exits")
        logits = [_tensor(z, name) for z in logits]
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1 or logits[0].dim() != 2:
            raise ValueError(f"{name} must be E tensors of one shape [B, C], got shapes {sorted(shapes)}")
    else:
        logits = _tensor(logits, name)
        if logits.dim() != 3:
            raise ValueError(f"{name} must have shape [E, B, C] (or be a list of [B, C]), got {tuple(logits.shape)}")
    return stack_exits(logits)


def _pct(num: int | float, den: int | float) -> float:
    """100 * num / den, ``nan`` when den == 0."""
    return math.nan if den == 0 else 100.0 * float(num) / float(den)


# ---------------------------------------------------------------- RQ1: transferability

def success_rate(target_pred_clean, target_pred_adv, labels, over: str = "correct") -> float:
    """Attack success rate in percent (protocol section 7, RQ1).

    Args:
        target_pred_clean: ``[B]`` int, the target's prediction on each benign image in its
            deployed mode (a DyNN answers through early exit at its tau, e.g. the first output
            of :func:`dynn_lib.early_exit.early_exit_predict`; a CNN through its only output).
        target_pred_adv: ``[B]`` int, the target's prediction on the adversarial version.
        labels: ``[B]`` int, ground-truth labels.
        over: ``"correct"`` (the headline rate): over the images the target classifies
            correctly when benign (``pred_clean == label``), the percentage whose adversarial
            version is misclassified (``pred_adv != label``).
            ``"all"``: over all B images, the percentage misclassified after the attack
            (``pred_adv != label``), whatever the benign prediction was.

    Returns:
        A float in [0, 100]; ``nan`` when the denominator is empty (no image correctly
        classified when benign, or B == 0).
    """
    pc = _int_vector(target_pred_clean, "target_pred_clean")
    pa = _int_vector(target_pred_adv, "target_pred_adv")
    y = _int_vector(labels, "labels")
    _same_shape(pc, pa, "target_pred_clean", "target_pred_adv")
    _same_shape(pc, y, "target_pred_clean", "labels")
    y = y.to(pc.device)
    pa = pa.to(pc.device)
    wrong_adv = pa != y
    if over == "correct":
        base = pc == y
    elif over == "all":
        base = torch.ones_like(wrong_adv)
    else:
        raise ValueError(f"over must be 'correct' or 'all', got {over!r}")
    return _pct(int((wrong_adv & base).sum()), int(base.sum()))


# ---------------------------------------------------------------- RQ2: efficiency

def exit_change(exit_clean, exit_adv) -> torch.Tensor:
    """Per input, ``exit_adv - exit_clean`` (protocol section 8, RQ2).

    Args:
        exit_clean, exit_adv: ``[B]`` int, 0-based exit numbers of the DyNN at its tau on the
            benign and the adversarial input (:func:`dynn_lib.early_exit.exit_numbers`).

    Returns:
        ``[B]`` int64, in exits; positive = the adversarial input leaves later (costs more).
    """
    c = _int_vector(exit_clean, "exit_clean")
    a = _int_vector(exit_adv, "exit_adv")
    _same_shape(c, a, "exit_clean", "exit_adv")
    if (c < 0).any() or (a < 0).any():
        raise ValueError("exit numbers must be >= 0")
    return a.to(c.device) - c


def macs_change(exit_clean, exit_adv, exit_macs: Sequence[float]) -> torch.Tensor:
    """Per input, ``exit_macs[exit_adv] - exit_macs[exit_clean]`` in MACs (RQ2).

    Args:
        exit_clean, exit_adv: ``[B]`` int, 0-based exit numbers (see :func:`exit_change`).
        exit_macs: length E; ``exit_macs[i]`` = multiply-accumulates of everything computed up
            to and including exit i's head (protocol section 3).

    Returns:
        ``[B]`` float64 (on the CPU), in MACs; positive = the adversarial input costs more.
    """
    c = _int_vector(exit_clean, "exit_clean").cpu()
    a = _int_vector(exit_adv, "exit_adv").cpu()
    _same_shape(c, a, "exit_clean", "exit_adv")
    m = _tensor(exit_macs, "exit_macs").to(torch.float64).cpu()
    if m.dim() != 1:
        raise ValueError(f"exit_macs must have shape [E], got {tuple(m.shape)}")
    E = m.shape[0]
    for t, n in ((c, "exit_clean"), (a, "exit_adv")):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= E):
            raise ValueError(f"{n} holds exit numbers outside [0, {E - 1}] for exit_macs of length {E}")
    return m[a] - m[c]


def share_exit_raised(delta, more_than: int = 1) -> float:
    """Percentage of inputs whose exit rises by more than ``more_than`` exits (RQ2).

    Args:
        delta: ``[B]`` int, per-input exit change from :func:`exit_change`.
        more_than: strict threshold; the default counts ``delta > 1`` (i.e. >= 2 exits later),
            the paper's "raises the exit by more than one".

    Returns:
        A float in [0, 100]; ``nan`` when B == 0.
    """
    d = _int_vector(delta, "delta")
    return _pct(int((d > more_than).sum()), d.numel())


# ---------------------------------------------------------------- RQ3: exit design

def final_flipped(logits_clean, logits_adv) -> torch.Tensor:
    """``[B]`` bool: the final exit's prediction (argmax) on the adversarial input differs from
    its prediction on the benign input.

    Args:
        logits_clean, logits_adv: per-exit logits ``[E, B, C]`` (or lists of E ``[B, C]``)
            on the benign and adversarial inputs; a CNN is E = 1.
    """
    zc = _exits(logits_clean, "logits_clean")
    za = _exits(logits_adv, "logits_adv")
    _same_shape(zc, za, "logits_clean", "logits_adv")
    return zc[-1].argmax(-1) != za[-1].argmax(-1).to(zc.device)


def first_changed_exit(logits_clean, logits_adv) -> torch.Tensor:
    """First exit whose prediction changes, for inputs whose final prediction changed (RQ3).

    For each input whose final-exit prediction on the adversarial version differs from the one
    on the benign version (:func:`final_flipped`), the smallest 0-based exit index i such that
    ``argmax(logits_adv[i]) != argmax(logits_clean[i])`` (each exit compared with its *own*
    benign prediction, not with the label). Since the final exit itself differs for those
    inputs, the value lies in ``[0, E - 1]``.

    Inputs whose final prediction did not change get ``-1`` (even if some internal exit
    changed); select the flipped ones with ``first >= 0`` or :func:`final_flipped`.

    Args:
        logits_clean, logits_adv: per-exit logits ``[E, B, C]`` or lists of E ``[B, C]``.

    Returns:
        ``[B]`` int64 in ``{-1} ∪ [0, E - 1]``.
    """
    zc = _exits(logits_clean, "logits_clean")
    za = _exits(logits_adv, "logits_adv")
    _same_shape(zc, za, "logits_clean", "logits_adv")
    diff = zc.argmax(-1) != za.argmax(-1).to(zc.device)  # [E, B]
    first = diff.int().argmax(0)  # first True (0 when none, masked below)
    return torch.where(diff[-1], first, torch.full_like(first, -1)).long()


def share_first_exit(first, exit: int = 0) -> float:
    """Percentage of flipped inputs whose first changed exit is ``exit`` (default 0, the first exit).

    Args:
        first: ``[B]`` int from :func:`first_changed_exit`; entries ``-1`` (final prediction
            unchanged) are excluded from the denominator.
        exit: which exit to count (0-based).

    Returns:
        A float in [0, 100]; ``nan`` when no input was flipped.
    """
    f = _int_vector(first, "first")
    if (f < -1).any():
        raise ValueError("first must hold -1 (not flipped) or a 0-based exit index")
    flipped = f >= 0
    return _pct(int((f[flipped] == exit).sum()), int(flipped.sum()))


# ---------------------------------------------------------------- RQ4: Early Attack

def early_attack_success(logits_adv, p) -> torch.Tensor:
    """``[B]`` bool: the Early Attack success criterion (protocol section 9).

    Success for input b: the final exit's prediction on the adversarial input equals ``p[b]``
    AND every internal exit's prediction differs from ``p[b]``. With E = 1 (no internal exit)
    this reduces to ``final == p``.

    Args:
        logits_adv: per-exit logits on the adversarial inputs, ``[E, B, C]`` or a list of E
            ``[B, C]`` (the model's raw output list).
        p: ``[B]`` int, the final exit's prediction on the benign input.
    """
    z = _exits(logits_adv, "logits_adv")
    pv = _int_vector(p, "p").to(z.device)
    if pv.shape[0] != z.shape[1]:
        raise ValueError(f"shape mismatch: p has {pv.shape[0]} entries, logits_adv has batch size {z.shape[1]}")
    preds = z.argmax(-1)  # [E, B]
    return (preds[-1] == pv) & (preds[:-1] != pv).all(0)


def t1_t2(logits_b_clean, logits_b_adv) -> tuple[float, float]:
    """Table 3: transfer of Early Attack examples from a surrogate DyNN A to a DyNN B.

    With ``p_B`` = B's final-exit prediction on the benign image:

    * T1 = percentage of examples whose B-final prediction on the adversarial example equals
      ``p_B`` (the final label is preserved).
    * T2 = over those examples only, the mean number of B's internal exits (0 .. E-2) whose
      prediction on the adversarial example differs from ``p_B`` (a count in [0, E - 1]).

    Args:
        logits_b_clean, logits_b_adv: B's per-exit logits ``[E, N, C]`` (or lists) on the
            benign images and on their adversarial examples (crafted on A).

    Returns:
        ``(T1 percent, T2 mean count)``; T1 is ``nan`` when N == 0 and T2 is ``nan`` when no
        example keeps its final prediction.
    """
    zc = _exits(logits_b_clean, "logits_b_clean")
    za = _exits(logits_b_adv, "logits_b_adv")
    _same_shape(zc, za, "logits_b_clean", "logits_b_adv")
    p_b = zc[-1].argmax(-1)
    preds = za.argmax(-1).to(p_b.device)  # [E, N]
    kept = preds[-1] == p_b
    t1 = _pct(int(kept.sum()), kept.numel())
    n_kept = int(kept.sum())
    if n_kept == 0:
        return t1, math.nan
    changed = (preds[:-1] != p_b).sum(0)  # [N] internal exits that left p_B
    return t1, float(changed[kept].double().mean())


# ---------------------------------------------------------------- perturbation size (appendix)

def _pixel_pair(x, x_adv) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 ``[B, D]`` on [0,1] pixels (uint8 is divided by 255)."""
    a = _tensor(x, "x")
    b = _tensor(x_adv, "x_adv")
    _same_shape(a, b, "x", "x_adv")
    if a.dim() < 1:
        raise ValueError(f"x must have shape [B, ...], got {tuple(a.shape)}")
    a = a.double() / 255 if a.dtype == torch.uint8 else a.double()
    b = b.double() / 255 if b.dtype == torch.uint8 else b.double()
    return a.reshape(a.shape[0], -1), b.to(a.device).reshape(b.shape[0], -1)


def psnr(x, x_adv) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: ``10 * log10(1 / MSE)``.

    MSE = mean over all pixels and channels of one image of ``(x_adv - x) ** 2`` on [0,1]
    pixels (peak value 1). uint8 inputs are converted by dividing by 255; float inputs must lie
    in [0, 1] (a ``ValueError`` otherwise, to catch 0-255 or normalised tensors).

    Args:
        x, x_adv: ``[B, ...]`` (e.g. ``[B, 3, H, W]``), same shape.

    Returns:
        ``[B]`` float64 dB; ``+inf`` for an image identical to its original (MSE = 0).
    """
    a, b = _pixel_pair(x, x_adv)
    for t, n in ((a, "x"), (b, "x_adv")):
        if t.numel() and (float(t.min()) < -1e-6 or float(t.max()) > 1 + 1e-6):
            raise ValueError(f"{n} must be pixels in [0, 1] (or uint8), got range "
                             f"[{float(t.min()):.4g}, {float(t.max()):.4g}]")
    if a.shape[1] == 0:
        raise ValueError("images have no pixels")
    mse = (b - a).pow(2).mean(1)
    return 10 * torch.log10(1.0 / mse)  # 1/0 = inf -> inf dB


def mean_psnr(values) -> float:
    """Mean of per-image PSNR values (dB) from :func:`psnr`, **ignoring** ``+inf`` entries.

    Identical image pairs (PSNR = +inf) are left out, since one of them would make the mean
    infinite; they are usually inputs the attack did not move. Returns ``nan`` when no finite
    value remains (including an empty input). Averaging is per image (protocol section 8).
    """
    v = _vector(values, "values").double()
    v = v[torch.isfinite(v)]
    return math.nan if v.numel() == 0 else float(v.mean())


def linf(x, x_adv) -> torch.Tensor:
    """Per image, ``max |x_adv - x|`` over all pixels and channels.

    Args:
        x, x_adv: ``[B, ...]``, same shape; uint8 is divided by 255 first.

    Returns:
        ``[B]`` float64 in pixel units on [0,1] (compare with eps such as 8/255); 0 for identical.
    """
    a, b = _pixel_pair(x, x_adv)
    if a.shape[1] == 0:
        return torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    return (b - a).abs().amax(1)


def l2(x, x_adv) -> torch.Tensor:
    """Per image, the Euclidean norm ``sqrt(sum (x_adv - x) ** 2)`` over all pixels and channels.

    Args:
        x, x_adv: ``[B, ...]``, same shape; uint8 is divided by 255 first.

    Returns:
        ``[B]`` float64 in pixel units on [0,1]; 0 for identical images.
    """
    a, b = _pixel_pair(x, x_adv)
    return (b - a).pow(2).sum(1).sqrt()


# ---------------------------------------------------------------- cost, distributions, seeds

def time_per_example(seconds: float, n: int) -> float:
    """Seconds of attack wall time per generated adversarial example: ``seconds / n``.

    Raises ``ValueError`` when ``n <= 0`` or ``seconds < 0``.
    """
    if isinstance(n, bool) or int(n) != n:
        raise ValueError(f"n must be an integer count of examples, got {n!r}")
    if n <= 0:
        raise ValueError(f"n must be > 0 adversarial examples, got {n}")
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return float(seconds) / int(n)


def exit_distribution(exits, num_exits: int) -> torch.Tensor:
    """Fraction of inputs at each exit (Fig. 7 and exit densities).

    Args:
        exits: ``[B]`` int, 0-based exit numbers in ``[0, num_exits - 1]``.
        num_exits: E.

    Returns:
        ``[E]`` float64 fractions summing to 1 (entry i = share of inputs at exit i); all
        ``nan`` when B == 0.
    """
    e = _int_vector(exits, "exits").cpu()
    if num_exits < 1:
        raise ValueError(f"num_exits must be >= 1, got {num_exits}")
    if e.numel() == 0:
        return torch.full((num_exits,), math.nan, dtype=torch.float64)
    if int(e.min()) < 0 or int(e.max()) >= num_exits:
        raise ValueError(f"exits must lie in [0, {num_exits - 1}], got range [{int(e.min())}, {int(e.max())}]")
    return torch.bincount(e, minlength=num_exits).double() / e.numel()


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of a quantity over seeds.

    Args:
        values: ``[S]`` one value per seed (list, array or tensor).

    Returns:
        ``(mean, std)`` as floats; ``std`` is 0.0 for a single finite value (no spread is
        measurable from one seed; report S alongside). ``nan`` values propagate to both. Raises ``ValueError``
        on an empty input.
    """
    v = _tensor(values, "values").double().reshape(-1)
    if v.numel() == 0:
        raise ValueError("mean_std needs at least one value")
    if v.numel() == 1:
        return float(v[0]), (0.0 if math.isfinite(float(v[0])) else math.nan)
    return float(v.mean()), float(v.std(correction=1))
