"""Training recipes: determinism, resume, IC-only freezing, SDN weights, bad input."""
from dataclasses import replace

import pytest
import torch

from dynn_lib import data, train as T
from dynn_lib.zoo import Workspace


@pytest.fixture(scope="module")
def tiny_data():
    tr, te = data.make_synthetic(num_classes=10, size=32, n_train=48, n_test=16, seed=3)
    return tr.images, tr.labels, te.images, te.labels


def _cfg(**kw):
    base = dict(epochs=2, batch_size=16, milestones=(1,), n_train=48)
    base.update(kw)
    return T.recipe_config("cnn", "resnet56", "synthetic", "smoke", seed=1, **base)


def test_same_seed_same_weights_and_resume(tiny_data, tmp_path, monkeypatch):
    cfg = _cfg()
    m1, r1 = T.train(cfg, *tiny_data)
    m2, _ = T.train(cfg, *tiny_data)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    # interrupt during the second epoch, then resume from the checkpoint of the first
    ckpt = tmp_path / "partial.pt"
    real_loss = T.loss_fn

    def crash(cfg_, out, y, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_loss(cfg_, out, y, epoch)

    monkeypatch.setattr(T, "loss_fn", crash)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, *tiny_data, checkpoint=ckpt)
    assert ckpt.is_file()
    monkeypatch.setattr(T, "loss_fn", real_loss)
    m3, r3 = T.train(cfg, *tiny_data, checkpoint=ckpt)
    for (k, a), b in zip(m1.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(r3["history"]) == 2 and r1["exit_accuracy"] == r3["exit_accuracy"]


def test_ic_only_freezes_backbone_and_keeps_cnn_output(tiny_data):
    cnn_cfg = _cfg(epochs=1)
    cnn, _ = T.train(cnn_cfg, *tiny_data)
    from dataclasses import asdict
    ic_cfg = T.recipe_config("ic_only", "resnet56", "synthetic", "smoke", seed=1, base=asdict(cnn_cfg),
                             epochs=1, batch_size=16, n_train=48)
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    dyn, rec = T.train(ic_cfg, *tiny_data, base_state=cnn.state_dict())
    after = {k: v for k, v in dyn.state_dict().items() if k.startswith("backbone.")}
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"backbone entry {k} changed (BatchNorm statistics must stay frozen)"
    x = tiny_data[2].float() / 255
    with torch.no_grad():
        assert torch.equal(dyn(x)[-1], cnn(x))
    assert len(rec["exit_accuracy"]) == 7


def test_sdn_weight_ramp():
    w0 = T.sdn_weights(0, 100, 6)
    assert w0 == [0.01] * 6
    w50 = T.sdn_weights(50, 100, 6)
    assert w50[0] == pytest.approx(0.085) and w50[-1] == pytest.approx(0.46)
    assert T.sdn_weights(99, 100, 5) == pytest.approx([0.15, 0.30, 0.45, 0.60, 0.75])
    assert T.sdn_weights(98, 100, 6)[-1] == pytest.approx(0.892)


def test_sdn_training_runs_and_records_every_exit(tiny_data):
    cfg = T.recipe_config("sdn", "mobilenet", "synthetic", "smoke", epochs=1, batch_size=24, n_train=48)
    model, rec = T.train(cfg, *tiny_data)
    assert model.num_exits == 6 and len(rec["exit_accuracy"]) == 6
    assert all(0 <= a <= 1 for a in rec["exit_accuracy"])


@pytest.mark.parametrize("kw, match", [
    (dict(recipe="nope"), "unknown recipe 'nope'; accepted: cnn, sdn, ic_only"),
    (dict(arch="vgg19"), "unknown architecture 'vgg19'; accepted: vgg16, resnet56, mobilenet"),
    (dict(dataset="mnist"), "mnist"),
    (dict(lr=-0.1), r"lr must be in \(0, 10\], got -0.1"),
    (dict(optimizer="rmsprop"), "unknown optimizer"),
])
def test_bad_config_is_rejected(kw, match):
    cfg = _cfg()
    with pytest.raises(ValueError, match=match):
        T.validate(replace(cfg, **kw))


def test_labels_beyond_num_classes_rejected(tiny_data):
    imgs, labels, ei, el = tiny_data
    with pytest.raises(ValueError, match="classes"):
        T.train(_cfg(), imgs, labels + 10, ei, el)


def test_workspace_reuses_stored_model_and_reports_corrupt_one(tmp_path):
    ws = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", n_train=32, n_eval=16, n_query=16,
                   cnn_epochs=1, batch_size=16)
    m = ws.model("resnet56", "cnn")
    path = ws.model_dir("resnet56", "cnn") / "model.pt"
    mtime = path.stat().st_mtime_ns
    ws2 = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", n_train=32, n_eval=16, n_query=16,
                    cnn_epochs=1, batch_size=16)
    m2 = ws2.model("resnet56", "cnn")
    assert path.stat().st_mtime_ns == mtime
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    path.write_bytes(path.read_bytes()[:100])
    ws3 = Workspace("synthetic", "smoke", store=tmp_path, device="cpu", n_train=32, n_eval=16, n_query=16,
                    cnn_epochs=1, batch_size=16)
    with pytest.warns(UserWarning, match="corrupt artefact .*model.pt"):
        ws3.model("resnet56", "cnn")
    assert path.stat().st_mtime_ns != mtime
