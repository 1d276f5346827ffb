"""Early Attack (protocol section 9) and its FGSM / PGD baselines."""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from dynn_lib.attacks import (EarlyAttackResult, early_attack, early_attack_baseline, early_attack_losses,
                              early_attack_success, initial_w, internal_exits_ce, pgd)
from dynn_lib.models.base import DyNN

from conftest import make_tiny_backbone


pytestmark = pytest.mark.usefixtures("one_thread")


class PixelReader(nn.Module):
    """A hand-built two-exit DyNN of linear heads on a [B, 3, 4, 4] input.

    Exit 0 answers class 0 iff the mean of channel ``c0`` is above 0.5, the final exit iff the
    mean of channel ``c_final`` is. With different channels Early Attack can flip exit 0 and keep
    the final exit; with the same channel the two exits always agree, so it cannot succeed.
    """

    is_dynamic = True
    num_exits = 2

    def __init__(self, c0: int = 0, c_final: int = 1, size: int = 4, gain: float = 10.0):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(3 * size * size, 2) for _ in range(2))
        with torch.no_grad():
            for head, ch in zip(self.heads, (c0, c_final)):
                w = torch.zeros(2, 3, size, size)
                w[0, ch], w[1, ch] = gain / size ** 2, -gain / size ** 2
                head.weight.copy_(w.flatten(1))
                head.bias.copy_(torch.tensor([-gain / 2, gain / 2]))

    def forward(self, x):
        f = x.flatten(1)
        return [head(f) for head in self.heads]


def _pixel_batch():
    x = torch.full((6, 3, 4, 4), 0.8)
    x[:, 0] = torch.linspace(0.55, 0.99, 6)[:, None, None]  # exit 0 more or less sure of class 0
    return x


def _check_result(res, x):
    assert isinstance(res, EarlyAttackResult)
    B = x.shape[0]
    assert res.x_adv.shape == x.shape and not res.x_adv.requires_grad
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.success.shape == (B,) and res.success.dtype == torch.bool
    assert res.iters_used.shape == (B,) and res.iters_used.dtype == torch.int64
    assert res.p.shape == (B,) and res.p.dtype == torch.int64


# ---------------------------------------------------------------- loss and criterion

def test_success_criterion():
    final = torch.tensor([[5., 0, 0], [5., 0, 0], [0., 5, 0], [5., 0, 0]])
    ic0 = torch.tensor([[0., 5, 0], [5., 0, 0], [0., 5, 0], [0., 0, 5]])
    ic1 = torch.tensor([[0., 0, 5], [0., 5, 0], [5., 0, 0], [0., 5, 0]])
    p = torch.zeros(4, dtype=torch.long)
    # 0: both ICs moved off p, final kept -> success; 1: IC 0 still on p; 2: final changed; 3: success
    assert early_attack_success([ic0, ic1, final], p).tolist() == [True, False, False, True]
    assert early_attack_success(torch.stack([ic0, ic1, final]), p).tolist() == [True, False, False, True]


def test_losses_use_every_class():
    torch.manual_seed(0)
    C = 15  # more than the 10 classes the released code looped over
    outs = [torch.randn(3, C) for _ in range(3)]
    outs[-1][:, 12] = -10.0  # a class beyond index 9 with a large margin
    p = torch.tensor([0, 4, 13])
    l1, l2 = early_attack_losses(outs, p)
    for b in range(3):
        yN = outs[-1][b].softmax(0)
        ref1 = -sum(max(yN[p[b]] - yN[j], 0.0) for j in range(C) if j != p[b])
        ref2 = sum(o[b].softmax(0)[p[b]] for o in outs[:-1])
        assert torch.allclose(l1[b], torch.as_tensor(ref1), atol=1e-6)
        assert torch.allclose(l2[b], torch.as_tensor(ref2), atol=1e-6)


def test_initial_w():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    w = initial_w(x, "input")
    assert torch.allclose((torch.tanh(w) + 1) / 2, x, atol=1e-5)
    w = initial_w(x, "random", torch.Generator().manual_seed(3))
    assert torch.equal(w, torch.rand(x.shape, generator=torch.Generator().manual_seed(3)))
    assert w.min() >= 0 and w.max() < 1
    edges = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert torch.isfinite(initial_w(edges, "input")).all()


# ---------------------------------------------------------------- the attack

def test_success_where_reachable():
    x = _pixel_batch()
    res = early_attack(PixelReader(), x, alpha=1.0, iters=200, generator=torch.Generator().manual_seed(0))
    _check_result(res, x)
    assert (res.p == 0).all()
    assert res.success.all()
    assert (res.iters_used > 0).all() and (res.iters_used < 200).all()
    with torch.no_grad():
        assert torch.equal(early_attack_success(PixelReader()(res.x_adv), res.p), res.success)
    assert len(set(res.iters_used.tolist())) > 1  # samples finish at different iterations


def test_failure_where_impossible():
    x = _pixel_batch()
    res = early_attack(PixelReader(c0=0, c_final=0), x, alpha=1.0, iters=30,
                       generator=torch.Generator().manual_seed(0))
    _check_result(res, x)
    assert not res.success.any()
    assert (res.iters_used == 30).all()


@pytest.mark.parametrize("model_name", ["pixel", "tiny"])
def test_batched_equals_one_at_a_time(model_name):
    if model_name == "pixel":
        model, x, iters = PixelReader(), _pixel_batch(), 40  # mixes successes at various iterations and failures
    else:
        model = DyNN(make_tiny_backbone(seed=3)).eval()
        x, iters = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), 15
    w0 = initial_w(x, "random", torch.Generator().manual_seed(7))
    batched = early_attack(model, x, alpha=1.0, iters=iters, w0=w0)
    assert torch.equal(batched.x_adv, early_attack(model, x, alpha=1.0, iters=iters,
                                                   generator=torch.Generator().manual_seed(7)).x_adv)
    if model_name == "pixel":
        assert batched.success.any() and not batched.success.all()
    for i in range(x.shape[0]):
        alone = early_attack(model, x[i:i + 1], alpha=1.0, iters=iters, w0=w0[i:i + 1])
        assert torch.allclose(alone.x_adv, batched.x_adv[i:i + 1], atol=1e-5)
        assert alone.success.item() == batched.success[i].item()
        assert alone.iters_used.item() == batched.iters_used[i].item()
        assert alone.p.item() == batched.p[i].item()


def test_finished_samples_are_frozen():
    x = _pixel_batch()
    w0 = initial_w(x, "random", torch.Generator().manual_seed(0))
    short = early_attack(PixelReader(), x, alpha=1.0, iters=60, w0=w0)
    long = early_attack(PixelReader(), x, alpha=1.0, iters=120, w0=w0)
    done = short.success
    assert done.any()
    # a sample that succeeded is returned as it was at its success, however long the others run
    assert torch.equal(long.x_adv[done], short.x_adv[done])
    assert torch.equal(long.iters_used[done], short.iters_used[done])
    # and that x' is exactly the iterate after iters_used Adam steps
    i = int(done.nonzero()[0])
    k = int(short.iters_used[i])
    unfinished = early_attack(PixelReader(), x[i:i + 1], alpha=1.0, iters=k, w0=w0[i:i + 1], min_iters=k)
    assert torch.allclose(unfinished.x_adv, short.x_adv[i:i + 1], atol=1e-6)


def test_min_iters():
    x = _pixel_batch()
    w0 = initial_w(x, "input")
    w0[:, 0] = initial_w(torch.full_like(x[:, 0], 0.2), "input")  # x' already a success at iteration 0
    assert early_attack(PixelReader(), x, alpha=1.0, iters=10, w0=w0).iters_used.tolist() == [0] * 6
    res = early_attack(PixelReader(), x, alpha=1.0, iters=10, w0=w0, min_iters=4)
    assert res.success.all() and (res.iters_used == 4).all()


def test_input_init_starts_at_x():
    x = _pixel_batch()
    res = early_attack(PixelReader(c0=0, c_final=0), x, alpha=1.0, iters=1, init="input", lr=1e-4)
    assert (res.x_adv - x).abs().max() < 1e-3


def test_any_size_and_class_count():
    model = DyNN(make_tiny_backbone(num_classes=13, size=12, seed=2)).eval()
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    res = early_attack(model, x, alpha=0.1, iters=5, generator=torch.Generator().manual_seed(0))
    _check_result(res, x)
    assert ((res.p >= 0) & (res.p < 13)).all()


def test_runs_under_a_callers_no_grad():
    """As the L-inf attacks: a caller's torch.no_grad() (an evaluation loop) changes nothing."""
    model = DyNN(make_tiny_backbone(seed=3)).eval()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    w0 = initial_w(x, "random", torch.Generator().manual_seed(0))
    free = early_attack(model, x, alpha=1.0, iters=6, w0=w0)
    with torch.no_grad():
        inside = early_attack(model, x, alpha=1.0, iters=6, w0=w0)
    assert torch.equal(free.x_adv, inside.x_adv) and torch.equal(free.iters_used, inside.iters_used)
    assert (inside.iters_used > 0).any()  # some sample took Adam updates, so gradients did flow


@pytest.mark.parametrize("training", [True, False])
def test_mode_and_weights_restored(training):
    model = DyNN(make_tiny_backbone()).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    early_attack(model, torch.rand(2, 3, 8, 8), alpha=1.0, iters=3, generator=torch.Generator().manual_seed(0))
    assert all(m.training == training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_errors(tiny_dynn, tiny_sdnn):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(TypeError, match="DyNN"):
        early_attack(tiny_sdnn, x, alpha=1.0)
    for kw, match in [({"alpha": -1.0}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"c": 0.0}, "c must"),
                      ({"iters": 0}, "iters"), ({"lr": -0.1}, "lr"), ({"min_iters": 5, "iters": 3}, "min_iters"),
                      ({"init": "zeros"}, "init"), ({"w0": torch.zeros(1, 3, 8, 8)}, "w0")]:
        with pytest.raises(ValueError, match=match):
            early_attack(tiny_dynn, x, **{"alpha": 1.0, **kw})
    with pytest.raises(ValueError, match="0,1"):
        early_attack(tiny_dynn, x + 1, alpha=1.0)
    for bad, match in [(torch.ones(3), r"per-sample alpha must be a float tensor \[B\] = \[2\]"),
                       (torch.ones(2, dtype=torch.long), "float tensor"),
                       (torch.tensor([1.0, -0.5]), "-0.5"), (torch.tensor([float("nan"), 1.0]), "nan")]:
        with pytest.raises(ValueError, match=match):
            early_attack(tiny_dynn, x, alpha=bad)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="check_every must be an integer >= 1"):
            early_attack(tiny_dynn, x, alpha=1.0, check_every=bad)


# ---------------------------------------------------------------- sync-free loop, per-sample alpha

def test_check_every_does_not_change_the_result():
    x = _pixel_batch()
    w0 = initial_w(x, "random", torch.Generator().manual_seed(0))
    every = early_attack(PixelReader(), x, alpha=1.0, iters=120, w0=w0, check_every=1)
    assert every.success.any() and len(set(every.iters_used[every.success].tolist())) >= 2  # several first successes
    for k in (2, 7, 25, 1000):
        res = early_attack(PixelReader(), x, alpha=1.0, iters=120, w0=w0, check_every=k)
        assert torch.equal(res.x_adv, every.x_adv) and torch.equal(res.iters_used, every.iters_used)
        assert torch.equal(res.success, every.success)
    # every sample stops at its FIRST success: the frozen x' is the iterate after iters_used steps,
    # and one iteration less of the same sample alone is not yet a success
    for i in every.success.nonzero().flatten().tolist():
        k = int(every.iters_used[i])
        if k == 0:
            continue
        before = early_attack(PixelReader(), x[i:i + 1], alpha=1.0, iters=k - 1, w0=w0[i:i + 1], check_every=1)
        assert not before.success.item()


def test_per_sample_alpha_equals_per_alpha_runs():
    model = DyNN(make_tiny_backbone(seed=3)).eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    w0 = initial_w(x, "random", torch.Generator().manual_seed(7))
    alphas = (0.01, 1.0, 40.0)
    grid = early_attack(model, x.repeat(3, 1, 1, 1), alpha=torch.tensor(alphas).repeat_interleave(3), iters=12,
                        w0=w0.repeat(3, 1, 1, 1))
    outs = []
    for j, a in enumerate(alphas):
        alone = early_attack(model, x, alpha=a, iters=12, w0=w0)
        rows = slice(3 * j, 3 * j + 3)
        assert torch.allclose(grid.x_adv[rows], alone.x_adv, atol=1e-6)
        assert torch.equal(grid.iters_used[rows], alone.iters_used) and torch.equal(grid.success[rows], alone.success)
        outs.append(alone.x_adv)
    assert not torch.allclose(outs[0], outs[2])  # alpha matters, so the test can tell the rows apart


def test_host_reads_only_every_check_every(monkeypatch):
    """The library's loop reads a device value on the host (``bool``/``item``) once per
    ``check_every`` iterations, never per iteration: counted here on the CPU by wrapping those two
    calls when dynn_lib makes them (Adam reads its step count, a CPU tensor even on CUDA)."""
    x = _pixel_batch()
    w0 = initial_w(x, "random", torch.Generator().manual_seed(0))
    counts = {"n": 0}
    real_bool, real_item = torch.Tensor.__bool__, torch.Tensor.item

    def counting(fn):
        def wrapped(self, *a):
            counts["n"] += "dynn_lib" in sys._getframe(1).f_code.co_filename
            return fn(self, *a)
        return wrapped

    def reads(iters, check_every):
        counts["n"] = 0
        monkeypatch.setattr(torch.Tensor, "__bool__", counting(real_bool))
        monkeypatch.setattr(torch.Tensor, "item", counting(real_item))
        try:  # the two exits always agree: no sample can succeed, every run goes to the end
            early_attack(PixelReader(c0=0, c_final=0), x, alpha=1.0, iters=iters, w0=w0, check_every=check_every)
        finally:
            monkeypatch.undo()
        return counts["n"]

    assert reads(100, 25) - reads(50, 25) == 2
    assert reads(100, 1) - reads(50, 1) == 50


# ---------------------------------------------------------------- baselines

@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_baseline_succeeds_where_reachable(attack):
    x = _pixel_batch()[:3]  # exit 0 means 0.55 .. 0.73: within reach of eps = 0.3
    kw = {"fgsm": {}, "pgd": {"step": 0.05, "random_start": False}}[attack]
    x_adv, success = early_attack_baseline(PixelReader(), x, attack=attack, eps=0.3, **kw)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert success.all()
    assert torch.equal(x_adv[:, 1:], x[:, 1:])  # channels the internal exit does not read are untouched


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_baseline_fails_where_impossible(attack):
    x = _pixel_batch()
    _, success = early_attack_baseline(PixelReader(0, 0), x, attack=attack, eps=0.3)
    assert not success.any()


def test_baseline_is_pgd_on_the_internal_exits(tiny_dynn):
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x_adv, success = early_attack_baseline(tiny_dynn, x, attack="pgd", steps=2,
                                           generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = tiny_dynn(x)
        p = outs[-1].argmax(1)
        assert torch.equal(success, early_attack_success(tiny_dynn(x_adv), p))
    ref = pgd(tiny_dynn, x, p, steps=2, exit_loss=internal_exits_ce, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x_adv, ref)
    y = torch.randint(0, 10, (4,))
    mean_ic = (nn.functional.cross_entropy(outs[0], y, reduction="none")
               + nn.functional.cross_entropy(outs[1], y, reduction="none")) / 2
    assert torch.allclose(internal_exits_ce(list(outs), y), mean_ic)


def test_baseline_errors(tiny_dynn, tiny_sdnn):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(TypeError, match="DyNN"):
        early_attack_baseline(tiny_sdnn, x)
    with pytest.raises(ValueError, match="cw"):
        early_attack_baseline(tiny_dynn, x, attack="cw")
    with pytest.raises(ValueError, match="exit_loss"):
        early_attack_baseline(tiny_dynn, x, exit_loss="final")
    with pytest.raises(ValueError, match="return_info is fixed by the baseline"):
        early_attack_baseline(tiny_dynn, x, return_info=True)
    with pytest.raises(ValueError, match="eps"):
        early_attack_baseline(tiny_dynn, x, eps=-0.1)
