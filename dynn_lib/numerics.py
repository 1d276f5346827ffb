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

:func:`state` reads the flags back; :func:`dynn_lib.store.provenance` records it with every
artefact. On a CPU the flags have no effect but are still recorded.
"""
from __future__ import annotations

import torch

DEFAULTS = {"tf32": False, "cudnn_benchmark": False, "deterministic": False}
"""The library's settings unless a caller asks otherwise."""


def configure(tf32: bool = False, cudnn_benchmark: bool = False, deterministic: bool = False) -> dict:
    """Set the CUDA/cuDNN numeric flags (module docstring) and return :func:`state`."""
    for name, v in (("tf32", tf32), ("cudnn_benchmark", cudnn_benchmark), ("deterministic", deterministic)):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = deterministic
    return state()


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
    }
