"""The job graph (dynn_lib.plan) and the local engine: exact job counts, dependencies before
dependents, jobs named by the store's keys (a finished job is skipped), clear errors for bad
engine options before any work, and no Ray import on the default path."""
import json
import re
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dynn_lib.cli import main
from dynn_lib.engines import check_engine_options
from dynn_lib.plan import build_plan, seed_results_dir

TINY = {"n_train": 32, "n_query": 16, "n_eval": 8, "ea_images": 4, "ea_iters": 2, "attack_steps": 1, "batch_size": 16}


def _ray_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("ray") is not None


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def rq1_plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan")
    return build_plan("smoke", ["synthetic"], [0, 1], ["zoo", "rq1"], {**TINY, "attacks": ["fgsm", "pgd"]},
                      store=tmp / "store", results_dir=tmp / "results", device="cpu")


def test_job_counts_per_kind_are_exact(rq1_plan):
    counts = rq1_plan.table().groupby(["seed", "kind"]).size()
    for seed in (0, 1):
        # 3 archs x (cnn, sdn, ic_only); 5 distinct targets among the 6 pairs; 6 surrogates;
        # 6 pairs x 2 attacks x 1 eps; zoo + rq1
        assert counts[seed].to_dict() == {"train": 9, "labels": 5, "surrogate": 6, "table": 12, "publish": 2}
    assert len(rq1_plan) == 2 * 34 and len(rq1_plan.pending()) == len(rq1_plan)


def test_rq4_runs_each_architectures_alpha_grid_as_one_job(tmp_path):
    plan = build_plan("smoke", ["synthetic"], [0], ["rq4"], {**TINY, "alphas": [0.01, 0.1, 1.0]},
                      store=tmp_path / "store", results_dir=tmp_path / "results", device="cpu")
    tables = [j for j in plan.jobs.values() if j.kind == "table"]
    by_method = {m: [j for j in tables if j.spec["method"] == m] for m in ("early_attack", "pgd", "fgsm")}
    assert {m: len(js) for m, js in by_method.items()} == {"early_attack": 3, "pgd": 3, "fgsm": 3}
    for j in by_method["early_attack"]:  # done only when every alpha's block, and the start contrast's, is stored
        assert [(cfg["alpha"], cfg["init"]) for _, cfg, _ in j.outputs] == [
            (0.01, "random"), (0.1, "random"), (1.0, "random"), (1.0, "input")]
    assert all(len(j.outputs) == 1 for m in ("pgd", "fgsm") for j in by_method[m])


def test_dependencies_come_first_and_follow_the_protocol(rq1_plan):
    order = list(rq1_plan.jobs)
    for job in rq1_plan.jobs.values():
        assert all(order.index(d) < order.index(job.key) for d in job.deps), job.key
        kinds = {rq1_plan.jobs[d].kind for d in job.deps}
        if job.kind == "train":
            assert kinds == ({"train"} if job.spec["kind"] == "ic_only" else set())
        elif job.kind == "labels":
            assert kinds == {"train"}
        elif job.kind == "surrogate":
            assert kinds == {"labels"}
        elif job.kind == "table":
            assert kinds == {"surrogate", "train"}
    ic = [j for j in rq1_plan.jobs.values() if j.kind == "train" and j.spec["kind"] == "ic_only"]
    assert len(ic) == 6 and all(rq1_plan.jobs[j.deps[0]].spec == {"arch": j.spec["arch"], "kind": "cnn"} for j in ic)


def test_seeds_publish_into_their_own_results_folders(rq1_plan, tmp_path):
    pubs = [j for j in rq1_plan.jobs.values() if j.kind == "publish"]
    root = Path(rq1_plan.results_dir)
    for j in pubs:
        assert Path(j.spec["results_dir"]) == seed_results_dir(root, j.seed, (0, 1))
    assert seed_results_dir(tmp_path, 1, (0, 1)) == tmp_path / "seed-1"
    # the seed enters every model key: no job is shared between seeds
    by_seed = [{k for k, j in rq1_plan.jobs.items() if j.seed == s} for s in (0, 1)]
    assert not by_seed[0] & by_seed[1]


def test_render_lists_every_job_with_its_cost(rq1_plan):
    text = rq1_plan.render()
    assert all(k in text for k in rq1_plan.jobs)
    assert "68 jobs (68 to run)" in text and "GMAC" in text
    assert all(j.cost > 0 for j in rq1_plan.jobs.values() if j.kind != "publish")


def test_local_engine_runs_jobs_named_by_store_keys_and_never_imports_ray(tmp_path):
    """A subprocess runs a small plan (the ResNet-56 CNN) on the local engine: Ray is
    never imported, every stored model is a planned job's key, and a second run has nothing to do."""
    store = tmp_path / "store"
    args = dict(profile="smoke", datasets=["synthetic"], seeds=[0], questions=["zoo"], overrides=TINY,
                store=str(store), results_dir=str(tmp_path / "results"), device="cpu")
    code = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads(1)
        from dynn_lib.plan import build_plan
        from dynn_lib.engines import run_plan
        import dynn_lib.cli, dynn_lib.reproduce, dynn_lib.engines.ray_engine  # importable without Ray
        full = build_plan(**json.loads({json.dumps(json.dumps(args))}))
        plan = full.only(lambda j: j.kind == "train" and j.spec == {{"arch": "resnet56", "kind": "cnn"}})
        first = run_plan(plan, "local")
        again = run_plan(plan, "local")
        print(json.dumps({{"first": sorted(first), "again": len(again), "planned": sorted(plan.jobs),
                          "left": len(full.pending()), "all": len(full), "ray": "ray" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "DYNN_PROGRESS": "0"})
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ray"] is False and res["again"] == 0 and res["left"] == res["all"] - 1
    assert len(res["first"]) == 1 and res["first"] == res["planned"]
    stored = {f"{d.parent.name}/{d.name}" for d in store.glob("models/*") if (d / "record.json").is_file()}
    assert stored == set(res["planned"])
    assert not list(store.rglob("partial.pt")) and not list(store.rglob("*.tmp"))


@pytest.mark.parametrize("engine, address, gpus, needle", [
    ("spark", None, None, "unknown engine 'spark'; accepted: local, ray"),
    ("local", "10.0.0.1:6379", None, "address apply only to engine 'ray'"),
    ("local", None, 0.5, "gpus_per_job apply only to engine 'ray'"),
    ("ray", None, 0, "(0, 1], got 0"),
    ("ray", None, 1.5, "(0, 1], got 1.5"),
    ("ray", None, -0.25, "(0, 1], got -0.25"),
    ("ray", None, True, "(0, 1], got True"),
    ("ray", "no-port-here", None, "must look like host:port"),
    ("ray", "CLOSED", None, "cannot reach a Ray cluster"),
])
def test_bad_engine_options_are_clear_errors(engine, address, gpus, needle):
    if engine == "ray" and address is not None and not _ray_installed():
        pytest.skip("Ray not installed (pip install -e '.[cluster]')")
    if address == "CLOSED":
        address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ValueError) as e:
        check_engine_options(engine, address, gpus)
    assert needle in str(e.value)


@pytest.mark.slow
def test_local_workers_publish_what_one_process_publishes(tmp_path):
    """The zoo's 9 trainings on 2 worker processes (a job starts when its CNN is done): the same
    models, bit for bit, and the same published table as in one process; nothing left half-done."""
    import pandas as pd

    from dynn_lib.engines.local import run

    plans = {w: build_plan("smoke", ["synthetic"], [0], ["zoo"], TINY, store=tmp_path / f"w{w}" / "store",
                           results_dir=tmp_path / f"w{w}" / "results", device="cpu") for w in (1, 2)}
    times = {w: run(p, workers=w) for w, p in plans.items()}
    assert set(times[2]) == set(plans[2].jobs) and plans[2].pending() == []
    for key, job in plans[1].jobs.items():
        if job.kind == "train":
            a, b = (torch.load(tmp_path / f"w{w}" / "store" / key / "model.pt", weights_only=True) for w in (1, 2))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key
            # trainings beside others say so in their records (their wall times say little); alone they do not
            shared = [json.loads((tmp_path / f"w{w}" / "store" / key / "record.json").read_text())["device_shared"]
                      for w in (1, 2)]
            assert shared == [False, True], key
    tables = [pd.read_parquet(next((tmp_path / f"w{w}" / "results").rglob("models.parquet"))) for w in (1, 2)]
    keep = [c for c in tables[0].columns if "second" not in c and "time" not in c and c != "device"]
    pd.testing.assert_frame_equal(tables[0][keep], tables[1][keep], check_exact=True)
    assert not list((tmp_path / "w2").rglob("partial.pt")) and not list((tmp_path / "w2").rglob("*.tmp"))
    assert run(plans[2], workers=2) == {}
    # `dynn run zoo` with the same parameters finds the plan's publication and writes nothing
    # (gpu_run.sh runs the question stages after `dynn plan --run --workers K`)
    rec = next((tmp_path / "w2" / "results").rglob("record.json"))
    before = rec.stat().st_mtime_ns
    argv = ["run", "zoo", "--dataset", "synthetic", "--profile", "smoke", "--device", "cpu",
            "--store", str(tmp_path / "w2" / "store"), "--results", str(tmp_path / "w2" / "results")]
    assert main(argv + [a for k, v in TINY.items() for a in ("-o", f"{k}={v}")]) == 0
    assert rec.stat().st_mtime_ns == before


def test_local_workers_run_transfer_tables_alone():
    """A black-box transfer table's attack times feed Finding 2, so the pool starts one only when
    nothing runs and starts nothing beside it, nor after it in plan order while it waits; every
    other job (trainings, white-box and RQ4 tables) shares the workers."""
    from types import SimpleNamespace as J

    from dynn_lib.engines.local import next_jobs, runs_alone
    t1, t2, t4 = (J(kind="train", spec={}) for _ in range(3))
    t3 = J(kind="surrogate", spec={})
    tab, wb = J(kind="table", spec={"table": "transfer"}), J(kind="table", spec={"table": "whitebox"})
    assert runs_alone(tab) and not runs_alone(wb) and not runs_alone(J(kind="table", spec={"table": "rq4"}))
    assert next_jobs([t1, t2, t3], [], 2) == [t1, t2]
    assert next_jobs([t1, tab, t2], [], 3) == [t1]  # the table waits for t1, and t2 waits behind it
    assert next_jobs([tab, t2], [t1], 2) == []
    assert next_jobs([tab, t2], [], 2) == [tab]
    assert next_jobs([t2, t4], [tab], 3) == []
    assert next_jobs([t4], [t1, t2], 2) == []
    assert next_jobs([wb, t4], [t1], 3) == [wb, t4]


@pytest.mark.parametrize("engine, threads, needle", [
    ("local", 2, "threads_per_job apply only to engine 'ray'"),
    ("ray", 0, "integer >= 1, got 0"),
    ("ray", 1.5, "integer >= 1, got 1.5"),
    ("ray", True, "integer >= 1, got True"),
])
def test_bad_thread_counts_are_clear_errors(engine, threads, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_engine_options(engine, threads_per_job=threads)


@pytest.mark.parametrize("engine, workers, needle", [
    ("local", 0, "workers must be an integer >= 1, got 0"),
    ("local", 2.0, "workers must be an integer >= 1, got 2.0"),
    ("ray", 2, "workers applies only to engine 'local'"),
])
def test_bad_worker_counts_are_clear_errors(engine, workers, needle):
    if engine == "ray" and not _ray_installed():
        pytest.skip("Ray not installed (pip install -e '.[cluster]')")
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_engine_options(engine, workers=workers)


def test_default_threads_follow_the_local_engine_on_cpu_and_the_cpus_per_gpu_on_gpu():
    from dynn_lib.engines.ray_engine import default_threads
    assert default_threads(64, 0, 0.0, 64) == torch.get_num_threads()  # what the local engine uses
    assert default_threads(64, 0, 0.0, 1) == 1  # capped at the largest node
    assert default_threads(16, 1, 1.0, 16) == 16 and default_threads(16, 1, 0.25, 16) == 4
    assert default_threads(8, 8, 0.5, 8) == 1  # at least one


def test_ray_jobs_share_their_device_unless_they_hold_a_whole_gpu_or_node():
    from dynn_lib.engines.ray_engine import shares_device
    assert not shares_device(1.0, 16, 64) and shares_device(0.5, 8, 64)  # GPU jobs: a whole GPU each or not
    assert shares_device(0.0, 2, 4) and not shares_device(0.0, 2, 3)  # CPU jobs: room for a second one or not


@pytest.mark.parametrize("extra, needle", [
    (["--engine", "spark"], "unknown engine 'spark'"),
    (["--engine", "ray", "--gpus-per-job", "0"], "(0, 1]"),
    (["--address", "10.0.0.1:6379"], "only to engine 'ray'"),
    (["--threads-per-job", "2"], "threads_per_job apply only to engine 'ray'"),
    (["--engine", "ray", "--threads-per-job", "0"], "integer >= 1, got 0"),
    (["--workers", "0"], "workers must be an integer >= 1, got 0"),
])
def test_reproduce_rejects_bad_engine_options_before_any_work(tmp_path, capsys, extra, needle):
    rc = main(["reproduce", "--datasets", "synthetic", "--results", str(tmp_path / "r"), "--store",
               str(tmp_path / "s"), "--no-build"] + extra)
    assert rc == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_plan_command_prints_the_graph(tmp_path, capsys):
    rc = main(["plan", "--datasets", "synthetic", "--seeds", "0", "3", "--questions", "zoo", "--store",
               str(tmp_path / "s"), "--results", str(tmp_path / "r"), "-p", "n_eval", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "20 jobs (20 to run)" in out and "seed0" in out and "seed3" in out
    assert not (tmp_path / "s").exists()  # planning trains nothing


@pytest.mark.slow
def test_interrupted_workers_save_their_trainings_and_a_rerun_resumes_them(tmp_path):
    """What `timeout -s INT` does to gpu_run.sh's jobs stage: SIGINT to the process group of a
    2-worker run while trainings run. Each training saves its last finished epoch, no worker
    outlives the run, and the next run resumes them (record: resumed_from_epoch >= 1)."""
    import signal
    import time

    store = tmp_path / "store"
    # RQ4 on two architectures: its two SDN trainings run side by side (then small attack tables),
    # which is what the kill needs at a third of the zoo's nine trainings' cost. 10 epochs: both hold
    # a checkpoint at once for a few seconds (with 3, about 1 s here, and none at all in one CI run)
    argv = [sys.executable, "-m", "dynn_lib.cli", "plan", "--run", "--workers", "2", "--datasets", "synthetic",
            "--questions", "rq4", "--store", str(store), "--results", str(tmp_path / "results"), "--device", "cpu",
            "-p", "n_train", "128", "-p", "cnn_epochs", "10", "-p", "checkpoint_every", "1", "-p", "n_eval", "8",
            "-p", "archs", "['resnet56', 'mobilenet']", "-p", "ea_images", "4", "-p", "ea_iters", "2",
            "-p", "attack_steps", "1"]
    env = {**os.environ, "DYNN_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while len(list(store.rglob("partial.pt"))) < 2:  # both workers are mid-training
        assert p.poll() is None and time.time() < deadline, "no two trainings checkpointed"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    assert p.wait(timeout=120) != 0
    time.sleep(1)
    left = [d for d in Path("/proc").glob("[0-9]*") if _pgid(d) == p.pid and _state(d) != "Z"]  # Z: exited
    assert not left, f"processes outlived the run: {[(d / 'cmdline').read_bytes()[:200] for d in left]}"
    partial = {d.parent.name for d in store.rglob("partial.pt")}
    assert len(partial) >= 2 and not list(store.rglob("*.tmp"))
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = {d.name for d in (store / "models").iterdir()
               if json.loads((d / "record.json").read_text()).get("resumed_from_epoch", 0) >= 1}
    assert partial <= resumed and not list(store.rglob("partial.pt"))


def _stat(proc_dir: Path) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _pgid(proc_dir: Path) -> int | None:
    f = _stat(proc_dir)
    return int(f[2]) if len(f) > 2 else None


def _state(proc_dir: Path) -> str | None:
    f = _stat(proc_dir)
    return f[0] if f else None
