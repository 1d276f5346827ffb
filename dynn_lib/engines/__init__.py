"""Engines that run a reproduction's job graph (:mod:`dynn_lib.plan`), behind one call, :func:`run_plan`.

* ``local`` (default): every pending job in plan order, in this process, one workspace per
  (dataset, seed) shared by its jobs: the order ``dynn reproduce`` has always used; or, with
  ``workers=K``, up to K jobs at once in their own processes (several trainings sharing one
  GPU); needs nothing beyond the default install and never imports Ray.
* ``ray``: each job a Ray task (:mod:`dynn_lib.engines.ray_engine`), on a local Ray instance or
  an existing cluster (``address``); needs the ``cluster`` extra (``pip install -e ".[cluster]"``).

Bad options are clear ``ValueError``\\ s before any work (:func:`check_engine_options`).

Wall times: an attack table (``gen_seconds_shared``) and a training record (``device_shared``)
say whether they were timed while other jobs of the run could use the same device (read through
:func:`device_shared`). The local engine in one process never shares; with ``workers=K`` it runs
the black-box transfer tables, whose times Finding 2 compares, alone, and marks every other job
as shared; on Ray a job shares unless it holds a whole GPU, or a CPU job leaves no room on its
node for a second one (:func:`dynn_lib.engines.ray_engine.shares_device`).
"""
from __future__ import annotations

import importlib.util
import os
from numbers import Real

ENGINES: tuple[str, ...] = ("local", "ray")

SHARED_DEVICE_ENV = "DYNN_SHARED_DEVICE"
"""Environment variable an engine sets to ``"1"`` in a process whose jobs may run beside other
jobs of the run on the same device (see the module docstring)."""


def device_shared() -> bool:
    """Whether this process's jobs may share their device with other jobs of the run
    (:data:`SHARED_DEVICE_ENV` is ``"1"``); False in a plain process."""
    return os.environ.get(SHARED_DEVICE_ENV, "0") == "1"


def set_device_shared(shared: bool) -> None:
    """Say, for the jobs this process runs next, whether other jobs of the run may share their
    device (what :func:`device_shared` then reads); an engine calls it before each job."""
    os.environ[SHARED_DEVICE_ENV] = "1" if shared else "0"


def check_engine_options(engine: str, address: str | None = None, gpus_per_job: float | None = None,
                         threads_per_job: int | None = None, workers: int = 1) -> None:
    """Validate engine options without importing Ray or doing any work.

    engine: one of :data:`ENGINES`. address: a Ray cluster (``host:port``, ``ray://host:port`` or
    ``auto``; ``ray`` only; ``host:port`` forms are probed over TCP). gpus_per_job: GPUs per job,
    a fraction in (0, 1] (``ray`` only; several small jobs then share one GPU). threads_per_job:
    CPU threads (and Ray CPUs) per job, an integer >= 1 (``ray`` only; see
    :func:`dynn_lib.engines.ray_engine.run` for the default and why it matters). workers: jobs
    at once in their own processes, an integer >= 1 (``local`` only; :mod:`dynn_lib.engines.local`).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; accepted: {', '.join(ENGINES)}")
    given = [n for n, v in (("address", address), ("gpus_per_job", gpus_per_job),
                            ("threads_per_job", threads_per_job)) if v is not None]
    if engine != "ray" and given:
        raise ValueError(f"{' and '.join(given)} apply only to engine 'ray' (engine is {engine!r})")
    if threads_per_job is not None and (not isinstance(threads_per_job, int) or isinstance(threads_per_job, bool)
                                        or threads_per_job < 1):
        raise ValueError(f"threads_per_job must be an integer >= 1, got {threads_per_job!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if engine != "local" and workers != 1:
        raise ValueError(f"workers applies only to engine 'local' (engine is {engine!r}; Ray schedules its own "
                         "jobs: use gpus_per_job)")
    if gpus_per_job is not None and (not isinstance(gpus_per_job, Real) or isinstance(gpus_per_job, bool)
                                     or not 0 < float(gpus_per_job) <= 1):
        raise ValueError(f"gpus_per_job must be a fraction of one GPU in (0, 1], got {gpus_per_job!r} "
                         "(0.5: two jobs share a GPU; 1: one job per GPU)")
    if engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ValueError("engine 'ray' needs Ray, which is not installed: pip install -e \".[cluster]\"")
        if address is not None:
            from .ray_engine import probe_address
            probe_address(address)


def run_plan(plan, engine: str = "local", address: str | None = None, gpus_per_job: float | None = None,
             retries: int = 2, threads_per_job: int | None = None, workers: int = 1) -> dict[str, float]:
    """Run every pending job of ``plan`` on ``engine``; returns {job key: wall seconds} of the jobs
    run (done jobs are skipped). ``retries``: times a job whose worker died is run again (Ray);
    ``workers``: jobs at once on the local engine."""
    check_engine_options(engine, address, gpus_per_job, threads_per_job, workers)
    if engine == "local":
        from .local import run
        return run(plan, workers=workers)
    from .ray_engine import run
    return run(plan, address=address, gpus_per_job=gpus_per_job, retries=retries, threads_per_job=threads_per_job)
