"""Run a research question and publish its tables to a results folder.

Layout of a results folder (what the book reads, and what a ``paper`` run commits)::

    <results_dir>/<profile>/<dataset>/<question>/<table>.parquet
    <results_dir>/<profile>/<dataset>/<question>/record.json   (config, provenance, wall time)

The store (``artefacts/``) caches every expensive intermediate keyed by configuration; the
results folder holds only the final tables of each question.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..profiles import Profile
from ..store import atomic_write, atomic_write_text, canonical, provenance
from ..versions import code_version, is_current
from ..zoo import Workspace

QUESTIONS = ("zoo", "rq1", "rq2", "rq3", "rq4", "appendix")


def _question_module(question: str):
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; accepted: {', '.join(QUESTIONS)}")
    from importlib import import_module
    return import_module(f".{'model_zoo' if question == 'zoo' else question}", __package__)


def _config_class(question: str):
    if question in ("rq1", "rq2", "rq3", "appendix"):
        from .common import ExperimentConfig
        return ExperimentConfig
    if question == "rq4":
        from .rq4 import RQ4Config
        return RQ4Config
    return None


def split_overrides(question: str, overrides: dict[str, Any]) -> tuple[dict, dict]:
    """Split ``overrides`` into (profile fields, experiment-config fields); unknown names are errors."""
    pnames = {f.name for f in fields(Profile)} - {"name"}
    cls = _config_class(question)
    cnames = {f.name for f in fields(cls)} if cls else set()
    if question == "zoo":
        cnames = {"archs"}
    bad = set(overrides) - pnames - cnames
    if bad:
        raise ValueError(f"unknown parameter(s) {sorted(bad)} for {question}; accepted: "
                         f"{sorted(pnames | cnames)}")
    prof = {k: v for k, v in overrides.items() if k in pnames}
    conf = {k: v for k, v in overrides.items() if k in cnames}
    return prof, conf


def make_config(question: str, conf: dict):
    cls = _config_class(question)
    if cls is None:
        return conf
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in conf.items()}
    return cls(**kw)


def run_question(question: str, ws: Workspace, conf: dict | None = None) -> dict[str, pd.DataFrame]:
    """Compute (or load from the store) every table of ``question`` for the workspace."""
    mod = _question_module(question)
    if question == "zoo":
        return {"models": mod.model_zoo(ws, **(conf or {}))}
    return mod.run(ws, make_config(question, conf or {}))


def results_path(results_dir: str | Path, profile: str, dataset: str, question: str) -> Path:
    return Path(results_dir) / profile / dataset / question


def write_results(path: Path, tables: dict[str, pd.DataFrame], record: dict) -> None:
    """Write each table as Parquet and ``record.json`` last (atomically)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        atomic_write(path / f"{name}.parquet", lambda p, df=df: df.to_parquet(p, index=False))
    atomic_write_text(path / "record.json", json.dumps(canonical(record), indent=2, default=str))


def load_results(results_dir: str | Path, profile: str, dataset: str, question: str) -> dict[str, pd.DataFrame]:
    """The tables a previous run published (``FileNotFoundError`` naming the folder when absent)."""
    path = results_path(results_dir, profile, dataset, question)
    if not (path / "record.json").is_file():
        raise FileNotFoundError(f"no results for {question} on {dataset} at profile {profile} in {path}; "
                                f"run `dynn run {question} --dataset {dataset} --profile {profile}` first")
    return {p.stem: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}


def load_record(results_dir: str | Path, profile: str, dataset: str, question: str) -> dict:
    return json.loads((results_path(results_dir, profile, dataset, question) / "record.json").read_text())


def _differing(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields in which two configs differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differing(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} published, {vb!r} asked)")
    return out


class NotPublishedError(FileNotFoundError):
    """:func:`publish` with ``compute=False`` found no published result of the asked configuration.

    A ``FileNotFoundError`` (what callers caught before it existed) with its own name, so that the
    book can tell "this page has no results yet" from a page that broke
    (:func:`dynn_lib.book.execute_all` with ``allow_missing``, ``dynn reproduce --allow-missing``).
    ``question``, ``path`` (the results folder it looked in) and ``command`` (what computes it)
    are attributes too."""

    def __init__(self, message: str, question: str = "", path: str | Path = "", command: str = ""):
        super().__init__(message)
        self.question, self.path, self.command = question, str(path), command


def publish_config(question: str, ws: Workspace, conf: dict | None = None) -> dict:
    """The configuration a published result is recorded under (``record.json["config"]``): a
    result with the same configuration is reused, never published twice."""
    cfg = make_config(question, conf or {})
    return {"question": question, "dataset": ws.dataset, "profile": asdict(ws.profile), "seed": ws.seed,
            "experiment": asdict(cfg) if is_dataclass(cfg) else cfg}


def publish(question: str, ws: Workspace, results_dir: str | Path, conf: dict | None = None,
            force: bool = False, compute: bool = True) -> dict[str, pd.DataFrame]:
    """Run ``question`` and write its tables; an existing published result is reused when its config
    and its code version (:func:`dynn_lib.versions.code_version`) both match, recomputed otherwise
    (stored intermediates whose own code is unchanged are still reused).

    ``compute=False`` (a page's ``compute`` parameter; ``dynn reproduce --no-experiments``) never
    computes: a published result of the same config is loaded even when other library code made it
    (the page's data note says so, :func:`dynn_lib.claims.data_note`) -- results from a GPU slot
    render on a CPU without retraining -- and a missing one, or one of another config, is a
    :class:`NotPublishedError` (a ``FileNotFoundError``) naming the folder, the differing config
    fields and the command to run.
    """
    if not isinstance(compute, bool) or not isinstance(force, bool):
        raise TypeError(f"compute and force must be True or False; got compute={compute!r}, force={force!r}")
    if force and not compute:
        raise ValueError("force=True recomputes, compute=False never computes: choose one")
    path = results_path(results_dir, ws.profile.name, ws.dataset, question)
    config = publish_config(question, ws, conf)
    wanted = canonical(config)
    rec = None
    if not force and (path / "record.json").is_file():
        rec = json.loads((path / "record.json").read_text())
        # reused only when computed from the same configuration by the same code
        if rec.get("config") == wanted and (is_current(rec) or not compute):
            return load_results(results_dir, ws.profile.name, ws.dataset, question)
    if not compute:
        why = "no record.json there" if rec is None else (
            "its config differs in " + ", ".join(_differing(rec.get("config") or {}, wanted)))
        command = f"dynn run {question} --dataset {ws.dataset} --profile {ws.profile.name}"
        raise NotPublishedError(
            f"compute=False: no published {question} result of this configuration in {path} ({why}); "
            f"run `{command}` with the same parameters, or `dynn reproduce` without `--no-experiments`",
            question, path, command)
    t0 = time.perf_counter()
    tables = run_question(question, ws, conf)
    record = {"config": config, "wall_time_s": time.perf_counter() - t0, "dataset_label": ws.info.label,
              "generated_data": bool(getattr(ws.info, "generated", False)), **provenance(ws.device),
              "code_version": code_version("results"), "models": models_behind(ws)}
    write_results(path, tables, record)
    return tables


def models_behind(ws: Workspace) -> dict[str, str]:
    """Which weights stand behind a result published from ``ws``: ``{store folder: identity}`` of
    every model of the workspace in its store at this moment -- the nine of the model zoo (each
    architecture as SDNN, SDN-trained and IC-only DyNN) and the black-box pairs' surrogates. The
    identity is the record's ``weights_sha256`` (:func:`dynn_lib.store.weights_digest`), or
    ``created <time>`` for a model stored before digests were recorded. A question's record lists
    the models stored when it was published, which includes some it did not use; what matters is
    that one folder never stands for two different weights within one results folder
    (:func:`model_conflicts`)."""
    from ..blackbox import PAIRS, surrogate_config
    from ..models import ARCHS
    from ..store import CorruptArtefactError
    from ..zoo import MODEL_KINDS, _slug

    cfgs = [ws.model_config(a, k) for a in ARCHS for k in MODEL_KINDS] + [surrogate_config(ws, p) for p in PAIRS]
    out: dict[str, str] = {}
    for cfg in cfgs:
        try:
            rec = ws.store.record("models", cfg, slug=_slug(cfg))
        except (FileNotFoundError, CorruptArtefactError):
            continue
        out[ws.store.dir("models", cfg, slug=_slug(cfg)).name] = (rec.get("weights_sha256")
                                                                  or f"created {rec.get('created', '?')}")
    return dict(sorted(out.items()))


def model_conflicts(results_dir: str | Path, profile: str, dataset: str) -> pd.DataFrame:
    """Models that stand for different weights in the published results of one profile and dataset:
    one row per (model, question) for every store folder whose recorded identity
    (:func:`models_behind`) differs between two questions' records -- e.g. a results folder merged
    from two GPU slots, each of which trained the models anew (GPU training is not bitwise
    reproducible), so that one page's accuracies describe other networks than another page's
    attacks. Columns ``model``, ``question``, ``weights`` (the first 12 characters of the
    identity). Empty when every model agrees, and for records without a ``models`` entry."""
    seen: dict[str, dict[str, str]] = {}
    for q in QUESTIONS:
        try:
            rec = load_record(results_dir, profile, dataset, q)
        except (OSError, ValueError):
            continue
        for model, ident in (rec.get("models") or {}).items():
            seen.setdefault(model, {})[q] = ident
    rows = [{"model": model, "question": q, "weights": ident if ident.startswith("created") else ident[:12]}
            for model, by_q in sorted(seen.items()) if len(set(by_q.values())) > 1 for q, ident in by_q.items()]
    return pd.DataFrame(rows, columns=["model", "question", "weights"])
