"""dynn_lib.timing: the host heap handed back after training, before attacks are timed."""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pytest

from dynn_lib import timing
from dynn_lib.zoo import Workspace

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


def test_a_training_leaves_the_heap_trimmed_and_a_load_does_not_trim(monkeypatch, tmp_path):
    """Workspace.trained hands the heap back after it trains a model (the attacks RQ1 times next
    run on it), and not when the model comes from the store."""
    calls = []
    monkeypatch.setattr(timing, "release_host_memory", lambda: calls.append(1) or True)
    ws = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", n_train=32, n_query=16, n_eval=8,
                   batch_size=16, cnn_epochs=1)
    ws.model("resnet56", "cnn")
    assert len(calls) == 1
    again = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", n_train=32, n_query=16, n_eval=8,
                      batch_size=16, cnn_epochs=1)
    again.model("resnet56", "cnn")
    assert len(calls) == 1
