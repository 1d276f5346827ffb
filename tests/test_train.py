"""Training recipes: determinism, resume (dropout, checkpoint cadence), IC-only freezing, SDN weights, schedules,
profiles, precision flags, the graphed-step path (emulated on the CPU), bad input."""
import dataclasses
import math
import shutil
from dataclasses import replace

import pytest
import torch

from dynn_lib import data, numerics, profiles, train as T
from dynn_lib.data import GpuLoader
from dynn_lib.zoo import Workspace


@pytest.fixture(scope="module")
def tiny_data():
    tr, te = data.make_synthetic(num_classes=10, size=32, n_train=48, n_test=16, seed=3)
    return tr.images, tr.labels, te.images, te.labels


def _cfg(**kw):
    base = dict(epochs=2, batch_size=8, milestones=(1,), n_train=16)
    base.update(kw)
    return T.recipe_config("cnn", "vgg16", "synthetic", "smoke", seed=1, **base)


@pytest.fixture(scope="module")
def small_data(tiny_data):
    imgs, labels, ei, el = tiny_data
    return imgs[:16], labels[:16], ei[:8], el[:8]


def _crash_at_epoch(monkeypatch, n):
    """Make the next training raise KeyboardInterrupt as epoch ``n`` (0-based) starts."""
    real = GpuLoader.set_epoch

    def set_epoch(self, epoch):
        if epoch == n:
            raise KeyboardInterrupt
        real(self, epoch)

    monkeypatch.setattr(GpuLoader, "set_epoch", set_epoch)
    return lambda: monkeypatch.setattr(GpuLoader, "set_epoch", real)


def _assert_same_weights(m1, m2):
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.fixture(scope="module")
def vgg_data(small_data):
    return tuple(t[:8] for t in small_data)


@pytest.fixture(scope="module")
def vgg_reference(vgg_data):
    cfg = replace(_cfg(epochs=3, milestones=(2,), n_train=8, checkpoint_every=1, checkpoint_minutes=None), seed=2)
    return cfg, *T.train(cfg, *vgg_data)


@pytest.mark.parametrize("every, crash_at, resumed_from, saves", [(1, 1, 1, 2), (2, 2, 2, 1), (2, 1, 1, 2),
                                                                  (2, 0, 0, 2)])
def test_vgg_dropout_resume_equals_uninterrupted(vgg_data, vgg_reference, tmp_path, monkeypatch, every, crash_at,
                                                 resumed_from, saves):
    """VGG-16 draws dropout masks from the random generator: a resumed training restores it and
    equals the uninterrupted one bit for bit, also when checkpoints are only every 2 epochs. An
    interrupt writes the last finished epoch even between scheduled saves (every=2, crash in the
    second epoch resumes from epoch 1); a crash before any finished epoch restarts from scratch
    (the same-seed-same-weights check)."""
    small_data = vgg_data
    cfg0, ref, rref = vgg_reference
    cfg = replace(cfg0, checkpoint_every=every)
    ckpt = tmp_path / "partial.pt"
    undo = _crash_at_epoch(monkeypatch, crash_at)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, *small_data, checkpoint=ckpt)
    undo()
    assert ckpt.is_file() == (resumed_from > 0)
    if resumed_from:
        assert torch.load(ckpt, weights_only=True)["epoch"] == resumed_from
    if every == 1:  # the test has teeth: without restoring the random state the dropout masks differ
        real = T._set_rng_state
        monkeypatch.setattr(T, "_set_rng_state", lambda state, device: None)
        shutil.copy(ckpt, tmp_path / "copy.pt")
        bad, _ = T.train(cfg, *small_data, checkpoint=tmp_path / "copy.pt")
        monkeypatch.setattr(T, "_set_rng_state", real)
        assert not all(torch.equal(a, b) for a, b in zip(bad.state_dict().values(), ref.state_dict().values()))
    res, rres = T.train(cfg, *small_data, checkpoint=ckpt)
    assert rres["resumed_from_epoch"] == resumed_from
    assert rres["checkpoints_saved"] == saves
    _assert_same_weights(ref, res)
    assert [h["loss"] for h in rres["history"]] == [h["loss"] for h in rref["history"]]


def test_checkpoint_cadence(vgg_reference):
    cfg = replace(vgg_reference[0], epochs=10, checkpoint_every=4, checkpoint_minutes=None)
    assert [e for e in range(1, 11) if T.checkpoint_due(cfg, e, 0.0)] == [4, 8, 10]  # every 4th and the last
    cfg = replace(cfg, checkpoint_minutes=2.0)
    assert not T.checkpoint_due(cfg, 1, 119.0) and T.checkpoint_due(cfg, 1, 120.0)  # or 2 minutes, if sooner
    assert vgg_reference[2]["checkpoints_saved"] == 0  # no checkpoint path, nothing written


def test_ic_only_freezes_backbone_and_keeps_cnn_output(small_data):
    tiny_data = small_data
    cnn_cfg = _cfg(epochs=1)
    cnn, _ = T.train(cnn_cfg, *tiny_data)
    from dataclasses import asdict
    ic_cfg = T.recipe_config("ic_only", "vgg16", "synthetic", "smoke", seed=1, base=asdict(cnn_cfg),
                             epochs=1, batch_size=8, n_train=16)
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
    """The SDN code's loop counts epochs from 1: 0-based epoch e trains with 0.01 + (e+1) * max / epochs."""
    maxima = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
    assert T.sdn_weights(0, 100, 6) == pytest.approx([0.01 + m / 100 for m in maxima])  # first epoch
    assert T.sdn_weights(0, 100, 6)[0] == pytest.approx(0.0115) and T.sdn_weights(0, 100, 6)[-1] == pytest.approx(0.019)
    assert T.sdn_weights(99, 100, 6) == pytest.approx(list(maxima))  # last epoch: the maxima
    assert T.sdn_weights(99, 100, 5) == pytest.approx([0.15, 0.30, 0.45, 0.60, 0.75])
    w50 = T.sdn_weights(50, 100, 6)
    assert w50[0] == pytest.approx(0.0865) and w50[-1] == pytest.approx(0.469)
    assert T.sdn_weights(97, 100, 6)[-1] == pytest.approx(0.892)
    assert T.sdn_weights(44, 45, 6) == pytest.approx(list(maxima))  # the fast profile's last epoch


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
    (dict(amp="yes"), "amp must be 'auto', True or False; got 'yes'"),
    (dict(channels_last=1), "channels_last must be 'auto', True or False; got 1"),
    (dict(lr_schedule="cosine"), "unknown lr_schedule 'cosine'; accepted: multistep, onecycle"),
    (dict(warmup_frac=1.0), r"warmup_frac must lie in \[0, 1\), got 1.0"),
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1"),
    (dict(checkpoint_minutes=0), "checkpoint_minutes must be > 0 or None"),
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


# -- schedules, profiles, precision, graphed step -------------------------------------------------
def test_multistep_learning_rate_follows_the_sdn_code():
    """The SDN code's loop: ``for epoch in range(1, epochs + 1): scheduler.step(); train(...)`` with a
    multi-step scheduler, so milestone m applies from the m-th (1-based) epoch on."""
    cfg = _cfg(epochs=12, milestones=(3, 7, 10), lr=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 7, 10], gamma=0.1)
    for epoch in range(12):  # 0-based here, epoch + 1 in the SDN code
        opt.step()
        sched.step()  # at the start of the SDN code's epoch
        assert T.learning_rate(cfg, epoch, 5, 9) == pytest.approx(opt.param_groups[0]["lr"]), epoch
    paper = T.recipe_config("cnn", "resnet56", "synthetic", "paper")
    lrs = [T.learning_rate(paper, e, 0, 1) for e in range(paper.epochs)]
    assert [lrs.count(v) for v in sorted(set(lrs), reverse=True)] == [34, 25, 25, 16]


def test_ic_only_keeps_the_cnn_recipes_weight_decay():
    for arch, wd in (("vgg16", 5e-4), ("resnet56", 1e-4), ("mobilenet", 1e-4)):
        cnn = T.recipe_config("cnn", arch, "synthetic", "paper")
        ic = T.recipe_config("ic_only", arch, "synthetic", "paper", base=dataclasses.asdict(cnn))
        assert cnn.weight_decay == ic.weight_decay == wd and ic.optimizer == "adam"


def test_onecycle_learning_rate():
    cfg = _cfg(epochs=10, lr=0.4, lr_schedule="onecycle", warmup_frac=0.2)
    spe = 5  # 50 steps, 10 of warm-up
    lrs = [T.learning_rate(cfg, e, s, spe) for e in range(10) for s in range(spe)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)  # linear warm-up to the peak
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 9
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # cosine decay, every step
    assert lrs[29] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 19 / 40)))  # k=29: 19 of 40 decay steps
    assert 0 < lrs[-1] < 0.4 * 0.01
    assert T.learning_rate(replace(cfg, warmup_frac=0.0), 0, 0, spe) == pytest.approx(0.4)


def test_fast_profile_is_paper_with_a_short_schedule():
    fast, paper = profiles.get_profile("fast"), profiles.get_profile("paper")
    same = ("n_train", "n_query", "n_eval", "attack_steps", "ea_iters", "ea_images", "surrogate_holdout", "tau",
            "amp", "channels_last")
    assert all(getattr(fast, f) == getattr(paper, f) for f in same)
    assert (fast.n_train, fast.n_eval, fast.attack_steps, fast.ea_iters, fast.ea_images) == (None, None, 10, 1000, 100)
    assert (fast.batch_size, fast.lr_schedule, fast.cnn_epochs, fast.ic_epochs) == (512, "onecycle", 45, 8)
    assert (paper.batch_size, paper.lr_schedule, paper.lr, paper.ic_lr) == (128, "multistep", 0.1, 1e-3)
    cnn = T.recipe_config("cnn", "vgg16", "cifar10-jpeg", "fast")
    assert (cnn.batch_size, cnn.lr, cnn.epochs, cnn.lr_schedule, cnn.weight_decay, cnn.momentum) == \
        (512, 0.4, 45, "onecycle", 5e-4, 0.9)
    ic = T.recipe_config("ic_only", "vgg16", "cifar10-jpeg", "fast", base={})
    assert (ic.optimizer, ic.lr, ic.epochs, ic.batch_size) == ("adam", 2e-3, 8, 512)
    pc = T.recipe_config("cnn", "resnet56", "cifar10-jpeg", "paper")
    assert (pc.lr, pc.milestones, pc.epochs, pc.lr_schedule) == (0.1, (35, 60, 85), 100, "multistep")
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'; accepted: multistep, onecycle"):
        profiles.get_profile("fast", lr_schedule="linear")
    with pytest.raises(ValueError, match="amp must be 'auto', True or False; got 'bf16'"):
        profiles.get_profile("paper", amp="bf16")


def test_weight_decay_field_sets_the_sgd_recipes_only():
    # None: the SDN code's per-architecture values; a number: every SGD recipe, never the IC-only (Adam) one
    assert profiles.get_profile("paper").weight_decay is None and profiles.get_profile("fast").weight_decay == 5e-4
    for prof in ("paper", profiles.get_profile("fast", weight_decay=None)):
        assert T.recipe_config("cnn", "resnet56", "cifar10-jpeg", prof).weight_decay == 1e-4
        assert T.recipe_config("sdn", "mobilenet", "cifar10-jpeg", prof).weight_decay == 1e-4
        assert T.recipe_config("sdn", "vgg16", "cifar10-jpeg", prof).weight_decay == 5e-4
    assert [T.recipe_config(r, a, "cifar10-jpeg", "fast").weight_decay for r in ("cnn", "sdn")
            for a in ("vgg16", "resnet56", "mobilenet")] == [5e-4] * 6
    assert profiles.describe_changes(profiles.get_profile("fast", weight_decay=None)) == \
        "weight_decay the SDN code's (fast: 0.0005)"
    p = profiles.get_profile("fast", weight_decay=3e-4)
    assert [T.recipe_config(r, a, "cifar10-jpeg", p).weight_decay for r in ("cnn", "sdn")
            for a in ("vgg16", "resnet56", "mobilenet")] == [3e-4] * 6
    assert T.recipe_config("ic_only", "resnet56", "cifar10-jpeg", p, base={}).weight_decay == 1e-4
    assert profiles.describe_changes(p) == "weight_decay 0.0003 (fast: 0.0005)"
    for bad in (-1e-4, 1.5, True, "5e-4"):
        with pytest.raises(ValueError, match=f"weight_decay must be None .* got {bad!r}"):
            profiles.get_profile("fast", weight_decay=bad)


def test_precision_flags_resolve():
    assert T.resolve_flag(True, "cpu", "amp") is True and T.resolve_flag(False, "cuda", "amp") is False
    assert T.resolve_flag(False, "cpu", "channels_last") is False and T.resolve_flag(True, "cpu", "channels_last") is True
    assert T.resolve_flag("auto", "cpu", "amp") == T.cpu_has_native_bf16()
    with pytest.raises(ValueError, match="unknown flag 'tf32'; accepted: 'amp', 'channels_last'"):
        T.resolve_flag("auto", "cpu", "tf32")


@pytest.mark.parametrize("bf16,machine,amp,cl", [(True, "x86_64", True, True), (True, "aarch64", True, True),
                                                 (False, "x86_64", False, True), (False, "AMD64", False, True),
                                                 (False, "aarch64", False, False)])
def test_auto_flags_on_cpu(monkeypatch, bf16, machine, amp, cl):
    # "auto" on a CPU: bf16 autocast only with native bf16; channels-last also in fp32 on x86-64
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: bf16)
    monkeypatch.setattr(T.platform, "machine", lambda: machine)
    assert T.resolve_flag("auto", "cpu", "amp") is amp
    assert T.resolve_flag("auto", "cpu", "channels_last") is cl


@pytest.mark.parametrize("channels_last", [False, True])
def test_trained_model_is_in_the_inference_format(small_data, channels_last):
    numerics.configure(inference_channels_last=channels_last)
    model, _ = T.train(_cfg(epochs=1, amp=False, channels_last=not channels_last), *small_data)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs)
    assert numerics.state()["inference_channels_last"] is channels_last


def test_trained_record_holds_resolved_flags(small_data):
    model, rec = T.train(_cfg(epochs=1, amp=False, channels_last=True), *small_data)
    assert (rec["amp"], rec["channels_last"], rec["step_mode"]) == (False, True, "eager")
    # the returned model is fp32 and in the inference format (default: contiguous), as the
    # workspace hands out a stored model
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        T.train(_cfg(epochs=1), *small_data, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):  # the config's setting is used
        T.train(_cfg(epochs=1, cuda_graph=True), *small_data)
    with pytest.raises(ValueError, match="cuda_graph must be 'auto', True or False; got 'off'"):
        T.recipe_config("cnn", "vgg16", "synthetic", "smoke", cuda_graph="off")
    eager_fast = profiles.get_profile("fast", cuda_graph=False)
    assert T.recipe_config("cnn", "vgg16", "synthetic", eager_fast).cuda_graph is False


def _emulate_graph(monkeypatch, capture):
    """Run the graphed-step code path on the CPU: 'capture' returns the step itself as its replay."""
    monkeypatch.setattr(T, "_use_graph", lambda setting, device: True)
    monkeypatch.setattr(T, "_capture_graph", capture)


@pytest.mark.parametrize("recipe", ["cnn", "ic_only", pytest.param("sdn", marks=pytest.mark.slow)])
def test_graphed_step_path_equals_eager(tiny_data, monkeypatch, recipe):
    """Static buffers, rehearsals undone (VGG's dropout included), tensor lr and IC weights, ragged
    last batch eager: the same weights and losses as the plain eager loop (the CUDA capture itself
    cannot run here)."""
    from dataclasses import asdict
    base = T.recipe_config("cnn", "vgg16", "synthetic", "smoke", seed=1, n_train=14)
    kw = dict(epochs=2, batch_size=5, n_train=14, lr_schedule="onecycle", warmup_frac=0.3)  # batches 5, 5, 4
    if recipe == "ic_only":
        kw["base"] = asdict(base)
    cfg = T.recipe_config(recipe, "vgg16", "synthetic", "smoke", seed=1, **kw)
    base_state = T.build_model(base).state_dict() if recipe == "ic_only" else None
    tiny_data = (tiny_data[0][:14], tiny_data[1][:14], tiny_data[2][:8], tiny_data[3][:8])
    eager, r_eager = T.train(cfg, *tiny_data, base_state=base_state)
    _emulate_graph(monkeypatch, lambda step, device: step)
    graphed, r_graph = T.train(cfg, *tiny_data, base_state=base_state)
    assert (r_graph["step_mode"], r_graph["graph_replays"], r_graph["eager_steps"]) == ("cuda_graph", 4, 2)
    _assert_same_weights(eager, graphed)
    assert [h["loss"] for h in r_graph["history"]] == [h["loss"] for h in r_eager["history"]]

    def broken(step, device):  # as torch.cuda.graph does: capture_end fails while the step's error is handled
        try:
            raise RuntimeError("operation not permitted when stream is capturing")
        except RuntimeError:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    monkeypatch.setattr(T, "_CAPTURE_FAILED", None)
    _emulate_graph(monkeypatch, broken)
    with pytest.warns(RuntimeWarning, match="capture of the training step failed .*not permitted.* -> .*previous"):
        fell_back, r_fb = T.train(cfg, *tiny_data, base_state=base_state)
    assert r_fb["step_mode"] == "eager (CUDA graph capture failed)" and "not permitted" in r_fb["graph_fallback"]
    assert (r_fb["graph_replays"], r_fb["eager_steps"]) == (0, 6)
    _assert_same_weights(eager, fell_back)
    # after one failure the process never captures again (the allocator may keep the failed capture's state)
    _emulate_graph(monkeypatch, lambda step, device: pytest.fail("captured again after a failed capture"))
    with pytest.warns(RuntimeWarning, match="an earlier capture in this process failed: .*not permitted"):
        _, r_next = T.train(cfg, *tiny_data, base_state=base_state)
    assert r_next["step_mode"] == "eager (CUDA graph capture failed)" and r_next["graph_replays"] == 0


def test_resume_keeps_this_runs_capturable_flag_and_lr_tensor():
    """An Adam checkpoint saved by an eager run (capturable False) resumes as this run's optimizer:
    capturable when the step is graphed (a non-capturable Adam would break the capture), with this
    run's learning-rate tensor."""
    w = torch.nn.Parameter(torch.ones(3))
    eager = torch.optim.Adam([w], lr=torch.tensor(1e-3), capturable=False)
    w.grad = torch.ones(3)
    eager.step()
    lr = torch.tensor(5e-4)
    graphed = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=torch.tensor(1e-3), capturable=True)
    T._load_optimizer(graphed, eager.state_dict(), lr)
    g = graphed.param_groups[0]
    assert g["capturable"] is True and g["lr"] is lr
    assert graphed.state[g["params"][0]]["exp_avg"].tolist() == eager.state[w]["exp_avg"].tolist()


def test_colour_jitter_builds_its_weights_once():
    from dynn_lib.data import loader
    x = torch.rand(2, 3, 4, 4)
    loader.colour_jitter(x, torch.ones(2, 3))
    hits = loader._luma_weights.cache_info().hits
    out = loader.colour_jitter(x, torch.ones(2, 3))
    assert loader._luma_weights.cache_info().hits == hits + 1
    assert torch.allclose(out, x, atol=1e-6)  # factors of 1 leave the image unchanged


def test_a_diverged_training_fails_loudly_and_stores_nothing(small_data, tmp_path, monkeypatch):
    """A NaN loss is an error naming the model, epoch and lr; no checkpoint is written."""
    real = T.loss_fn
    monkeypatch.setattr(T, "loss_fn", lambda *a: real(*a) * float("nan"))
    cfg = replace(_cfg(epochs=2, n_train=16, checkpoint_every=1), lr=0.05)
    ckpt = tmp_path / "partial.pt"
    with pytest.raises(FloatingPointError, match=r"vgg16/cnn diverged.*epoch 1 is nan.*lr 0.05"):
        T.train(cfg, *small_data, checkpoint=ckpt)
    assert not ckpt.exists()


def test_record_names_the_commit_that_started_the_training(vgg_data, tmp_path, monkeypatch):
    """The record's commit is the checkout's when training starts, not when it is saved; a training
    resumed under another commit names both."""
    commits = iter(["aaa", "bbb", "ccc", "ddd"])
    monkeypatch.setattr(T, "git_commit", lambda: next(commits))
    cfg = replace(_cfg(epochs=2, milestones=(), n_train=8, checkpoint_every=1, checkpoint_minutes=None), seed=2)
    _, rec = T.train(cfg, *vgg_data)  # one call of git_commit, at the start
    assert rec["git_commit"] == "aaa" and "git_commit_before_resume" not in rec
    ckpt = tmp_path / "partial.pt"
    undo = _crash_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, *vgg_data, checkpoint=ckpt)  # starts under "bbb", stops after epoch 1
    undo()
    _, rec = T.train(cfg, *vgg_data, checkpoint=ckpt)  # resumes under "ccc"
    assert rec["resumed_from_epoch"] == 1
    assert rec["git_commit"] == "ccc" and rec["git_commit_before_resume"] == "bbb"
