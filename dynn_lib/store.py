"""Artefact store: every model and result table lives under a key derived from its configuration.

Layout: ``<root>/<kind>/<key>/`` holding the payload (``model.pt`` or ``table.parquet``) and
``record.json`` (config, seed, git commit, versions, device, numeric flags, code version, wall
time). ``record.json`` is written last, atomically, so an artefact is complete exactly when its
record exists. ``key = <slug>-<sha256(canonical JSON of {config, code version})[:12]>``: the code
version (:func:`dynn_lib.versions.code_version` of the code the kind depends on) makes a change
in that code compute the artefact again instead of reusing a stale one.

Checkpoints are loaded with ``torch.load(weights_only=True)``; a payload that cannot be read
raises :class:`CorruptArtefactError` naming the path and the reason (``recompute=True`` on the
callers deletes it and computes again).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from . import numerics
from .versions import code_version, group_for

RECORD = "record.json"


class CorruptArtefactError(RuntimeError):
    """An artefact exists but cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"corrupt artefact {path}: {reason}. Delete it (or pass recompute=True / "
                         f"--recompute) to compute it again.")


def default_root() -> Path:
    """``$DYNN_STORE`` or ``./artefacts``."""
    return Path(os.environ.get("DYNN_STORE", "artefacts"))


KEY_NEUTRAL: frozenset[str] = frozenset({"checkpoint_every", "checkpoint_minutes", "cuda_graph"})
"""Config fields that decide only how a training runs, never what it computes: when it saves its
resumable state (a resumed training equals an uninterrupted one, tested) and whether a CUDA step
is replayed from a graph (the graphed path equals the eager one, tested; the record's
``step_mode`` says which ran). :func:`canonical` leaves them out at every depth, so they are in no
artefact key and no recorded config, and changing them (e.g. ``-p checkpoint_minutes 1`` for a
short GPU slot) reuses every finished artefact."""


def canonical(config: Any) -> Any:
    """JSON-ready form of a config (dataclasses, tuples, paths, floats kept exact), without the
    :data:`KEY_NEUTRAL` fields."""
    if is_dataclass(config) and not isinstance(config, type):
        return canonical(asdict(config))
    if isinstance(config, dict):
        return {str(k): canonical(v) for k, v in sorted(config.items(), key=lambda kv: str(kv[0]))
                if str(k) not in KEY_NEUTRAL}
    if isinstance(config, (list, tuple)):
        return [canonical(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, torch.device):
        return str(config)
    return config


def weights_digest(state_dict: dict) -> str:
    """SHA-256 of a state dict's contents: every entry's name, dtype, shape and values (in sorted
    name order, standard memory layout), so equal weights give equal digests whatever the file
    format, the torch version or a channels-last layout, and two trainings that differ in any bit
    do not."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}:{t!r};".encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def config_key(config: Any, slug: str = "") -> str:
    blob = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return f"{slug}-{digest}" if slug else digest


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def git_commit() -> str:
    """Commit of the library's checkout (``+dirty`` when it has uncommitted changes). Where the
    files are no git checkout (a copy sent to a GPU machine carries no ``.git``), the commit the
    caller declares in ``$DYNN_GIT_COMMIT``, marked ``(declared)``; else ``unknown``."""
    here = Path(__file__).resolve().parent
    sha = dirty = ""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    if sha:
        return sha + ("+dirty" if dirty else "")
    declared = os.environ.get("DYNN_GIT_COMMIT", "").strip()
    return f"{declared} (declared)" if declared else "unknown"


def device_name(device: torch.device | str | None) -> str:
    """The hardware behind ``device``: the GPU's name, or e.g. ``x86_64 CPU, 2 cores``."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    return f"{platform.machine() or platform.processor() or 'unknown'} CPU, {os.cpu_count()} cores"


PACKAGES = ("torchvision", "numpy", "pillow", "pandas", "pyarrow")
"""Libraries besides torch whose versions every record states (pillow decodes the JPEG datasets;
a GPU machine brings its own versions of all of them)."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (None for one that is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(device: torch.device | str | None = None) -> dict:
    """Where and with what a result was computed."""
    return {
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device) if device is not None else "cpu",
        "device_name": device_name(device),
        "python": platform.python_version(),
        "packages": package_versions(),
        "numerics": numerics.state(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Store:
    """Artefacts under ``root`` keyed by configuration (see module docstring)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def dir(self, kind: str, config: Any, slug: str = "") -> Path:
        """Folder of the artefact of ``kind`` for ``config`` under the current code version."""
        return self.root / kind / config_key({"config": canonical(config), "code": code_version(group_for(kind))},
                                             slug)

    def has(self, kind: str, config: Any, slug: str = "") -> bool:
        return (self.dir(kind, config, slug) / RECORD).is_file()

    def record(self, kind: str, config: Any, slug: str = "") -> dict:
        path = self.dir(kind, config, slug) / RECORD
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise CorruptArtefactError(path, f"unreadable record ({e})") from e

    def _write_record(self, d: Path, config: Any, extra: dict, device, kind: str) -> dict:
        rec = {"config": canonical(config), **provenance(device), "code_version": code_version(group_for(kind)),
               **canonical(extra)}
        atomic_write_text(d / RECORD, json.dumps(rec, indent=2, default=str))
        return rec

    def remove(self, kind: str, config: Any, slug: str = "") -> None:
        shutil.rmtree(self.dir(kind, config, slug), ignore_errors=True)

    # -- models -------------------------------------------------------------------------
    def save_model(self, kind: str, config: Any, state_dict: dict, extra: dict | None = None,
                   slug: str = "", device=None) -> dict:
        """Write ``model.pt`` and a record that also holds ``weights_sha256`` (:func:`weights_digest`):
        which weights these are, so results computed from two trainings of one key can be told
        apart (:func:`dynn_lib.experiments.runner.model_conflicts`)."""
        d = self.dir(kind, config, slug)
        (d / RECORD).unlink(missing_ok=True)
        atomic_write(d / "model.pt", lambda p: torch.save(state_dict, p))
        return self._write_record(d, config, {**(extra or {}), "weights_sha256": weights_digest(state_dict)},
                                  device, kind)

    def load_model(self, kind: str, config: Any, slug: str = "") -> dict:
        path = self.dir(kind, config, slug) / "model.pt"
        return load_checkpoint(path)

    # -- tables -------------------------------------------------------------------------
    def save_table(self, kind: str, config: Any, df: pd.DataFrame, extra: dict | None = None,
                   slug: str = "", device=None) -> dict:
        d = self.dir(kind, config, slug)
        (d / RECORD).unlink(missing_ok=True)
        atomic_write(d / "table.parquet", lambda p: df.to_parquet(p, index=False))
        return self._write_record(d, config, extra or {}, device, kind)

    def load_table(self, kind: str, config: Any, slug: str = "") -> pd.DataFrame:
        path = self.dir(kind, config, slug) / "table.parquet"
        try:
            return pd.read_parquet(path)
        except FileNotFoundError:
            raise
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise CorruptArtefactError(path, f"unreadable table ({type(e).__name__}: {e})") from e

    def cached_table(self, kind: str, config: Any, compute: Callable[[], tuple[pd.DataFrame, dict]],
                     slug: str = "", device=None, recompute: bool = False) -> pd.DataFrame:
        """Load the table for ``config``, or ``compute() -> (df, extra_record)`` and store it."""
        if self.has(kind, config, slug) and not recompute:
            return self.load_table(kind, config, slug)
        t0 = time.perf_counter()
        df, extra = compute()
        self.save_table(kind, config, df, {"wall_time_s": time.perf_counter() - t0, **extra},
                        slug=slug, device=device)
        return df


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True, map_location="cpu")`` with a clear error when damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle error, wrong format
        raise CorruptArtefactError(path, f"cannot load checkpoint ({type(e).__name__}: {e})") from e
