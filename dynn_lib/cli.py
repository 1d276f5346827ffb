"""The ``dynn`` command.

    dynn data check DATASET [--data-dir DIR]
    dynn train --dataset D --arch A --kind {cnn,sdn,ic_only} [--profile P] [-o field=value ...]
    dynn zoo --dataset D [--profile P]        train/load the 9 models of a dataset and print them
    dynn schedule-probe --dataset D --epochs STEP [STEP ...] [--arch A ...] [--profile fast] [--floor PCT]
                   [--out DIR] [--choice FILE]     the fewest epochs whose static networks clear their floors
    dynn run {rq1,rq2,rq3,rq4,appendix} --dataset D [--profile P] [-o field=value ...]
    dynn reproduce --profile {smoke,fast,paper} [--datasets ...] [--seeds S ...] [-p name value ...]
                   [--engine {local [--workers K],ray [--address ADDR] [--gpus-per-job F] [--threads-per-job T]}]
    dynn plan --profile P [--datasets ...] [--seeds ...] [--questions ...]
              [--run [--workers K]]                   the job graph, each job's estimated cost; --run runs it
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .profiles import PROFILES, parse_value


def parse_overrides(items: list[str] | None) -> dict:
    """``["n_eval=100", "eps=[0.01,0.03]"]`` -> dict; values parsed as Python literals when possible."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"override {item!r} must look like field=value")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def _common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    if dataset:
        p.add_argument("--dataset", required=True, help="cifar10, cifar100, cifar10-jpeg, tinyimagenet or synthetic")
    p.add_argument("--profile", default="smoke", help="smoke (CPU, minutes), fast (GPU, short schedule) or paper (full recipe, GPU)")
    p.add_argument("--data-dir", default=None, help="data directory (default: $DYNN_DATA_DIR or the user cache)")
    p.add_argument("--store", default=None, help="artefact store (default: $DYNN_STORE or ./artefacts)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recompute", action="store_true", help="recompute artefacts even when stored")
    p.add_argument("-o", "--override", action="append", metavar="FIELD=VALUE",
                   help="override a profile or experiment field (repeatable)")


def _workspace(args, **profile_overrides):
    from .zoo import Workspace
    return Workspace(args.dataset, args.profile, store=args.store, data_dir=args.data_dir, device=args.device,
                     seed=args.seed, recompute=args.recompute, **profile_overrides)


def cmd_data_check(args) -> int:
    from . import data
    print(data.check_report(args.dataset, args.data_dir))
    return 0


def cmd_train(args) -> int:
    from dataclasses import fields
    from .profiles import Profile
    ov = parse_overrides(args.override)
    pfields = {f.name for f in fields(Profile)}
    ws = _workspace(args, **{k: v for k, v in ov.items() if k in pfields})
    if any(k not in pfields for k in ov):
        raise SystemExit(f"unknown override(s) {sorted(k for k in ov if k not in pfields)}; accepted: {sorted(pfields - {'name'})}")
    t0 = time.perf_counter()
    model = ws.model(args.arch, args.kind)
    rec = ws.model_record(args.arch, args.kind)
    acc = ", ".join(f"{a:.3f}" for a in rec["exit_accuracy"])
    print(f"{args.dataset} {args.arch} {args.kind}: exit accuracies [{acc}] on {rec['n_eval']} evaluation images; "
          f"{rec['train_seconds']:.1f} s training ({time.perf_counter() - t0:.1f} s this call); "
          f"stored under {ws.model_dir(args.arch, args.kind)}")
    del model
    return 0


def cmd_zoo(args) -> int:
    import pandas as pd
    from .experiments.model_zoo import model_zoo
    from .models import ARCHS
    ov = parse_overrides(args.override)
    archs = ov.pop("archs", ARCHS)
    ws = _workspace(args, **ov)
    df = model_zoo(ws, archs=archs)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.drop(columns=["exit_accuracy"]).to_string(index=False))
        print("\nexit accuracies:")
        for _, r in df.iterrows():
            print(f"  {r.arch:10s} {r.kind:8s} " + " ".join(f"{a:.3f}" for a in r.exit_accuracy))
    return 0


def cmd_schedule_probe(args) -> int:
    import json
    from . import floors
    from .store import atomic_write_text
    try:  # probe_epochs rejects bad input, unknown profile fields included, before any training
        res = floors.probe_epochs(args.dataset, args.arch, args.epochs, args.out, profile=args.profile,
                                  floor=args.floor, store=args.store, data_dir=args.data_dir, device=args.device,
                                  seed=args.seed, **parse_overrides(args.override))
    except ValueError as e:
        raise SystemExit(f"schedule-probe: {e}")
    for p in res["probes"]:
        extra = "".join(f", {k} {v}" for k, v in p["overrides"].items())
        print(f"{args.dataset} {p['arch']} cnn, {p['epochs']} epochs{extra}: final exit {p['accuracy']:.1f} % "
              f"[{p['accuracy_lo']:.1f}, {p['accuracy_hi']:.1f}] on {p['n']} images, floor {p['floor']:g} %: "
              f"{p['verdict']} ({Path(args.out) / p['file']})")
    if res["passed"]:
        print(f"schedule probe: {res['chosen_params']} (the first step tried at which "
              + (f"{res['archs'][0]} clears its floor)" if len(res["archs"]) == 1
                 else f"{', '.join(res['archs'])} clear their floors)"))
    else:
        print(f"schedule probe: WARNING: no schedule tried clears every floor; going on with the last, "
              f"{res['chosen_params']} (the model-zoo page will show it short of its floor)")
    if args.choice:
        atomic_write_text(Path(args.choice), json.dumps(res, indent=2, default=str))
    return 0


def cmd_run(args) -> int:
    from .experiments.runner import publish, results_path, split_overrides
    ov = parse_overrides(args.override)
    prof, conf = split_overrides(args.question, ov)
    ws = _workspace(args, **prof)
    t0 = time.perf_counter()
    tables = publish(args.question, ws, args.results, conf, force=args.recompute)
    out = results_path(args.results, ws.profile.name, ws.dataset, args.question)
    print(f"{args.question} on {ws.dataset} ({ws.info.label}), profile {ws.profile.name}: "
          f"{len(tables)} table(s) in {out} ({time.perf_counter() - t0:.1f} s)")
    for name, df in tables.items():
        print(f"  {name}: {len(df)} rows")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce
    overrides = {}
    for name, value in args.param or []:
        overrides.update(parse_overrides([f"{name}={value}"]))
    html = reproduce(args.profile, args.datasets, args.device, args.results, args.store, args.data_dir,
                     args.seed, overrides, build=not args.no_build, execute=not args.no_execute,
                     experiments=not args.no_experiments, engine=args.engine, address=args.address,
                     gpus_per_job=args.gpus_per_job, seeds=args.seeds, threads_per_job=args.threads_per_job,
                     workers=args.workers, allow_missing=args.allow_missing)
    if html is not None:
        print(f"book: {Path(html) / 'index.html'}")
    return 0


def cmd_plan(args) -> int:
    from .plan import build_plan
    from .reproduce import choose_datasets
    overrides = {}
    for name, value in args.param or []:
        overrides.update(parse_overrides([f"{name}={value}"]))
    datasets, notes = choose_datasets(args.profile, args.datasets, args.data_dir)
    for n in notes:
        print(f"[plan] {n}", file=sys.stderr)
    if args.run:
        from .engines import check_engine_options
        check_engine_options("local", workers=args.workers)  # before the plan loads any data
    plan = build_plan(args.profile, datasets, args.seeds, args.questions, overrides, args.store, args.data_dir,
                      args.results, args.device)
    print(plan.render(), flush=True)
    if args.run:
        from .engines import run_plan
        t0 = time.perf_counter()
        times = run_plan(plan, "local", workers=args.workers)
        print(f"ran {len(times)} job(s) with {args.workers} worker(s) in {time.perf_counter() - t0:.1f} s; "
              f"{len(plan.pending())} left")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p_data = sub.add_parser("data", help="inspect datasets")
    dsub = p_data.add_subparsers(dest="data_command", required=True)
    p_check = dsub.add_parser("check", help="counts per split and class, per-channel mean/std")
    p_check.add_argument("dataset")
    p_check.add_argument("--data-dir", default=None)
    p_check.set_defaults(func=cmd_data_check)

    p_train = sub.add_parser("train", help="train (or load) one model")
    _common(p_train)
    p_train.add_argument("--arch", required=True, help="vgg16, resnet56 or mobilenet")
    p_train.add_argument("--kind", required=True, help="cnn, sdn or ic_only")
    p_train.set_defaults(func=cmd_train)

    p_zoo = sub.add_parser("zoo", help="train/load every model of a dataset and summarise them")
    _common(p_zoo)
    p_zoo.set_defaults(func=cmd_zoo)

    p_probe = sub.add_parser("schedule-probe", help="train the static networks at each step (a number of epochs, optionally "
                             "with overrides) in turn; stop at the first at which all clear their accuracy floors "
                             "(dynn_lib.floors.probe_epochs)")
    _common(p_probe)
    p_probe.add_argument("--arch", nargs="+", default=None,
                         help="vgg16, resnet56, mobilenet (default: every one with a floor on the dataset)")
    p_probe.add_argument("--epochs", nargs="+", required=True,
                         help="the steps to try, in order: cnn_epochs values, each optionally with profile overrides "
                              "of that step only, e.g. 45 60 or 45:weight_decay=None 45")
    p_probe.add_argument("--floor", type=float, default=None,
                         help="floor in percent (default: the issue's, dynn_lib.floors.FAST_FLOORS)")
    p_probe.add_argument("--out", default="results/schedule-checks",
                         help="where each model's training record goes (default: results/schedule-checks)")
    p_probe.add_argument("--choice", default=None, help="also write the outcome as JSON to this file")
    p_probe.set_defaults(func=cmd_schedule_probe, profile="fast")

    p_run = sub.add_parser("run", help="run one research question and write its tables")
    p_run.add_argument("question", choices=("zoo", "rq1", "rq2", "rq3", "rq4", "appendix"))
    _common(p_run)
    p_run.add_argument("--results", default="results", help="results folder (default: ./results)")
    p_run.set_defaults(func=cmd_run)

    p_rep = sub.add_parser("reproduce", help="run the experiments, execute every notebook, build the book")
    p_rep.add_argument("--profile", default="smoke", choices=tuple(PROFILES))
    p_rep.add_argument("--datasets", nargs="+", default=None,
                       help="default: cifar10-jpeg (+ tinyimagenet for paper) when present, else generated data")
    p_rep.add_argument("--device", default="auto")
    p_rep.add_argument("--results", default="results", help="results folder (default: ./results)")
    p_rep.add_argument("--store", default=None)
    p_rep.add_argument("--data-dir", default=None)
    p_rep.add_argument("--seed", type=int, default=0)
    p_rep.add_argument("--seeds", nargs="+", type=int, default=None,
                       help="several seeds in one command: the first into --results, the others into "
                            "<results>/seed-<s>; the claims ledger aggregates them (default: --seed)")
    p_rep.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="override a profile or experiment parameter (repeatable)")
    p_rep.add_argument("--no-build", action="store_true", help="run experiments and notebooks, skip the site")
    p_rep.add_argument("--no-execute", action="store_true", help="build the site from executed notebooks")
    p_rep.add_argument("--no-experiments", action="store_true",
                       help="skip the experiment stage: the pages only render the results folder "
                            "(compute=False; a missing result is an error, never recomputed)")
    p_rep.add_argument("--allow-missing", action="store_true",
                       help="with --no-experiments: a page whose results the folder lacks (a GPU run that stopped "
                            "early) is rendered as a notice saying what is missing, instead of stopping the build")
    p_rep.add_argument("--engine", default="local", help="local (in this process, default) or ray (Ray tasks; "
                       "needs pip install -e '.[cluster]')")
    p_rep.add_argument("--address", default=None, help="ray: cluster address (host:port or auto; default: start "
                       "Ray on this machine)")
    p_rep.add_argument("--gpus-per-job", type=float, default=None,
                       help="ray: GPUs per job in (0, 1] (default 1 with GPUs, 0 without)")
    p_rep.add_argument("--workers", type=int, default=1,
                       help="local: jobs at once, each in its own process (several trainings sharing one GPU; "
                       "default 1: in this process)")
    p_rep.add_argument("--threads-per-job", type=int, default=None,
                       help="ray: CPU threads per job (default: this process's thread count for CPU jobs, so the "
                       "numbers equal the local engine's; CPUs per GPU x F for GPU jobs)")
    p_rep.set_defaults(func=cmd_reproduce)

    p_plan = sub.add_parser("plan", help="print the job graph of a reproduction with each job's estimated cost")
    p_plan.add_argument("--profile", default="smoke", choices=tuple(PROFILES))
    p_plan.add_argument("--datasets", nargs="+", default=None, help="as for reproduce")
    p_plan.add_argument("--seeds", nargs="+", type=int, default=[0])
    p_plan.add_argument("--questions", nargs="+", default=None,
                        help="default: every question on the first dataset, zoo and rq1 on the others")
    p_plan.add_argument("--results", default="results")
    p_plan.add_argument("--store", default=None)
    p_plan.add_argument("--data-dir", default=None)
    p_plan.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="override a profile or experiment parameter (repeatable)")
    p_plan.add_argument("--device", default="auto")
    p_plan.add_argument("--run", action="store_true",
                        help="then run its pending jobs on the local engine (tables published as by reproduce)")
    p_plan.add_argument("--workers", type=int, default=1,
                        help="with --run: jobs at once, each in its own process (default 1: in this process)")
    p_plan.set_defaults(func=cmd_plan)
    return parser


def restore_sigint() -> None:
    """Turn SIGINT into ``KeyboardInterrupt`` even when it was inherited as ignored.

    A command started as a background job of a script (``cmd &``, ``nohup``) inherits an ignored
    SIGINT, and Python then leaves it ignored. ``timeout -s INT`` (``benchmarks/gpu_run.sh``) stops
    a stage with SIGINT so that a training writes its checkpoint on the way out; an ignored
    SIGINT would instead let it run on until the hard kill. Main thread only (else a no-op)."""
    import signal
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def main(argv: list[str] | None = None) -> int:
    restore_sigint()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"dynn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
