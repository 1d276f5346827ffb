"""Wall-time measurement of attacks (RQ1's generation time, Finding 2; RQ4's seconds per block).

A timed region starts with :func:`settle` and ends with :func:`sync`:

* :func:`sync` waits for the device's queued work (CUDA kernels run asynchronously; on a CPU it
  does nothing), so that the clock reads the work itself.
* :func:`settle` also hands the heap's freed pages back to the operating system first
  (glibc's ``malloc_trim``; nothing where the C library has none, e.g. macOS). The heap that an
  in-process training leaves behind slows every later attack's large allocations: measured on a
  quiet 2-core Xeon (AVX-512-BF16), FGSM on a 200-image batch of a Tiny ImageNet MobileNet
  (``smoke``) run 6 times right after its training (``Workspace.model``) took 9.5-21.2 ms per
  image (means 13.6-15.9 over three such runs), but 9.0-11.6 ms after one ``malloc_trim`` (four
  runs) and 9.4-12.9 ms in a fresh process that loaded the same weights. Since RQ1 attacks each surrogate right after training it,
  the untrimmed times of a DyNN and a CNN surrogate depended on that history, not on the
  networks. The first trim after a training took 40 ms, later ones under 1 ms.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

__all__ = ["settle", "sync", "release_host_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # no C library found, or one without malloc_trim (not glibc)
        return None
    if fn is not None:
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


def settle(device: torch.device | str) -> None:
    """Before a timed region: :func:`release_host_memory`, then :func:`sync`."""
    release_host_memory()
    sync(device)
