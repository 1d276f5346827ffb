"""Accuracy floors of the shortened ``fast`` schedule, and the evidence that it reaches them.

The ``fast`` profile (:mod:`dynn_lib.profiles`) trains for 30 epochs instead of 100. It is
accepted only while its static networks (the SDNNs, kind ``cnn``) reach, at their final exit on
the 5,000 evaluation images of ``cifar10-jpeg``, at least :data:`FAST_FLOORS`: 88 % for ResNet-56
and VGG-16, 85 % for MobileNet (issue 9 of this project; the paper reports no accuracy).

A floor is judged like every other claim of the book (:mod:`dynn_lib.verdicts`): from the 95 %
Wilson interval of the accuracy over the evaluation images, "above the floor" when the whole
interval lies above it, "below the floor" when it lies below, "inconclusive" otherwise.

*Schedule checks* are training records (``record.json`` of a model in the artefact store,
config, seed, commit, versions, device and per-epoch history included) of single models trained
with the ``fast`` schedule before any GPU run, committed under ``results/schedule-checks/`` so
that the methods page shows them (:func:`schedule_checks`). They test the schedule, not the
results: a check trained on a CPU differs from the GPU run in its bits, not in its recipe.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from . import metrics, verdicts

__all__ = ["FAST_FLOORS", "SCHEDULE_CHECKS_DIR", "judge", "schedule_differences", "floor_rows", "schedule_checks"]

FAST_FLOORS: dict[tuple[str, str], float] = {
    ("cifar10-jpeg", "resnet56"): 88.0,
    ("cifar10-jpeg", "vgg16"): 88.0,
    ("cifar10-jpeg", "mobilenet"): 85.0,
}
"""Final-exit accuracy floors (%) of the ``fast`` SDNNs, by (dataset, architecture)."""

SCHEDULE_CHECKS_DIR = Path("results") / "schedule-checks"
"""Where committed schedule-check records live, relative to the repository root."""

_OUTCOME = {"supports": "above the floor", "against": "below the floor", "inconclusive": "inconclusive"}


def judge(dataset: str, arch: str, accuracy: float, n: int) -> dict:
    """The floor verdict of one final-exit accuracy (a fraction in [0, 1]) over ``n`` images.

    Returns ``{"accuracy", "accuracy_lo", "accuracy_hi"}`` in percent (Wilson 95 %), ``"floor"``
    (NaN when (dataset, arch) has none) and ``"verdict"``: "above the floor", "below the floor",
    "inconclusive" or "no floor for this dataset and architecture".
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    lo, hi = metrics.wilson_interval(round(accuracy * n), n)
    floor = FAST_FLOORS.get((dataset, arch))
    verdict = ("no floor for this dataset and architecture" if floor is None
               else _OUTCOME[verdicts.compare(lo, hi, floor, ">")])
    return {"accuracy": 100.0 * accuracy, "accuracy_lo": lo, "accuracy_hi": hi,
            "floor": float("nan") if floor is None else floor, "verdict": verdict}


_CADENCE = ("checkpoint_every", "checkpoint_minutes")  # when the state is saved: changes no weight


def _plain(v):
    return tuple(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


def schedule_differences(config: Mapping) -> list[str]:
    """Fields in which a training config (a record's ``"config"``) differs from the current
    ``fast`` recipe for the same recipe, architecture, dataset and seed; checkpoint cadence
    aside. Empty: the record tests today's ``fast`` schedule."""
    from .train import recipe_config

    ref = asdict(recipe_config(config["recipe"], config["arch"], config["dataset"], "fast", seed=config["seed"]))
    return [k for k in sorted(ref) if k not in _CADENCE and _plain(config.get(k)) != _plain(ref[k])]


def floor_rows(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per training record (a model's ``record.json`` as a dict) of a static network:
    what it is, how it was trained (device, epochs, batch, schedule, peak lr, training images) and
    :func:`judge` of its final-exit accuracy over its ``n_eval`` evaluation images;
    ``current_fast``: "yes" when its config is today's ``fast`` recipe
    (:func:`schedule_differences`), else "no: " and the differing fields."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        if cfg["recipe"] != "cnn":
            continue
        n = int(rec["n_eval"])
        diff = schedule_differences(cfg)
        rows.append({"dataset": cfg["dataset"], "arch": cfg["arch"], "kind": cfg["recipe"],
                     "device": rec.get("device_name", rec.get("device")), "epochs": int(cfg["epochs"]),
                     "batch": int(cfg["batch_size"]), "schedule": cfg.get("lr_schedule", "multistep"),
                     "peak_lr": float(cfg["lr"]), "n_train": rec.get("n_train"),
                     "git_commit": str(rec.get("git_commit", "unknown"))[:12],
                     "current_fast": "no: " + ", ".join(diff) if diff else "yes", "n": n,
                     **judge(cfg["dataset"], cfg["arch"], float(rec["exit_accuracy"][-1]), n)})
    return pd.DataFrame(rows, columns=["dataset", "arch", "kind", "device", "epochs", "batch", "schedule", "peak_lr",
                                       "n_train", "git_commit", "current_fast", "n", "accuracy", "accuracy_lo",
                                       "accuracy_hi", "floor", "verdict"])


def schedule_checks(folder: str | Path) -> pd.DataFrame:
    """:func:`floor_rows` of every ``*.json`` training record in ``folder`` (sorted by name);
    an empty table when the folder does not exist."""
    paths = sorted(Path(folder).glob("*.json"))
    return floor_rows(json.loads(p.read_text()) for p in paths)
