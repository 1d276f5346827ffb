"""The fast schedule's accuracy floors: verdicts from Wilson intervals, records read back."""
from __future__ import annotations

import json
import math
import re
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
    # a check of another schedule says so, with its values and today's
    assert list(t["current_fast"]) == ["yes", "no: epochs 20 (fast: 45), lr 0.1 (fast: 0.4)"]
    assert list(t["accuracy"]) == pytest.approx([91.0, 80.0])
    assert list(t["n"]) == [5000, 5000]
    # a results folder's checks (a GPU run's probe) first, then the committed ones; a name in both is read once
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.json").write_text(json.dumps(_record("resnet56", "cnn", 0.95)))
    (run / "d.json").write_text(json.dumps(_record("vgg16", "cnn", 0.90)))
    both = floors.schedule_checks(run, tmp_path, tmp_path / "absent", run / ".." / "run")
    assert list(both["arch"]) == ["resnet56", "vgg16", "mobilenet"]
    assert list(both["accuracy"]) == pytest.approx([95.0, 90.0, 80.0])


def test_devices_line_counts_gpu_checks(tmp_path):
    """The methods page's sentence on where the checks ran comes from the records' devices."""
    (tmp_path / "a.json").write_text(json.dumps(_record("resnet56", "cnn", 0.91)))  # no "device": a CPU
    one = floors.schedule_checks(tmp_path)
    assert list(one["device_type"]) == ["cpu"]
    assert floors.devices_line(one).startswith("The check above did not run on a GPU")
    (tmp_path / "b.json").write_text(json.dumps({**_record("vgg16", "cnn", 0.91), "device": "cpu"}))
    assert floors.devices_line(floors.schedule_checks(tmp_path)).startswith("None of the 2 checks above ran on a GPU")
    gpu = {**_record("mobilenet", "cnn", 0.9), "device": "cuda:0", "device_name": "NVIDIA H200"}
    (tmp_path / "c.json").write_text(json.dumps(gpu))
    t = floors.schedule_checks(tmp_path)
    assert list(t["device_type"]) == ["cpu", "cpu", "cuda"]
    assert floors.devices_line(t) == "1 of the 3 checks above ran on a GPU (NVIDIA H200)."
    assert floors.check_name(gpu).endswith("-cuda.json")
    assert floors.devices_line(floors.schedule_checks(tmp_path / "absent")).startswith("No schedule check")


def test_check_name_tells_variants_apart():
    """A check of a variant of the schedule (here another weight decay) never takes the file name
    of the profile's own check; the epochs are in every name, the checkpoint cadence in none."""
    plain = {**_record("resnet56", "cnn", 0.9), "profile": "fast"}
    assert floors.check_name(plain) == "cifar10-jpeg-resnet56-cnn-fast-e45-cpu.json"
    longer = {**_record("resnet56", "cnn", 0.9, epochs=60), "profile": "fast"}
    assert floors.check_name(longer) == "cifar10-jpeg-resnet56-cnn-fast-e60-cpu.json"
    wd = {**_record("resnet56", "cnn", 0.9, weight_decay=1e-4), "profile": "fast", "device": "cuda:0"}
    assert floors.check_name(wd) == "cifar10-jpeg-resnet56-cnn-fast-e45-weight_decay0.0001-cuda.json"
    both = {**_record("vgg16", "cnn", 0.9, lr=0.2, weight_decay=1e-4), "profile": "fast"}
    assert floors.check_name(both) == "cifar10-jpeg-vgg16-cnn-fast-e45-lr0.2-weight_decay0.0001-cpu.json"


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
    assert sorted(f.name for f in checks.iterdir()) == ["synthetic-resnet56-cnn-smoke-e1-n_train40-cpu.json",
                                                       "synthetic-resnet56-cnn-smoke-e2-n_train40-cpu.json"]
    rec = json.loads((checks / "synthetic-resnet56-cnn-smoke-e2-n_train40-cpu.json").read_text())
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
    assert not (checks / "synthetic-mobilenet-cnn-smoke-e2-n_train40-cpu.json").exists()
    # a step may carry overrides of its own: they train the model, name its check and come back as the choice
    var = floors.probe_epochs("synthetic", "resnet56", [1, "1:weight_decay=0.003"], checks, profile="smoke",
                              floor=100.0, **kw)
    assert [(p["step"], p["overrides"]) for p in var["probes"]] == \
        [("cnn_epochs=1", {}), ("cnn_epochs=1 weight_decay=0.003", {"weight_decay": 0.003})]
    assert (var["chosen_epochs"], var["chosen_overrides"]) == (1, {"weight_decay": 0.003})
    assert var["chosen_params"] == "cnn_epochs=1 weight_decay=0.003"
    rec = json.loads((checks / "synthetic-resnet56-cnn-smoke-e1-n_train40-weight_decay0.003-cpu.json").read_text())
    assert rec["config"]["weight_decay"] == 0.003
    ws = Workspace("synthetic", "smoke", cnn_epochs=1, weight_decay=0.003, **kw)
    assert ws.store.record("models", ws.model_config("resnet56", "cnn"),
                           slug="synthetic-resnet56-cnn-s0")["exit_accuracy"] == rec["exit_accuracy"]


@pytest.mark.parametrize("step, parsed", [
    (45, (45, {})), ("60", (60, {})), (" 45 ", (45, {})),
    ("45:weight_decay=0.0005", (45, {"weight_decay": 5e-4})),
    ("30:weight_decay=5e-4,lr=0.2,lr_schedule=onecycle", (30, {"weight_decay": 5e-4, "lr": 0.2,
                                                               "lr_schedule": "onecycle"})),
    ((45, {"weight_decay": 5e-4}), (45, {"weight_decay": 5e-4})),
])
def test_parse_step(step, parsed):
    assert floors.parse_step(step) == parsed
    e, ov = parsed
    assert floors.parse_step(floors.step_params(e, ov).replace("cnn_epochs=", "", 1).replace(" ", ":", 1)
                             .replace(" ", ",")) == parsed  # step_params reads back as a step


@pytest.mark.parametrize("step, match", [
    ("forty", "'forty' is not a whole number"), ("45:", "nothing after ':'"), ("45:wd", "'wd' does not look like"),
    (0, "0 is not a whole number"), (True, "True is not a whole number"), (4.5, "4.5 is not a whole number"),
    ("45:cnn_epochs=60", "cnn_epochs is the step's number itself"), ("45:lr=", "'lr=' does not look like"),
])
def test_parse_step_names_the_bad_step(step, match):
    with pytest.raises(ValueError, match=f"probe step {re.escape(repr(step))}: .*{match}"):
        floors.parse_step(step)


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="synthetic"), "no floor for synthetic/resnet56"),
    (dict(epochs=[]), "epochs must be a non-empty list"),
    (dict(epochs=45), "epochs must be a non-empty list"),
    (dict(epochs=[30, 0]), "probe step 0: 0 is not a whole number of epochs >= 1"),
    (dict(epochs=["45:weight_decay=-1"]), "weight_decay must be None .* got -1"),
    (dict(epochs=["45:batch=5"]), "unknown profile field"),
    (dict(epochs=["45:n_train=10"], n_train=20), "sets n_train, which the run's overrides set too"),
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


def _zoo(rows):
    """A model-zoo ``models`` table: (arch, kind, final accuracy, deployed accuracy, tau, macs ratio, n)."""
    import pandas as pd

    return pd.DataFrame([{"dataset": "cifar10-jpeg", "arch": a, "kind": k, "exit_accuracy": [0.1, f],
                          "n_eval": n, "early_exit_accuracy": d, "tau": t, "macs_ratio": m, "epochs": 45}
                         for a, k, f, d, t, m, n in rows])


def test_side_by_side_pairs_models_with_intervals():
    fast = _zoo([("vgg16", "cnn", 0.90, 0.90, math.nan, 1.0, 5000), ("vgg16", "sdn", 0.88, 0.87, 0.9, 0.6, 5000),
                 ("resnet56", "cnn", 0.91, 0.91, math.nan, 1.0, 5000)])
    paper = _zoo([("resnet56", "cnn", 0.93, 0.93, math.nan, 1.0, 5000), ("vgg16", "cnn", 0.92, 0.92, math.nan, 1.0, 5000),
                  ("mobilenet", "cnn", 0.89, 0.89, math.nan, 1.0, 5000)])
    t = floors.side_by_side({"fast": fast, "paper": paper})
    # the first run's order, then the models only the second holds
    assert [(r.arch, r.kind) for r in t.itertuples()] == [("vgg16", "cnn"), ("vgg16", "sdn"), ("resnet56", "cnn"),
                                                          ("mobilenet", "cnn")]
    vgg = t.iloc[0]
    assert (vgg["final_fast"], vgg["final_paper"]) == pytest.approx((90.0, 92.0))
    assert (vgg["final_fast_lo"], vgg["final_fast_hi"]) == pytest.approx(metrics.wilson_interval(4500, 5000))
    d, lo, hi = metrics.newcombe_interval(4500, 5000, 4600, 5000)
    assert tuple(vgg[["final_difference", "final_difference_lo", "final_difference_hi"]]) == pytest.approx((d, lo, hi))
    assert lo < -2.0 < hi < 0  # 2 points over 5,000 images each: the interval excludes 0
    sdn = t.iloc[1]  # only the fast run has it: its cells are there, the paper's empty
    assert sdn["deployed_fast"] == pytest.approx(87.0) and sdn["tau_fast"] == 0.9 and sdn["macs_ratio_fast"] == 0.6
    assert math.isnan(sdn["final_paper"]) and math.isnan(sdn["final_difference"]) and math.isnan(sdn["n_paper"])
    assert math.isnan(t.iloc[3]["final_fast"]) and t.iloc[3]["final_paper"] == pytest.approx(89.0)


def test_side_by_side_rejects_bad_input():
    fast = _zoo([("vgg16", "cnn", 0.9, 0.9, math.nan, 1.0, 100)])
    with pytest.raises(ValueError, match="exactly two runs; got 1"):
        floors.side_by_side({"fast": fast})
    with pytest.raises(ValueError, match=r"run 'paper': not a model-zoo table, columns \['tau'\] missing"):
        floors.side_by_side({"fast": fast, "paper": fast.drop(columns=["tau"])})


def test_beside_paper_draws_the_table_once_both_runs_exist(tmp_path):
    from dynn_lib.experiments import runner

    fast = _zoo([("vgg16", "cnn", 0.90, 0.90, math.nan, 1.0, 5000), ("vgg16", "sdn", 0.88, 0.87, 0.9, 0.6, 5000)])
    runner.write_results(runner.results_path(tmp_path, "fast", "cifar10-jpeg", "zoo"), {"models": fast},
                         {"git_commit": "aaaabbbbcccc1111"})
    note = floors.beside_paper(tmp_path, "cifar10-jpeg", "Table M.2")
    assert "Table M.2 is drawn once" in note.text and "none of paper" in note.text
    assert "<code>dynn run zoo --dataset cifar10-jpeg --profile paper</code>" in note.markup
    paper = fast.assign(exit_accuracy=[[0.1, 0.93], [0.1, 0.91]], epochs=100)
    runner.write_results(runner.results_path(tmp_path, "paper", "cifar10-jpeg", "zoo"), {"models": paper},
                         {"git_commit": "ddddeeeeffff2222"})
    t = floors.beside_paper(tmp_path, "cifar10-jpeg", "Table M.2")
    assert t.text.startswith("Table M.2. The same models trained with the fast schedule and the paper recipe")
    assert ("fast: epochs cnn 45, sdn 45, commit aaaabbbbcccc; "
            "paper: epochs cnn 100, sdn 100, commit ddddeeeeffff") in t.text
    assert "images fast: 5,000" in t.text and "deployed" not in "".join(t.data.columns)
    assert list(t.data["final_difference"]) == ["-3.0 [-4.1, -1.9]", "-3.0 [-4.2, -1.8]"]


def test_comparisons_pair_checks_that_differ_in_one_setting():
    """Pairs: same network, dataset and device type, one config field apart (the checkpoint cadence
    is no field), ordered by the field's value, with Newcombe's interval of the difference."""
    recs = [_record("resnet56", "cnn", 0.87, epochs=60, weight_decay=1e-4),
            _record("resnet56", "cnn", 0.85, weight_decay=1e-4, checkpoint_every=7),
            _record("resnet56", "cnn", 0.90),                       # weight decay 5e-4, 45 epochs
            _record("resnet56", "cnn", 0.50, epochs=60, lr=0.1),    # two fields from every other one
            {**_record("resnet56", "cnn", 0.99, weight_decay=1e-4), "device": "cuda:0"},  # another device type
            _record("vgg16", "cnn", 0.91, weight_decay=1e-4),       # another network
            _record("resnet56", "sdn", 0.80)]                       # a DyNN: not a check
    t = floors.comparisons(recs)
    assert list(zip(t["field"], t["before"], t["after"])) == [("epochs", 45, 60), ("weight_decay", 1e-4, 5e-4)]
    # "at": the other fields that vary among this network's checks on this device type (lr: the fourth)
    assert list(t["at"]) == [{"lr": 0.4, "weight_decay": 1e-4}, {"epochs": 45, "lr": 0.4}]
    assert list(t["difference"]) == pytest.approx([2.0, 5.0])
    d, lo, hi = metrics.newcombe_interval(4350, 5000, 4250, 5000)
    assert (t["difference_lo"][0], t["difference_hi"][0]) == pytest.approx((lo, hi))
    assert list(t["verdict"]) == ["higher", "higher"]
    # the same 2 points over 500 images each are not a decided gain; a loss reads "lower"
    small = floors.comparisons([_record("vgg16", "cnn", 0.85, n_eval=500), _record("vgg16", "cnn", 0.87, 500, epochs=60)])
    assert list(small["verdict"]) == ["inconclusive"] and small["difference_lo"][0] < 0 < small["difference_hi"][0]
    worse = floors.comparisons([_record("vgg16", "cnn", 0.95), _record("vgg16", "cnn", 0.80, epochs=60)])
    assert list(worse["verdict"]) == ["lower"]
    assert floors.comparisons([]).empty


def test_checks_summary_is_generated_from_the_records():
    recs = [_record("resnet56", "cnn", 0.85, weight_decay=1e-4), _record("resnet56", "cnn", 0.90),
            _record("mobilenet", "cnn", 0.80, epochs=20)]
    text = floors.checks_summary(recs)
    assert "ResNet-56 on a CPU (CIFAR-10 (JPEG), epochs 45): weight decay 0.0001 → 0.0005: 85.0 → 90.0 %, +5.0 points" in text
    assert "**higher**" in text and "5,000 each" in text
    # today's recipe: ResNet-56's second check; MobileNet's is of another schedule, VGG-16 has none
    assert ("On CIFAR-10 (JPEG), ResNet-56 above the floor on a CPU (90.0 % [89.1, 90.8], floor 88), "
            "VGG-16 has no check, MobileNet has no check.") in text
    assert "1 of the 3 networks with a floor has a check of today's recipe above it" in text
    # a variant above the floor is named beside today's recipe
    longer = floors.checks_summary(recs + [_record("mobilenet", "cnn", 0.90, epochs=60)])
    assert "MobileNet has no check (above the floor with epochs 60 (fast: 45) on a CPU)." in longer
    every = recs + [_record("vgg16", "cnn", 0.92), _record("mobilenet", "cnn", 0.88)]
    assert "So all 3 networks with a floor have a check of today's recipe above it." in floors.checks_summary(every)
    assert "What one change did" not in floors.checks_summary([_record("vgg16", "cnn", 0.92)])
    assert floors.checks_summary([]).startswith("No schedule check")


def test_committed_checks_say_what_the_methods_page_and_profiles_say():
    """The prose of the methods page and of dynn_lib.profiles (which state no number) rests on the
    committed schedule checks: ResNet-56 at 1e-4 below the floor at 30 epochs and inconclusive at
    45; 5e-4 higher than 15 more epochs at 1e-4, neither change decided; at 5e-4 inconclusive at 45
    and above the floor at 60, 45 -> 60 not decided; MobileNet and VGG-16 above theirs at 45."""
    from dynn_lib.book import repo_root

    recs = floors.schedule_records(repo_root() / floors.SCHEDULE_CHECKS_DIR)
    rows = floors.floor_rows(recs).set_index(["arch", "epochs", "weight_decay"])["verdict"]
    assert rows[("resnet56", 30, 1e-4)] == "below the floor"
    assert rows[("resnet56", 45, 1e-4)] == "inconclusive"
    assert rows[("resnet56", 45, 5e-4)] == "inconclusive"
    assert rows[("mobilenet", 45, 5e-4)] == "above the floor"
    pairs = floors.comparisons(recs)
    wd = pairs[(pairs["arch"] == "resnet56") & (pairs["field"] == "weight_decay")].iloc[0]
    ep = pairs[(pairs["arch"] == "resnet56") & (pairs["field"] == "epochs") & (pairs["before"] == 30)].iloc[0]
    assert (wd["before"], wd["after"], wd["at"]["epochs"], ep["after"], ep["at"]["weight_decay"]) == (1e-4, 5e-4, 45, 45, 1e-4)
    assert wd["difference"] > ep["difference"] > 0
    assert wd["verdict"] == ep["verdict"] == "inconclusive"
    assert rows[("resnet56", 60, 5e-4)] == "above the floor"
    ep60 = pairs[(pairs["arch"] == "resnet56") & (pairs["field"] == "epochs") & (pairs["before"] == 45)].iloc[0]
    assert (ep60["after"], ep60["at"]["weight_decay"], ep60["verdict"]) == (60, 5e-4, "inconclusive")
    # dynn_lib.profiles: "at 45 epochs MobileNet cleared its 85 % floor and VGG-16 its 88 %, so
    # ResNet-56 alone is undecided there"
    assert rows[("vgg16", 45, 5e-4)] == "above the floor"
