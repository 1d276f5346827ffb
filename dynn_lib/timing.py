"""Wall-time measurement of attacks (RQ1's generation time, Finding 2; RQ4's seconds per block).

* :func:`sync` waits for the device's queued work (CUDA kernels run asynchronously; on a CPU it
  does nothing); a timed region starts and ends with it, so that the clock reads the work itself.
* :func:`release_host_memory` hands the heap's freed pages back to the operating system (glibc's
  ``malloc_trim``; nothing where the C library has none, e.g. macOS).
  :meth:`dynn_lib.zoo.Workspace.trained` calls it after every training, because the heap a
  training leaves behind slows the attacks run after it in the same process. Measured on a quiet
  2-core Xeon (AVX-512-BF16): FGSM on a 200-image batch of a Tiny ImageNet MobileNet (``smoke``),
  6 times right after its training, took 9.5-21.2 ms per image (means 13.6-15.9 over three such
  runs), but 9.0-11.6 ms after one ``malloc_trim`` (four runs) and 9.4-12.9 ms in a fresh process
  that loaded the same weights. RQ1 attacks each surrogate right after training it, so untrimmed,
  the times of a DyNN and a CNN surrogate depended on that history, not on the networks. The
  first trim after a training took 40 ms. Trimming before every timed batch instead kept the
  times as steady but made the appendix's 60 small attack tables 11-13 s slower at ``smoke``
  (71-73 s against 60 s), each batch faulting its memory in anew.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

__all__ = ["sync", "release_host_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # the C library cannot be loaded, or has no malloc_trim (not glibc)
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_host_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc ``malloc_trim(0)``); False
    where the C library has no such call, True otherwise."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def sync(device: torch.device | str) -> None:
    """Wait until ``device`` has finished its queued work (CUDA); nothing on other devices."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
