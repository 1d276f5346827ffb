"""``dynn reproduce``: run every experiment a profile needs, execute every notebook, build the book.

Stages (each skips work whose artefacts exist, so an interrupted run resumes):
1. experiments: for each dataset, the model zoo and the questions (Tiny ImageNet: RQ1 only, as in
   the paper's appendix), published to ``<results>/<profile>/<dataset>/<question>/``;
2. notebooks: every notebook of the TOC executed with papermill, parameters injected;
3. site: ``jupyter-book build`` with warnings as errors.
Wall time per stage goes to ``<results>/<profile>/reproduce.json``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from . import data
from .experiments.runner import publish, split_overrides
from .profiles import Profile
from .store import atomic_write_text, provenance
from .zoo import Workspace

PRIMARY_QUESTIONS = ("zoo", "rq1", "rq2", "rq3", "rq4", "appendix")
SECONDARY_QUESTIONS = ("zoo", "rq1")  # Tiny ImageNet: RQ1 (paper Fig. 16)
DEFAULT_DATASETS = {"smoke": ("cifar10-jpeg",), "paper": ("cifar10-jpeg", "tinyimagenet")}


def available(dataset: str, data_dir: str | Path | None) -> bool:
    """Whether ``dataset`` can be loaded from ``data_dir`` (generated data always can)."""
    if data.get_info(dataset).generated:
        return True
    try:
        data.load(dataset, "test", data_dir)
        return True
    except data.DatasetNotFoundError:
        return False


def choose_datasets(profile: str, datasets: Sequence[str] | None, data_dir) -> tuple[list[str], list[str]]:
    """(datasets to run, notes). Without an explicit list, missing real data falls back to ``synthetic``."""
    notes: list[str] = []
    if datasets:
        for d in datasets:
            data.get_info(d)
            if not available(d, data_dir):
                raise FileNotFoundError(f"dataset {d!r} not found under {data.resolve_data_dir(data_dir)}; "
                                        "set --data-dir or DYNN_DATA_DIR")
        return list(datasets), notes
    chosen = [d for d in DEFAULT_DATASETS.get(profile, ("cifar10-jpeg",)) if available(d, data_dir)]
    if not chosen:
        notes.append(f"no real dataset under {data.resolve_data_dir(data_dir)}: using GENERATED data ('synthetic')")
        chosen = ["synthetic"]
    return chosen, notes


def reproduce(profile: str = "smoke", datasets: Sequence[str] | None = None, device: str = "auto",
              results_dir: str | Path = "results", store: str | Path | None = None,
              data_dir: str | Path | None = None, seed: int = 0, overrides: dict[str, Any] | None = None,
              build: bool = True, execute: bool = True, experiments: bool = True, engine: str = "local",
              address: str | None = None, gpus_per_job: float | None = None,
              seeds: Sequence[int] | None = None, threads_per_job: int | None = None,
              workers: int = 1, allow_missing: bool = False) -> Path | None:
    """Run the whole pipeline; returns the HTML folder (or None when ``build`` is False).

    seeds: run the experiments once per seed (workspace seed: training, surrogates, corruptions),
    the first into ``results_dir`` and each other one into ``results_dir/seed-<s>``
    (:func:`seed_results_dir`); the claims ledger aggregates every seed folder (mean ± std over
    seeds beside each run's interval), the question pages show the first seed. Default: ``(seed,)``.

    engine: ``local`` (in this process) or ``ray`` (the job graph of :mod:`dynn_lib.plan` as Ray
    tasks on this machine or the cluster at ``address``, ``gpus_per_job`` GPUs and
    ``threads_per_job`` CPU threads each; the results are then published here as by the local
    run); see :mod:`dynn_lib.engines`. workers (local engine): up to that many jobs of the graph
    at once, each in its own process (trainings sharing one GPU), before the usual publishing loop.

    experiments=False (``--no-experiments``): the pages run with ``compute=False`` and only render
    what ``results_dir`` holds (:func:`dynn_lib.experiments.runner.publish`): results made elsewhere
    (a GPU slot, ``benchmarks/gpu_run.sh``) are shown, never recomputed here. A missing result stops
    the build, unless ``allow_missing`` (``--allow-missing``; only with ``experiments=False``): then each
    page without published results is rendered as a notice saying what is missing and which command
    computes it, and every page of the site says the build is partial (:func:`dynn_lib.book.execute_all`).
    """
    from .engines import check_engine_options
    check_engine_options(engine, address, gpus_per_job, threads_per_job, workers)
    if not isinstance(allow_missing, bool):
        raise TypeError(f"allow_missing must be True or False, got {allow_missing!r}")
    if allow_missing and experiments:
        raise ValueError("allow_missing (--allow-missing) needs experiments=False (--no-experiments): a run that "
                         "computes publishes every result, so no page can lack one")
    overrides = dict(overrides or {})
    seeds = _check_seeds((seed,) if seeds is None else seeds)
    chosen, notes = choose_datasets(profile, datasets, data_dir)
    for n in notes:
        print(f"[reproduce] {n}", file=sys.stderr)
    results_dir = Path(results_dir).resolve()
    stages: dict[str, float] = {}
    t_all = time.perf_counter()
    known = set().union(*(_accepted(q) for q in PRIMARY_QUESTIONS))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; accepted: {sorted(known)}")
    if experiments and (engine != "local" or workers > 1):
        from .engines import run_plan
        from .plan import build_plan
        t0 = time.perf_counter()
        plan = build_plan(profile, chosen, seeds, None, overrides, store, data_dir, results_dir, device)
        run_plan(plan, engine, address, gpus_per_job, threads_per_job=threads_per_job, workers=workers)
        # the loop below then finds every result published
        stages[engine if workers == 1 else f"{engine} x{workers}"] = time.perf_counter() - t0
    if experiments:
        pfields = {f.name for f in fields(Profile)} - {"name"}
        prof = {k: v for k, v in overrides.items() if k in pfields}
        for s in seeds:
            out = seed_results_dir(results_dir, s, seeds)
            tag = "" if len(seeds) == 1 else f" seed {s}"
            for i, ds in enumerate(chosen):
                # one workspace per dataset: its data and trained models are loaded once for every question
                ws = Workspace(ds, profile, store=store, data_dir=data_dir, device=device, seed=s, **prof)
                for q in PRIMARY_QUESTIONS if i == 0 else SECONDARY_QUESTIONS:
                    _, conf = split_overrides(q, {k: v for k, v in overrides.items() if k in _accepted(q)})
                    t0 = time.perf_counter()
                    name = f"{ds}/{q}{tag}"
                    print(f"[reproduce] {name} ...", file=sys.stderr, flush=True)
                    publish(q, ws, out, conf)
                    stages[name] = time.perf_counter() - t0
                    print(f"[reproduce] {name} done in {stages[name]:.1f} s", file=sys.stderr, flush=True)
    html = None
    if build or execute:
        from .book import build_book, default_jobs, execute_all, toc_notebooks
        params = {"profile": profile, "dataset": chosen[0], "device": device, "seed": seeds[0],
                  "results_dir": str(results_dir),
                  # --no-experiments: pages render the published results and never compute (a missing
                  # one is an error; one made by other code is shown with the page's warning)
                  "compute": experiments,
                  # JSON round trip: papermill would turn tuples into strings
                  "overrides": json.loads(json.dumps(overrides, default=list))}
        if store is not None:
            params["store"] = str(Path(store).resolve())
        if data_dir is not None:
            params["data_dir"] = str(Path(data_dir).resolve())
        if len(chosen) > 1:
            params["secondary_dataset"] = chosen[1]
        # the experiment stage has published everything (or --no-experiments: nothing is computed),
        # so the pages only render: several at once (book.default_jobs: one per core)
        jobs = default_jobs(len(toc_notebooks()))
        t0 = time.perf_counter()
        if build:
            html = build_book(None, results_dir, strict=True, parameters=params, execute=execute, jobs=jobs,
                              allow_missing=allow_missing)
        else:
            execute_all(None, params, jobs=jobs, allow_missing=allow_missing)
        stages["notebooks+book"] = time.perf_counter() - t0
    stages["total"] = time.perf_counter() - t_all
    rec = {"profile": profile, "datasets": chosen, "seeds": list(seeds), "notes": notes, "seconds": stages,
           "overrides": overrides,
           **provenance(device if device != "auto" else None)}
    atomic_write_text(results_dir / profile / "reproduce.json", json.dumps(rec, indent=2, default=str))
    print(f"[reproduce] total {stages['total']:.1f} s; stages: " +
          ", ".join(f"{k} {v:.0f}s" for k, v in stages.items() if k != "total"), file=sys.stderr)
    return html


def seed_results_dir(results_dir: str | Path, seed: int, seeds: Sequence[int]) -> Path:
    """Results folder of ``seed`` in a run of ``seeds``: the first seed publishes into
    ``results_dir`` itself, every other seed into ``results_dir/seed-<seed>`` (the folders
    :func:`dynn_lib.claims.results_dirs` aggregates)."""
    return Path(results_dir) if seed == seeds[0] else Path(results_dir) / f"seed-{seed}"


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be one or more integers >= 0, got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds has duplicates: {list(seeds)}")
    return seeds


def _accepted(question: str) -> set[str]:
    """Profile fields plus the question's experiment-config fields."""
    from .experiments.runner import _config_class
    names = {f.name for f in fields(Profile)} - {"name"}
    cls = _config_class(question)
    return names | ({f.name for f in fields(cls)} if cls else set())
