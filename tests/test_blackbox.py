"""Black-box protocol: query-set size and order, labels from the target in its deployed mode."""
import pandas as pd
import pytest
import torch

from dynn_lib import blackbox, early_exit
from dynn_lib.zoo import Workspace

from conftest import fake_zoo


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = Workspace("synthetic", "smoke", store=tmp_path_factory.mktemp("bb"), device="cpu", n_train=32,
                  n_query=20, n_eval=8, batch_size=16)
    fake_zoo(w)
    return w


def test_pairs_are_data_and_mirror_each_other():
    s2d, d2s = blackbox.get_pairs("S2D"), blackbox.get_pairs("D2S")
    assert len(s2d) == len(d2s) == 3
    for a, b in zip(s2d, d2s):
        assert (a.surrogate_arch, a.target_arch) == (b.target_arch, b.surrogate_arch)
        assert (a.surrogate_kind, a.target_kind, b.surrogate_kind, b.target_kind) == ("cnn", "sdn", "sdn", "cnn")
    with pytest.raises(ValueError, match="accepted: S2D, D2S"):
        blackbox.get_pairs("X2Y")


def test_query_set_is_eleven_copies_with_originals_first(ws):
    q = blackbox.query_set(ws)
    n = len(ws.query_half[1])
    assert q.shape == (11 * n, 3, 32, 32) and q.dtype == torch.uint8
    assert torch.equal(q[:n], ws.query_half[0])


def test_labels_come_from_the_deployed_target(ws):
    q = blackbox.query_set(ws)
    for arch, kind in (("vgg16", "sdn"), ("resnet56", "cnn")):
        labels = blackbox.query_labels(ws, arch, kind)
        model = ws.model(arch, kind)
        z = early_exit.all_exit_logits(model, q)
        if kind == "cnn":
            expect = z[0].argmax(-1)
        else:
            tau = ws.tau(arch, kind)
            expect, exits = early_exit.early_exit_predict(z, tau)
            assert len(set(exits.tolist())) > 1, "fixture should make several exits fire"
            assert not torch.equal(expect, z[-1].argmax(-1)), "deployed answers must differ from the final exit's"
        assert torch.equal(labels, expect)


def test_surrogate_never_trains_on_its_calibration_images(ws, monkeypatch):
    """Protocol section 5 calibrates on held-out data: the attacker holds a stratified part of its
    clean query images (and their corrupted copies) out of surrogate training and calibrates the
    DyNN surrogate's τ on exactly those, with the target's answers as labels."""
    n = len(ws.query_half[1])
    held = blackbox.calibration_holdout(ws)
    assert len(held) == max(1, round(ws.profile.surrogate_holdout * n))
    rows = blackbox.surrogate_training_rows(ws)
    assert len(rows) == 11 * (n - len(held))
    assert not set((rows % n).tolist()) & set(held.tolist())
    pair = blackbox.get_pairs("D2S")[0]
    seen = {}

    def spy(model, cfg, labels=None, label_source="", images=None, image_source=""):
        seen.update(labels=labels, images=images)
        return pd.DataFrame([{"tau": 0.9, "meets_rule": True, "accuracy": 0.5}])

    with monkeypatch.context() as m:
        m.setattr(ws, "_calibration", spy)
        assert blackbox.surrogate_tau(ws, pair) == 0.9
    answers = blackbox.query_labels(ws, pair.target_arch, pair.target_kind)
    assert torch.equal(seen["images"], ws.query_half[0][held])
    assert torch.equal(seen["labels"], answers[:n][held])
    # the training data handed to the trainer is the query set without the hold-out
    got = {}
    monkeypatch.setattr(ws, "trained", lambda cfg, data: got.setdefault("data", data()))
    blackbox.surrogate(ws, pair)
    x, y = got["data"]
    assert torch.equal(x, blackbox.query_set(ws)[rows]) and torch.equal(y, answers[rows])


def test_no_surrogate_starts_from_its_targets_initial_weights(ws):
    """Every surrogate has a seed of its own (a hash of the workspace seed and the pair), different
    from the target's and from the other surrogates'; so even MobileNet, whose SDNN and DyNN share
    their initial backbone at one seed, is attacked by a surrogate that starts elsewhere."""
    from dynn_lib import train as T
    from dynn_lib.store import config_key

    seeds = set()
    for pair in blackbox.PAIRS:
        cfg = blackbox.surrogate_config(ws, pair)
        target = ws.model_config(pair.target_arch, pair.target_kind)
        assert cfg.seed == blackbox.surrogate_seed(ws.seed, pair, config_key(target)) != target.seed == ws.seed
        assert 0 <= cfg.seed < 2 ** 31
        seeds.add(cfg.seed)
        torch.manual_seed(target.seed)
        t0 = T.build_model(target, 10).backbone.state_dict()
        torch.manual_seed(cfg.seed)
        s0 = T.build_model(cfg, 10).backbone.state_dict()
        if pair.surrogate_arch == pair.target_arch:
            floats = [k for k, v in t0.items() if k.endswith(".weight") and v.dim() > 1]  # conv and linear weights
            assert floats and not any(torch.equal(t0[k], s0[k]) for k in floats), pair.name
    assert len(seeds) == len(blackbox.PAIRS)
    # with the workspace seed for both, MobileNet's SDNN and DyNN would begin with the same backbone
    cnn, dynn = (ws.model_config("mobilenet", k) for k in ("cnn", "sdn"))
    torch.manual_seed(ws.seed)
    a = T.build_model(cnn, 10).backbone.state_dict()
    torch.manual_seed(ws.seed)
    b = T.build_model(dynn, 10).backbone.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_surrogate_calibration_is_what_the_attacker_deploys(ws):
    """The DyNN surrogate's calibration: τ by the rule on the held-out images with the target's
    answers as labels, and its agreement with those answers, early exit at τ and final exit alone."""
    pair = blackbox.get_pairs("D2S")[0]
    assert blackbox.surrogate_calibration(ws, blackbox.get_pairs("S2D")[0]) is None  # a CNN surrogate
    cal = blackbox.surrogate_calibration(ws, pair)
    n = len(ws.query_half[1])
    held = blackbox.calibration_holdout(ws)
    answers = blackbox.query_labels(ws, pair.target_arch, pair.target_kind)[:n][held]
    z = early_exit.all_exit_logits(blackbox.surrogate(ws, pair), ws.query_half[0][held], device="cpu")
    assert cal["tau"] == early_exit.calibrate(z, answers) == blackbox.surrogate_tau(ws, pair)
    assert cal["meets_rule"] == early_exit.meets_rule(z, answers, cal["tau"]) and cal["n_holdout"] == len(held)
    rep = early_exit.report(z, answers, cal["tau"])
    assert (cal["accuracy"], cal["final_accuracy"]) == pytest.approx((rep.accuracy, rep.final_accuracy))
