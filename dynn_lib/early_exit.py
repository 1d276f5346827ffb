"""Early-exit inference: thresholds, exit numbers, calibration and cost (protocol section 5).

Conventions used everywhere in the library:

* ``logits``: a tensor ``[E, B, C]`` (E exits, final exit last) or a list of E ``[B, C]`` tensors.
* confidence of exit i = max softmax probability of exit i.
* **exit number** = 0-based index of the exit where computation stops: the first internal exit
  whose confidence is >= its threshold, else ``E - 1`` (the final exit always answers). The SDN
  code instead reports the most confident exit for non-firing inputs; this library does not.
* ``taus``: one global float, or one threshold per internal exit (length ``E - 1``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Real
from typing import Sequence

import torch

from .progress import progress

TAU_GRID: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
"""Candidate thresholds for calibration (protocol section 5)."""

CALIBRATION_TOLERANCE = 0.01
"""Allowed drop of early-exit accuracy below the final exit's accuracy (1 point)."""


def stack_exits(logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Return the ``[E, B, C]`` stack of per-exit logits (a no-op for a tensor)."""
    if isinstance(logits, torch.Tensor):
        if logits.dim() != 3:
            raise ValueError(f"per-exit logits must have shape [E, B, C], got {tuple(logits.shape)}")
        return logits
    return torch.stack(list(logits))


def resolve_taus(taus: float | Sequence[float], num_exits: int) -> tuple[float, ...]:
    """Thresholds of the ``num_exits - 1`` internal exits; checks each lies in [0, 1]."""
    if isinstance(taus, bool):
        raise ValueError(f"tau must be a number in [0, 1] or one per internal exit, got {taus!r}")
    if isinstance(taus, Real):  # int, float, numpy scalars
        out = (float(taus),) * (num_exits - 1)
    else:
        out = tuple(float(t) for t in taus)
        if len(out) != num_exits - 1:
            raise ValueError(f"need one threshold per internal exit ({num_exits - 1}), got {len(out)}: {out}")
    bad = [t for t in out if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"tau must lie in [0, 1] (a max-softmax confidence), got {bad[0]}")
    return out


def tau_tensor(taus: float | Sequence[float] | torch.Tensor, num_exits: int,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The ``num_exits - 1`` thresholds as a float32 tensor ``[E-1]`` on ``device``, checked once.

    Build it once per attack or evaluation and pass it to :func:`exit_numbers` (or
    :meth:`dynn_lib.models.DyNN.forward_fired`): a Python sequence costs a host-to-device copy
    (on CUDA a synchronisation) on every call, a prepared tensor costs nothing. A tensor argument
    is checked for its length only (reading its values would synchronise) and moved, if needed.
    """
    if isinstance(taus, torch.Tensor):
        if taus.shape != (num_exits - 1,):
            raise ValueError(f"need one threshold per internal exit ({num_exits - 1}), got a tensor of shape "
                             f"{tuple(taus.shape)}")
        return taus.to(device=device, dtype=torch.float32)
    return torch.tensor(resolve_taus(taus, num_exits), dtype=torch.float32, device=device)


def exit_numbers(logits: torch.Tensor | Sequence[torch.Tensor],
                 taus: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """0-based exit where early-exit inference stops, ``[B]`` int64.

    ``taus``: one global threshold, one per internal exit, or a prepared :func:`tau_tensor`
    (no host-device traffic).
    """
    z = stack_exits(logits)
    E = z.shape[0]
    t = tau_tensor(taus, E, z.device)
    conf = z[:-1].float().softmax(-1).amax(-1)  # [E-1, B]
    fires = conf >= t[:, None]
    fires = torch.cat([fires, torch.ones_like(fires[:1])], 0)  # the final exit always answers
    return fires.int().argmax(0)  # first True


def early_exit_predict(logits: torch.Tensor | Sequence[torch.Tensor], taus: float | Sequence[float]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction ``[B]``, exit number ``[B]``) of early-exit inference at ``taus``."""
    z = stack_exits(logits)
    ex = exit_numbers(z, taus)
    preds = z.argmax(-1)  # [E, B]
    return preds.gather(0, ex[None]).squeeze(0), ex


def fired_logits(logits: torch.Tensor | Sequence[torch.Tensor],
                 taus: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Logits ``[B, C]`` of the exit each sample leaves at (differentiable w.r.t. the logits)."""
    z = stack_exits(logits)
    ex = exit_numbers(z.detach(), taus)
    return z[ex, torch.arange(z.shape[1], device=z.device)]


@dataclass(frozen=True)
class EarlyExitReport:
    """Summary of early-exit inference on a labelled set.

    tau: the threshold(s) used; accuracy: fraction in [0,1]; final_accuracy: final exit alone;
    mean_exit: mean 0-based exit number; mean_macs: mean MACs per input (multiply-accumulates);
    macs_ratio: mean_macs / MACs of the full DyNN path; exit_counts: inputs per exit.
    """

    tau: float | tuple[float, ...]
    accuracy: float
    final_accuracy: float
    mean_exit: float
    mean_macs: float | None
    macs_ratio: float | None
    exit_counts: tuple[int, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def report(logits: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor, taus: float | Sequence[float],
           exit_macs: Sequence[float] | None = None) -> EarlyExitReport:
    """Accuracy, mean exit and mean MACs of early exit at ``taus`` (``exit_macs[i]`` = cost of exit i)."""
    z = stack_exits(logits)
    labels = labels.to(z.device)
    pred, ex = early_exit_predict(z, taus)
    E = z.shape[0]
    counts = torch.bincount(ex, minlength=E).tolist()
    mean_macs = ratio = None
    if exit_macs is not None:
        if len(exit_macs) != E:
            raise ValueError(f"exit_macs has {len(exit_macs)} entries for {E} exits")
        m = torch.tensor([float(v) for v in exit_macs], dtype=torch.float64)
        mean_macs = float(m[ex.cpu()].mean())
        ratio = mean_macs / float(m[-1])
    return EarlyExitReport(
        tau=float(taus) if isinstance(taus, Real) else tuple(float(t) for t in taus),
        accuracy=float((pred == labels).float().mean()),
        final_accuracy=float((z[-1].argmax(-1) == labels).float().mean()),
        mean_exit=float(ex.float().mean()),
        mean_macs=mean_macs,
        macs_ratio=ratio,
        exit_counts=tuple(int(c) for c in counts),
    )


def calibrate(logits: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor,
              grid: Sequence[float] = TAU_GRID, tolerance: float = CALIBRATION_TOLERANCE) -> float:
    """Smallest global tau in ``grid`` whose early-exit accuracy >= final-exit accuracy - ``tolerance``.

    Run on the query half (never the evaluation half). Falls back to the largest grid value
    when none qualifies; :func:`meets_rule` tells the two apart (the model zoo's table records it
    as ``tau_meets_rule`` and its page names every model deployed at the fallback).

    The rule compares counts of correct answers, ``correct(τ) >= correct(final) - tolerance * N``,
    so a drop of exactly one point qualifies (a float32 mean would misjudge such ties for about one
    final accuracy in six: 51/5000 against 1/5000, say).
    """
    z = stack_exits(logits)
    for tau in sorted(grid):
        if meets_rule(z, labels, tau, tolerance):
            return float(tau)
    return float(max(grid))


def meets_rule(logits: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor, tau: float,
               tolerance: float = CALIBRATION_TOLERANCE) -> bool:
    """Whether early exit at the global ``tau`` keeps :func:`calibrate`'s rule on these images:
    at most ``tolerance * N`` fewer correct answers than the final exit."""
    if not 0 <= tolerance <= 1:
        raise ValueError(f"tolerance is a fraction in [0, 1], got {tolerance}")
    z = stack_exits(logits)
    labels = labels.to(z.device)
    final_ok = int((z[-1].argmax(-1) == labels).sum())
    pred, _ = early_exit_predict(z, tau)
    # tolerance * N in float64; the slack only absorbs its rounding
    return int((pred == labels).sum()) >= final_ok - tolerance * len(labels) - 1e-6


def as_exit_list(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """Model output as a list of per-exit logits (a CNN's single tensor becomes a 1-element list)."""
    return [out] if isinstance(out, torch.Tensor) else list(out)


@torch.no_grad()
def all_exit_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
                    device: torch.device | str | None = None, desc: str | None = None) -> torch.Tensor:
    """Logits of every exit for a set of images: ``[E, N, C]`` float32 on the CPU.

    ``images`` is uint8 ``[N, 3, H, W]`` (converted to [0,1]) or float in [0,1].
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for i in progress(range(0, len(images), batch_size), desc=desc or "inference", leave=False):
            x = to_float_pixels(images[i:i + batch_size].to(device, non_blocking=True))
            chunks.append(torch.stack(as_exit_list(model(x))).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks, 1)


_PIXEL_TABLES: dict[torch.device, torch.Tensor] = {}


def to_float_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float32 [0,1]: level k becomes k/255 correctly rounded, the same bits on
    every device; float input is returned as float32 unchanged.

    On the CPU this divides by 255 (an exact division). On other devices the values come from a
    256-entry table divided on the CPU: CUDA divides by a Python number by multiplying with its
    rounded reciprocal, which is one bit off for 126 of the 256 levels, so CPU and GPU pixels,
    and everything computed from them, would differ in their last bits."""
    if x.dtype != torch.uint8:
        return x.float()
    if x.device.type == "cpu":
        return x.float().div_(255)
    return pixel_table(x.device)[x.long()]


def pixel_table(device: torch.device | str) -> torch.Tensor:
    """float32 [256] on ``device``: entry k is k/255 divided on the CPU (see :func:`to_float_pixels`);
    made once per device and process (one small host-to-device copy)."""
    device = torch.device(device)
    table = _PIXEL_TABLES.get(device)
    if table is None:
        table = _PIXEL_TABLES[device] = (torch.arange(256, dtype=torch.float32) / 255).to(device)
    return table
