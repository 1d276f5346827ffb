"""The ``dynn`` command: clear errors before any work, and a real (tiny) run."""
import json
from pathlib import Path

import pytest

from dynn_lib.cli import build_parser, main


@pytest.mark.parametrize("argv, needle", [
    (["train", "--dataset", "mnist", "--arch", "vgg16", "--kind", "cnn"], "unknown dataset 'mnist'"),
    (["train", "--dataset", "synthetic", "--arch", "vgg19", "--kind", "cnn"], "unknown architecture 'vgg19'"),
    (["train", "--dataset", "synthetic", "--arch", "vgg16", "--kind", "big"], "unknown model kind 'big'"),
    (["train", "--dataset", "synthetic", "--arch", "vgg16", "--kind", "cnn", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "rq1", "--dataset", "synthetic", "-o", "epsilon=0.1"], "unknown parameter(s) ['epsilon']"),
    (["run", "rq1", "--dataset", "synthetic", "-o", "eps=[-0.1]"], "eps"),
    (["run", "rq4", "--dataset", "synthetic", "-o", "alphas=[-1]"], "alpha"),
    (["train", "--dataset", "cifar10-jpeg", "--arch", "vgg16", "--kind", "cnn", "--data-dir", "/nonexistent"],
     "/nonexistent"),
    (["train", "--dataset", "synthetic", "--arch", "vgg16", "--kind", "cnn", "--device", "cuda:7"], "CUDA"),
])
def test_bad_input_fails_fast_with_a_clear_message(argv, needle, capsys, tmp_path):
    rc = main(argv + ["--store", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err, err
    assert not (tmp_path / "models").exists()  # nothing was trained


def test_data_check_on_generated_data(capsys):
    assert main(["data", "check", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "test" in out


def test_train_then_reuse(tmp_path, capsys):
    argv = ["train", "--dataset", "synthetic", "--arch", "resnet56", "--kind", "cnn", "--store", str(tmp_path),
            "--device", "cpu", "-o", "n_train=32", "-o", "n_eval=16", "-o", "n_query=16", "-o", "batch_size=16"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "exit accuracies" in first and "16 evaluation images" in first
    assert main(argv) == 0
    assert capsys.readouterr().out.split(";")[0] == first.split(";")[0]


def test_reproduce_rejects_unknown_parameter_before_any_work(tmp_path, capsys):
    rc = main(["reproduce", "--datasets", "synthetic", "--results", str(tmp_path / "r"), "--store", str(tmp_path / "s"),
               "-p", "epsilon", "0.1"])
    assert rc == 2 and "unknown parameter(s) ['epsilon']" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_reproduce_seeds_publish_each_seed_into_its_own_folder(tmp_path, monkeypatch):
    from dynn_lib import reproduce as R

    calls = []
    monkeypatch.setattr(R, "publish", lambda q, ws, out, conf: calls.append((q, ws.dataset, ws.seed, Path(out))))
    R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res", tmp_path / "st", seeds=[3, 5], build=False,
                execute=False)
    res = (tmp_path / "res").resolve()
    assert [(q, s, d) for q, _, s, d in calls] == (
        [(q, 3, res) for q in R.PRIMARY_QUESTIONS] + [(q, 5, res / "seed-5") for q in R.PRIMARY_QUESTIONS])
    rec = json.loads((res / "smoke" / "reproduce.json").read_text())
    assert rec["seeds"] == [3, 5] and "synthetic/rq1 seed 5" in rec["seconds"]
    for bad in ([], [1, 1], [-1]):
        with pytest.raises(ValueError, match="seeds"):
            R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res", seeds=bad, build=False, execute=False)
    args = build_parser().parse_args(["reproduce", "--seeds", "0", "1", "2"])
    assert args.seeds == [0, 1, 2]


def test_reproduce_without_experiments_runs_the_pages_with_compute_off(tmp_path, monkeypatch):
    """--no-experiments: no question is published here and every page gets compute=False (it
    renders the results folder, e.g. a GPU slot's, and never recomputes); otherwise compute=True."""
    pytest.importorskip("yaml")  # the book extra: the pages are listed from _toc.yml
    from dynn_lib import book
    from dynn_lib import reproduce as R

    published, seen = [], []
    monkeypatch.setattr(R, "publish", lambda *a, **k: published.append(a[0]))
    monkeypatch.setattr(book, "execute_all", lambda root, params, **kw: seen.append(dict(params)))
    R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res", tmp_path / "st", build=False, experiments=False)
    assert published == [] and seen[-1]["compute"] is False
    R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res", tmp_path / "st", build=False)
    assert published == list(R.PRIMARY_QUESTIONS) and seen[-1]["compute"] is True
    args = build_parser().parse_args(["reproduce", "--no-experiments"])
    assert args.no_experiments and not args.allow_missing
    # --allow-missing reaches the pages' executor, and only with --no-experiments
    flags = []
    monkeypatch.setattr(book, "execute_all", lambda root, params, **kw: flags.append(kw["allow_missing"]))
    R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res", tmp_path / "st", build=False, experiments=False,
                allow_missing=True)
    assert flags == [True] and build_parser().parse_args(["reproduce", "--no-experiments", "--allow-missing"]).allow_missing
    with pytest.raises(ValueError, match=r"allow_missing \(--allow-missing\) needs experiments=False"):
        R.reproduce("smoke", ["synthetic"], "cpu", tmp_path / "res2", tmp_path / "st2", build=False, allow_missing=True)
    assert not (tmp_path / "res2").exists() and published == list(R.PRIMARY_QUESTIONS)  # before any work


def test_an_inherited_ignored_sigint_is_restored():
    """A `dynn` started as a script's background job inherits an ignored SIGINT; the command
    turns it back into KeyboardInterrupt (gpu_run.sh stops stages with SIGINT)."""
    import signal
    import subprocess
    import sys
    code = ("import signal; from dynn_lib.cli import restore_sigint; "
            "before = signal.getsignal(signal.SIGINT) is signal.SIG_IGN; restore_sigint(); "
            "print(before, signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


@pytest.mark.parametrize("archs, says", [(["mobilenet"], "at which mobilenet clears its floor)"),
                                         (["resnet56", "vgg16"], "at which resnet56, vgg16 clear their floors)")])
def test_schedule_probe_summary_names_the_networks_that_passed(archs, says, tmp_path, monkeypatch, capsys):
    from dynn_lib import floors

    probe = {"arch": archs[0], "epochs": 45, "overrides": {}, "accuracy": 87.3, "accuracy_lo": 86.3,
             "accuracy_hi": 88.2, "n": 5000, "floor": 85.0, "verdict": "above the floor", "file": "x.json"}
    result = {"dataset": "synthetic", "archs": archs, "probes": [probe], "chosen_epochs": 45, "chosen_overrides": {},
              "chosen_params": "cnn_epochs=45", "passed": True}
    monkeypatch.setattr(floors, "probe_epochs", lambda *a, **k: result)
    choice = tmp_path / "choice.json"
    assert main(["schedule-probe", "--dataset", "synthetic", "--epochs", "45", "--out", str(tmp_path),
                 "--choice", str(choice), "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"schedule probe: cnn_epochs=45 (the first step tried {says}" in out, out
    assert json.loads(choice.read_text())["chosen_epochs"] == 45
