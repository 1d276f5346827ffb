"""FGSM / PGD / MI-FGSM: budgets, exit losses, model state, errors, torchattacks equivalence."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dynn_lib.attacks import (ALL_EXITS, ATTACKS, ExitView, attack_logits, attack_loss, attack_mode, fgsm,
                              mifgsm, pgd, validate_attack_args)
from dynn_lib.early_exit import exit_numbers
from dynn_lib.models.base import DyNN, SDNN

from conftest import make_tiny_backbone

FAST = {"fgsm": {}, "pgd": {"steps": 3}, "mifgsm": {"steps": 3}}
DYNN_EXIT_LOSSES = ("final", "fired", "mean", 0, 1, -1)
SDNN_EXIT_LOSSES = ("final", 0, -1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(n: int = 4, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


def _run(name, model, x, y, **kw):
    return ATTACKS[name](model, x, y, **{**FAST[name], **kw})


def _check_budget(x_adv, x, eps):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


# ---------------------------------------------------------------- budgets and exit losses

@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("exit_loss", DYNN_EXIT_LOSSES)
def test_budget_dynn(tiny_dynn, name, exit_loss):
    x, y = _batch()
    eps = 8 / 255
    x_adv, info = _run(name, tiny_dynn, x, y, eps=eps, exit_loss=exit_loss, tau=0.5,
                       generator=torch.Generator().manual_seed(1), return_info=True)
    _check_budget(x_adv, x, eps)
    assert (x_adv - x).abs().max() > eps / 2  # it moved
    assert info.exit_used.shape == (4,) and info.exit_used.dtype == torch.int64
    expected = {"final": 2, "mean": ALL_EXITS, 0: 0, 1: 1, -1: 2}
    if exit_loss in expected:
        assert (info.exit_used == expected[exit_loss]).all()
    else:
        assert ((info.exit_used >= 0) & (info.exit_used <= 2)).all()


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("exit_loss", SDNN_EXIT_LOSSES)
def test_budget_sdnn(tiny_sdnn, name, exit_loss):
    x, y = _batch()
    x_adv, info = _run(name, tiny_sdnn, x, y, eps=4 / 255, exit_loss=exit_loss, return_info=True)
    _check_budget(x_adv, x, 4 / 255)
    assert (info.exit_used == 0).all()


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("model_name", ["tiny_dynn", "tiny_sdnn"])
def test_eps_zero_leaves_x_unchanged(request, name, model_name):
    model = request.getfixturevalue(model_name)
    x, y = _batch()
    x_adv = _run(name, model, x, y, eps=0.0)
    assert torch.equal(x_adv, x)


def test_budget_at_pixel_bounds(tiny_dynn):
    x, y = _batch()
    x[:, :, :4] = 0.0
    x[:, :, 4:] = 1.0
    for name in ATTACKS:
        _check_budget(_run(name, tiny_dynn, x, y, eps=16 / 255), x, 16 / 255)


def test_any_input_size_and_class_count():
    model = DyNN(make_tiny_backbone(num_classes=7, size=12)).eval()
    x = torch.rand(2, 3, 12, 12)
    y = torch.tensor([1, 6])
    for name in ATTACKS:
        _check_budget(_run(name, model, x, y, exit_loss="mean"), x, 8 / 255)


def test_pgd_generator_seeds_the_random_start(tiny_dynn):
    x, y = _batch()
    a = pgd(tiny_dynn, x, y, steps=1, generator=torch.Generator().manual_seed(3))
    b = pgd(tiny_dynn, x, y, steps=1, generator=torch.Generator().manual_seed(3))
    c = pgd(tiny_dynn, x, y, steps=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mifgsm_default_step_is_eps_over_steps(tiny_sdnn):
    x, y = _batch()
    assert torch.equal(mifgsm(tiny_sdnn, x, y, eps=6 / 255, steps=3),
                       mifgsm(tiny_sdnn, x, y, eps=6 / 255, steps=3, step=2 / 255))


def test_pgd_sample_does_not_depend_on_its_batch(tiny_dynn):
    x, y = _batch()
    batched = pgd(tiny_dynn, x, y, steps=3, random_start=False, exit_loss="fired", tau=0.3)
    for i in range(len(x)):
        alone = pgd(tiny_dynn, x[i:i + 1], y[i:i + 1], steps=3, random_start=False, exit_loss="fired", tau=0.3)
        assert torch.allclose(alone, batched[i:i + 1], atol=1e-6)


# ---------------------------------------------------------------- the "fired" exit

def test_fired_is_the_exit_early_exit_inference_takes(tiny_dynn):
    x, _ = _batch(16)
    x[8:] *= 0.1  # a different regime, so that several exits fire
    with torch.no_grad():
        outs = tiny_dynn(x)
    z = torch.stack(outs)
    for tau in (0.0, 0.11, 0.13, 0.2, 1.0):
        ex = exit_numbers(outs, tau)
        logits = attack_logits(outs, "fired", tau)
        assert torch.equal(logits, z[ex, torch.arange(16)])
        _, used = attack_loss(outs, torch.zeros(16, dtype=torch.long), "fired", tau)
        assert torch.equal(used, ex)
    # the real early-stopping path agrees on which exit answers
    _, ex_real = tiny_dynn.forward_early_exit(x, (0.11, 0.11))
    assert torch.equal(attack_loss(outs, torch.zeros(16, dtype=torch.long), "fired", 0.11)[1], ex_real)


def test_fired_exit_used_is_the_last_iterate(tiny_dynn):
    x, y = _batch(8)
    tau = (0.12, 0.12)
    # FGSM differentiates at x itself
    _, info = fgsm(tiny_dynn, x, y, exit_loss="fired", tau=tau, return_info=True)
    with torch.no_grad():
        assert torch.equal(info.exit_used, exit_numbers(tiny_dynn(x), tau))
    # PGD's last gradient is taken at the iterate after steps - 1 updates
    kw = dict(eps=16 / 255, step=4 / 255, random_start=False, exit_loss="fired", tau=tau)
    x_prev = pgd(tiny_dynn, x, y, steps=2, **kw)
    _, info = pgd(tiny_dynn, x, y, steps=3, return_info=True, **kw)
    with torch.no_grad():
        assert torch.equal(info.exit_used, exit_numbers(tiny_dynn(x_prev), tau))


def test_mean_exit_loss_is_mean_ce():
    outs = [torch.randn(5, 4) for _ in range(3)]
    y = torch.randint(0, 4, (5,))
    loss, _ = attack_loss(outs, y, "mean")
    ref = sum(nn.functional.cross_entropy(o, y, reduction="none") for o in outs) / 3
    assert torch.allclose(loss, ref)
    assert attack_logits(outs, "mean").shape == (3, 5, 4)
    assert torch.equal(attack_logits(outs, 1), outs[1])


# ---------------------------------------------------------------- model state

@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("training", [True, False])
def test_mode_and_weights_restored(tiny_dynn, name, training):
    tiny_dynn.train(training)
    tiny_dynn.ics[0].eval()  # a mixed state must come back as it was
    modes = [m.training for m in tiny_dynn.modules()]
    seen = []
    hook = tiny_dynn.register_forward_pre_hook(
        lambda m, a: seen.append((m.training, any(p.requires_grad for p in m.parameters()))))
    before = {k: v.clone() for k, v in tiny_dynn.state_dict().items()}
    _run(name, tiny_dynn, *_batch(), exit_loss="mean")
    hook.remove()
    assert seen and all(s == (False, False) for s in seen)  # eval + frozen during the attack
    assert [m.training for m in tiny_dynn.modules()] == modes
    assert all(p.requires_grad for p in tiny_dynn.parameters())
    assert all(p.grad is None for p in tiny_dynn.parameters())
    after = tiny_dynn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched


def test_attack_mode_restores_on_error(tiny_sdnn):
    tiny_sdnn.train()
    tiny_sdnn.backbone.final_head[2].weight.requires_grad_(False)
    with pytest.raises(RuntimeError):
        with attack_mode(tiny_sdnn):
            raise RuntimeError("boom")
    assert tiny_sdnn.training
    assert not tiny_sdnn.backbone.final_head[2].weight.requires_grad
    assert tiny_sdnn.backbone.stages[0][0].weight.requires_grad


# ---------------------------------------------------------------- errors (raised before any compute)

class _Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0
        self.is_dynamic, self.num_exits = model.is_dynamic, model.num_exits

    def forward(self, x):
        self.calls += 1
        return self.model(x)


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("bad, match", [
    ({"exit_loss": "last"}, "'last'"),
    ({"exit_loss": 3}, "out of range"),
    ({"exit_loss": True}, "True"),
    ({"exit_loss": "fired"}, "tau"),
    ({"exit_loss": "fired", "tau": 1.5}, "tau"),
    ({"eps": -1 / 255}, "eps"),
    ({"eps": float("nan")}, "eps"),
    ({"eps": 2.0}, "eps"),
])
def test_bad_args_dynn(tiny_dynn, name, bad, match):
    model = _Counting(tiny_dynn)
    with pytest.raises(ValueError, match=match):
        ATTACKS[name](model, *_batch(), **bad)
    assert model.calls == 0


@pytest.mark.parametrize("name", ["pgd", "mifgsm"])
@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 2.5}, {"step": -0.1}, {"step": float("nan")}])
def test_bad_iteration_args(tiny_dynn, name, bad):
    with pytest.raises(ValueError, match="step"):
        ATTACKS[name](tiny_dynn, *_batch(), **bad)


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("exit_loss", ["fired", "mean", 1, "nope"])
def test_cnn_accepts_only_the_final_exit(tiny_sdnn, name, exit_loss):
    model = _Counting(tiny_sdnn)
    with pytest.raises(ValueError, match=f"exit_loss={exit_loss!r}.*'final', 0 or -1"):
        ATTACKS[name](model, *_batch(), exit_loss=exit_loss, tau=0.9)
    assert model.calls == 0


def test_bad_tensors(tiny_dynn):
    x, y = _batch()
    with pytest.raises(ValueError, match="0,1"):
        fgsm(tiny_dynn, x * 2, y)
    with pytest.raises(ValueError, match="int64"):
        fgsm(tiny_dynn, x, y.int())
    with pytest.raises(ValueError, match="labels"):
        fgsm(tiny_dynn, x, y[:2])
    with pytest.raises(ValueError, match="float tensor"):
        fgsm(tiny_dynn, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="decay"):
        mifgsm(tiny_dynn, x, y, decay=-1.0)
    validate_attack_args(0.0, 0.0, 1, x, y)  # the edges are legal


def test_exit_view(tiny_dynn):
    x, _ = _batch()
    with torch.no_grad():
        outs = tiny_dynn(x)
        for k in range(3):
            assert torch.equal(ExitView(tiny_dynn, k)(x), outs[k])
        assert torch.equal(ExitView(tiny_dynn)(x), outs[-1])
    with pytest.raises(ValueError, match="exit"):
        ExitView(tiny_dynn, 3)


# ---------------------------------------------------------------- torchattacks equivalence

def _torchattacks():
    return pytest.importorskip("torchattacks", reason="torchattacks not installed (pip install --no-deps torchattacks)")


def _ta_inputs(model):
    # 8 images: the sum (here) and mean (torchattacks) reductions differ by an exact power of two
    x, _ = _batch(8, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)  # correctly classified start, as in a real evaluation
    y[::2] = (y[::2] + 1) % 10  # and some misclassified ones
    return x, y


@pytest.mark.parametrize("view", ["sdnn", "dynn_exit0"])
def test_torchattacks_equivalence(tiny_sdnn, tiny_dynn, view):
    ta = _torchattacks()
    model, exit_loss = (tiny_sdnn, "final") if view == "sdnn" else (ExitView(tiny_dynn, 0), "final")
    x, y = _ta_inputs(model)
    eps, step = 8 / 255, 2 / 255
    ours = fgsm(model, x, y, eps=eps, exit_loss=exit_loss)
    theirs = ta.FGSM(model, eps=eps)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours = pgd(model, x, y, eps=eps, step=step, steps=5, random_start=False)
    theirs = ta.PGD(model, eps=eps, alpha=step, steps=5, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours = mifgsm(model, x, y, eps=eps, step=step, steps=5, decay=1.0)
    theirs = ta.MIFGSM(model, eps=eps, alpha=step, steps=5, decay=1.0)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)
    # the random start draws from the global RNG when no generator is given, as torchattacks does
    torch.manual_seed(11)
    ours = pgd(model, x, y, eps=eps, step=step, steps=3)
    torch.manual_seed(11)
    theirs = ta.PGD(model, eps=eps, alpha=step, steps=3, random_start=True)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_dynn_exit_index_equals_torchattacks_on_that_exit(tiny_dynn):
    ta = _torchattacks()
    x, y = _ta_inputs(ExitView(tiny_dynn, 1))
    ours = pgd(tiny_dynn, x, y, steps=3, random_start=False, exit_loss=1)
    theirs = ta.PGD(ExitView(tiny_dynn, 1), eps=8 / 255, alpha=2 / 255, steps=3, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


# ---------------------------------------------------------------- a trained toy model

def _toy_data(n: int, g: torch.Generator, classes: int = 3):
    templates = torch.rand(classes, 3, 8, 8, generator=torch.Generator().manual_seed(99)) - 0.5
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.5 + 0.2 * templates[y] + 0.05 * torch.randn(n, 3, 8, 8, generator=g)
    return x.clamp(0, 1), y


def test_trained_model_clean_accuracy_above_pgd_robust_accuracy():
    g = torch.Generator().manual_seed(0)
    model = DyNN(make_tiny_backbone(num_classes=3, seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(25):
        x, y = _toy_data(32, g)
        loss = sum(nn.functional.cross_entropy(o, y) for o in model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _toy_data(64, g)
    with torch.no_grad():
        clean = (model(x)[-1].argmax(1) == y).float().mean().item()
    x_adv = pgd(model, x, y, eps=16 / 255, steps=5, step=4 / 255, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        robust = (model(x_adv)[-1].argmax(1) == y).float().mean().item()
    assert clean >= 0.9
    assert robust < clean - 0.3
    # an SDNN view of the same network behaves the same way under FGSM
    sdnn = SDNN(model.backbone).eval()
    with torch.no_grad():  # the attacks enable gradients themselves
        fgsm_acc = (sdnn(fgsm(sdnn, x, y, eps=16 / 255)).argmax(1) == y).float().mean().item()
    assert fgsm_acc < clean
