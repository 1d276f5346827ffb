"""The ``local`` engine: a plan's pending jobs on this machine, no dependency beyond the default
install.

* ``workers=1`` (default): one after another in this process, in plan order (the order
  ``dynn reproduce`` has always computed things), one workspace per (dataset, seed), so data
  and trained models are loaded once.
* ``workers=K > 1``: up to ``K`` jobs at once, each in its own process (``spawn``; a job starts
  when the jobs it needs have finished, in plan order among those ready). Meant for one GPU
  that a single training leaves partly idle: several trainings then share it (processes
  time-share a GPU; whether that raises total throughput depends on the model and the GPU,
  so ``benchmarks/gpu_check.py`` measures it, section ``concurrency``, and
  ``benchmarks/gpu_run.sh`` uses more than one worker only when that measurement says so).
  Every worker runs with this process's PyTorch thread count, so its numbers equal the
  sequential run's (see :mod:`dynn_lib.engines.ray_engine` on thread counts), and keeps its
  workspaces across the jobs it runs. On a CPU the workers compete for the same cores: measured
  on 2 cores (the 113 jobs of the tiny ``gpu_run.sh`` rehearsal), computed question by question
  with 2 threads they took 91 s, on 2 workers with 2 threads each 145 s (oversubscribed), on 2
  workers started under ``OMP_NUM_THREADS=1`` 68 s (whose numbers are a 1-thread run's). At real
  sizes that gain is gone: the 113 jobs of ``dynn plan --profile smoke --datasets cifar10-jpeg --run``
  on the same kind of 2-core machine took 466 s in one process with 2 threads and 522 s on 2 workers
  under ``OMP_NUM_THREADS=1``, run one after the other on a quiet machine (the transfer tables, about
  28 % of the estimated work, then run alone on one thread, and each worker loads the data
  itself). So on a CPU keep the default, one process. For a cluster use the ``ray`` engine.
  Black-box transfer tables (:func:`runs_alone`) run alone: one starts only when nothing runs,
  and nothing starts beside it (nor, to keep plan order, after it), because Finding 2 compares
  their attack wall times; every other job runs with ``DYNN_SHARED_DEVICE=1``
  (:func:`dynn_lib.engines.device_shared`), so the times it records (white-box and RQ4 tables,
  trainings) say that the device may have been shared.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..plan import Plan, run_job, run_job_in_worker
from ..progress import progress


def runs_alone(job) -> bool:
    """Whether a pool of workers runs ``job`` with no other job beside it: a black-box transfer
    table, whose attack wall times Finding 2 compares."""
    return job.kind == "table" and job.spec.get("table") == "transfer"


def next_jobs(ready: list, running: list, workers: int) -> list:
    """The ready jobs (in plan order) to start now beside the ``running`` ones: up to ``workers``
    at once, a job that :func:`runs_alone` only when nothing else runs or starts, and nothing
    beside it or after it in the order while it waits or runs."""
    if any(runs_alone(j) for j in running):
        return []
    start: list = []
    for job in ready:
        if len(running) + len(start) >= workers:
            break
        if runs_alone(job):
            if not running and not start:
                start.append(job)
            break
        start.append(job)
    return start


def _run_pool_job(job, ctx, shared: bool) -> float:
    """One job in a pool worker; ``shared``: other jobs may run beside it (see the module docstring)."""
    from . import set_device_shared
    set_device_shared(shared)
    return run_job_in_worker(job, ctx)


def _init_worker(threads: int) -> None:
    import torch

    from ..cli import restore_sigint
    restore_sigint()  # an interrupted run's trainings save their checkpoints (see cli.restore_sigint)
    os.environ["DYNN_PROGRESS"] = "0"  # one bar: the parent's
    torch.set_num_threads(threads)


def run(plan: Plan, workers: int = 1) -> dict[str, float]:
    """Run ``plan``'s pending jobs (module docstring); returns {job key: wall seconds}."""
    from . import check_engine_options
    check_engine_options("local", workers=workers)
    pending = plan.pending()
    bar = progress(None, total=len(plan), initial=len(plan) - len(pending), desc="jobs (local)", unit="job")
    try:
        return _run_in_process(plan, pending, bar) if workers == 1 else _run_in_pool(plan, pending, bar, workers)
    finally:
        bar.close()


def _run_in_process(plan: Plan, pending, bar) -> dict[str, float]:
    workspaces: dict[tuple[str, int], object] = {}
    times: dict[str, float] = {}
    for job in pending:
        ws = workspaces.get((job.dataset, job.seed))
        if ws is None:
            ws = workspaces[(job.dataset, job.seed)] = plan.context.workspace(job.dataset, job.seed)
        times[job.key] = run_job(job, plan.context, ws)
        bar.update(1)
        bar.set_postfix_str(f"{job.name} {times[job.key]:.1f}s")
    return times


def _run_in_pool(plan: Plan, pending, bar, workers: int) -> dict[str, float]:
    import multiprocessing

    import torch

    todo = {j.key for j in pending}
    queue = list(pending)
    times: dict[str, float] = {}
    running: dict = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(torch.get_num_threads(),)) as pool:
        while queue or running:
            ready = [j for j in queue if all(d not in todo or d in times for d in j.deps)]
            for job in next_jobs(ready, list(running.values()), workers):
                queue.remove(job)
                running[pool.submit(_run_pool_job, job, plan.context, not runs_alone(job))] = job
            if not running:  # cannot happen for a plan (its order is topological); never spin
                raise RuntimeError(f"no job can start: {[j.key for j in queue]} wait for jobs not in the plan")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                try:
                    times[job.key] = fut.result()
                except Exception as e:
                    for other in running:
                        other.cancel()
                    raise RuntimeError(f"job {job.key} failed in a local worker: {e!r}") from e
                bar.update(1)
                bar.set_postfix_str(f"{job.name} {times[job.key]:.1f}s")
    return times
