"""Numeric settings that results depend on, set explicitly and written into every record.

On CUDA, PyTorch lets cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32``
is True), which changes fp32 gradients in their last bits and can flip attack steps and
early-exit decisions near ties. This library therefore sets the flags itself
(:func:`configure`, called by :class:`dynn_lib.zoo.Workspace` and the ``dynn`` command):

* ``tf32=False`` (default): fp32 matrix products and convolutions in full fp32, so attacks and
  evaluation are fp32 as stated; training speed comes from bf16 autocast instead (the profile
  field ``amp``), which TF32 does not affect.
* ``cudnn_benchmark=False``: cuDNN picks its algorithms by heuristics, not by timing, so two runs
  pick the same kernels.
* ``deterministic=False``: ``torch.backends.cudnn.deterministic``; True trades speed for
  bit-identical reruns on the same GPU.
* ``inference_channels_last=False``: the memory format of the models that inference and attacks
  run (fp32 either way). :class:`dynn_lib.zoo.Workspace` passes the profile's ``channels_last``
  resolved by :func:`inference_channels_last`: on x86-64 CPUs, where channels-last fp32
  convolutions are measured faster (:data:`INFERENCE_CHANNELS_LAST_MEASURED`), off on CUDA, where
  fp32 channels-last is not yet measured (``benchmarks/gpu_check.py`` measures it). The layout
  changes no precision, only the order of the sums inside a convolution, so results move in
  their last bits, like TF32 would; that is why it is recorded with the other flags.
* ``fired_bucket="auto"``: how :meth:`dynn_lib.models.DyNN.forward_fired` (the truncated
  ``"fired"`` attack loss and :meth:`~dynn_lib.models.DyNN.forward_early_exit`) sizes the batch
  of samples still running after an exit: they are padded with zero rows up to a multiple of
  this many rows (at most the input batch), the padding sliced off before any decision or loss,
  so outputs and gradients are those of the unpadded rows. Without it every step of a
  fired-loss attack hands the convolutions after each exit a new batch size, and on CUDA each
  new shape makes cuDNN choose its algorithms again, host work per convolution call and shape
  (pytorch/pytorch#187212 profiled cases that spent 1 ms or more on it; for these networks see
  :data:`FIRED_BUCKET_CUDA`), which at CIFAR sizes can cost more than the convolution itself
  and would be timed in a DyNN surrogate's ``gen_seconds``. ``"auto"``: :data:`FIRED_BUCKET_CUDA` rows on
  CUDA, none (1) elsewhere (on a CPU the first pass at a new batch size cost 3 % more than the
  next, measured on a 2-core Xeon with ResNet-56, less than padding would); an integer >= 1:
  that many rows on every device (1: no padding). The padding never reaches a decision, an output
  or a gradient (tested), but the real rows may run other kernels at the padded batch size (on a
  CPU too), so results can move in their last bits, hence the record.

:func:`state` reads the flags back; :func:`dynn_lib.store.provenance` records it with every
artefact. On a CPU the CUDA flags have no effect but are still recorded.

The flags are process-wide (torch's own are): the last :func:`configure` call, which is the last
:class:`~dynn_lib.zoo.Workspace` created, sets them for every record written afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

DEFAULTS = {"tf32": False, "cudnn_benchmark": False, "deterministic": False, "inference_channels_last": False,
            "fired_bucket": "auto"}
"""The library's settings unless a caller asks otherwise."""

INFERENCE_CHANNELS_LAST_MEASURED = (
    "quiet 2-core AMD EPYC (AVX2, no bf16), torch 2.14.1, 200 CIFAR-sized images, fp32 DyNNs, seconds "
    "contiguous -> channels-last (model converted, input left contiguous): input gradient (one PGD step) "
    "VGG-16 2.30 -> 1.64, ResNet-56 1.03 -> 0.92, MobileNet 0.82 -> 0.72; forward only (input converted "
    "too) 1.21 -> 0.84, 0.72 -> 0.49, 0.32 -> 0.23")
"""What ``inference_channels_last="auto"`` rests on, on a CPU. On CUDA it stays off: the one GPU
measured (an H100, torch 2.11, ``results/gpu-checks/2026-12-05-nvidia-h100-80gb-hbm3``) ran a PGD-10
on the ResNet-56 CNN at batch 512 in fp32 (TF32 off) at 0.66x the contiguous speed channels-last."""

_INFERENCE = {"channels_last": False, "fired_bucket": "auto"}

FIRED_BUCKET_CUDA = 64
"""Rows that ``fired_bucket="auto"`` pads the still-running samples to a multiple of on CUDA (an
attack batch of 512 then gives at most 8 batch sizes after each exit). ``benchmarks/gpu_check.py``
(section ``fired_shapes``) times a fired-loss PGD with and without it: on one H100 (torch 2.11,
``results/gpu-checks/2026-12-05-nvidia-h100-80gb-hbm3``; a ResNet-56 DyNN, batch 512, 10 steps, one
timing each) the unpadded attack took 1.47x the padded one's time when its shapes were new, and the
same time (0.995x) once every shape had been seen."""


def check_fired_bucket(v, name: str = "fired_bucket") -> None:
    """ValueError unless ``v`` is ``"auto"`` or an integer >= 1 (the ``fired_bucket`` setting)."""
    if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"{name} must be 'auto' or an integer >= 1 (rows), got {v!r}")


def configure(tf32: bool = False, cudnn_benchmark: bool = False, deterministic: bool = False,
              inference_channels_last: bool = False, fired_bucket: int | str = "auto") -> dict:
    """Set the numeric flags (module docstring) and return :func:`state`."""
    for name, v in (("tf32", tf32), ("cudnn_benchmark", cudnn_benchmark), ("deterministic", deterministic),
                    ("inference_channels_last", inference_channels_last)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")
    check_fired_bucket(fired_bucket)
    _INFERENCE["channels_last"] = inference_channels_last
    _INFERENCE["fired_bucket"] = fired_bucket
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = deterministic
    return state()


def settings() -> dict:
    """The flags in force now as :func:`configure` arguments (``configure(**settings())`` changes nothing)."""
    s = state()
    return {"tf32": s["cudnn_allow_tf32"], "cudnn_benchmark": s["cudnn_benchmark"],
            "deterministic": s["cudnn_deterministic"], "inference_channels_last": s["inference_channels_last"],
            "fired_bucket": s["fired_bucket"]}


@contextmanager
def flags(**changes: bool) -> Iterator[dict]:
    """Inside the block, the flags now in force with ``changes`` (names of :func:`configure`)
    applied; afterwards, on any exit, the flags as they were. Yields :func:`state`."""
    prev = settings()
    bad = sorted(set(changes) - set(prev))
    if bad:
        raise ValueError(f"unknown numeric flag(s) {bad}; accepted: {sorted(prev)}")
    try:
        yield configure(**{**prev, **changes})
    finally:
        configure(**prev)


def state() -> dict:
    """The numeric flags in force now (what a record stores)."""
    return {
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cpu_threads": int(torch.get_num_threads()),
        "inference_channels_last": _INFERENCE["channels_last"],
        "fired_bucket": _INFERENCE["fired_bucket"],
    }


def inference_memory_format() -> torch.memory_format:
    """The memory format :func:`configure` set for the models of inference and attacks."""
    return torch.channels_last if _INFERENCE["channels_last"] else torch.contiguous_format


def fired_bucket(device: torch.device | str) -> int:
    """Rows the still-running samples of :meth:`dynn_lib.models.DyNN.forward_fired` are padded to a
    multiple of on ``device`` (1: none), from the ``fired_bucket`` flag (module docstring)."""
    v = _INFERENCE["fired_bucket"]
    if v == "auto":
        return FIRED_BUCKET_CUDA if torch.device(device).type == "cuda" else 1
    return v


def inference_channels_last(setting: bool | str, device: torch.device | str) -> bool:
    """Resolve a profile's ``channels_last`` (``"auto"``, True or False) for inference and attacks
    on ``device``: True/False as given; ``"auto"``: on on a CPU where channels-last training is on
    (:func:`dynn_lib.train.resolve_flag`: x86-64, or native bf16), where fp32 channels-last is
    measured faster (:data:`INFERENCE_CHANNELS_LAST_MEASURED`); off on CUDA and anything else."""
    from .profiles import check_auto_flag
    from .train import resolve_flag

    check_auto_flag("channels_last", setting)
    if setting != "auto":
        return setting
    device = torch.device(device)
    return device.type == "cpu" and resolve_flag("auto", device, "channels_last")
