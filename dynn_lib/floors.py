"""Accuracy floors of the shortened ``fast`` schedule, and the evidence that it reaches them.

The ``fast`` profile (:mod:`dynn_lib.profiles`) trains for 45 epochs instead of 100. It is
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

The model-zoo page sets a ``fast`` run beside a ``paper`` run of the same dataset once the results
folder holds both (:func:`side_by_side`): the same networks, data and evaluation images, trained
two ways.

The *schedule probe* (:func:`probe_epochs`, ``dynn schedule-probe``, the ``schedule`` stage of
``benchmarks/gpu_run.sh``) picks the schedule by measurement at the start of a run: it trains the
static networks at each candidate step in turn (a number of epochs, optionally with other profile
fields of that step, such as a weight decay: :func:`parse_step`), stops at the first at which all
are above their floors, writes each record as a schedule check, and the run then uses those models
and that step's fields.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from . import metrics, verdicts
from .profiles import get_profile, parse_value
from .plots import pretty_arch, pretty_dataset
from .store import atomic_write_text, canonical

__all__ = ["FAST_FLOORS", "SCHEDULE_CHECKS_DIR", "judge", "schedule_differences", "floor_rows", "schedule_records",
           "schedule_checks", "comparisons", "checks_summary",
           "devices_line", "device_type", "check_name", "parse_step", "step_params", "probe_epochs", "default_probe_steps",
           "PROBE_EXTRA_EPOCHS", "side_by_side", "beside_paper"]

FAST_FLOORS: dict[tuple[str, str], float] = {
    ("cifar10-jpeg", "resnet56"): 88.0,
    ("cifar10-jpeg", "vgg16"): 88.0,
    ("cifar10-jpeg", "mobilenet"): 85.0,
}
"""Final-exit accuracy floors (%) of the ``fast`` SDNNs, by (dataset, architecture)."""

PROBE_EXTRA_EPOCHS = 15
"""The schedule probe's second step: the profile's ``cnn_epochs`` plus this many (45, then 60 for
``fast``); :func:`default_probe_steps`."""

SCHEDULE_CHECKS_DIR = Path("results") / "schedule-checks"
"""Where committed schedule-check records live, relative to the repository root."""

_OUTCOME = {"supports": "above the floor", "against": "below the floor", "inconclusive": "inconclusive"}


def judge(dataset: str, arch: str, accuracy: float, n: int, floor: float | None = None) -> dict:
    """The floor verdict of one final-exit accuracy (a fraction in [0, 1]) over ``n`` images.

    ``floor``: a floor in percent instead of :data:`FAST_FLOORS`' (for other datasets, or tests).
    Returns ``{"accuracy", "accuracy_lo", "accuracy_hi"}`` in percent (Wilson 95 %), ``"floor"``
    (NaN when (dataset, arch) has none) and ``"verdict"``: "above the floor", "below the floor",
    "inconclusive" or "no floor for this dataset and architecture".
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    _check_floor(floor)
    lo, hi = metrics.wilson_interval(round(accuracy * n), n)
    floor = FAST_FLOORS.get((dataset, arch)) if floor is None else float(floor)
    verdict = ("no floor for this dataset and architecture" if floor is None
               else _OUTCOME[verdicts.compare(lo, hi, floor, ">")])
    return {"accuracy": 100.0 * accuracy, "accuracy_lo": lo, "accuracy_hi": hi,
            "floor": float("nan") if floor is None else floor, "verdict": verdict}


def _check_floor(floor) -> None:
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float))
                              or not 0.0 <= floor <= 100.0):
        raise ValueError(f"floor must be a percentage in [0, 100] or None (the issue's floor), got {floor!r}")


def schedule_differences(config: Mapping, profile: str = "fast") -> list[str]:
    """Fields in which a training config (a record's ``"config"``) differs from the current
    recipe of ``profile`` (default ``fast``) for the same recipe, architecture, dataset and seed; the
    fields of :data:`dynn_lib.store.KEY_NEUTRAL` (checkpoint cadence, ``cuda_graph``) aside. Empty:
    the record tests today's schedule of that profile."""
    return [k for k, _, _ in _differences(config, profile)]


def _differences(config: Mapping, profile: str) -> list[tuple[str, object, object]]:
    """``(field, recorded value, today's value)`` for each field of :func:`schedule_differences`."""
    from .train import recipe_config

    # canonical: the recorded form (lists for tuples), without the KEY_NEUTRAL fields
    ref = canonical(recipe_config(config["recipe"], config["arch"], config["dataset"], profile, seed=config["seed"]))
    return [(k, canonical(config.get(k)), ref[k]) for k in sorted(ref) if canonical(config.get(k)) != ref[k]]


def device_type(record: Mapping) -> str:
    """The device type of a record's ``device`` ("cuda:0" -> "cuda"; "cpu" when it names none)."""
    return str(record.get("device") or "cpu").split(":", 1)[0]


def floor_rows(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per training record (a model's ``record.json`` as a dict) of a static network:
    what it is, how it was trained (device: its name, and ``device_type`` "cpu" or "cuda"; epochs,
    batch, schedule, peak lr, weight decay, training images) and :func:`judge` of its final-exit accuracy over its
    ``n_eval`` evaluation images; ``current_fast``: "yes" when its config is today's ``fast`` recipe
    (:func:`schedule_differences`), else "no: " and each differing field with its recorded value and
    today's (``"epochs 30 (fast: 45)"``)."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        if cfg["recipe"] != "cnn":
            continue
        n = int(rec["n_eval"])
        diff = [f"{k} {v} (fast: {today})" for k, v, today in _differences(cfg, "fast")]
        rows.append({"dataset": cfg["dataset"], "arch": cfg["arch"], "kind": cfg["recipe"],
                     "device": rec.get("device_name", rec.get("device")),
                     "device_type": device_type(rec), "epochs": int(cfg["epochs"]),
                     "batch": int(cfg["batch_size"]), "schedule": cfg.get("lr_schedule", "multistep"),
                     "peak_lr": float(cfg["lr"]), "weight_decay": float(cfg["weight_decay"]),
                     "n_train": rec.get("n_train"),
                     "git_commit": str(rec.get("git_commit", "unknown"))[:12],
                     "current_fast": "no: " + ", ".join(diff) if diff else "yes", "n": n,
                     **judge(cfg["dataset"], cfg["arch"], float(rec["exit_accuracy"][-1]), n)})
    return pd.DataFrame(rows, columns=["dataset", "arch", "kind", "device", "device_type", "epochs", "batch",
                                       "schedule", "peak_lr", "weight_decay", "n_train", "git_commit", "current_fast", "n",
                                       "accuracy", "accuracy_lo", "accuracy_hi", "floor", "verdict"])


def schedule_records(*folders: str | Path) -> list[dict]:
    """Every ``*.json`` training record in ``folders`` (each sorted by name; a file name met again
    in a later folder, or a folder met twice, is read once: the first wins); empty when no folder
    exists. The methods page reads the results folder's ``schedule-checks/`` (a GPU run's probe)
    first, then the repository's committed ones."""
    seen: dict[str, Path] = {}
    done: set[Path] = set()
    for folder in folders:
        folder = Path(folder).resolve()
        if folder in done:
            continue
        done.add(folder)
        for p in sorted(folder.glob("*.json")):
            seen.setdefault(p.name, p)
    return [json.loads(p.read_text()) for p in seen.values()]


def schedule_checks(*folders: str | Path) -> pd.DataFrame:
    """:func:`floor_rows` of :func:`schedule_records` ``(*folders)``: Table M.1 of the methods page."""
    return floor_rows(schedule_records(*folders))


_FIELD_LABEL = {"epochs": "epochs", "weight_decay": "weight decay", "lr": "peak lr", "batch_size": "batch",
                "lr_schedule": "lr schedule", "warmup_frac": "warm-up share"}
_DEVICE_LABEL = {"cpu": "a CPU", "cuda": "a GPU"}
_CHANGE = {"supports": "higher", "against": "lower", "inconclusive": "inconclusive"}


def _static_checks(records: Iterable[Mapping]) -> list[tuple[Mapping, dict, pd.Series]]:
    """``(record, its config as :func:`~dynn_lib.store.canonical` gives it -- without the KEY_NEUTRAL
    fields, as :func:`_differences` compares it --, its floor_rows row)`` per static-network record."""
    records = [r for r in records if r["config"]["recipe"] == "cnn"]
    rows = floor_rows(records)
    return [(r, canonical(r["config"]), row) for r, (_, row) in zip(records, rows.iterrows())]


def comparisons(records: Iterable[Mapping]) -> pd.DataFrame:
    """What one change of the schedule did: every pair of static-network training records (schedule
    checks, :func:`schedule_records`) of the same dataset, architecture and device type whose
    configs differ in exactly one field (:data:`~dynn_lib.store.KEY_NEUTRAL` fields aside), one row
    per pair, ordered so that the field's value grows (30 -> 45 epochs) where values compare.

    Columns: ``dataset``, ``arch``, ``device_type``, ``field``, ``before``, ``after``, ``at`` (the
    values of the epochs, the weight decay and any other field that varies among that network's
    checks on that device type, the compared field aside, e.g. ``{"weight_decay": 0.0001}``), ``accuracy_before``, ``accuracy_after`` (%), ``n_before``, ``n_after`` (evaluation
    images), ``difference`` (after - before, points) with ``difference_lo``/``difference_hi``:
    Newcombe's 95 % interval (:func:`dynn_lib.metrics.newcombe_interval`), which treats the two
    accuracies as independent samples. They share their images, so a paired interval would be
    narrower, but the records keep no per-image predictions; and each side is one training (one
    seed), so no interval covers the spread between training seeds. ``verdict``: "higher",
    "lower" or "inconclusive" (the interval includes 0). Two records trained at different commits
    also differ in whatever else changed in between (their ``git_commit``).
    """
    checks = _static_checks(records)
    out = []
    for i, (ra, ca, a) in enumerate(checks):
        for rb, cb, b in checks[i + 1:]:
            if (a["dataset"], a["arch"], a["device_type"]) != (b["dataset"], b["arch"], b["device_type"]):
                continue
            diff = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
            if len(diff) != 1:
                continue
            field = diff[0]
            (c0, r0), (c1, r1) = (ca, a), (cb, b)
            try:
                if c1.get(field) < c0.get(field):
                    (c0, r0), (c1, r1) = (c1, r1), (c0, r0)
            except TypeError:  # values that do not compare keep the records' order
                pass
            group = [c for _, c, row in checks if (row["dataset"], row["arch"], row["device_type"])
                     == (a["dataset"], a["arch"], a["device_type"])]
            varying = sorted(k for k in set().union(*group) if k != field and
                             (k in ("epochs", "weight_decay") or len({repr(c.get(k)) for c in group}) > 1))
            d, lo, hi = metrics.newcombe_interval(round(r1["accuracy"] / 100 * r1["n"]), r1["n"],
                                                  round(r0["accuracy"] / 100 * r0["n"]), r0["n"])
            out.append({"dataset": a["dataset"], "arch": a["arch"], "device_type": a["device_type"], "field": field,
                        "before": c0.get(field), "after": c1.get(field), "at": {k: c0.get(k) for k in varying},
                        "accuracy_before": r0["accuracy"], "accuracy_after": r1["accuracy"],
                        "n_before": int(r0["n"]), "n_after": int(r1["n"]),
                        "difference": d, "difference_lo": lo, "difference_hi": hi,
                        "verdict": _CHANGE[verdicts.compare(lo, hi, 0.0, ">")]})
    table = pd.DataFrame(out, columns=["dataset", "arch", "device_type", "field", "before", "after", "at",
                                       "accuracy_before", "accuracy_after", "n_before", "n_after",
                                       "difference", "difference_lo", "difference_hi", "verdict"])
    for c in ("before", "after"):  # as recorded: 30 epochs stay 30, not 30.0
        table[c] = pd.Series([row[c] for row in out], index=table.index, dtype=object)
    return table


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def checks_summary(records: Iterable[Mapping]) -> str:
    """What the schedule checks (:func:`schedule_records`) show, as Markdown for the methods page,
    generated from the records so that no page restates their numbers by hand:

    * each pair of checks that differ in one setting (:func:`comparisons`), with the difference in
      points, its interval and whether it is decided;
    * for each network with a floor (:data:`FAST_FLOORS`) on a dataset the checks cover, where it
      stands with today's ``fast`` recipe (checks whose ``current_fast`` is "yes"): the verdict of
      each such check and the device it ran on, or "no check"; and each variant of the recipe
      that a check found above the floor (e.g. "epochs 60 (fast: 45)");
    * how many of those networks have a check of today's recipe above their floor.
    """
    records = list(records)
    rows = floor_rows(records)
    if rows.empty:
        return "No schedule check of a static network has run yet."
    parts = []
    pairs = comparisons(records)
    if not pairs.empty:
        lines = []
        for _, p in pairs.iterrows():
            at = ", ".join(f"{_FIELD_LABEL.get(k, k)} {_value(v)}" for k, v in p["at"].items())
            lines.append(
                f"- {pretty_arch(p['arch'])} on {_DEVICE_LABEL.get(p['device_type'], p['device_type'])}"
                f" ({pretty_dataset(p['dataset'])}{', ' + at if at else ''}): {_FIELD_LABEL.get(p['field'], p['field'])} "
                f"{_value(p['before'])} → {_value(p['after'])}: {p['accuracy_before']:.1f} → "
                f"{p['accuracy_after']:.1f} %, {p['difference']:+.1f} points "
                f"{metrics.interval_text(p['difference_lo'], p['difference_hi'])}, **{p['verdict']}**")
        n_images = sorted({int(n) for n in pd.concat([pairs["n_before"], pairs["n_after"]])})
        parts.append(
            "**What one change did.** Pairs of checks above that differ in one setting only (same network, "
            "dataset and device type):\n\n" + "\n".join(lines) + "\n\n"
            "Each difference is between two trainings of one seed each, with Newcombe's 95 % interval over "
            f"their evaluation images ({', '.join(f'{n:,}' for n in n_images)} each) as if they were independent "
            "samples: they share their images, so a paired interval would be narrower, and no interval covers "
            "the spread between training seeds. \"Inconclusive\": the interval includes 0. Checks trained at "
            "different commits also differ in whatever else changed in between (their commits are above).")
    status, n_pass, n_nets = [], 0, 0
    for dataset in sorted(set(rows["dataset"])):
        said = []
        for arch in [a for (d, a) in FAST_FLOORS if d == dataset]:
            today = rows[(rows["dataset"] == dataset) & (rows["arch"] == arch) & (rows["current_fast"] == "yes")]
            n_nets += 1
            n_pass += bool((today["verdict"] == "above the floor").any())
            each = "; ".join(f"{r['verdict']} on {_DEVICE_LABEL.get(r['device_type'], r['device_type'])} "
                             f"({r['accuracy']:.1f} % {metrics.interval_text(r['accuracy_lo'], r['accuracy_hi'])}, "
                             f"floor {r['floor']:.0f})" for _, r in today.iterrows())
            mine = rows[(rows["dataset"] == dataset) & (rows["arch"] == arch)]
            variants = mine[(mine["current_fast"] != "yes") & (mine["verdict"] == "above the floor")]
            each = each or "has no check"
            if len(variants):  # "no: epochs 60 (fast: 45)" -> "epochs 60 (fast: 45)"
                each += " (above the floor with " + "; ".join(
                    f"{r['current_fast'].removeprefix('no: ')} on {_DEVICE_LABEL.get(r['device_type'], r['device_type'])}"
                    for _, r in variants.iterrows()) + ")"
            said.append(f"{pretty_arch(arch)} {each}")
        if said:
            status.append(f"on {pretty_dataset(dataset)}, " + ", ".join(said))
    if n_nets:
        verdict = (f"all {n_nets} networks with a floor have a check of today's recipe above it"
                   if n_pass == n_nets else
                   f"{n_pass} of the {n_nets} networks with a floor {'has' if n_pass == 1 else 'have'} a check of "
                   "today's recipe above it; for the others the GPU run's schedule probe decides")
        text = "; ".join(status)
        parts.append(f"**Today's `fast` recipe.** {text[:1].upper()}{text[1:]}. So {verdict}.")
    return "\n\n".join(parts)


def devices_line(checks: pd.DataFrame) -> str:
    """One sentence on where the schedule checks of :func:`schedule_checks` ran, for the methods page:
    how many of them on a GPU (``device_type`` "cuda"), so the page never claims by hand that none has."""
    on_gpu = checks["device_type"] == "cuda"
    n, n_gpu = len(checks), int(on_gpu.sum())
    if n == 0:
        return "No schedule check has run yet, on any device."
    if n_gpu == 0:
        which = "The check above did not run" if n == 1 else f"None of the {n} checks above ran"
        return f"{which} on a GPU: the `fast` schedule has not yet been trained where it is meant to run."
    gpus = ", ".join(sorted(set(checks.loc[on_gpu, "device"].astype(str))))
    return f"{n_gpu} of the {n} check{'s' if n != 1 else ''} above ran on a GPU ({gpus})."


def check_name(record: Mapping) -> str:
    """File name of a schedule check: ``<dataset>-<arch>-<recipe>-<profile>-e<epochs>[-<variant>]-<device
    type>.json`` (e.g. ``cifar10-jpeg-resnet56-cnn-fast-e45-cuda.json``). ``<variant>`` names each
    field other than the epochs in which the config differs from its profile's recipe at the time
    of writing, with its value (``weight_decay0.0005``), so that a check of a variant never
    overwrites the check of the profile itself."""
    cfg = record["config"]
    prof = record.get("profile", "fast")
    diff = [k for k in schedule_differences(cfg, prof) if k != "epochs"]
    variant = "".join("-" + re.sub(r"[^A-Za-z0-9._]", "", f"{k}{canonical(cfg.get(k))}") for k in diff)
    return f"{cfg['dataset']}-{cfg['arch']}-{cfg['recipe']}-{prof}-e{cfg['epochs']}{variant}-{device_type(record)}.json"


def parse_step(step) -> tuple[int, dict]:
    """One step of the schedule probe's ladder as ``(cnn_epochs, profile overrides)``: a whole number
    of epochs (``45`` or ``"45"``), or epochs with overrides of that step only, as text
    (``"45:weight_decay=0.0005,lr=0.2"``, values read as Python literals when they are) or as a pair
    (``(45, {"weight_decay": 5e-4})``). ValueError naming the step when it is none of these."""
    def bad(why):
        return ValueError(f"probe step {step!r}: {why}; a step is a whole number of epochs >= 1, optionally with "
                          f"profile overrides, e.g. 45 or '45:weight_decay=0.0005,lr=0.2'")
    if isinstance(step, tuple) and len(step) == 2 and isinstance(step[1], Mapping):
        epochs, overrides = step[0], dict(step[1])
    elif isinstance(step, str):
        head, colon, tail = step.strip().partition(":")
        if not head.strip().isdigit():
            raise bad(f"{head.strip()!r} is not a whole number of epochs")
        epochs, overrides = int(head), {}
        for item in filter(None, (t.strip() for t in tail.split(","))):
            k, eq, v = item.partition("=")
            if not eq or not k.strip() or not v.strip():
                raise bad(f"{item!r} does not look like field=value")
            overrides[k.strip()] = parse_value(v.strip())  # as `dynn -o` reads a value
        if colon and not overrides:
            raise bad("nothing after ':'")
    else:
        epochs, overrides = step, {}
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise bad(f"{epochs!r} is not a whole number of epochs >= 1")
    if "cnn_epochs" in overrides:
        raise bad("cnn_epochs is the step's number itself, not an override")
    return epochs, overrides


def step_params(epochs: int, overrides: Mapping) -> str:
    """A step as ``NAME=VALUE`` profile fields separated by spaces (``"cnn_epochs=45 weight_decay=0.0005"``),
    the form of ``dynn ... -o`` and of ``gpu_run.sh``'s ``DYNN_GPU_RUN_PARAMS``."""
    def text(v):
        return v if isinstance(v, str) else repr(v).replace(" ", "")  # one word per field
    return " ".join([f"cnn_epochs={epochs}"] + [f"{k}={text(v)}" for k, v in overrides.items()])


def default_probe_steps(profile: str = "fast", dataset: str = "cifar10-jpeg") -> list[int]:
    """The schedule probe's steps that ``benchmarks/gpu_run.sh`` tries when not told otherwise: the
    profile's ``cnn_epochs``, then :data:`PROBE_EXTRA_EPOCHS` more; none (an empty list) for a
    profile other than ``fast`` or a dataset without floors (:data:`FAST_FLOORS`)."""
    cnn_epochs = get_profile(profile).cnn_epochs  # checks the name first
    if profile != "fast" or not any(d == dataset for d, _ in FAST_FLOORS):
        return []
    return [cnn_epochs, cnn_epochs + PROBE_EXTRA_EPOCHS]


def probe_epochs(dataset: str, archs: str | Sequence[str] | None, epochs: Sequence, out_dir: str | Path,
                 profile: str = "fast", floor: float | None = None, store: str | Path | None = None,
                 data_dir: str | Path | None = None, device: str = "auto", seed: int = 0, **overrides) -> dict:
    """Pick the schedule by measurement: for each step of ``epochs`` in turn (:func:`parse_step`: a
    number of epochs, optionally with profile overrides of that step, e.g. another ``weight_decay``),
    train the static networks (kind ``cnn``) of ``archs`` with ``profile``'s schedule, ``cnn_epochs``
    = the step's number and the step's overrides, and stop at the first step at which every one is
    "above the floor" (:func:`judge`; "inconclusive" does not pass). ``archs``: one architecture,
    several, or None for every one with a floor on ``dataset`` (ResNet-56 first: the one the first
    schedule check found short). Within a step, the first network that does not pass ends it, so no
    further one is trained there.

    Each model trains through a :class:`~dynn_lib.zoo.Workspace` with the same store, so the
    experiments run afterwards with the chosen step's fields reuse the models of a passing step;
    ``overrides`` are further profile fields of every step (the run's own, e.g. ``n_train``; a step
    may not override them). Every step's profile is checked before any training. Each model's
    training record is written to ``out_dir`` as a schedule check (:func:`check_name`), where the
    methods page shows it.

    Returns ``{"chosen_epochs", "chosen_overrides", "chosen_params", "passed", "dataset", "archs",
    "profile", "probes": [...]}``: ``passed`` is False when no step passed, and then the chosen step
    is the last (the run goes on with it, and the book judges it); ``chosen_params`` is the chosen
    step as :func:`step_params`; ``probes`` holds one :func:`judge` result per model trained, with
    its ``arch``, ``epochs``, ``overrides``, ``step`` (the step as text), ``n`` and ``file``.
    """
    from .models import ARCHS
    from .zoo import Workspace

    if isinstance(epochs, (str, int)) or not list(epochs):
        raise ValueError(f"epochs must be a non-empty list of probe steps (e.g. [45, 60] or "
                         f"['45', '45:weight_decay=0.0005']), got {epochs!r}")
    steps = [parse_step(s) for s in epochs]
    if archs is None:
        archs = [a for d, a in FAST_FLOORS if d == dataset]
        if not archs and floor is None:
            raise ValueError(f"no floor for any architecture on {dataset} (floors exist for "
                             f"{', '.join(sorted({d for d, _ in FAST_FLOORS}))}); give archs and a floor in percent")
        archs = archs or list(ARCHS)
    archs = [archs] if isinstance(archs, str) else list(archs)
    bad = [a for a in archs if a not in ARCHS]
    if not archs or bad:
        raise ValueError(f"unknown architecture(s) {bad or archs!r}; accepted: {', '.join(ARCHS)}")
    _check_floor(floor)
    missing = [a for a in archs if (dataset, a) not in FAST_FLOORS]
    if floor is None and missing:
        known = ", ".join(f"{d}/{a}" for d, a in FAST_FLOORS)
        raise ValueError(f"no floor for {', '.join(f'{dataset}/{a}' for a in missing)} (floors exist for {known}); "
                         f"give a floor in percent (floor=, or --floor)")
    if "cnn_epochs" in overrides:
        raise ValueError("cnn_epochs is what the probe chooses: give it as epochs=, not as an override")
    for e, ov in steps:
        both = sorted(set(ov) & set(overrides))
        if both:
            raise ValueError(f"probe step {step_params(e, ov)!r} sets {', '.join(both)}, which the run's overrides "
                             f"set too: give each field in one place")
        get_profile(profile, cnn_epochs=e, **ov, **overrides)  # bad names and values fail before any training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": dataset, "archs": archs, "profile": profile, "probes": []}
    for e, ov in steps:
        ws = Workspace(dataset, profile, store=store, data_dir=data_dir, device=device, seed=seed,
                       cnn_epochs=e, **ov, **overrides)
        passed = True
        for arch in archs:
            rec = {**ws.model_record(arch, "cnn"), "profile": profile}  # trains the model when not stored
            name = check_name(rec)
            atomic_write_text(out / name, json.dumps(rec, indent=2, default=str))
            v = judge(dataset, arch, float(rec["exit_accuracy"][-1]), int(rec["n_eval"]), floor)
            result["probes"].append({"arch": arch, "epochs": e, "overrides": ov, "step": step_params(e, ov),
                                     "file": name, "n": int(rec["n_eval"]), **v})
            if v["verdict"] != "above the floor":
                passed = False
                break
        if passed:
            result.update(chosen_epochs=e, chosen_overrides=ov, chosen_params=step_params(e, ov), passed=True)
            return result
    e, ov = steps[-1]
    result.update(chosen_epochs=e, chosen_overrides=ov, chosen_params=step_params(e, ov), passed=False)
    return result


_ZOO_COLUMNS = ("dataset", "arch", "kind", "exit_accuracy", "n_eval", "early_exit_accuracy", "tau", "macs_ratio")


def side_by_side(zoos: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Two runs' model zoos, one row per model: ``zoos`` maps two run labels (e.g. ``"fast"`` and
    ``"paper"``, in that order) to each run's ``models`` table of the zoo question.

    Per run label ``L``: ``final_L`` (final-exit accuracy, %) and ``deployed_L`` (accuracy through
    early exit at the run's own τ, %), each with its 95 % Wilson interval (``_lo``/``_hi``) over
    the run's ``n_L`` evaluation images; ``tau_L`` and ``macs_ratio_L`` (mean MACs over the
    backbone's; NaN for a static network's τ). ``final_difference``: first label minus second, in
    points, with Newcombe's interval for independent proportions (:func:`metrics.newcombe_interval`).
    Two runs of one dataset and seed evaluate the *same* images, so their correctness is positively
    correlated and that interval is conservative (wider than a paired one). A model that only one
    run holds keeps its row, with the other run's cells empty; rows follow the first run's order.
    """
    if len(zoos) != 2:
        raise ValueError(f"side_by_side compares exactly two runs; got {len(zoos)}: {list(zoos)!r}")
    keys = ["dataset", "arch", "kind"]
    parts = []
    for label, zoo in zoos.items():
        missing = [c for c in _ZOO_COLUMNS if c not in zoo.columns]
        if missing:
            raise ValueError(f"run {label!r}: not a model-zoo table, columns {missing} missing "
                             f"(expected {', '.join(_ZOO_COLUMNS)})")
        rows = []
        for r in zoo.itertuples():
            n = int(r.n_eval)
            row = {"dataset": r.dataset, "arch": r.arch, "kind": r.kind, f"n_{label}": n,
                   f"_k_{label}": round(float(r.exit_accuracy[-1]) * n)}
            for name, acc in (("final", float(r.exit_accuracy[-1])), ("deployed", float(r.early_exit_accuracy))):
                lo, hi = metrics.wilson_interval(round(acc * n), n)
                row.update({f"{name}_{label}": 100.0 * acc, f"{name}_{label}_lo": lo, f"{name}_{label}_hi": hi})
            row.update({f"tau_{label}": float(r.tau), f"macs_ratio_{label}": float(r.macs_ratio)})
            rows.append(row)
        parts.append(pd.DataFrame(rows, columns=keys + [f"n_{label}", f"_k_{label}"] + [
            f"{m}_{label}{s}" for m in ("final", "deployed") for s in ("", "_lo", "_hi")] + [
            f"tau_{label}", f"macs_ratio_{label}"]).set_index(keys))
    (a, b), (ta, tb) = zoos.keys(), parts
    order = list(ta.index) + [k for k in tb.index if k not in set(ta.index)]  # the first run's row order
    out = ta.join(tb, how="outer").reindex(order).reset_index()
    diff = [metrics.newcombe_interval(ka, na, kb, nb) if pd.notna(ka) and pd.notna(kb) else (float("nan"),) * 3
            for ka, na, kb, nb in zip(out[f"_k_{a}"], out[f"n_{a}"], out[f"_k_{b}"], out[f"n_{b}"])]
    out["final_difference"], out["final_difference_lo"], out["final_difference_hi"] = (
        [d[i] for d in diff] for i in range(3))
    cols = keys + [f"{m}_{lab}{s}" for m in ("final", "deployed") for lab in (a, b) for s in ("", "_lo", "_hi")]
    cols += ["final_difference", "final_difference_lo", "final_difference_hi"]
    cols += [f"{m}_{lab}" for m in ("tau", "macs_ratio") for lab in (a, b)] + [f"n_{a}", f"n_{b}"]
    return out[cols].reset_index(drop=True)


def beside_paper(results_dir: str | Path, dataset: str, table: str = "Table Z.3"):
    """What a page shows of ``fast`` beside ``paper`` on ``dataset`` (the model-zoo page as Table
    Z.3, the methods page as Table M.2): :func:`side_by_side` of the two runs' model zoos in
    ``results_dir`` as a book table (final-exit accuracy and difference, τ and MACs ratio; the
    deployed accuracies are left to :func:`side_by_side`), captioned ``table`` with each run's
    epochs and commit; or, while ``results_dir`` lacks one of the runs, a note naming it and the
    command that makes it. Returns a :class:`dynn_lib.display.HTMLBlock`."""
    import html

    from . import display
    from .experiments import runner

    runs, records, absent = {}, {}, []
    for prof in ("fast", "paper"):
        try:
            runs[prof] = runner.load_results(results_dir, prof, dataset, "zoo")["models"]
            records[prof] = runner.load_record(results_dir, prof, dataset, "zoo")
        except FileNotFoundError:
            absent.append(prof)
    if absent:
        head = (f"{table} is drawn once this results folder holds a model-zoo run of both the fast and the paper "
                f"profile on {dataset}; it has none of {' and '.join(absent)} (")
        commands = [f"dynn run zoo --dataset {dataset} --profile {p}" for p in absent]
        tail = " makes it)." if len(commands) == 1 else " make them)."
        code = ", ".join(f"<code>{html.escape(c)}</code>" for c in commands)
        return display.HTMLBlock(f"<p>{html.escape(head)}{code}{html.escape(tail)}</p>",
                                 head + ", ".join(commands) + tail)
    pair = side_by_side(runs)
    pair = pair.drop(columns=[c for c in pair.columns if c.startswith("deployed")])
    def made(lab):
        epochs = runs[lab].groupby("kind")["epochs"].max()
        return (f"{lab}: epochs {', '.join(f'{k} {int(e)}' for k, e in epochs.items())}, "
                f"commit {str(records[lab].get('git_commit', 'unknown'))[:12]}")
    labels = {f"{m}_{lab}": f"{what} {lab}" for lab in runs
              for m, what in (("final", "final exit %"), ("tau", "τ"), ("macs_ratio", "MACs / full"), ("n", "images"))}
    return display.table(
        pair, f"{table}. The same models trained with the fast schedule and the paper recipe: final-exit accuracy with "
              "its 95 % Wilson interval over the evaluation images; the difference (fast − paper, points) with "
              "Newcombe's interval for independent samples, conservative here since both runs answer the same "
              "images; each run's τ and mean MACs relative to the whole network when answering through early exit "
              f"(dynn_lib.floors.side_by_side also gives the deployed accuracies). {'; '.join(map(made, runs))}.",
        interval_note="Wilson for an accuracy; Newcombe for the difference",
        labels={**labels, "final_difference": "final exit: fast − paper"},
        to_caption=("dataset", "n_fast", "n_paper"),
        formats={**{c: (lambda v: f"{v:.1f}") for c in pair.columns if c.startswith("final")},
                 **{c: (lambda v: f"{v:.2f}") for c in pair.columns if c.startswith(("tau", "macs"))}},
        empty="a static network has no τ; or that run has no such model")
