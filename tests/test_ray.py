"""The ray engine on a local Ray instance (num_cpus=2, started once for this module): the same
published tables as the local engine, a worker killed mid-training retried and resumed from its
checkpoint, clear errors before any work. Skipped when Ray is not installed (the cluster extra)."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dynn_lib.engines import run_plan
from dynn_lib.engines.ray_engine import check_paths
from dynn_lib.plan import build_plan

TINY = {"n_train": 32, "n_query": 8, "n_eval": 8, "ea_images": 4, "ea_iters": 2, "attack_steps": 1, "batch_size": 16}
"""Sizes of the engine comparison: n_query sets the surrogates' training set (11 x n_query x 0.9
images), the largest cost of each side: at 8 (16 before) the comparison took 55 s, against 69-75 s in
earlier CI runs."""
TIMING = ("seconds", "time", "device")  # wall times and the machine's name differ between any two runs


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _plan(tmp: Path, questions=("zoo",), **extra):
    return build_plan("smoke", ["synthetic"], [0], list(questions), {**TINY, **extra}, store=tmp / "store",
                      results_dir=tmp / "results", device="cpu")


def _published(results: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for p in sorted(results.rglob("*.parquet")):
        df = pd.read_parquet(p)
        out[str(p.relative_to(results))] = df[[c for c in df.columns if not any(t in c for t in TIMING)]]
    return out


def test_worker_that_cannot_see_the_store_is_named(tmp_path):
    (tmp_path / "store").mkdir()
    problems = check_paths(str(tmp_path / "store"), ".token", str(tmp_path / "results"), str(tmp_path / "nodata"))
    assert len(problems) == 2 and "artefact store" in problems[0] and "data folder" in problems[1]
    (tmp_path / "store" / ".token").write_text("probe")
    assert check_paths(str(tmp_path / "store"), ".token", str(tmp_path / "results"), None) == []


def test_gpu_fraction_on_a_cluster_without_gpu_is_an_error_before_any_work(ray_instance, tmp_path):
    if ray_instance.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray instance has GPUs")
    plan = _plan(tmp_path).only(lambda j: j.kind == "train" and j.spec == {"arch": "resnet56", "kind": "cnn"})
    with pytest.raises(ValueError, match="has no GPU"):
        run_plan(plan, "ray", gpus_per_job=0.5)
    assert not (tmp_path / "store" / "models").exists()


@pytest.mark.slow
def test_ray_and_local_publish_identical_tables(ray_instance, tmp_path):
    """zoo + RQ1 (FGSM) + RQ4 on generated data, at this process's default thread count: every
    published table equal, timings aside. The local side is what ``dynn reproduce`` runs (each
    question's ``publish``, RQ4's alpha grid as one joint batch); the Ray jobs run with the
    driver's thread count (the engine's default), so the numbers agree bit for bit."""
    from dataclasses import fields

    from dynn_lib.experiments.runner import publish, split_overrides
    from dynn_lib.profiles import Profile
    from dynn_lib.reproduce import _accepted
    from dynn_lib.zoo import Workspace

    qs = ("zoo", "rq1", "rq4")
    overrides = {**TINY, "attacks": ["fgsm"], "alphas": [0.1, 1.0], "archs": ["resnet56", "mobilenet"]}
    ray_plan = _plan(tmp_path / "ray", qs, **overrides)
    assert list(_plan(tmp_path / "local", qs, **overrides).jobs) == list(ray_plan.jobs)  # keys: not the store path
    # the local side exactly as `dynn reproduce` runs it (one workspace, each question's publish)
    prof = {k: v for k, v in overrides.items() if k in {f.name for f in fields(Profile)}}
    ws = Workspace("synthetic", "smoke", store=tmp_path / "local" / "store", device="cpu", seed=0, **prof)
    for q in qs:
        _, conf = split_overrides(q, {k: v for k, v in overrides.items() if k in _accepted(q)})
        publish(q, ws, tmp_path / "local" / "results", conf)
    times = run_plan(ray_plan, "ray")
    assert set(times) == set(ray_plan.jobs) and ray_plan.pending() == []
    a, b = _published(tmp_path / "local" / "results"), _published(tmp_path / "ray" / "results")
    assert sorted(a) == sorted(b) and len(a) == 15, sorted(a)  # zoo 1, RQ1 5 (with surrogates), RQ4 9 (4: start contrast)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    threads = {json.loads(r.read_text())["numerics"]["cpu_threads"]
               for r in (tmp_path / "ray" / "store").rglob("record.json")}
    assert threads == {torch.get_num_threads()}
    assert run_plan(ray_plan, "ray") == {}  # finished jobs are skipped


def _ray_worker_pid(name: str) -> int | None:
    """PID of the Ray worker whose process title is ``ray::<name>`` (the task it runs)."""
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmd.read_bytes().split(b"\0")[0].decode().strip() == f"ray::{name}":
                return int(cmd.parent.name)
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_instance, tmp_path):
    plan = _plan(tmp_path, cnn_epochs=3, n_train=128, checkpoint_every=1).only(
        lambda j: j.kind == "train" and j.spec == {"arch": "resnet56", "kind": "cnn"})
    (job,) = plan.jobs.values()
    model_dir = tmp_path / "store" / job.key
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(times=run_plan(plan, "ray", retries=2)))
    th.start()
    deadline = time.time() + 300
    while not (model_dir / "partial.pt").is_file():  # at least one epoch checkpointed
        assert th.is_alive() and time.time() < deadline, "training never checkpointed"
        time.sleep(0.2)
    pid = _ray_worker_pid(job.name)
    assert pid is not None, f"no process titled ray::{job.name}"
    os.kill(pid, signal.SIGKILL)
    th.join(timeout=600)
    assert result.get("times", {}).keys() == {job.key}
    rec = __import__("json").loads((model_dir / "record.json").read_text())
    assert rec["resumed_from_epoch"] >= 1 and len(rec["history"]) == 3
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.pt", "record.json"]  # no partial, no temp file
    assert len(list((tmp_path / "store" / "models").iterdir())) == 1
    torch.load(model_dir / "model.pt", weights_only=True)  # complete
