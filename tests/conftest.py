"""Shared test fixtures: a tiny DyNN/SDNN built on the library's real Backbone, and the data dir."""
from __future__ import annotations

import os
from pathlib import Path

import zlib

import pytest
import torch
from torch import nn

from dynn_lib.models.base import Backbone, DyNN, ModelSpec, SDNN
from dynn_lib.models.heads import Normalize

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("DYNN_PROGRESS", "0")


def _shared_data_dir() -> Path | None:
    env = os.environ.get("DYNN_DATA_DIR")
    if env:
        return Path(env)
    p = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data directory (DYNN_DATA_DIR or ../shared/data); skips with a reason when absent."""
    p = _shared_data_dir()
    if p is None or not p.is_dir():
        pytest.skip("real datasets not available: set DYNN_DATA_DIR (e.g. to ../shared/data)")
    return p


def make_tiny_backbone(num_classes: int = 10, size: int = 8, width: int = 8, seed: int = 0) -> Backbone:
    """A 3-stage conv backbone with 2 IC positions (a 3-exit DyNN), for fast CPU tests."""
    torch.manual_seed(seed)
    stages = [
        nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
        nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
        nn.Sequential(nn.Conv2d(width, width, 3, padding=1, stride=2), nn.BatchNorm2d(width), nn.ReLU()),
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    return Backbone(ModelSpec("tiny", num_classes, size), Normalize((0.5,) * 3, (0.25,) * 3), stages, head,
                    ic_after=(0, 1), ic_shapes=((width, size), (width, size)))


def fake_zoo(ws) -> None:
    """Replace ``ws.trained`` (the one place models come from) by tiny untrained networks, one per
    config; an ic_only DyNN shares its CNN's backbone, as the real one does."""
    cache: dict[str, torch.nn.Module] = {}

    def trained(cfg, training_data):
        key = repr(cfg)
        if key not in cache:
            if cfg.recipe == "ic_only":
                base = ws.model_config(cfg.arch, "cnn")
                model = DyNN(trained(base, None).backbone)
            else:
                bb = make_tiny_backbone(size=32, seed=zlib.crc32(key.encode()) % 10_000)
                model = DyNN(bb) if cfg.recipe == "sdn" else SDNN(bb)
            with torch.no_grad():  # peaky softmax: confidences spread over (0.1, 1), exits vary
                for m in model.modules():
                    if isinstance(m, torch.nn.Linear):
                        m.weight.mul_(25.0)
            cache[key] = model.eval()
        return cache[key]

    ws.trained = trained


@pytest.fixture(autouse=True)
def default_numerics():
    """Every test starts and ends with the library's default numeric flags: they are process-wide
    (a Workspace sets them), so one test's Workspace would otherwise set another's model format."""
    from dynn_lib import numerics

    numerics.configure(**numerics.DEFAULTS)
    yield
    numerics.configure(**numerics.DEFAULTS)


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two busy-waiting ones on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_dynn() -> DyNN:
    return DyNN(make_tiny_backbone()).eval()


@pytest.fixture
def tiny_sdnn() -> SDNN:
    return SDNN(make_tiny_backbone()).eval()


def pytest_collection_modifyitems(config, items):
    """Slow tests run when DYNN_SLOW=1 (CI sets it) or when selected explicitly with -m."""
    if os.environ.get("DYNN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow test: set DYNN_SLOW=1 (CI does) or select with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With DYNN_STRICT_SKIPS=1 (CI sets it, after installing every test dependency) a skipped
    test fails instead: a missing install step must not pass CI silently (only the opt-in
    'slow test' skip stays a skip, and CI turns slow tests on anyway)."""
    outcome = yield
    rep = outcome.get_result()
    if (os.environ.get("DYNN_STRICT_SKIPS") == "1" and rep.skipped and not hasattr(rep, "wasxfail")
            and "slow test: set DYNN_SLOW=1" not in str(rep.longrepr)):
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under DYNN_STRICT_SKIPS=1 (CI installs every test dependency): {reason}"
