"""The benchmark script runs on the CPU at its quick sizes and reports positive timings."""
import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_speed_benchmark_quick_runs(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("speed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--device", "cpu", "--json", str(tmp_path / "b.json")])
    tr = res["training"][0]
    assert tr["project_s"] > 0 and tr["reference_s"] > 0 and tr["speedup"] > 0
    assert res["pgd"]["project_img_s"] > 0
    ee = res["early_exit"]
    assert 0 < ee["mac_ratio"] <= 1 and ee["batch1_early_exit_ms"] > 0
    assert (tmp_path / "b.json").is_file()
