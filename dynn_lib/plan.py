"""The job graph of a reproduction, as data: what ``dynn reproduce`` computes, split into jobs an
engine (:mod:`dynn_lib.engines`) can run in process or spread over a cluster.

A plan covers (profile, datasets, seeds, questions). Its jobs, in the order today's in-process
run first needs them (so plan order is a topological order):

* ``train``: one model of the zoo (``Workspace.model``), then its τ for a DyNN; an IC-only DyNN
  depends on its CNN.
* ``labels``: one target's deployed answers on the query set (:func:`blackbox.query_labels`).
* ``surrogate``: one pair's surrogate trained on those answers, then its τ
  (:func:`blackbox.surrogate`, :func:`blackbox.surrogate_tau`).
* ``table``: one attack table: :func:`common.transfer_table`, :func:`common.whitebox_table`,
  an RQ4 baseline block (``rq4._attack_block``) or an architecture's Early-Attack alpha grid
  (:func:`rq4.early_attack_grid`, one joint batch as :func:`rq4.run` computes it, so both give
  the same numbers).
* ``publish``: one question's tables written to the results folder (:func:`runner.publish`);
  it depends on every job above that the question reads, and computes the rest itself (its
  summaries, the appendix image grids, the RQ4 transfer study: evaluation only).

Every job is named by the key its artefact has in the store (``<kind>/<key>``, the folder name
:meth:`dynn_lib.store.Store.dir` gives it; a publish job by ``results/<profile>/<dataset>/<question>``
plus the key of its recorded config), so a job whose artefact exists is **done** and skipped,
and two questions needing the same table share one job. Each seed publishes into its own
results folder (:func:`seed_results_dir`), which :func:`dynn_lib.claims.results_dirs` reads.

Estimated cost: multiply-accumulates (GMAC) from the architectures' MAC counts
(:func:`common.exit_costs`): training ``3 x epochs x images x MACs`` (forward + backward ~ 3
forward passes), labelling ``images x MACs``, an attack table ``3 x steps x images x MACs`` of
the attacked model plus two passes of the target. A publish job is counted as 0 (it reads the
tables). A cost model, not a measurement: it ranks jobs and sizes a cluster.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

JOB_KINDS: tuple[str, ...] = ("train", "labels", "surrogate", "table", "publish")
"""Kinds of job, in dependency order."""

BACKWARD_FACTOR = 3.0
"""MACs of a forward + backward pass, in forward passes (the usual estimate)."""


@dataclass(frozen=True, eq=False)
class Context:
    """Where every job reads and writes; the same for every job of a plan. Paths are absolute
    (a worker on another node resolves nothing against the driver's working directory).

    profile: profile name; profile_overrides: its overridden fields; store: artefact store root;
    data_dir: data folder (None: ``$DYNN_DATA_DIR`` or the user cache, as resolved on each
    worker); device: ``auto``/``cpu``/``cuda`` (on a Ray GPU worker ``auto`` is its GPU).
    """

    profile: str
    profile_overrides: dict
    store: str
    data_dir: str | None
    device: str = "auto"

    def workspace(self, dataset: str, seed: int, device: str | None = None):
        from .zoo import Workspace
        return Workspace(dataset, self.profile, store=self.store, data_dir=self.data_dir,
                         device=device or self.device, seed=seed, **self.profile_overrides)


@dataclass(frozen=True, eq=False)
class Job:
    """One unit of work. ``key``: its artefact's store key (unique in a plan); ``kind``: one of
    :data:`JOB_KINDS`; ``spec``: the arguments of the library call it makes; ``deps``: keys of
    the jobs it needs; ``cost``: estimated GMAC; ``outputs``: (store kind, config, slug) of the
    artefact(s) that mark it done (a publish job: the results folder and its config)."""

    key: str
    kind: str
    dataset: str
    seed: int
    spec: dict
    deps: tuple[str, ...] = ()
    cost: float = 0.0
    outputs: tuple = field(default=(), repr=False)

    @property
    def name(self) -> str:
        """Short label for progress bars: ``<kind>:<slug>`` (the key without its hash)."""
        return f"{self.kind}:{self.key.split('/', 1)[-1]}"


def seed_results_dir(results_dir: str | Path, seed: int, seeds: Sequence[int]) -> Path:
    """Results folder of one seed: ``results_dir`` for the first seed, ``results_dir/seed-<s>``
    for the others (the layout :func:`dynn_lib.claims.results_dirs` aggregates)."""
    return Path(results_dir) if seed == seeds[0] else Path(results_dir) / f"seed-{seed}"


@dataclass(eq=False)
class Plan:
    """A reproduction's jobs (ordered, topologically) and the context they run in."""

    context: Context
    jobs: dict[str, Job]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    questions: dict[str, tuple[str, ...]]
    results_dir: str

    def __len__(self) -> int:
        return len(self.jobs)

    def done(self, job: Job) -> bool:
        """Whether ``job``'s artefact exists (a publish job: its record with the same config)."""
        from .store import RECORD, Store, canonical
        if job.kind == "publish":
            path, config = job.outputs
            rec = Path(path) / RECORD
            if not rec.is_file():
                return False
            try:
                return json.loads(rec.read_text()).get("config") == canonical(config)
            except (OSError, ValueError):
                return False
        st = Store(self.context.store)
        return all(st.has(kind, cfg, slug) for kind, cfg, slug in job.outputs)

    def pending(self) -> list[Job]:
        """Jobs not done yet, in plan order."""
        return [j for j in self.jobs.values() if not self.done(j)]

    def only(self, keep) -> "Plan":
        """The sub-plan of the jobs for which ``keep(job)`` is true and every job they depend on
        (transitively), in plan order: e.g. ``plan.only(lambda j: j.kind == "train")``."""
        needed: set[str] = set()
        stack = [k for k, j in self.jobs.items() if keep(j)]
        while stack:
            k = stack.pop()
            if k not in needed:
                needed.add(k)
                stack.extend(self.jobs[k].deps)
        return Plan(self.context, {k: j for k, j in self.jobs.items() if k in needed}, self.datasets, self.seeds,
                    self.questions, self.results_dir)

    def table(self) -> pd.DataFrame:
        """One row per job: key, kind, dataset, seed, deps (count), cost_gmac, done."""
        return pd.DataFrame([{"key": j.key, "kind": j.kind, "dataset": j.dataset, "seed": j.seed,
                              "deps": len(j.deps), "cost_gmac": j.cost, "done": self.done(j)}
                             for j in self.jobs.values()])

    def render(self) -> str:
        """The graph as text: every job with its estimated cost and dependencies, then totals."""
        lines = []
        done = {k: self.done(j) for k, j in self.jobs.items()}
        for j in self.jobs.values():
            mark = "done" if done[j.key] else "todo"
            lines.append(f"[{mark}] {j.key}  ~{j.cost:,.1f} GMAC")
            for d in j.deps:
                lines.append(f"         <- {d}")
        df = self.table()
        by = df.groupby("kind", sort=False).agg(jobs=("key", "size"), todo=("done", lambda s: int((~s).sum())),
                                                gmac=("cost_gmac", "sum"))
        lines.append("")
        lines.append(f"{len(df)} jobs ({int((~df['done']).sum())} to run) over datasets {', '.join(self.datasets)}, "
                     f"seeds {', '.join(map(str, self.seeds))}, profile {self.context.profile}; "
                     f"estimated {df['cost_gmac'].sum():,.0f} GMAC in all")
        for kind, r in by.iterrows():
            lines.append(f"  {kind:9s} {int(r.jobs):5d} jobs, {int(r.todo):5d} to run, ~{r.gmac:,.0f} GMAC")
        return "\n".join(lines)


# ---------------------------------------------------------------- building

def build_plan(profile: str = "smoke", datasets: Sequence[str] = ("synthetic",), seeds: Sequence[int] = (0,),
               questions: Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
               store: str | Path | None = None, data_dir: str | Path | None = None,
               results_dir: str | Path = "results", device: str = "auto") -> Plan:
    """The job graph of ``dynn reproduce`` for ``datasets`` x ``seeds``.

    questions: None = reproduce's rule (every question on the first dataset, ``zoo`` and
        ``rq1`` on the others, as the paper's Tiny ImageNet appendix); a list = those questions
        on the first dataset and those among ``zoo``/``rq1`` on the others.
    overrides: profile and experiment fields, as ``dynn reproduce -p`` (unknown names are errors).
    Building loads each dataset's test split (the attack tables' keys count the images attacked)
    but trains nothing.
    """
    from .experiments.runner import QUESTIONS, split_overrides
    from .profiles import Profile
    from .reproduce import PRIMARY_QUESTIONS, SECONDARY_QUESTIONS, _accepted
    from .store import default_root

    overrides = dict(overrides or {})
    datasets = tuple(datasets)
    seeds = tuple(int(s) for s in seeds)
    if not datasets:
        raise ValueError("datasets must name at least one dataset")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, at least one; got {list(seeds)}")
    if questions is not None:
        bad = [q for q in questions if q not in QUESTIONS]
        if bad:
            raise ValueError(f"unknown question(s) {bad}; accepted: {', '.join(QUESTIONS)}")
    primary = tuple(PRIMARY_QUESTIONS if questions is None else questions)
    secondary = tuple(q for q in (SECONDARY_QUESTIONS if questions is None else questions)
                      if q in SECONDARY_QUESTIONS)
    known = set().union(*(_accepted(q) for q in PRIMARY_QUESTIONS))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; accepted: {sorted(known)}")
    pfields = {f.name for f in fields(Profile)} - {"name"}
    ctx = Context(profile, {k: v for k, v in overrides.items() if k in pfields},
                  str(Path(store if store is not None else default_root()).resolve()),
                  None if data_dir is None else str(Path(data_dir).resolve()), device)
    b = _Builder(ctx)
    qs = {}
    for i, ds in enumerate(datasets):
        qs[ds] = primary if i == 0 else secondary
        for seed in seeds:
            ws = ctx.workspace(ds, seed, device="cpu")  # keys only: no model is built on a GPU here
            out = seed_results_dir(Path(results_dir).resolve(), seed, seeds)
            for q in qs[ds]:
                _, conf = split_overrides(q, {k: v for k, v in overrides.items() if k in _accepted(q)})
                b.question(ws, q, conf, out)
    return Plan(ctx, b.jobs, datasets, seeds, qs, str(Path(results_dir).resolve()))


class _Builder:
    """Adds jobs (dependencies first, each key once) while walking the questions."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.jobs: dict[str, Job] = {}

    def _add(self, kind: str, ws, store_kind: str, config, slug: str, spec: dict, deps=(), cost: float = 0.0,
             extra_outputs: tuple = ()) -> str:
        from .store import Store
        key = f"{store_kind}/{Store(self.ctx.store).dir(store_kind, config, slug).name}"  # the store's own key
        if key not in self.jobs:
            self.jobs[key] = Job(key, kind, ws.dataset, ws.seed, spec, tuple(dict.fromkeys(deps)), cost,
                                 ((store_kind, config, slug),) + tuple(extra_outputs))
        return key

    # -- sizes and costs ----------------------------------------------------------------------
    @staticmethod
    def _macs(ws, arch: str, kind: str) -> float:
        from .experiments.common import exit_costs
        return float(exit_costs(arch, "cnn" if kind == "cnn" else "sdn", ws.info.num_classes,
                                ws.info.input_size)[-1])

    @staticmethod
    def _n(v: int | None, full: int) -> int:
        return full if v is None else min(int(v), full)

    # -- models -------------------------------------------------------------------------------
    def train(self, ws, arch: str, kind: str) -> str:
        from .zoo import _slug
        cfg = ws.model_config(arch, kind)
        deps = (self.train(ws, arch, "cnn"),) if kind == "ic_only" else ()
        n = self._n(cfg.n_train, ws.info.train_size)
        cost = BACKWARD_FACTOR * cfg.epochs * n * self._macs(ws, arch, kind) / 1e9
        return self._add("train", ws, "models", cfg, _slug(cfg), {"arch": arch, "kind": kind}, deps, cost)

    def labels(self, ws, arch: str, kind: str) -> str:
        from . import blackbox, data
        cfg, slug = blackbox.query_labels_key(ws, arch, kind)
        n = data.QUERY_SET_COPIES * self._n(ws.profile.n_query, ws.info.test_size // 2)
        return self._add("labels", ws, "query_labels", cfg, slug, {"arch": arch, "kind": kind},
                         (self.train(ws, arch, kind),), n * self._macs(ws, arch, kind) / 1e9)

    def surrogate(self, ws, pair) -> str:
        from . import blackbox, data
        from .zoo import _slug
        cfg = blackbox.surrogate_config(ws, pair)
        n = data.QUERY_SET_COPIES * self._n(ws.profile.n_query, ws.info.test_size // 2)
        cost = BACKWARD_FACTOR * cfg.epochs * n * self._macs(ws, pair.surrogate_arch, pair.surrogate_kind) / 1e9
        deps = (self.labels(ws, pair.target_arch, pair.target_kind),)
        return self._add("surrogate", ws, "models", cfg, _slug(cfg), {"pair": pair}, deps, cost)

    # -- attack tables ------------------------------------------------------------------------
    def _attack_cost(self, ws, cfg, attack: str, n: int, source: tuple, target: tuple) -> float:
        from .experiments.common import attack_steps
        steps = 1 if attack == "fgsm" else attack_steps(ws, cfg)
        return (BACKWARD_FACTOR * steps * n * self._macs(ws, *source) + 2 * n * self._macs(ws, *target)) / 1e9

    def transfer(self, ws, pair, attack: str, eps: float, cfg, exit_loss=None) -> str:
        from .experiments import common
        n = len(common._images(ws, cfg)[1])
        key, slug = common.transfer_key(ws, pair, attack, eps, cfg, exit_loss, n=n)
        deps = (self.surrogate(ws, pair), self.train(ws, pair.target_arch, pair.target_kind))
        cost = self._attack_cost(ws, cfg, attack, n, (pair.surrogate_arch, pair.surrogate_kind),
                                 (pair.target_arch, pair.target_kind))
        spec = {"table": "transfer", "pair": pair, "attack": attack, "eps": eps, "cfg": cfg, "exit_loss": exit_loss}
        return self._add("table", ws, "transfer", key, slug, spec, deps, cost)

    def whitebox(self, ws, arch: str, attack: str, eps: float, cfg, exit_loss="final") -> str:
        from .experiments import common
        n = len(common._images(ws, cfg)[1])
        key, slug = common.whitebox_key(ws, arch, attack, eps, cfg, exit_loss, n=n)
        deps = (self.train(ws, arch, "cnn"), self.train(ws, arch, "ic_only"))
        cost = self._attack_cost(ws, cfg, attack, n, (arch, "cnn"), (arch, "ic_only"))
        spec = {"table": "whitebox", "arch": arch, "attack": attack, "eps": eps, "cfg": cfg, "exit_loss": exit_loss}
        return self._add("table", ws, "whitebox", key, slug, spec, deps, cost)

    def rq4_block(self, ws, cfg, arch: str, method: str) -> str:
        """One RQ4 job: the PGD or FGSM block of ``arch``, or (``early_attack``) all its alpha
        blocks at once, with the start contrast's block (:func:`rq4.contrast_config`), as
        :func:`rq4.run` computes them (one joint batch; the job is named by the first alpha's
        block and done when every one of these blocks exists)."""
        from .experiments import rq4
        alphas = cfg.alphas if method == "early_attack" else (None,)
        outs = [(rq4._block_config(ws, cfg, arch, method, a), rq4._slug(ws, cfg, arch, method, a)) for a in alphas]
        ccfg = rq4.contrast_config(cfg) if method == "early_attack" else None
        if ccfg is not None:
            a = ccfg.transfer_alpha
            outs.append((rq4._block_config(ws, ccfg, arch, method, a), rq4._slug(ws, ccfg, arch, method, a)))
        n = cfg.resolved_n_images(ws)
        steps = {"early_attack": cfg.resolved_iters(ws), "pgd": cfg.resolved_steps(ws), "fgsm": 1}[method]
        cost = len(outs) * (BACKWARD_FACTOR * steps * n + 2 * n) * self._macs(ws, arch, cfg.kind) / 1e9
        spec = {"table": "rq4", "cfg": cfg, "arch": arch, "method": method}
        (bcfg, slug), rest = outs[0], tuple(("rq4", c, s) for c, s in outs[1:])
        return self._add("table", ws, "rq4", bcfg, slug, spec, (self.train(ws, arch, cfg.kind),), cost, rest)

    def _settings(self, ws, cfg, pairs, exit_loss_whitebox="final", exit_loss_surrogate=None) -> list[str]:
        """Keys of :func:`common.setting_tables` (RQ2/RQ3): white-box of every arch, then ``pairs``."""
        from .models import ARCHS
        keys = [self.whitebox(ws, a, atk, e, cfg, exit_loss_whitebox) for a in ARCHS for atk in cfg.attacks
                for e in cfg.eps]
        return keys + [self.transfer(ws, p, atk, e, cfg, exit_loss_surrogate) for p in pairs for atk in cfg.attacks
                       for e in cfg.eps]

    def _rq1(self, ws, cfg) -> list[str]:
        from .blackbox import PAIRS
        return [self.transfer(ws, p, atk, e, cfg) for p in PAIRS for atk in cfg.attacks for e in cfg.eps]

    # -- questions ----------------------------------------------------------------------------
    def question(self, ws, question: str, conf: dict, results_dir: Path) -> str:
        """Jobs of ``question`` (as its module computes them), then its publish job."""
        from dataclasses import replace

        from .blackbox import get_pairs
        from .experiments.runner import make_config, publish_config, results_path
        from .models import ARCHS
        from .zoo import MODEL_KINDS

        cfg = make_config(question, conf)
        if question == "zoo":
            deps = [self.train(ws, a, k) for a in conf.get("archs", ARCHS) for k in MODEL_KINDS]
        elif question == "rq1":
            deps = self._rq1(ws, cfg)
        elif question == "rq2":
            deps = self._settings(ws, cfg, get_pairs("S2D"))
        elif question == "rq3":
            deps = self._settings(ws, cfg, get_pairs("S2D"), cfg.exit_loss_rq3, cfg.exit_loss_rq3)
        elif question == "appendix":
            from .experiments.appendix import PAPER_EPS
            sweep = replace(cfg, eps=tuple(sorted(set(PAPER_EPS) | set(cfg.eps))))
            deps = self._rq1(ws, replace(cfg, attacks=("mifgsm",)))
            deps += self._rq1(ws, sweep) + self._settings(ws, sweep, get_pairs("S2D"))
            deps += self._settings(ws, sweep, get_pairs("S2D"), sweep.exit_loss_rq3, sweep.exit_loss_rq3)
            deps += [self.surrogate(ws, p) for p in get_pairs()]  # the image grids attack surrogates again
        elif question == "rq4":
            blocks = [(a, m) for a in cfg.archs for m in ("early_attack", "pgd", "fgsm")]
            deps = [self.rq4_block(ws, cfg, *b) for b in blocks] + [self.train(ws, a, cfg.kind) for a in cfg.archs]
        else:  # split_overrides/make_config have rejected anything else
            raise ValueError(f"unknown question {question!r}")
        path = results_path(results_dir, ws.profile.name, ws.dataset, question)
        config = publish_config(question, ws, conf)
        from .store import config_key
        key = f"results/{ws.profile.name}/{ws.dataset}/{question}/{config_key(config, f'seed{ws.seed}')}"
        if key not in self.jobs:
            self.jobs[key] = Job(key, "publish", ws.dataset, ws.seed,
                                 {"question": question, "conf": conf, "results_dir": str(results_dir)},
                                 tuple(dict.fromkeys(deps)), 0.0, (str(path), config))
        return key


# ---------------------------------------------------------------- running one job

_WORKSPACES: dict = {}
"""This process's workspaces, one per (context, dataset, seed), kept across the jobs it runs
(:func:`run_job_in_worker`)."""


def run_job_in_worker(job: Job, ctx: Context) -> float:
    """:func:`run_job` on this process's workspace for the job's context, dataset and seed,
    created at the first such job: a worker process (a local pool worker, a Ray worker) loads the
    data and each trained model once, and reuses clean outputs and labels across its jobs, as the
    in-process engine does (same numbers: every artefact is a function of its configuration)."""
    from .store import canonical
    key = (repr(canonical(vars(ctx))), job.dataset, job.seed)
    if key not in _WORKSPACES:
        _WORKSPACES[key] = ctx.workspace(job.dataset, job.seed)
    return run_job(job, ctx, _WORKSPACES[key])


def run_job(job: Job, ctx: Context, ws=None) -> float:
    """Run one job through the library call it names (artefacts go to the store or the results
    folder, atomically, record last); returns its wall time in seconds. ``ws``: a workspace to
    reuse (the local engine shares one per dataset and seed); default a fresh one."""
    import time

    from . import blackbox
    from .experiments import common, rq4
    from .experiments.runner import publish

    t0 = time.perf_counter()
    ws = ws if ws is not None else ctx.workspace(job.dataset, job.seed)
    s = job.spec
    if job.kind == "train":
        ws.model(s["arch"], s["kind"])
        if s["kind"] != "cnn":
            ws.tau(s["arch"], s["kind"])
    elif job.kind == "labels":
        blackbox.query_labels(ws, s["arch"], s["kind"])
    elif job.kind == "surrogate":
        blackbox.surrogate(ws, s["pair"])
        blackbox.surrogate_tau(ws, s["pair"])
    elif job.kind == "table" and s["table"] == "transfer":
        common.transfer_table(ws, s["pair"], s["attack"], s["eps"], s["cfg"], exit_loss=s["exit_loss"])
    elif job.kind == "table" and s["table"] == "whitebox":
        common.whitebox_table(ws, s["arch"], s["attack"], s["eps"], s["cfg"], exit_loss=s["exit_loss"])
    elif job.kind == "table" and s["table"] == "rq4" and s["method"] == "early_attack":
        rq4.early_attack_grid(ws, s["cfg"], s["arch"])
    elif job.kind == "table" and s["table"] == "rq4":
        rq4._attack_block(ws, s["cfg"], s["arch"], s["method"], None)
    elif job.kind == "publish":
        publish(s["question"], ws, s["results_dir"], s["conf"])
    else:
        raise ValueError(f"unknown job kind {job.kind!r}; accepted: {', '.join(JOB_KINDS)}")
    return time.perf_counter() - t0
