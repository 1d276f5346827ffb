"""The GPU-slot tools rehearsed on the CPU: benchmarks/gpu_check.py (issue 9 section 4) and
benchmarks/gpu_run.sh (section 5)."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_quick_sections_write_json_each_time(tmp_path, one_thread):
    """A fast subset: every asked section has a status, the rest are absent, the JSON is complete."""
    gc = _gpu_check()
    res = gc.main(["--tiny", "--device", "cpu", "--sections", "environment,loader,early_exit,sync_audit",
                   "--out", str(tmp_path / "sc.json")])
    saved = json.loads((tmp_path / "sc.json").read_text())
    assert saved["meta"]["finished"] and saved["sections"].keys() == res["sections"].keys()
    assert list(saved["sections"]) == ["environment", "loader", "early_exit", "sync_audit"]
    st = {k: v["status"] for k, v in saved["sections"].items()}
    assert st == {"environment": "PASS", "loader": "PASS", "early_exit": "PASS", "sync_audit": "SKIP"}
    assert "CUDA only" in saved["sections"]["sync_audit"]["reason"]
    assert saved["summary"] == {"PASS": 3, "FAIL": 0, "WARN": 0, "SKIP": 1}
    loader = {c["name"]: c["status"] for c in saved["sections"]["loader"]["checks"]}
    assert loader["crop_flip_equals_per_sample_reference"] == "PASS"
    assert loader["cpu_vs_cuda_bitwise"] == "SKIP"  # no GPU here, and it says so


def test_gpu_check_forward_full_sizes_passes_on_cpu(tmp_path, one_thread):
    """The forward section at the sizes a GPU slot runs (every architecture, both exit layouts; CPU
    fp32 against fp64 here): no check may fail. On 2026-12-05 this section FAILed on an H100 at full
    sizes only: MobileNet's CNN has an input gradient of norm about 1e-11 under the check's random
    BatchNorm statistics, and ``F.cosine_similarity`` (norms clamped at 1e-8) read it as orthogonal
    to its fp64 twin; the tiny CI run (ResNet-56 only) never met it. That stopped the slot's run."""
    gc = _gpu_check()
    res = gc.main(["--device", "cpu", "--sections", "forward", "--out", str(tmp_path)])
    checks = res["sections"]["forward"]["checks"]
    assert len([c for c in checks if c["name"].endswith("/grad_cosine")]) == 6
    assert [c["name"] for c in checks if c["status"] != "PASS"] == []


@pytest.mark.slow
def test_gpu_check_correctness_sections_full_sizes_pass_on_cpu(tmp_path, one_thread):
    """Every section that judges correctness, at the sizes a GPU slot runs, on the CPU (the CPU's
    fp32 standing in for the GPU's): no FAIL and no WARN. A check that fails only at full sizes
    otherwise first fails in a GPU slot and stops its run (about 35 s here)."""
    gc = _gpu_check()
    names = "environment,forward,loader,attacks,early_attack,early_exit,resume,fired_shapes"
    res = gc.main(["--device", "cpu", "--budget-s", "900", "--sections", names, "--out", str(tmp_path)])
    assert res["summary"] == {"PASS": 8, "FAIL": 0, "WARN": 0, "SKIP": 0}, {
        k: v["status"] for k, v in res["sections"].items()}
    assert res["meta"]["git_commit"] and not res["meta"]["tiny"]


def test_gpu_check_cosine_is_scale_free():
    gc = _gpu_check()
    g = torch.randn(3 * 32 * 32 * 4, dtype=torch.float64)
    for scale in (1e-30, 1e-12, 1.0, 1e12):
        assert gc._cosine(g * scale, (g * scale).float()) > 0.999999
        assert abs(gc._cosine(g * scale, torch.roll(g, 1) * scale)) < 0.1
    assert gc._cosine(g, -g) == pytest.approx(-1.0)
    assert gc._cosine(torch.zeros(4), torch.zeros(4)) == 1.0 and gc._cosine(torch.zeros(4), torch.ones(4)) == 0.0


def test_sync_audit_per_unit_lines_ignore_fixed_costs():
    """The H100 audit of 2026-12-05 (16 training steps): ``model.to(device)`` copies each of the
    SDN's 364 tensors (a sync each, once per run), the loss is read once per epoch. Neither grows
    with the number of steps, so neither is a sync per step; a line that grows with them is."""
    gc = _gpu_check()
    once = {"dynn_lib/train.py:544": 364, "dynn_lib/data/loader.py:103": 6, "dynn_lib/train.py:584": 2, "other": 1}
    assert gc.per_unit_lines(once, dict(once), 16) == {}
    grows = {**once, "dynn_lib/train.py:570": 32, "other": 40}
    assert gc.per_unit_lines({**once, "dynn_lib/train.py:570": 16}, grows, 16) == {"dynn_lib/train.py:570": 16}
    assert gc.per_unit_lines(once, {**once, "dynn_lib/train.py:570": 8}, 16) == {}  # every other step: not per step


@contextmanager
def _host_reads(counts):
    """A CPU stand-in for ``set_sync_debug_mode``: counts the library's own reads of tensor values
    (``item``, ``float``, ``int``, ``bool``, ``tolist``), each of which syncs when the tensor is on
    a GPU, per library line; reads made inside PyTorch (its CPU-side optimizer step counters) are
    not the library's and are left out."""
    gc = _gpu_check()
    names = ("item", "__float__", "__int__", "__bool__", "tolist")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def counted(f):
        def read(self, *args, **kwargs):
            if "dynn_lib" in sys._getframe(1).f_code.co_filename:
                where = gc._library_frame()
                counts[where] = counts.get(where, 0) + 1
            return f(self, *args, **kwargs)
        return read

    for n, f in saved.items():
        setattr(torch.Tensor, n, counted(f))
    try:
        yield counts
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("check_every", [None, 1])
def test_gpu_check_sync_audit_rehearsed_on_cpu(tmp_path, monkeypatch, one_thread, check_every):
    """The sync audit's four phases run at tiny sizes with host reads counted in place of CUDA
    syncs: the trainer reads nothing per step, the Early Attack nothing per iteration at its
    default check_every; reading "all done?" every iteration (check_every=1) is caught and named."""
    import functools

    import dynn_lib.attacks as attacks
    gc = _gpu_check()
    monkeypatch.setattr(gc, "_can_audit_syncs", lambda device: True)
    monkeypatch.setattr(gc, "_sync_counter", _host_reads)
    if check_every:
        monkeypatch.setattr(attacks, "early_attack", functools.partial(attacks.early_attack, check_every=check_every))
    res = gc.main(["--tiny", "--device", "cpu", "--sections", "sync_audit", "--out", str(tmp_path)])
    sec = res["sections"]["sync_audit"]
    st = {c["name"]: c["status"] for c in sec["checks"]}
    assert st["train/no_sync_per_step"] == "PASS" and sec["info"]["train/syncs"]["per_unit_lines"] == {}
    assert sec["info"]["train/syncs"]["total"] > 0  # the per-epoch loss read is seen, and is not per step
    ea = sec["info"]["early_attack/syncs"]["per_unit_lines"]
    if check_every:
        assert st["early_attack/no_sync_per_iteration"] == "WARN" and sec["status"] == "WARN"
        assert list(ea) == [f"dynn_lib/attacks/early_attack.py:{_line_of('bool(done.all())')}"]
    else:
        assert st["early_attack/no_sync_per_iteration"] == "PASS" and ea == {}
    rows = (tmp_path / "syncs.txt").read_text().splitlines()
    assert rows[0].split("\t") == ["phase", "count", "count at twice the steps", "where (innermost dynn_lib frame)"]


def _line_of(text: str) -> int:
    lines = (ROOT / "dynn_lib" / "attacks" / "early_attack.py").read_text().splitlines()
    (n,) = [i + 1 for i, line in enumerate(lines) if text in line]
    return n


def test_gpu_check_budget_spent_skips_rest(tmp_path):
    gc = _gpu_check()
    res = gc.main(["--tiny", "--device", "cpu", "--budget-s", "0.001", "--out", str(tmp_path)])
    assert set(res["sections"]) == set(gc.SECTIONS)
    assert all(v["status"] == "SKIP" for v in res["sections"].values())
    assert all("budget" in v["reason"] for k, v in res["sections"].items() if k != "extrapolation")
    assert res["sections"]["extrapolation"]["reason"] == "no training step was timed"
    assert (tmp_path / "selfcheck.json").is_file()


def test_gpu_check_missing_api_is_skip_and_crash_fails_only_its_section(tmp_path, monkeypatch):
    gc = _gpu_check()
    monkeypatch.setattr(gc, "sec_loader", lambda r, ctx: gc._lib("data", "NoSuchLoader"))
    monkeypatch.setattr(gc, "sec_early_exit", lambda r, ctx: 1 / 0)
    res = gc.main(["--tiny", "--device", "cpu", "--sections", "environment,loader,early_exit",
                   "--out", str(tmp_path)])
    s = res["sections"]
    assert s["loader"]["status"] == "SKIP" and "NoSuchLoader" in s["loader"]["reason"]
    assert s["early_exit"]["status"] == "FAIL" and "ZeroDivisionError" in s["early_exit"]["error"]
    assert s["environment"]["status"] == "PASS" and res["summary"]["FAIL"] == 1


@pytest.mark.parametrize("argv, word", [(["--sections", "forward,bogus"], "bogus"), (["--budget-s", "0"], "budget"),
                                        (["--archs", "resnet57"], "resnet57"), (["--device", "mps"], "mps")])
def test_gpu_check_bad_arguments(tmp_path, argv, word):
    gc = _gpu_check()
    with pytest.raises(ValueError, match=word):
        gc.main(argv + ["--out", str(tmp_path)])
    assert not (tmp_path / "selfcheck.json").exists()  # rejected before any work


def test_extrapolation_formula(tmp_path):
    """T = sum epochs * ceil(N / B) * t_step, over the 9 zoo models and the 6 surrogates."""
    gc = _gpu_check()
    from dynn_lib.profiles import get_profile

    rows = [{"arch": a, "kind": k, "batch": 128, "mode": "eager", "s_per_step": 0.01}
            for a in ("vgg16", "resnet56", "mobilenet") for k in ("cnn", "sdn", "ic_only")]
    ctx = {"timing_rows": rows, "device": __import__("torch").device("cpu")}
    r = gc.Report(tmp_path / "x.json", 60, {})
    with r.section("extrapolation"):
        gc.sec_extrapolation(r, ctx)
    paper = get_profile("paper")
    jobs = gc._training_jobs()
    assert len(jobs) == 15 and sum(j[0] == "surrogate" for j in jobs) == 6
    want = sum((paper.ic_epochs if k == "ic_only" else paper.cnn_epochs)
               * -(-int(50_000 if lab == "zoo" else 49_500) // 128) * 0.01 for lab, _, k in jobs)
    assert ctx["extrapolation"]["paper"]["training_minutes"] == pytest.approx(want / 60)
    assert ctx["extrapolation"]["paper"]["missing"] == []
    # fast trains at batch 512: scaled per image from the batch-128 step (4x the time per step)
    fast = get_profile("fast")
    want_fast = sum((fast.ic_epochs if k == "ic_only" else fast.cnn_epochs)
                    * -(-int(50_000 if lab == "zoo" else 49_500) // 512) * 0.04 for lab, _, k in jobs)
    assert ctx["extrapolation"]["fast"]["training_minutes"] == pytest.approx(want_fast / 60)
    # the probe's second step (gpu_run.sh's default ladder): 15 more CNN/SDN/surrogate epochs, and
    # the ResNet-56 CNN trained at the first step when it misses
    from dynn_lib.floors import default_probe_steps

    assert default_probe_steps("fast") == [fast.cnn_epochs, fast.cnn_epochs + 15]
    assert default_probe_steps("paper") == [] and default_probe_steps("fast", "tinyimagenet") == []
    longer = ctx["extrapolation"][f"fast_cnn_epochs_{fast.cnn_epochs + 15}"]
    want_longer = sum((fast.ic_epochs if k == "ic_only" else fast.cnn_epochs + 15)
                      * -(-int(50_000 if lab == "zoo" else 49_500) // 512) * 0.04 for lab, _, k in jobs)
    assert longer["training_minutes"] == pytest.approx(want_longer / 60)
    assert longer["probe_miss_minutes"] == pytest.approx(fast.cnn_epochs * -(-50_000 // 512) * 0.04 / 60)


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    """`gpu_check.py --tiny` (what CI runs): every section PASS or SKIP, only the CUDA-only one SKIP."""
    gc = _gpu_check()
    res = gc.main(["--tiny", "--device", "cpu", "--budget-s", "1800", "--out", str(tmp_path)])
    st = {k: v["status"] for k, v in res["sections"].items()}
    assert set(st) == set(gc.SECTIONS)
    assert all(s in ("PASS", "SKIP") for s in st.values()), st
    assert [k for k, s in st.items() if s == "SKIP"] == ["sync_audit"], st
    assert res["timings"] and all(t["s_per_step"] > 0 for t in res["timings"])
    assert res["extrapolation"]["fast"]["training_minutes"] > 0
    assert res["fired_shapes"]["recommended_fired_bucket"] == "auto"  # a CPU keeps the library's default


def test_fired_recommendation_turns_padding_off_only_when_unpadded_wins_twice_on_cuda():
    import torch
    rec, cuda, cpu = _gpu_check().fired_recommendation, torch.device("cuda"), torch.device("cpu")
    assert rec(cuda, (2.0, 1.0), (1.5, 0.9)) == 1
    assert rec(cuda, (2.0, 1.0), (2.5, 0.9)) == "auto" and rec(cuda, (2.0, 1.0), (1.5, 1.1)) == "auto"
    assert rec(cuda, (2.0, 1.0), (2.0, 1.0)) == "auto"  # a tie keeps the default
    assert rec(cpu, (2.0, 1.0), (1.0, 0.5)) == "auto"


# -------------------------------------------------------------------------------- gpu_run.sh
def fake_cifar10_jpeg(path: Path, per_class: int = 10) -> Path:
    """A tiny cifar10-jpeg.tar.gz (10 classes, ``per_class`` JPEGs per class and split) made from
    the synthetic images, laid out as the real archive (cifar10-jpeg/{train,test}/<class>/N.jpg)."""
    from PIL import Image

    from dynn_lib.data import make_synthetic

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    tr, te = make_synthetic(n_train=10 * per_class, n_test=10 * per_class, seed=4)
    with tarfile.open(path, "w:gz") as tf:
        for split, s in (("train", tr), ("test", te)):
            for i, (img, lab) in enumerate(zip(s.images, s.labels)):
                buf = io.BytesIO()
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=75)
                info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{classes[int(lab)]}/{i}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tf.addfile(info, buf)
    return path


QUESTIONS = ("zoo", "rq1", "rq2", "rq3", "rq4", "appendix")
LADDER = "2 1:weight_decay=0.0005"
PROBED = {f"results/schedule-checks/cifar10-jpeg-resnet56-cnn-smoke-{e}-cpu.json"
          for e in ("e2-n_train20", "e1-n_train20-weight_decay0.0005")}
SMOKE_PARAMS = "n_train=20 n_query=10 n_eval=10 attack_steps=1 ea_iters=2 ea_images=10 ic_epochs=1"
"""Smoke-sized runs; cnn_epochs comes from the schedule probe. DYNN_GPU_RUN_EPOCHS is
"2 1:weight_decay=0.0005": a smoke model is far below ResNet-56's 88 % floor, so both steps are tried
and the run goes on with the last, 1 epoch at another weight decay, whose fields every question then
takes (in this order the probe costs one 2-epoch ResNet-56, and every other training stays at 1 epoch).
n_train 20 and n_query 10 (the surrogates train on 11 copies of the query images): 50 and 20 before,
whose jobs stage took 93 s against 73 s now (back to back, 2 cores); what is asserted is unchanged."""


def _env(state: Path, limit: int = 3000, workers: str = "auto", **extra: str) -> dict[str, str]:
    return {**os.environ, "DYNN_GPU_RUN_STATE": str(state), "DYNN_GPU_RUN_PROFILE": "smoke",
            "DYNN_GPU_RUN_WORKERS": workers,
            # one thread per process: 2 workers x 2 busy-waiting threads on 2 cores take twice as long
            **({"OMP_NUM_THREADS": "1"} if workers != "auto" else {}),
            "DYNN_GPU_RUN_PARAMS": SMOKE_PARAMS, "DYNN_GPU_RUN_EPOCHS": LADDER, "DYNN_GPU_RUN_CHECK_S": "600",
            "DYNN_GPU_RUN_CHECK_ARGS": "--tiny --sections environment,loader,early_exit",
            "DYNN_GPU_RUN_DEVICE": "cpu", "DYNN_GPU_RUN_LIMIT_S": str(limit), "DYNN_PROGRESS": "0", **extra}


def _run(out: Path, state: Path, archive: Path, limit: int = 3000, workers: str = "auto", **extra: str
         ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(out), str(archive)],
                          env=_env(state, limit, workers, **extra), capture_output=True, text=True,
                          timeout=limit + 120)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (as a slot's hard limit ends a command: the stages run
    under ``timeout``, which puts them in process groups of their own, so killing one group is not enough)."""
    import signal
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getsid(int(d.name)) == sid:
                    os.kill(int(d.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _killed_after(stage: str, out: Path, state: Path, archive: Path, seconds: float, **env) -> None:
    """Start gpu_run.sh, let it run ``seconds`` past the end of ``stage``, then kill it from outside."""
    import time
    proc = subprocess.Popen(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(out), str(archive)],
                            env=_env(state, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        t0 = time.time()
        while not (state / "done" / stage).exists() and proc.poll() is None and time.time() - t0 < 900:
            time.sleep(0.2)
        assert (state / "done" / stage).exists(), f"stage {stage} did not finish"
        time.sleep(seconds)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        _kill_session(proc.pid)
        proc.wait()


def _bad_settings(tmp_path, **env) -> subprocess.CompletedProcess:
    """gpu_run.sh called with ``env`` added to this environment (expected to stop at its checks)."""
    env = {**os.environ, "DYNN_GPU_RUN_STATE": str(tmp_path / "s"), **env}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(tmp_path / "o")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_gpu_run_rejects_bad_settings(tmp_path):
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_QUESTIONS="zoo rq9")
    assert p.returncode == 2 and "rq9" in p.stderr and "accepted" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_LIMIT_S="8m")
    assert p.returncode == 2 and "8m" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_SNAPSHOT_S="1m")
    assert p.returncode == 2 and "DYNN_GPU_RUN_SNAPSHOT_S must be a whole number of seconds, got '1m'" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_ON_FAIL="ignore")
    assert p.returncode == 2 and "DYNN_GPU_RUN_ON_FAIL must be stop or continue, got 'ignore'" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_WORKERS="two")
    assert p.returncode == 2 and "'two'" in p.stderr and "auto" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_EPOCHS="45 sixty")
    assert p.returncode == 2 and "'45 sixty'" in p.stderr and "none" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_EPOCHS="45", DYNN_GPU_RUN_PARAMS="n_eval=10 cnn_epochs=30")
    assert p.returncode == 2 and "give one of them" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_EPOCHS="45 45:wd")
    assert p.returncode == 2 and "'45 45:wd'" in p.stderr and "45:weight_decay=0.0005" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_EPOCHS="45 45:lr=0.2,weight_decay=0.0005",
                      DYNN_GPU_RUN_PARAMS="weight_decay=0.001")
    assert p.returncode == 2 and "'45:lr=0.2,weight_decay=0.0005' and DYNN_GPU_RUN_PARAMS both set weight_decay" in p.stderr
    p = _bad_settings(tmp_path, DYNN_GPU_RUN_EPOCHS="45:cnn_epochs=60")
    assert p.returncode == 2 and "cnn_epochs is the step's number itself" in p.stderr


def test_gpu_carry_names_a_missing_archive(tmp_path):
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_carry.sh"), str(tmp_path), str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"no {tmp_path}/cifar10-jpeg.tar.gz" in p.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_gpu_run_rehearsal_on_cpu(tmp_path):
    """The one-command GPU run end to end at smoke sizes on a fake archive, with 2 workers (the
    `jobs` stage: the job graph in 2 processes, which publishes every question). The first call is
    killed from outside during the jobs stage (a slot's hard limit: no pack at its end), yet leaves
    in its OUTDIR what its snapshots took (the probe's records, the log); the second resumes and
    finishes; the third reuses all."""
    archive = fake_cifar10_jpeg(tmp_path / "cifar10-jpeg.tar.gz")
    killed, out, state = tmp_path / "killed", tmp_path / "out", tmp_path / "state"
    _killed_after("schedule", killed, state, archive, 4, workers="2", DYNN_GPU_RUN_SNAPSHOT_S="1")
    assert not (killed / "timings.json").exists()  # no pack ran: what is there came from the snapshots
    with tarfile.open(killed / "results.tar.gz") as tf:  # a whole archive (written, then renamed)
        assert PROBED <= set(tf.getnames())
    assert "--- jobs" in (killed / "log.txt").read_text()

    p = _run(out, state, archive, workers="2")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    files = sorted(f.name for f in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert {"results.tar.gz", "store.tar.gz", "selfcheck.json", "timings.json", "log.txt"} <= set(files)
    with tarfile.open(out / "results.tar.gz") as tf:
        names = tf.getnames()
        zoo_profile = json.load(tf.extractfile("results/smoke/cifar10-jpeg/zoo/record.json"))["config"]["profile"]
    # the probe tried both schedules (neither clears 88 %) and every question ran with the last
    assert PROBED <= set(names)
    # the self-check's record travels with the results, for the methods page (dynn_lib.gpu_checks)
    (check,) = [n for n in names if "/gpu-checks/" in n and n.endswith("/selfcheck.json")]
    assert check.startswith("results/smoke/cifar10-jpeg/gpu-checks/") and check.split("/")[4].endswith("-cpu")
    assert check.replace("selfcheck.json", "syncs.txt") not in names  # no sync audit on a CPU
    assert (zoo_profile["cnn_epochs"], zoo_profile["weight_decay"]) == (1, 0.0005)
    assert "schedule: cnn_epochs=1 weight_decay=0.0005 for every later stage" in p.stdout
    for q in QUESTIONS:
        assert f"results/smoke/cifar10-jpeg/{q}/record.json" in names, q
        assert any(n.startswith(f"results/smoke/cifar10-jpeg/{q}/") and n.endswith(".parquet") for n in names), q
    with tarfile.open(out / "store.tar.gz") as tf:
        assert not [n for n in tf.getnames() if n.endswith(".pt")]  # no model, no checkpoint
    assert json.loads((out / "selfcheck.json").read_text())["summary"]["FAIL"] == 0
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu_run call 2:") and ", done;" in last and "zoo" in last
    # the line before the summary says how to render what came back, with the run's parameters
    assert p.stdout.strip().splitlines()[-2] == (
        "book: unpack results.tar.gz in the repository root (it holds results/), then run: dynn reproduce --profile "
        "smoke --datasets cifar10-jpeg --no-experiments " + " ".join(f"-p {kv.replace('=', ' ')}" for kv in
                                                                     SMOKE_PARAMS.split()) + " -p cnn_epochs 1 -p weight_decay 0.0005")
    stamp = {p: p.stat().st_mtime_ns for p in (state / "results").rglob("*") if p.is_file()}

    first = [s for s in json.loads((out / "timings.json").read_text())["stages"] if s["call"] == 2]
    assert [(s["stage"], s["status"]) for s in first][:6] == [
        ("install", "done"), ("data", "reused"), ("check", "reused"), ("schedule", "reused"), ("jobs", "done"),
        ("zoo", "published")]
    # the jobs stage published every question: no interpreter started to find them
    assert {s["stage"]: s["status"] for s in first if s["stage"] in QUESTIONS} == dict.fromkeys(QUESTIONS, "published")
    assert "--- rq4: published by the jobs stage" in p.stdout and " run rq4 " not in p.stdout

    p2 = _run(out, state, archive, workers="2")
    assert p2.returncode == 0, p2.stdout[-4000:]
    t = json.loads((out / "timings.json").read_text())
    second = [s for s in t["stages"] if s["call"] == 3]
    assert {s["stage"] for s in second if s["status"] == "reused"} == {"data", "check", "schedule", "jobs", "zoo",
                                                                      "rq1", "rq2", "rq3", "rq4", "appendix"}
    assert {p: p.stat().st_mtime_ns for p in (state / "results").rglob("*") if p.is_file()} == stamp
    assert "gpu_run call 3:" in p2.stdout.strip().splitlines()[-1]


def test_gpu_run_stops_cleanly_before_the_limit(tmp_path):
    """With less time left than a stage needs, a call starts none, still packs, and exits 75."""
    archive = fake_cifar10_jpeg(tmp_path / "cifar10-jpeg.tar.gz", per_class=1)
    out, state = tmp_path / "out", tmp_path / "state"
    # limit 51 = 30 s reserve + 20 s least stage + 1 s; an interpreter that takes 3 s to start makes the
    # install step take at least that, so the data stage would have at most 51 - 30 - 3 = 18 s: it must
    # not start (with a real python3 this depended on how fast torch imported: it failed when under 2 s)
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 3\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    slow.chmod(0o755)
    p = _run(out, state, archive, limit=51, PYTHON=str(slow))
    assert p.returncode == 75, p.stdout[-3000:] + p.stderr[-2000:]
    assert "data: not started" in p.stdout and "call again to resume" in p.stdout.strip().splitlines()[-1]
    t = json.loads((out / "timings.json").read_text())
    assert [s["stage"] for s in t["stages"]] == ["install", "pack"] and t["last_call"]["status"] == "incomplete"
    assert sorted(f.name for f in out.iterdir()) == ["log.txt", "timings.json"]


@pytest.mark.parametrize("params, chosen", [("", "fired_bucket=1"), ("fired_bucket=64", None)])
def test_gpu_run_takes_the_checks_fired_bucket_unless_params_set_it(tmp_path, params, chosen):
    """A check whose fired_shapes section found the unpadded attack faster (recommended_fired_bucket 1)
    makes every later stage run with fired_bucket=1 (the book line says it too); a fired_bucket in
    DYNN_GPU_RUN_PARAMS wins. The call stops before its first question, after the choice is printed:
    as in the test above, the interpreter is slowed, here by 1 s a start, and the two or three starts
    before the first question leave at most 51 - 30 - 2 = 19 s of the limit, under the 20 s a stage needs."""
    out, state = tmp_path / "out", tmp_path / "state"
    (state / "check").mkdir(parents=True)
    (state / "results" / "smoke").mkdir(parents=True)  # results to render: the book line is printed
    (state / "check" / "selfcheck.json").write_text(json.dumps(
        {"fired_shapes": {"recommended_fired_bucket": 1}, "concurrency": {"recommended_workers": 1}}))
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    slow.chmod(0o755)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(out)], capture_output=True, text=True,
                       timeout=120, env=_env(state, limit=51, PYTHON=str(slow), DYNN_GPU_RUN_DATASET="synthetic",
                                             DYNN_GPU_RUN_CHECK_S="0", DYNN_GPU_RUN_EPOCHS="none",
                                             DYNN_GPU_RUN_PARAMS=params))
    assert p.returncode == 75, p.stdout[-3000:] + p.stderr[-2000:]
    assert "zoo: not started" in p.stdout
    book = [line for line in p.stdout.splitlines() if line.startswith("book:")]
    assert len(book) == 1 and book[0].endswith(" --allow-missing")
    if chosen:
        assert "fired_bucket: 1 for every later stage (the self-check's fired_shapes section" in p.stdout
        assert " -p fired_bucket 1 " in book[0]
    else:
        assert "fired_bucket:" not in p.stdout and " -p fired_bucket 64 " in book[0]


@pytest.mark.parametrize("on_fail", ["stop", "continue"])
def test_gpu_run_on_a_failed_check_stops_or_goes_on(tmp_path, on_fail):
    """A check that FAILs (here a stand-in interpreter writes a failed record for gpu_check.py and
    exits 1) stops the run by default: exit 1, no experiment, the record packed with the results.
    DYNN_GPU_RUN_ON_FAIL=continue runs the questions (here the model zoo, about 10 s) and exits 0 with
    the check marked done, so a later call does not redo it; the timings and the record still say
    it failed."""
    out, state = tmp_path / "out", tmp_path / "state"
    record = {"meta": {"device": "cpu", "started": "2026-12-06T00:00:00Z"}, "summary": {"FAIL": 1},
              "sections": {"forward": {"status": "FAIL", "checks": [{"name": "resnet56/cnn/grad_cosine",
                                                                    "status": "FAIL"}]}}}
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    'case "$1" in *gpu_check.py)\n'
                    '  while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done\n'
                    f'  mkdir -p "$out" && printf %s {shlex.quote(json.dumps(record))} > "$out/selfcheck.json"; exit 1;;\n'
                    "esac\n"
                    f"exec {shlex.quote(sys.executable)} \"$@\"\n")
    fake.chmod(0o755)
    env = _env(state, PYTHON=str(fake), DYNN_GPU_RUN_DATASET="synthetic", DYNN_GPU_RUN_EPOCHS="none",
               DYNN_GPU_RUN_QUESTIONS="zoo", DYNN_GPU_RUN_PARAMS=SMOKE_PARAMS + " cnn_epochs=1",
               DYNN_GPU_RUN_ON_FAIL=on_fail)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh"), str(out)], capture_output=True, text=True,
                       timeout=600, env=env)
    with tarfile.open(out / "results.tar.gz") as tf:
        names = tf.getnames()
    assert "results/smoke/synthetic/gpu-checks/2026-12-06-cpu/selfcheck.json" in names
    stages = {s["stage"]: s["status"] for s in json.loads((out / "timings.json").read_text())["stages"]}
    assert stages["check"] == "failed(1)"
    if on_fail == "stop":
        assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-2000:]
        assert "the self-check FAILED (see selfcheck.json): no experiment is run" in p.stdout
        assert "zoo" not in stages and not (state / "done" / "check").exists()
        assert "results/smoke/synthetic/zoo/record.json" not in names
    else:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert "the run goes on as DYNN_GPU_RUN_ON_FAIL=continue asks" in p.stdout and stages["zoo"] == "done"
        assert "results/smoke/synthetic/zoo/record.json" in names and (state / "done" / "check").exists()
        assert p.stdout.strip().splitlines()[-1].startswith("gpu_run call 1:") and ", done;" in p.stdout


def test_concurrency_measurement_names_a_failed_training(tmp_path):
    """A training process that dies is an error carrying its exit code and message (the section
    then WARNs and recommends one worker), never a hang."""
    import torch
    gc = _gpu_check()
    ctx = {"conc_job": ("nonet", "cnn", 8, 1, 4), "seed": 0, "device": torch.device("cpu")}
    with pytest.raises(RuntimeError, match=r"failed \(exit 2\).*unknown architecture .nonet"):
        gc._run_concurrently(1, ctx, timeout=120)
