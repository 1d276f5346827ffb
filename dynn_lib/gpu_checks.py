"""Records of the GPU self-check (``benchmarks/gpu_check.py``), as tables for the methods page.

A self-check record is the ``selfcheck.json`` the check writes (with its ``syncs.txt``): versions,
numeric flags, every check's status, value, threshold and note, and the measured step times,
speeds and extrapolations. ``benchmarks/gpu_run.sh`` copies it into the run's results as
``PROFILE/DATASET/gpu-checks/DATE-GPU/`` (:func:`run_dir`): the check of the machine that made
those results, which a book built from them names on every page when it failed (run with
``DYNN_GPU_RUN_ON_FAIL=continue``; :func:`failed_checks`). Records of slots that brought back no
results are committed under :data:`GPU_CHECKS_DIR` so that what a real GPU measured is shown even
so. A record keeps what the
check said when it ran, defects of the check included; the methods page says which findings were
the check's own and how the check changed since.

The commit that ran is ``meta.git_commit`` (records since the check wrote it), else the
``git commit recorded:`` line of a ``log.txt`` of ``gpu_run.sh`` beside the record.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import pandas as pd

from .plots import pretty_arch

__all__ = ["GPU_CHECKS_DIR", "ISSUE9_TARGETS", "run_dir", "record_name", "check_records", "failed_checks", "summary", "findings", "training_steps", "speeds"]

GPU_CHECKS_DIR = Path("results") / "gpu-checks"
"""Where committed self-check records live (one folder each), relative to the repository root."""

ISSUE9_TARGETS = {"pgd_speedup": 1.5, "paper_minutes": 30.0, "graph_speedup": 4.0}
"""Issue 9's targets on one GPU (as ``benchmarks/gpu_check.py`` records them in ``meta.thresholds``;
used for a record written before the check recorded one): PGD at least 1.5x torchattacks, the
``paper`` run's training at most 30 minutes, the graphed trainer at least 4x the eager one at batch
128."""

_KIND = {"cnn": "CNN", "sdn": "SDN-trained DyNN", "ic_only": "IC-only DyNN"}


def run_dir(results_dir: str | Path, profile: str, dataset: str) -> Path:
    """Where ``gpu_run.sh`` puts the self-check record of the run behind the results of ``profile`` on
    ``dataset`` in ``results_dir``: ``results_dir/profile/dataset/gpu-checks``."""
    return Path(results_dir) / profile / dataset / "gpu-checks"


def _commit(record: Mapping, folder: Path) -> str:
    commit = record.get("meta", {}).get("git_commit")
    if commit:
        return str(commit)
    log = folder / "log.txt"
    if log.is_file():
        m = re.search(r"git commit recorded: (\S+)", log.read_text(errors="replace"))
        if m:
            return m.group(1).rstrip(",")
    return "unknown"


def check_records(*folders: str | Path) -> list[dict]:
    """Every self-check record under ``folders``: each ``FOLDER/NAME/selfcheck.json`` (NAME sorted;
    a NAME met again in a later folder is read once, the first wins), with ``name`` (NAME) and
    ``commit`` added; empty when no folder exists. The methods page reads the results folder's
    ``gpu-checks/`` first, then the repository's committed ones."""
    seen: dict[str, Path] = {}
    for folder in folders:
        for p in sorted(Path(folder).glob("*/selfcheck.json")):
            seen.setdefault(p.parent.name, p)
    out = []
    for name, p in seen.items():
        record = json.loads(p.read_text())
        out.append({**record, "name": name, "commit": _commit(record, p.parent)})
    return out


def _not_passed(record: Mapping) -> Iterator[tuple[str, Mapping]]:
    """``(section, check)`` of every check of ``record`` that failed or warned, in order."""
    for name, sec in record.get("sections", {}).items():
        for c in sec.get("checks", []):
            if c["status"] in ("FAIL", "WARN"):
                yield name, c


def failed_checks(records: Iterable[Mapping]) -> list[str]:
    """``"RECORD: section/check"`` of every FAIL (a section that crashed counts as its own FAIL), in
    record order."""
    out = []
    for r in records:
        for name, sec in r.get("sections", {}).items():
            bad = [f"{r['name']}: {name}/{c['name']}" for c in sec.get("checks", []) if c["status"] == "FAIL"]
            if not bad and sec.get("status") == "FAIL":
                bad = [f"{r['name']}: {name}"]
            out += bad
    return out


def _gpu(record: Mapping) -> str:
    info = record.get("sections", {}).get("environment", {}).get("info", {})
    return (info.get("gpu") or {}).get("name") or record.get("meta", {}).get("device", "?")


def record_name(record: Mapping) -> str:
    """The folder name ``gpu_run.sh`` gives a record: ``DATE-GPU`` (the check's start date and its
    GPU's name, or its device, in lower case with dashes), e.g. ``2026-12-05-nvidia-h100-80gb-hbm3``."""
    return f'{record["meta"]["started"][:10]}-{re.sub(r"[^a-z0-9]+", "-", _gpu(record).lower()).strip("-")}'


def summary(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per record: ``record`` (its folder name), ``gpu``, ``torch``, ``cuda``, ``commit``
    (12 characters), ``started`` (UTC), ``seconds`` (the check's own time), the number of sections
    that passed / failed / warned / were skipped, and ``not_passed``: the checks that did not pass,
    each as ``STATUS section/check``."""
    rows = []
    for r in records:
        env = r.get("sections", {}).get("environment", {}).get("info", {}).get("versions", {})
        bad = [f"{c['status']} {name}/{c['name']}" for name, c in _not_passed(r)]
        s = r.get("summary", {})
        rows.append({"record": r["name"], "gpu": _gpu(r), "torch": env.get("torch"), "cuda": env.get("cuda"),
                     "commit": r["commit"][:12], "started": r.get("meta", {}).get("started"),
                     "seconds": r.get("meta", {}).get("elapsed_s"), "pass": s.get("PASS", 0),
                     "fail": s.get("FAIL", 0), "warn": s.get("WARN", 0), "skip": s.get("SKIP", 0),
                     "not_passed": "; ".join(bad)})
    return pd.DataFrame(rows)


def _text(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_text(x)}" for k, x in v.items())
    return "" if v is None else str(v)


def findings(records: Iterable[Mapping]) -> pd.DataFrame:
    """Every check that did not pass (FAIL, WARN), one row each: ``record``, ``status``, ``check``
    (``section/name``), ``value``, ``threshold`` and the check's ``note``, as text."""
    rows = [{"record": r["name"], "status": c["status"], "check": f"{name}/{c['name']}",
             "value": _text(c.get("value")), "threshold": _text(c.get("threshold")), "note": c.get("note", "")}
            for r in records for name, c in _not_passed(r)]
    return pd.DataFrame(rows, columns=["record", "status", "check", "value", "threshold", "note"])


def training_steps(records: Iterable[Mapping]) -> pd.DataFrame:
    """The trainer's measured steps: one row per record, architecture, model kind and batch, with
    ``eager_ms`` and ``graphed_ms`` (milliseconds per step; missing where that mode was not timed)
    and ``speedup`` (eager / graphed)."""
    rows = {}
    for r in records:
        for t in r.get("timings", []):
            key = (r["name"], _gpu(r), pretty_arch(t["arch"]), _KIND.get(t["kind"], t["kind"]), t["batch"])
            rows.setdefault(key, {})[f"{t['mode']}_ms"] = 1e3 * t["s_per_step"]
    out = pd.DataFrame([{"record": k[0], "gpu": k[1], "arch": k[2], "kind": k[3], "batch": k[4],
                         "eager_ms": v.get("eager_ms"), "graphed_ms": v.get("graphed_ms")} for k, v in rows.items()],
                       columns=["record", "gpu", "arch", "kind", "batch", "eager_ms", "graphed_ms"])
    out["speedup"] = out["eager_ms"] / out["graphed_ms"]
    return out.sort_values(["record", "batch"], kind="stable", ignore_index=True)


def speeds(records: Iterable[Mapping]) -> pd.DataFrame:
    """The other measured quantities, one row each: ``record``, ``quantity``, ``value``, ``unit``
    and ``target`` (issue 9's, where it sets one): PGD images/s of the library and of torchattacks
    and their ratio, the extrapolated training minutes of the ``fast`` and ``paper`` runs (one model
    at a time as the check extrapolates them; and, where the check recommends K > 1 workers, those
    minutes divided by the measured throughput of K trainings at once: an estimate, since that
    throughput was measured on one kind of training, a ResNet-56 CNN at batch 512), and the throughput
    of concurrent trainings."""
    rows = []

    def add(r, quantity, value, unit, target=""):
        if value is not None:
            rows.append({"record": r["name"], "quantity": quantity, "value": value, "unit": unit, "target": target})

    for r in records:
        thresholds = {**ISSUE9_TARGETS, **r.get("meta", {}).get("thresholds", {})}
        pgd, ext, conc = r.get("pgd", {}), r.get("extrapolation", {}), r.get("concurrency", {})
        add(r, "PGD-10, ResNet-56 CNN: this library", pgd.get("dynn_lib_img_s"), "images/s")
        add(r, "PGD-10, ResNet-56 CNN: torchattacks", pgd.get("torchattacks_img_s"), "images/s")
        add(r, "PGD speed-up over torchattacks", pgd.get("ratio"), "x",
            f">= {thresholds['pgd_speedup']:g}")
        if pgd.get("dynn_lib_img_s") and pgd.get("channels_last_img_s"):
            add(r, "PGD speed-up with the model channels-last", pgd["channels_last_img_s"] / pgd["dynn_lib_img_s"], "x")
        for label, v in (pgd.get("variants") or {}).items():
            if label.endswith("_img_s"):
                add(r, f"PGD-10 at batch {label.split('_')[1]}: this library", v, "images/s")
            else:
                add(r, f"PGD speed-up with {label.replace('_', ' ')}", v, "x")
        k = conc.get("recommended_workers")
        gain = (conc.get("speedup") or {}).get(str(k)) if k and k > 1 else None
        for name, e in ext.items():
            what = name.replace("fast_cnn_epochs_", "fast at ") + (" epochs" if name.startswith("fast_cnn") else "")
            target = f"<= {thresholds['paper_minutes']:g}" if name == "paper" else ""
            minutes = e.get("training_minutes")
            add(r, f"training of every model, {what} (extrapolated, one at a time)", minutes, "minutes", target)
            if gain and minutes is not None and name in ("fast", "paper"):
                add(r, f"training of every model, {what}, {k} at a time (the line above divided by the measured "
                       f"throughput of {k} trainings at once)", minutes / gain, "minutes", target)
        for k, v in sorted((conc.get("speedup") or {}).items()):
            if k != "1":
                add(r, f"throughput of {k} trainings at once over one at a time", v, "x")
        if "recommended_workers" in conc:
            add(r, "workers gpu_run.sh would use", conc["recommended_workers"], "")
    return pd.DataFrame(rows, columns=["record", "quantity", "value", "unit", "target"])
