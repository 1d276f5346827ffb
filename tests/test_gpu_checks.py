"""dynn_lib.gpu_checks: the GPU self-check records as the methods page tabulates them, read from
the committed H100 record (results/gpu-checks/) and from copies made here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dynn_lib import gpu_checks

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / gpu_checks.GPU_CHECKS_DIR
H100 = "2026-12-05-nvidia-h100-80gb-hbm3"


@pytest.fixture
def h100():
    (record,) = [r for r in gpu_checks.check_records(COMMITTED) if r["name"] == H100]
    return record


def test_committed_record_is_read_with_its_commit_from_the_log(h100):
    assert "git_commit" not in h100["meta"]  # written before the check recorded it
    assert h100["commit"] == "7e00fcfa44d486e88e1f2b1ee7e386390fc2b0e8"
    row = gpu_checks.summary([h100]).iloc[0]
    assert row["gpu"] == "NVIDIA H100 80GB HBM3" and row["torch"] == "2.11.0+cu130" and row["commit"] == "7e00fcfa44d4"
    assert (row["pass"], row["fail"], row["warn"], row["skip"]) == (8, 1, 4, 0)
    assert row["not_passed"].startswith("FAIL forward/mobilenet/cnn/grad_cosine; WARN sync_audit/train/no_sync_per_step")


def test_findings_are_every_failed_or_warned_check(h100):
    want = [f"{s}/{c['name']}" for s, sec in h100["sections"].items() for c in sec["checks"]
            if c["status"] in ("FAIL", "WARN")]
    got = gpu_checks.findings([h100])
    assert list(got["check"]) == want and len(want) == 7
    assert set(got["status"]) == {"FAIL", "WARN"}
    row = got.set_index("check").loc["forward/mobilenet/cnn/grad_cosine"]
    assert (row["value"], row["threshold"]) == ("4.677e-07", "0.9999")  # a limit of 0.9999 does not read "1"


def test_training_speedups_equal_the_checks_own(h100):
    steps = gpu_checks.training_steps([h100])
    assert len(steps) == 18 and list(steps["batch"][:9]) == [128] * 9
    recorded = {c["name"]: c["value"] for c in h100["sections"]["timings"]["checks"]
                if c["name"].endswith("graphed_speedup")}
    b128 = steps[steps["batch"] == 128]
    assert len(recorded) == len(b128) == 9
    for (_, row), value in zip(b128.iterrows(), recorded.values()):
        assert row["speedup"] == pytest.approx(value, rel=1e-9)
    assert steps.loc[steps["batch"] == 512, "eager_ms"].isna().all()  # only graphed at the fast batch


def test_speeds_carry_values_and_issue_targets(h100):
    sp = gpu_checks.speeds([h100]).set_index("quantity")
    assert sp.loc["PGD speed-up over torchattacks", "value"] == pytest.approx(h100["pgd"]["ratio"])
    assert sp.loc["PGD speed-up over torchattacks", "target"] == ">= 1.5"
    paper = "training of every model, paper (extrapolated, one at a time)"
    assert sp.loc[paper, "value"] == pytest.approx(h100["extrapolation"]["paper"]["training_minutes"])
    assert sp.loc[paper, "target"] == "<= 30"  # issue 9's, for a record written before the check kept it
    assert sp.loc["workers gpu_run.sh would use", "value"] == 3
    three = [q for q in sp.index if q.startswith("training of every model, paper, 3 at a time")]
    assert len(three) == 1 and sp.loc[three[0], "target"] == "<= 30"
    assert sp.loc[three[0], "value"] == pytest.approx(sp.loc[paper, "value"] / h100["concurrency"]["speedup"]["3"])


def test_first_folder_wins_and_meta_commit_beats_the_log(tmp_path):
    mine = tmp_path / "gpu-checks" / H100
    shutil.copytree(COMMITTED / H100, mine)
    record = json.loads((mine / "selfcheck.json").read_text())
    record["meta"]["git_commit"] = "abc123"
    (mine / "selfcheck.json").write_text(json.dumps(record))
    other = tmp_path / "gpu-checks" / "2027-01-01-cpu"
    other.mkdir()
    (other / "selfcheck.json").write_text(json.dumps({"meta": {"device": "cpu"}, "sections": {}}))
    got = gpu_checks.check_records(tmp_path / "gpu-checks", COMMITTED, tmp_path / "missing")
    assert [r["name"] for r in got][:2] == [H100, "2027-01-01-cpu"]
    assert got[0]["commit"] == "abc123" and got[1]["commit"] == "unknown"
    assert gpu_checks.summary(got[1:]).iloc[0]["gpu"] == "cpu"
    assert gpu_checks.check_records(tmp_path / "missing") == []
    assert gpu_checks.findings([]).empty and gpu_checks.training_steps([]).empty


def test_failed_checks_name_each_fail_and_crashed_sections(h100):
    assert gpu_checks.failed_checks([h100]) == [f"{H100}: forward/mobilenet/cnn/grad_cosine"]
    crashed = {"name": "x", "sections": {"loader": {"status": "FAIL", "checks": [], "error": "ZeroDivisionError"},
                                         "forward": {"status": "WARN", "checks": [{"name": "a", "status": "WARN"}]}}}
    assert gpu_checks.failed_checks([crashed, h100]) == ["x: loader", f"{H100}: forward/mobilenet/cnn/grad_cosine"]
    assert gpu_checks.run_dir("res", "fast", "cifar10-jpeg") == Path("res/fast/cifar10-jpeg/gpu-checks")
    assert gpu_checks.record_name(h100) == H100  # the name gpu_run.sh gives the folder
