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
* Uncertainty: a proportion gets a 95 % Wilson interval (:func:`wilson_interval`); a
  difference of rates gets a seeded bootstrap over images (:func:`bootstrap_rate_difference`).
"""
from __future__ import annotations

import functools
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
    "wilson_interval", "MIN_BOOTSTRAP_IMAGES", "interval_text", "number_text", "bootstrap_weights", "percentile_interval",
    "bootstrap_rate_difference",
    "bootstrap_mean", "bootstrap_mean_difference", "bootstrap_rate", "newcombe_interval", "wilson_columns",
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


# ---------------------------------------------------------------- uncertainty (the paper gives none)

Z95 = 1.959963984540054
"""Two-sided 95 % standard-normal quantile."""


def wilson_interval(k: int | float, n: int | float, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion, in percent.

    Args:
        k: number of successes (0 <= k <= n).
        n: number of trials (images); 0 gives ``(nan, nan)``.
        z: normal quantile (default two-sided 95 %).
    Returns:
        ``(lo, hi)`` in [0, 100]. Unlike the normal approximation it stays inside [0, 100]
        and is not degenerate at 0 or 100 % (5 of 5 gives about 57-100 %, not 100-100 %).
    """
    k, n = float(k), float(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k:g}, n={n:g}")
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return 100.0 * lo, 100.0 * hi


def bootstrap_weights(n: int, n_boot: int = 1000, seed: int = 0, stream: int = 0):
    """Resampling weights of a bootstrap over ``n`` images: a numpy ``[n_boot, n]`` int32 array
    whose row b counts how often each image is drawn in replicate b (multinomial, rows sum to
    ``n``). Seeded (numpy ``default_rng(seed)``; ``stream`` > 0 draws an independent stream
    ``default_rng([seed, stream])``, used for the second sample of an unpaired comparison), so an
    interval is reproducible from its record. The array is cached and read-only.

    A statistic computed per replicate as a *weighted* statistic over rows indexed by image
    (``W[:, image]``) is the bootstrap over images: every row of one image (one image attacked
    through several pairs, say) moves together, which keeps paired comparisons paired.
    """
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return _weights(int(n), int(n_boot), int(seed), int(stream))


@functools.lru_cache(maxsize=4)
def _weights(n: int, n_boot: int, seed: int, stream: int):
    import numpy as np

    rng = np.random.default_rng(seed if stream == 0 else [seed, stream])
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.int32)
    w.flags.writeable = False
    return w


MIN_BOOTSTRAP_IMAGES = 20
"""Fewest images (resampling units) a bootstrap interval is given for; below it every bootstrap
function of this module returns NaN bounds, which every verdict reads as "inconclusive".

A percentile bootstrap over a handful of images collapses: when every image of a small sample
agrees (one image, or ten that all succeed) each replicate repeats the estimate and the
interval is a point (``[100, 100]``), so a comparison on one image would read as decided. 20 is a
common rule of thumb for the percentile bootstrap; at 20 images and beyond, a sample that
collapses it is one a score interval also decides (20 of 20 against 0 of 20). Each function takes
it as ``min_images``; setting this constant changes the default everywhere (it is read at each
call)."""


def interval_text(lo: float | None, hi: float | None, digits: int = 1, missing: str | None = None) -> str:
    """A 95 % interval for a sentence: ``"[4.1, 20.5]"``, or why there is none: ``missing`` when
    given, else "too few images" (NaN bounds: a Wilson interval over 0 images, or a bootstrap over
    fewer than :data:`MIN_BOOTSTRAP_IMAGES`). A bound that is not 0 but rounds to 0 at ``digits``
    gets up to 3 more digits, so its sign shows: ``"[-0.01, 2.5]"``, not ``"[-0.0, 2.5]"``, for a
    difference whose interval just includes 0."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"[no interval: {missing or 'too few images'}]"
    return f"[{number_text(lo, digits)}, {number_text(hi, digits)}]"


def number_text(v: float, digits: int = 1) -> str:
    """``v`` with ``digits`` decimals for a sentence; a value that is not 0 but rounds to 0 gets up to
    3 more digits, so its sign shows (``-0.03``, not ``-0.0``), and 0 itself is never ``-0.0``."""
    if v == 0:
        return f"{0.0:.{digits}f}"
    for d in range(digits, digits + 4):
        text = f"{v:.{d}f}"
        if float(text) != 0:
            return text
    return f"{0.0:.{digits}f}"  # too close to 0 for its sign to show at 3 more digits


def percentile_interval(samples, confidence: float = 0.95, n_images: int | None = None,
                        min_images: int | None = None) -> tuple[float, float]:
    """``(lo, hi)`` percentile interval of bootstrap replicates (NaN replicates dropped;
    ``(nan, nan)`` when none is finite, or when ``n_images``, the number of images resampled,
    is given and below ``min_images``; None: :data:`MIN_BOOTSTRAP_IMAGES`, read at the call)."""
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n_images is not None and n_images < (MIN_BOOTSTRAP_IMAGES if min_images is None else min_images):
        return math.nan, math.nan
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return math.nan, math.nan
    a = (1 - confidence) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def _side(image, value, base, name: str):
    """(image int64 [r], value float64 [r], base bool [r]) of one side of a bootstrap statistic;
    rows with a non-finite value leave the denominator (a PSNR of +inf: an unchanged image)."""
    import numpy as np

    i = np.asarray(image, dtype=np.int64).reshape(-1)
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    b = np.ones(i.shape, dtype=bool) if base is None else np.asarray(base, dtype=bool).reshape(-1)
    if not (i.shape == v.shape == b.shape):
        raise ValueError(f"image_{name}, value_{name}, base_{name} must have one shape, got "
                         f"{i.shape}, {v.shape}, {b.shape}")
    b = b & np.isfinite(v)
    return i, np.where(b, v, 0.0), b


def _boot_means(sides, n_boot: int, seed: int, paired: bool):
    """Per side: (estimate, replicates [n_boot], images) of the weighted mean
    ``sum(v*base)/sum(base)``; ``images`` counts the images with a row in the denominator.

    Rows are first summed per image, so a replicate costs one ``[n_boot, images]`` product.
    ``paired``: one resampling of the union of the sides' images; otherwise side k is resampled
    over its own images with stream k.
    """
    import numpy as np

    def est_reps(ids, parts, stream):
        W = bootstrap_weights(ids.size, n_boot, seed, stream).astype(np.float64)
        out = []
        for i, v, b in parts:
            pos = np.searchsorted(ids, i)
            num = np.bincount(pos, weights=v * b, minlength=ids.size)
            den = np.bincount(pos, weights=b.astype(np.float64), minlength=ids.size)
            with np.errstate(invalid="ignore", divide="ignore"):
                est = num.sum() / den.sum() if den.sum() > 0 else math.nan
                d = W @ den
                reps = np.where(d > 0, (W @ num) / np.where(d > 0, d, 1.0), np.nan)
            out.append((float(est), reps, int((den > 0).sum())))
        return out

    if paired:
        ids = np.unique(np.concatenate([s[0] for s in sides]))
        if ids.size == 0:
            return [(math.nan, np.full(n_boot, np.nan), 0)] * len(sides)
        return est_reps(ids, sides, 0)
    out = []
    for k, s in enumerate(sides):
        ids = np.unique(s[0])
        out += [(math.nan, np.full(n_boot, np.nan), 0)] if ids.size == 0 else est_reps(ids, [s], k)
    return out


def bootstrap_mean(image, value, base=None, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95, min_images: int | None = None) -> tuple[float, float, float]:
    """Mean of ``value`` over the rows in ``base`` (non-finite values left out) with a seeded
    percentile bootstrap over images (rows of one image move together).

    Args:
        image: image id per row (its position in the evaluation half).
        value: the per-row quantity (PSNR dB, exit change, T2 count...; a bool gives a share
            in [0, 1]).
        base: rows that count (default all).
        min_images: fewest images with a row that counts for an interval (NaN bounds below it;
            None: :data:`MIN_BOOTSTRAP_IMAGES`, read at the call, so setting it changes every
            interval of the library).
    Returns:
        ``(mean, lo, hi)`` in the units of ``value``; NaN when no row counts.
    """
    (est, reps, n), = _boot_means([_side(image, value, base, "")], n_boot, seed, True)
    lo, hi = percentile_interval(reps, confidence, n, min_images)
    return est, lo, hi


def bootstrap_mean_difference(image_a, value_a, image_b, value_b, base_a=None, base_b=None, paired: bool = True,
                              n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                              min_images: int | None = None) -> tuple[float, float, float]:
    """Difference of two pooled means (A minus B, units of the values) with a seeded bootstrap
    over images (:func:`bootstrap_mean` per side).

    ``paired=True``: both sides are rows over the same images (ids shared) and are resampled
    jointly, so the interval keeps the pairing. ``paired=False``: the sides come from different
    image sets (two datasets) and are resampled independently (two-sample bootstrap).

    Returns:
        ``(difference, lo, hi)``; NaN where a side has no row that counts, and NaN bounds when a
        side has rows that count for fewer than ``min_images`` images.
    """
    sides = [_side(image_a, value_a, base_a, "a"), _side(image_b, value_b, base_b, "b")]
    (ea, ra, na), (eb, rb, nb) = _boot_means(sides, n_boot, seed, paired)
    lo, hi = percentile_interval(ra - rb, confidence, min(na, nb), min_images)
    return ea - eb, lo, hi


def bootstrap_rate_difference(image_a, hit_a, base_a, image_b, hit_b, base_b, n_boot: int = 1000, seed: int = 0,
                              confidence: float = 0.95, paired: bool = True,
                              min_images: int | None = None) -> tuple[float, float, float]:
    """Difference of two pooled rates (A minus B, percentage points) with a seeded bootstrap over
    images.

    Each side is a set of rows (one per image and setting): ``image_*`` the image id (its
    position in the evaluation half, shared by both sides), ``hit_*`` whether the row counts
    as a success, ``base_*`` whether it is in the denominator (e.g. target correct when
    benign). The rate of a side is ``sum(hit & base) / sum(base)`` over its rows; images are
    resampled jointly for both sides, so a comparison over the same images stays paired
    (``paired=False``: independently, for two different image sets).

    Returns:
        ``(difference, lo, hi)`` in percentage points; NaN where a side has an empty denominator.
    """
    import numpy as np

    for name, i, h, b in (("a", image_a, hit_a, base_a), ("b", image_b, hit_b, base_b)):
        if not (np.shape(i) == np.shape(h) == np.shape(b)):
            raise ValueError(f"image_{name}, hit_{name}, base_{name} must have one shape, got "
                             f"{np.shape(i)}, {np.shape(h)}, {np.shape(b)}")
    return bootstrap_mean_difference(image_a, 100.0 * np.asarray(hit_a, dtype=bool), image_b,
                                     100.0 * np.asarray(hit_b, dtype=bool), base_a, base_b, paired, n_boot, seed,
                                     confidence, min_images)


def bootstrap_rate(image, hit, base=None, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95, min_images: int | None = None) -> tuple[float, float, float]:
    """A pooled rate ``sum(hit & base) / sum(base)`` in percent with a seeded bootstrap over
    images: for a rate pooled over several rows per image (several pairs or settings), where
    the rows of one image are not independent and a Wilson interval would be too narrow."""
    import numpy as np

    return bootstrap_mean(image, 100.0 * np.asarray(hit, dtype=bool), base, n_boot, seed, confidence, min_images)


def newcombe_interval(k1: int | float, n1: int | float, k2: int | float, n2: int | float,
                      z: float = Z95) -> tuple[float, float, float]:
    """Difference of two independent proportions ``k1/n1 - k2/n2`` in percentage points with
    Newcombe's hybrid score interval (method 10 of Newcombe 1998, built from the two Wilson
    intervals); for two *different* image sets (two datasets, or a paper's table against a
    run) where no pairing exists.

    Returns:
        ``(difference, lo, hi)`` in percentage points; NaN when a denominator is 0.
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = 100.0 * k1 / n1, 100.0 * k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def wilson_columns(df, column: str, k, n) -> None:
    """Insert ``<column>_lo`` and ``<column>_hi`` (95 % Wilson bounds, percent) right after
    ``column`` of the DataFrame ``df`` (in place), from per-row counts ``k`` and totals ``n``."""
    import numpy as np

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    bounds = [wilson_interval(a, b) if np.isfinite(a) and np.isfinite(b) else (math.nan, math.nan)
              for a, b in zip(k, n)]
    at = list(df.columns).index(column) + 1
    for j, suffix in enumerate(("_lo", "_hi")):
        name = column + suffix
        if name in df.columns:
            del df[name]
        df.insert(at + j, name, [b[j] for b in bounds])
