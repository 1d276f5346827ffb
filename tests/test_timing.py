"""dynn_lib.timing: what a timed attack region starts and ends with."""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import replace

import pytest
import torch

from dynn_lib import timing
from dynn_lib.experiments.common import ExperimentConfig, run_attack

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is a glibc call; elsewhere release_host_memory is a no-op")
def test_release_host_memory_returns_freed_heap_pages_to_the_os():
    """Freed heap chunks with live ones between them stay resident (free() only gives back the
    heap's top) until a trim hands their pages back: the state an in-process training leaves
    behind (the module docstring's measurement). Built with the C allocator directly, so the
    layout does not depend on torch's allocator."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 100 << 10  # under the 128 KiB mmap threshold: from the heap
    blocks, pins = [], []
    try:
        for _ in range(3000):  # 293 MiB, touched, each followed by a live chunk of a size no free list holds
            blocks.append(libc.malloc(size))
            ctypes.memset(blocks[-1], 1, size)
            pins.append(libc.malloc(70_000))
        before = _rss_mb()
        for b in blocks:
            libc.free(b)
        freed = _rss_mb()
        assert timing.release_host_memory() is True
        after = _rss_mb()
    finally:
        for p in pins:
            libc.free(p)
    assert before - freed < 50, (before, freed, after)  # free() alone gave back little
    assert freed - after > 200, (before, freed, after)  # the trim most of the 293 MiB


def test_release_host_memory_says_whether_it_could():
    assert timing.release_host_memory() is GLIBC


def test_each_timed_attack_batch_starts_settled(monkeypatch):
    """run_attack settles (trims the heap, synchronises) before every timed batch, so each batch's
    time, one sample of RQ1's generation time, starts from the same host state."""
    calls = []
    monkeypatch.setattr(timing, "release_host_memory", lambda: calls.append(1) or True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 10)).eval()
    x = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (7,))
    cfg = replace(ExperimentConfig(), attack_batch_size=3)
    _, _, seconds = run_attack(model, x, y, "fgsm", 8 / 255, cfg, device="cpu")
    assert len(calls) == 3 and seconds > 0  # batches of 3, 3 and 1
