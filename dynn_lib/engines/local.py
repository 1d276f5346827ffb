"""The ``local`` engine: a plan's pending jobs one after another in this process, in plan order
(the order ``dynn reproduce`` has always computed things), one workspace per (dataset, seed), so
data and trained models are loaded once. No dependency beyond the default install."""
from __future__ import annotations

from ..plan import Plan, run_job
from ..progress import progress


def run(plan: Plan) -> dict[str, float]:
    """Run ``plan``'s pending jobs in order; returns {job key: wall seconds}."""
    pending = plan.pending()
    workspaces: dict[tuple[str, int], object] = {}
    times: dict[str, float] = {}
    bar = progress(None, total=len(plan), initial=len(plan) - len(pending), desc="jobs (local)", unit="job")
    for job in pending:
        ws = workspaces.get((job.dataset, job.seed))
        if ws is None:
            ws = workspaces[(job.dataset, job.seed)] = plan.context.workspace(job.dataset, job.seed)
        times[job.key] = run_job(job, plan.context, ws)
        bar.update(1)
        bar.set_postfix_str(f"{job.name} {times[job.key]:.1f}s")
    bar.close()
    return times
