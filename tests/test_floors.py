"""The fast schedule's accuracy floors: verdicts from Wilson intervals, records read back."""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from dynn_lib import floors, metrics
from dynn_lib.train import recipe_config


def test_judge_uses_the_wilson_interval():
    # 4,500 of 5,000 = 90 %: interval about [89.2, 90.8], wholly above 88
    above = floors.judge("cifar10-jpeg", "resnet56", 0.9, 5000)
    assert above["verdict"] == "above the floor" and above["floor"] == 88.0
    assert (above["accuracy_lo"], above["accuracy_hi"]) == pytest.approx(metrics.wilson_interval(4500, 5000))
    assert floors.judge("cifar10-jpeg", "vgg16", 0.86, 5000)["verdict"] == "below the floor"
    # 88.5 % of 5,000: the interval straddles 88
    assert floors.judge("cifar10-jpeg", "vgg16", 0.885, 5000)["verdict"] == "inconclusive"
    # the same accuracy over 100 images cannot tell 90 % from 88 %
    assert floors.judge("cifar10-jpeg", "resnet56", 0.9, 100)["verdict"] == "inconclusive"
    # MobileNet's floor is 85
    assert floors.judge("cifar10-jpeg", "mobilenet", 0.87, 5000)["verdict"] == "above the floor"
    none = floors.judge("synthetic", "resnet56", 0.9, 5000)
    assert none["verdict"].startswith("no floor") and math.isnan(none["floor"])


@pytest.mark.parametrize("acc,n", [(1.2, 10), (-0.1, 10), (0.5, 0), (0.5, 2.5)])
def test_judge_rejects_bad_input(acc, n):
    with pytest.raises(ValueError, match="accuracy|n must"):
        floors.judge("cifar10-jpeg", "resnet56", acc, n)


def _record(arch, recipe, acc, n_eval=5000, **changed):
    cfg = json.loads(json.dumps(asdict(recipe_config(recipe, arch, "cifar10-jpeg", "fast")), default=list))
    return {"config": {**cfg, "checkpoint_every": 3, **changed},  # the cadence changes no weight
            "device_name": "x86_64 CPU, 2 cores", "n_eval": n_eval, "n_train": 50000, "train_seconds": 7200.0,
            "git_commit": "0123456789abcdef", "exit_accuracy": [0.1, acc]}


def test_schedule_checks_read_static_networks_only(tmp_path):
    assert floors.schedule_checks(tmp_path / "absent").empty
    (tmp_path / "a.json").write_text(json.dumps(_record("resnet56", "cnn", 0.91)))
    (tmp_path / "b.json").write_text(json.dumps(_record("vgg16", "sdn", 0.2)))  # a DyNN: no floor
    (tmp_path / "c.json").write_text(json.dumps(_record("mobilenet", "cnn", 0.80, epochs=20, lr=0.1)))
    t = floors.schedule_checks(tmp_path)
    assert list(t["arch"]) == ["resnet56", "mobilenet"]
    assert list(t["verdict"]) == ["above the floor", "below the floor"]
    assert list(t["current_fast"]) == ["yes", "no: epochs, lr"]  # a check of another schedule says so
    assert list(t["accuracy"]) == pytest.approx([91.0, 80.0])
    assert list(t["n"]) == [5000, 5000]


def test_probe_stops_at_the_first_schedule_that_clears_the_floor(tmp_path, monkeypatch):
    """The probe trains one schedule after another and stops at the first above the floor; its
    models are the experiments' (same store key), its records are schedule checks."""
    from dynn_lib.zoo import Workspace

    # a 1-epoch smoke model may get none of its 20 images right, and then even a 0 % floor is
    # "inconclusive": with floor 0 the judge here sees a perfect model, with floor 100 the real one
    real = floors.judge
    monkeypatch.setattr(floors, "judge", lambda d, a, acc, n, f: real(d, a, 1.0 if f == 0 else acc, n, f))

    kw = dict(store=tmp_path / "store", device="cpu", n_train=40, n_eval=20, n_query=20)
    checks = tmp_path / "checks"
    easy = floors.probe_epochs("synthetic", "resnet56", [1, 2], checks, profile="smoke", floor=0.0, **kw)
    assert easy["passed"] and easy["chosen_epochs"] == 1 and [p["epochs"] for p in easy["probes"]] == [1]
    hard = floors.probe_epochs("synthetic", "resnet56", [1, 2], checks, profile="smoke", floor=100.0, **kw)
    assert not hard["passed"] and hard["chosen_epochs"] == 2  # none passed: the longest goes on
    assert [(p["arch"], p["epochs"], p["verdict"]) for p in hard["probes"]] == \
        [("resnet56", 1, "below the floor"), ("resnet56", 2, "below the floor")]
    assert sorted(f.name for f in checks.iterdir()) == ["synthetic-resnet56-cnn-smoke-e1-cpu.json",
                                                       "synthetic-resnet56-cnn-smoke-e2-cpu.json"]
    rec = json.loads((checks / "synthetic-resnet56-cnn-smoke-e2-cpu.json").read_text())
    assert rec["config"]["epochs"] == 2 and rec["n_eval"] == 20 and rec["profile"] == "smoke"
    ws = Workspace("synthetic", "smoke", cnn_epochs=2, **kw)  # what the run does with the choice
    cfg = ws.model_config("resnet56", "cnn")
    assert ws.store.record("models", cfg, slug="synthetic-resnet56-cnn-s0")["exit_accuracy"] == rec["exit_accuracy"]
    # several architectures: a number passes only when all do; the first miss ends that number
    both = floors.probe_epochs("synthetic", ["resnet56", "mobilenet"], [1, 2], checks, profile="smoke", floor=0.0,
                               **kw)
    assert both["passed"] and both["chosen_epochs"] == 1
    assert [(p["arch"], p["epochs"]) for p in both["probes"]] == [("resnet56", 1), ("mobilenet", 1)]
    none = floors.probe_epochs("synthetic", ["resnet56", "mobilenet"], [1, 2], checks, profile="smoke", floor=100.0,
                               **kw)
    assert [(p["arch"], p["epochs"]) for p in none["probes"]] == [("resnet56", 1), ("resnet56", 2)]
    assert not (checks / "synthetic-mobilenet-cnn-smoke-e2-cpu.json").exists()


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="synthetic"), "no floor for synthetic/resnet56"),
    (dict(epochs=[]), "epochs must be a non-empty list"),
    (dict(epochs=[30, 0]), "epochs must be a non-empty list"),
    (dict(archs="resnet18"), r"unknown architecture\(s\) \['resnet18'\]; accepted"),
    (dict(dataset="synthetic", archs=None), "no floor for any architecture on synthetic"),
    (dict(floor=101), r"floor must be a percentage in \[0, 100\]"),
    (dict(cnn_epochs=30), "cnn_epochs is what the probe chooses"),
    (dict(batch=5), "unknown profile field"),
])
def test_probe_rejects_bad_input_before_training(tmp_path, kw, match):
    args = {"dataset": "cifar10-jpeg", "archs": "resnet56", "epochs": [45], "out_dir": tmp_path / "c",
            "store": tmp_path / "s", "data_dir": tmp_path / "no-data", **kw}
    with pytest.raises(ValueError, match=match):
        floors.probe_epochs(**args)
    assert not (tmp_path / "s").exists()
