"""Artefact store: keys, atomic writes, provenance, corrupt artefacts."""
import json

import pandas as pd
import pytest
import torch

from dynn_lib.store import CorruptArtefactError, Store, config_key, load_checkpoint


def test_keys_are_stable_and_config_sensitive():
    a = {"arch": "vgg16", "eps": 8 / 255, "sizes": (1, 2)}
    assert config_key(a) == config_key(dict(reversed(list(a.items()))))
    assert config_key(a) != config_key({**a, "eps": 4 / 255})
    assert config_key(a, "x").startswith("x-")


def test_table_roundtrip_record_and_reuse(tmp_path):
    st = Store(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}), {"note": "hi"}

    cfg = {"q": 1}
    df = st.cached_table("results", cfg, compute)
    df2 = st.cached_table("results", cfg, compute)
    assert len(calls) == 1 and df.equals(df2)
    rec = st.record("results", cfg)
    for field in ("config", "git_commit", "torch", "device", "wall_time_s", "created"):
        assert field in rec
    import numpy
    import torchvision

    assert rec["packages"]["numpy"] == numpy.__version__ and rec["packages"]["pandas"] == pd.__version__
    assert rec["packages"]["torchvision"].split("+")[0] == torchvision.__version__.split("+")[0]
    assert rec["config"] == {"q": 1} and rec["note"] == "hi"
    st.cached_table("results", cfg, compute, recompute=True)
    assert len(calls) == 2


def test_git_commit_of_a_copy_without_git_is_the_declared_one(tmp_path, monkeypatch):
    """A checkout gives its sha; files sent to a GPU machine carry no .git, and then the commit
    the caller declares in DYNN_GIT_COMMIT is recorded, marked as declared, or else 'unknown'."""
    import re
    import subprocess

    from dynn_lib import store

    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", store.git_commit())
    monkeypatch.setattr(store.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "no git"))
    monkeypatch.delenv("DYNN_GIT_COMMIT", raising=False)
    assert store.git_commit() == "unknown"
    monkeypatch.setenv("DYNN_GIT_COMMIT", "e55b243")
    assert store.git_commit() == "e55b243 (declared)"


def test_model_roundtrip_and_corrupt_checkpoint(tmp_path):
    st = Store(tmp_path)
    sd = {"w": torch.arange(6.0).view(2, 3)}
    st.save_model("models", {"m": 1}, sd, {"acc": 0.5})
    assert torch.equal(st.load_model("models", {"m": 1})["w"], sd["w"])
    path = st.dir("models", {"m": 1}) / "model.pt"
    path.write_bytes(path.read_bytes()[:40])  # truncate
    with pytest.raises(CorruptArtefactError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "cannot load checkpoint" in str(e.value)


def test_incomplete_artefact_is_not_present(tmp_path):
    st = Store(tmp_path)
    st.save_table("t", {"k": 1}, pd.DataFrame({"a": [1]}))
    (st.dir("t", {"k": 1}) / "record.json").unlink()
    assert not st.has("t", {"k": 1})


def test_corrupt_table_reported(tmp_path):
    st = Store(tmp_path)
    st.save_table("t", {"k": 1}, pd.DataFrame({"a": [1]}))
    (st.dir("t", {"k": 1}) / "table.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorruptArtefactError, match="unreadable table"):
        st.load_table("t", {"k": 1})
    json.loads((st.dir("t", {"k": 1}) / "record.json").read_text())


@pytest.mark.parametrize("neutral", [dict(checkpoint_every=1, checkpoint_minutes=None), dict(cuda_graph=False)])
def test_how_a_training_runs_is_in_no_key(tmp_path, neutral):
    """When a training saves its resumable state, and whether its CUDA step is graphed, never
    change what it computes, so they change no artefact key: a model, a surrogate, an attack table
    and a published result are reused."""
    from dynn_lib import blackbox
    from dynn_lib.experiments import common
    from dynn_lib.experiments.runner import make_config, publish_config
    from dynn_lib.zoo import Workspace

    a = Workspace("synthetic", "smoke", store=tmp_path, device="cpu")
    b = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", **neutral)
    assert a.model_config("vgg16", "cnn") != b.model_config("vgg16", "cnn")  # the trainer still sees them
    for arch, kind in (("vgg16", "cnn"), ("vgg16", "ic_only"), ("mobilenet", "sdn")):
        assert a.model_dir(arch, kind) == b.model_dir(arch, kind)
    pair = blackbox.PAIRS[0]
    assert blackbox.surrogate_config(a, pair) != blackbox.surrogate_config(b, pair)
    cfg = make_config("rq1", {})
    assert a.store.dir("transfer", *common.transfer_key(a, pair, "fgsm", 8 / 255, cfg, None, n=8)) == \
        b.store.dir("transfer", *common.transfer_key(b, pair, "fgsm", 8 / 255, cfg, None, n=8))
    assert config_key(publish_config("rq1", a)) == config_key(publish_config("rq1", b))
    c = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", amp=False)  # numerics do change the key
    assert a.model_dir("vgg16", "cnn") != c.model_dir("vgg16", "cnn")
