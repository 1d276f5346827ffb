"""Stale results are never reused silently; every record states its numeric flags and code."""

import pandas as pd
import pytest
import torch

from dynn_lib import numerics, store, versions
from dynn_lib.experiments import runner
from dynn_lib.zoo import Workspace


def test_code_version_ignores_docstrings_but_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    f = pkg / "m.py"
    monkeypatch.setattr(versions, "_ROOT", tmp_path)
    monkeypatch.setattr(versions, "GROUPS", {"g": ("pkg",)})

    def version(text):
        f.write_text(text)
        versions.code_version.cache_clear()
        return versions.code_version("g")

    base = version('"""doc"""\ndef f(x):\n    """what f does"""\n    return x + 1\n')
    assert version('"""other doc"""\ndef f(x):\n    # a comment\n    """changed prose"""\n    return x + 1\n') == base
    assert version('"""doc"""\ndef f(x):\n    return x + 2\n') != base
    versions.code_version.cache_clear()
    with pytest.raises(ValueError, match="accepted"):
        versions.code_version("nope")


def test_code_version_text_is_the_same_on_every_python():
    """A GPU machine's Python (3.12) and the book's (3.11) must fingerprint the same code alike:
    ``ast.dump`` does not (3.12 adds ``type_params=[]``, 3.12.1 empty strings in f-string format
    specs, 3.13 drops empty fields), so the fingerprint is taken from this fixed text."""
    import ast

    src = 'def f(x: int = 1):\n    return f"{x:>{w}}!"\n'
    assert versions.canonical_dump(ast.parse(src)) == (
        "Module(body=[FunctionDef(name='f', args=arguments(args=[arg(arg='x', annotation=Name(id='int', "
        "ctx=Load()))], defaults=[Constant(value=1)]), body=[Return(value=JoinedStr(values=[FormattedValue("
        "value=Name(id='x', ctx=Load()), conversion=-1, format_spec=JoinedStr(values=[Constant(value='>'), "
        "FormattedValue(value=Name(id='w', ctx=Load()), conversion=-1)])), Constant(value='!')]))])])")
    # a format spec as 3.12.1 parses it (an empty literal part) dumps as the one above
    spec = ast.JoinedStr(values=[ast.Constant(value=">"), ast.FormattedValue(
        value=ast.Name(id="w", ctx=ast.Load()), conversion=-1), ast.Constant(value="")])
    assert versions.canonical_dump(spec) == ("JoinedStr(values=[Constant(value='>'), FormattedValue(value="
                                             "Name(id='w', ctx=Load()), conversion=-1)])")


def test_store_keys_and_records_carry_the_code_version(tmp_path, monkeypatch):
    st = store.Store(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [len(calls)]}), {}

    st.cached_table("transfer", {"q": 1}, compute)
    rec = st.record("transfer", {"q": 1})
    assert rec["code_version"] == versions.code_version("tables")
    assert rec["numerics"]["cudnn_allow_tf32"] in (True, False) and "float32_matmul_precision" in rec["numerics"]
    st.cached_table("transfer", {"q": 1}, compute)
    assert len(calls) == 1  # same code: reused
    monkeypatch.setattr(store, "code_version", lambda group: "changedcode0")
    df = st.cached_table("transfer", {"q": 1}, compute)
    assert len(calls) == 2 and int(df["a"].iloc[0]) == 2  # the code changed: computed again, not reused


def test_publish_recomputes_results_from_older_code(tmp_path, monkeypatch):
    ws = Workspace("synthetic", "smoke", store=tmp_path / "st", device="cpu")
    calls = []

    def run_question(question, w, conf=None):
        calls.append(question)
        return {"t": pd.DataFrame({"x": [1]})}

    monkeypatch.setattr(runner, "run_question", run_question)
    runner.publish("rq2", ws, tmp_path / "res")
    runner.publish("rq2", ws, tmp_path / "res")
    assert calls == ["rq2"]
    rec = runner.load_record(tmp_path / "res", "smoke", "synthetic", "rq2")
    assert rec["code_version"] == versions.code_version("results") and versions.is_current(rec)
    monkeypatch.setattr(runner, "is_current", lambda record: False)
    runner.publish("rq2", ws, tmp_path / "res")
    assert calls == ["rq2", "rq2"]


def test_publish_without_compute_only_renders(tmp_path, monkeypatch):
    """compute=False (dynn reproduce --no-experiments): a result from other code is shown (results
    from a GPU slot render on a CPU), a missing one or one of another config is an error naming
    the folder and the field, and nothing is ever computed."""
    ws = Workspace("synthetic", "smoke", store=tmp_path / "st", device="cpu")
    res = tmp_path / "res"
    calls = []

    def run_question(question, w, conf=None):
        calls.append(question)
        return {"t": pd.DataFrame({"x": [len(calls)]})}

    monkeypatch.setattr(runner, "run_question", run_question)
    with pytest.raises(runner.NotPublishedError, match=r"no published rq2 result.*res/smoke/synthetic/rq2 \(no record"
                       ) as e:
        runner.publish("rq2", ws, res, compute=False)
    assert calls == [] and isinstance(e.value, FileNotFoundError)  # what callers caught before it had a name
    assert (e.value.question, e.value.path, e.value.command) == (
        "rq2", str(res / "smoke" / "synthetic" / "rq2"), "dynn run rq2 --dataset synthetic --profile smoke")
    runner.publish("rq2", ws, res)
    assert calls == ["rq2"]
    monkeypatch.setattr(runner, "is_current", lambda record: False)  # made by other code
    assert int(runner.publish("rq2", ws, res, compute=False)["t"]["x"].iloc[0]) == 1
    assert calls == ["rq2"]
    with pytest.raises(FileNotFoundError, match=r"config differs in experiment\.n_images \(.*published, 7 asked\)"):
        runner.publish("rq2", ws, res, {"n_images": 7}, compute=False)
    with pytest.raises(ValueError, match="choose one"):
        runner.publish("rq2", ws, res, force=True, compute=False)
    with pytest.raises(TypeError, match="compute and force must be True or False"):
        runner.publish("rq2", ws, res, compute="no")
    assert calls == ["rq2"]


def test_numeric_flags_are_set_explicitly_and_recorded():
    s = numerics.configure(tf32=True)
    assert s["cudnn_allow_tf32"] and s["cuda_matmul_allow_tf32"] and s["float32_matmul_precision"] == "high"
    Workspace("synthetic", "smoke")  # the library's default: fp32 without TF32
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert store.provenance()["numerics"] == numerics.state()
    assert "cpu (" not in store.device_name("cpu") and "cores" in store.device_name("cpu")
    with pytest.raises(ValueError, match="tf32 must be True or False"):
        numerics.configure(tf32="yes")
    with pytest.raises(ValueError, match="inference_channels_last must be True or False"):
        numerics.configure(inference_channels_last="auto")


def test_fired_bucket_flag_resolves_per_device_and_rejects_bad_values():
    assert numerics.state()["fired_bucket"] == "auto"  # the default, recorded as set
    assert numerics.fired_bucket("cpu") == 1 and numerics.fired_bucket(torch.device("cuda")) == numerics.FIRED_BUCKET_CUDA
    s = numerics.configure(fired_bucket=16)
    assert s["fired_bucket"] == 16 and numerics.fired_bucket("cpu") == 16 and numerics.fired_bucket("cuda") == 16
    assert store.provenance()["numerics"]["fired_bucket"] == 16
    for bad in (0, -64, True, 1.5, "64", None):
        with pytest.raises(ValueError, match=f"fired_bucket must be 'auto' or an integer >= 1 \\(rows\\), got {bad!r}"):
            numerics.configure(fired_bucket=bad)
    assert numerics.state()["fired_bucket"] == 16  # a rejected value changes nothing
    # the profile field sets it for a workspace (and every record written after), and is checked
    Workspace("synthetic", "smoke", fired_bucket=8)
    assert numerics.state()["fired_bucket"] == 8 and store.provenance()["numerics"]["fired_bucket"] == 8
    Workspace("synthetic", "smoke")
    assert numerics.state()["fired_bucket"] == "auto"
    with pytest.raises(ValueError, match="profile field fired_bucket must be 'auto' or an integer >= 1"):
        Workspace("synthetic", "smoke", fired_bucket="none")


def test_numeric_flags_block_changes_only_what_it_names_and_restores_all():
    before = numerics.configure(cudnn_benchmark=True, inference_channels_last=True, fired_bucket=8)
    with pytest.raises(RuntimeError, match="inside"):
        with numerics.flags(tf32=True) as inside:
            assert inside["cudnn_allow_tf32"] and inside["cudnn_benchmark"] and inside["inference_channels_last"]
            raise RuntimeError("inside")
    assert numerics.state() == before
    with pytest.raises(ValueError, match=r"unknown numeric flag\(s\) \['tf33'\]; accepted: "):
        with numerics.flags(tf33=True):
            pass
    assert numerics.configure(**numerics.settings()) == before


@pytest.mark.parametrize("machine,bf16,expected", [("x86_64", False, True), ("AMD64", False, True),
                                                   ("aarch64", False, False), ("aarch64", True, True)])
def test_inference_format_auto_follows_the_measured_cpus(monkeypatch, machine, bf16, expected):
    from dynn_lib import train

    monkeypatch.setattr(train.platform, "machine", lambda: machine)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: bf16)
    assert numerics.inference_channels_last("auto", "cpu") is expected
    assert numerics.inference_channels_last("auto", torch.device("cuda")) is False  # not measured on CUDA
    assert numerics.inference_channels_last(True, "cuda") is True
    assert numerics.inference_channels_last(False, "cpu") is False
    with pytest.raises(ValueError, match="channels_last must be 'auto', True or False; got 'on'"):
        numerics.inference_channels_last("on", "cpu")


@pytest.mark.parametrize("channels_last", [False, True])
def test_workspace_hands_out_models_in_the_recorded_inference_format(tmp_path, channels_last):
    from dynn_lib import zoo
    from dynn_lib.train import build_model

    ws = Workspace("synthetic", "smoke", store=tmp_path, channels_last=channels_last)
    assert numerics.state()["inference_channels_last"] is channels_last
    cfg = ws.model_config("mobilenet", "sdn")
    st = build_model(cfg).state_dict()
    ws.store.save_model("models", cfg, st, {}, slug=zoo._slug(cfg))
    model = ws.trained(cfg, lambda: pytest.fail("a stored model must not be retrained"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs)
    assert ws.store.record("models", cfg, slug=zoo._slug(cfg))["numerics"]["inference_channels_last"] is channels_last
    # the layout changes no weight: the same digest either way
    assert store.weights_digest(model.state_dict()) == store.weights_digest(st)


def test_a_page_says_when_a_result_predates_the_code():
    from dynn_lib import claims

    rec = {"config": {"dataset": "synthetic", "profile": {"name": "paper"}}, "code_version": "0123456789ab"}
    assert "predates the library code" in claims.data_note(rec).text
    rec["code_version"] = versions.code_version("results")
    assert "predates" not in claims.data_note(rec).text
    assert "names no code version" in claims.data_note({"config": {"dataset": "synthetic"}}).text


def test_a_page_names_every_field_that_differs_from_its_profile():
    """A result of profile P made with overrides (a GPU run's probe choosing cnn_epochs=60, a
    reader's -p n_eval 1000) says so in its data note, field by field against P's definition."""
    import json
    from dataclasses import asdict

    from dynn_lib import claims, profiles

    recorded = store.canonical(asdict(profiles.get_profile("fast", cnn_epochs=60, n_eval=1000,
                                                           tau={"vgg16": 0.9}, checkpoint_minutes=1.0)))
    recorded = json.loads(json.dumps(recorded))  # as read back from record.json: tuples are lists
    assert profiles.changed_fields(recorded) == [("cnn_epochs", 60, 45), ("n_eval", 1000, None),
                                                 ("tau", {"vgg16": 0.9}, None)]  # the cadence changes nothing
    note = claims.data_note({"config": {"dataset": "synthetic", "profile": recorded}}).text
    assert "profile: fast, changed: cnn_epochs 60 (fast: 45); n_eval 1000 (fast: all); " \
           "tau {'vgg16': 0.9} (fast: calibrated)" in note
    plain = json.loads(json.dumps(store.canonical(asdict(profiles.get_profile("paper")))))
    assert profiles.changed_fields(plain) == [] and "profile: paper\n" in claims.data_note(
        {"config": {"dataset": "synthetic", "profile": plain}}).text
    # a Profile object, and a name no profile has
    assert profiles.describe_changes(profiles.get_profile("smoke", lr=0.1)) == "lr 0.1 (smoke: 0.02)"
    assert profiles.changed_fields({"name": "custom", "lr": 1.0}) == []


def test_weights_digest_names_the_weights_not_the_file():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sd = net.state_dict()
    digest = store.weights_digest(sd)
    assert len(digest) == 64
    # the same weights in another memory layout, or copied, give the same digest
    assert store.weights_digest(net.to(memory_format=torch.channels_last).state_dict()) == digest
    assert store.weights_digest({k: v.clone() for k, v in reversed(list(sd.items()))}) == digest
    bumped = {k: v.clone() for k, v in sd.items()}
    bumped["0.weight"].view(-1)[5] = torch.nextafter(bumped["0.weight"].view(-1)[5], torch.tensor(1.0))
    assert store.weights_digest(bumped) != digest  # one bit of one weight
    assert store.weights_digest({**sd, "0.weight": sd["0.weight"].double()}) != digest  # the dtype counts


def test_results_name_their_models_and_a_merged_folder_says_so(tmp_path, monkeypatch):
    """Every published record lists the weights behind it; two questions published from two trainings
    of one model (a folder merged from two GPU slots) are found and the data note says so."""
    from dynn_lib import claims

    ws = Workspace("synthetic", "smoke", store=tmp_path / "st", device="cpu", n_train=40, n_eval=20, n_query=20)
    ws.model("resnet56", "cnn")
    monkeypatch.setattr(runner, "run_question", lambda q, w, conf=None: {"t": pd.DataFrame({"x": [1]})})
    res = tmp_path / "res"
    runner.publish("zoo", ws, res)
    runner.publish("rq2", ws, res)
    zoo = runner.load_record(res, "smoke", "synthetic", "zoo")
    (key, ident), = zoo["models"].items()  # the one stored model of this workspace
    assert key == ws.model_dir("resnet56", "cnn").name
    assert ident == ws.model_record("resnet56", "cnn")["weights_sha256"] == store.weights_digest(
        ws.model("resnet56", "cnn").state_dict())
    assert runner.model_conflicts(res, "smoke", "synthetic").empty
    assert "different trainings" not in claims.data_note(zoo, results_dir=res)._repr_html_()

    # the model trained anew (another slot's store) before RQ2 is published again
    retrained = runner.load_record(res, "smoke", "synthetic", "rq2")
    retrained["models"][key] = "f" * 64
    runner.write_results(runner.results_path(res, "smoke", "synthetic", "rq2"), {}, retrained)
    c = runner.model_conflicts(res, "smoke", "synthetic")
    assert c.to_dict("records") == [{"model": key, "question": "zoo", "weights": ident[:12]},
                                    {"model": key, "question": "rq2", "weights": "f" * 12}]
    note = claims.data_note(zoo, results_dir=res)
    assert "different trainings" in repr(note) and f"weights {'f' * 12} in rq2" in repr(note)
    assert "<code>" not in repr(note) and "<code>dynn reproduce</code>" in note._repr_html_()
    assert "different trainings" in repr(claims.data_note(zoo, results_dir=res, details=False))
    assert "different trainings" not in repr(claims.data_note(zoo))  # no folder given: nothing to compare
    # a question that shares no differing model is not warned
    other = {**retrained, "config": {**retrained["config"], "question": "rq3"}, "models": {}}
    runner.write_results(runner.results_path(res, "smoke", "synthetic", "rq3"), {}, other)
    assert "different trainings" not in repr(claims.data_note(other, results_dir=res))
