"""The truncated attack path: an attack on a DyNN stops computing at the exit its loss uses.

Equal to the full path (every exit computed, then the loss's exit selected): same input
gradients within float tolerance, same ``exit_used``, for several architectures and exit
layouts, a global and a per-exit τ; and it really stops (no later stage, no other head runs).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dynn_lib import models, numerics
from dynn_lib.attacks import ATTACKS, loss_path, pgd, resolve_exit_loss
from dynn_lib.attacks.losses import loss_gradient
from dynn_lib.early_exit import exit_numbers, fired_logits, tau_tensor
from dynn_lib.experiments.common import ExperimentConfig, _run_attack_batches
from dynn_lib.models.base import Backbone, DyNN, ModelSpec, SDNN
from dynn_lib.models.heads import Normalize

from conftest import make_tiny_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def _peaky(model: nn.Module, gain: float = 25.0) -> nn.Module:
    """Sharpen every linear head so confidences spread over (0.1, 1) and exits differ per sample."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
    return model.eval()


def _one_ic_backbone() -> Backbone:
    """4 stages, a single IC after stage 2 (a 2-exit DyNN with the IC late in the network)."""
    torch.manual_seed(1)
    w = 6
    stages = [nn.Sequential(nn.Conv2d(3 if i == 0 else w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU())
              for i in range(4)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, 5))
    return Backbone(ModelSpec("tiny1", 5, 8), Normalize((0.5,) * 3, (0.25,) * 3), stages, head, ic_after=(2,),
                    ic_shapes=((w, 8),))


def _models():
    """(name, DyNN, input side): the tiny layouts and the three real architectures (untrained)."""
    out = [("tiny 3 exits", _peaky(DyNN(make_tiny_backbone())), 8),
           ("tiny 1 late IC", _peaky(DyNN(_one_ic_backbone())), 8)]
    for arch in models.ARCHS:
        torch.manual_seed(0)
        out.append((arch, _peaky(models.build(arch, 10, exits=True), 40.0), 32))
    return out


MODELS = _models()


def _gap_tau(conf: torch.Tensor) -> float:
    """Midpoint of the widest gap between neighbouring confidences, at least two samples on each side.

    A threshold equal to a sample's confidence (the median of an even count is one) is a tie whose
    outcome rests on the last bit, and the truncated and full paths may round differently (their
    kernels see other batch sizes; seen on an AVX-512 CPU): a midpoint keeps every sample clear of it.
    """
    c = conf.flatten().sort().values
    gaps = c[2:-1] - c[1:-2]  # gap i lies between sorted ranks i+1 and i+2
    i = int(gaps.argmax()) + 1
    return float((c[i] + c[i + 1]) / 2)


def _split_taus(model: DyNN, x: torch.Tensor) -> tuple[tuple[float, ...], float]:
    """Per-exit τ and one global τ, each inside a confidence gap: samples leave at several exits."""
    with torch.no_grad():
        conf = torch.stack(model(x))[:-1].float().softmax(-1).amax(-1)
    return tuple(_gap_tau(c) for c in conf), _gap_tau(conf)


def _grad(model, x, y, exit_loss, tau, truncate):
    spec = resolve_exit_loss(exit_loss, model.num_exits, tau)
    return loss_gradient(model, x, y, loss_path(model, spec, x.device, truncate))


@pytest.mark.parametrize("name,model,side", MODELS, ids=[m[0] for m in MODELS])
def test_truncated_gradients_equal_full_path(name, model, side):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, side, side, generator=g)
    x[3:] *= 0.2  # another regime, so the exits differ
    y = torch.randint(0, model.spec.num_classes, (6,), generator=g)
    taus, one_tau = _split_taus(model, x)
    losses = [("fired", taus), ("fired", one_tau), ("final", None)]
    losses += [(k, None) for k in range(model.num_exits)]
    for exit_loss, tau in losses:
        g_full, u_full, m_full = _grad(model, x, y, exit_loss, tau, truncate=False)
        g_trunc, u_trunc, m_trunc = _grad(model, x, y, exit_loss, tau, truncate=True)
        assert torch.equal(u_trunc, u_full), (exit_loss, tau)
        scale = g_full.abs().max().clamp(min=1e-12)
        assert ((g_trunc - g_full).abs().max() / scale) < 1e-4, (exit_loss, tau)
        assert g_full.abs().sum() > 0
        assert (m_trunc <= m_full).all()  # never more work than the full path
    # the per-exit τ really sends samples to several exits (else "fired" tests little)
    _, used, _ = _grad(model, x, y, "fired", taus, truncate=True)
    assert used.unique().numel() >= 2


def _recorder(model: DyNN) -> list[str]:
    """Names of the stages and heads that run, in order (forward hooks)."""
    ran: list[str] = []
    for i, st in enumerate(model.backbone.stages):
        st.register_forward_hook(lambda m, a, o, i=i: ran.append(f"stage{i}"))
    for k, ic in enumerate(model.ics):
        ic.register_forward_hook(lambda m, a, o, k=k: ran.append(f"ic{k}"))
    model.backbone.final_head.register_forward_hook(lambda m, a, o: ran.append("final"))
    return ran


def test_truncated_forward_stops_at_the_exit():
    model = _peaky(DyNN(make_tiny_backbone()))  # stages 0, 1, 2; ICs after stages 0 and 1
    ran = _recorder(model)
    x, y = torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    _grad(model, x, y, "final", None, truncate=True)  # the MAC count runs the model once per model (cached)
    for exit_loss, expected in ((0, ["stage0", "ic0"]), (1, ["stage0", "stage1", "ic1"]),
                                ("final", ["stage0", "stage1", "stage2", "final"])):
        ran.clear()
        _grad(model, x, y, exit_loss, None, truncate=True)
        assert ran == expected, exit_loss
    ran.clear()
    _grad(model, x, y, "fired", 0.0, truncate=True)  # τ = 0: every sample leaves at exit 0
    assert ran == ["stage0", "ic0"]
    ran.clear()
    _grad(model, x, y, "fired", 1.0, truncate=True)  # nothing fires: the whole network
    assert ran == ["stage0", "ic0", "stage1", "ic1", "stage2", "final"]
    ran.clear()
    _grad(model, x, y, "final", None, truncate=False)  # the full path computes every exit
    assert ran == ["stage0", "ic0", "stage1", "ic1", "stage2", "final"]


def test_fired_samples_leave_the_batch():
    model = _peaky(DyNN(make_tiny_backbone()))
    sizes: list[int] = []
    model.backbone.stages[1].register_forward_hook(lambda m, a, o: sizes.append(a[0].shape[0]))
    model.backbone.stages[2].register_forward_hook(lambda m, a, o: sizes.append(a[0].shape[0]))
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    x[4:] *= 0.1
    taus = _split_taus(model, x)[0]
    with torch.no_grad():
        expected = exit_numbers(model(x), taus)
    sizes.clear()
    logits, used = model.forward_fired(x, taus)
    assert torch.equal(used, expected)
    assert sizes == [int((expected >= 1).sum()), int((expected >= 2).sum())]
    with torch.no_grad():
        assert torch.allclose(logits, fired_logits(model(x), taus), atol=1e-5)


@pytest.mark.parametrize("name,model,side", MODELS, ids=[m[0] for m in MODELS])
def test_fired_bucket_pads_to_few_batch_sizes_and_changes_no_result(name, model, side):
    # numerics.fired_bucket (on CUDA by default): the samples still running after an exit are padded
    # with zero rows to a multiple of the bucket, so the stages after it see few batch sizes; the
    # padding never reaches a decision, an output or the gradient
    g = torch.Generator().manual_seed(3)
    x = torch.rand(10, 3, side, side, generator=g)
    x[5:] *= 0.2
    y = torch.randint(0, model.spec.num_classes, (10,), generator=g)
    taus, _ = _split_taus(model, x)
    sizes: list[int] = []
    hooks = [st.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0])) for st in model.backbone.stages]
    try:
        runs = {}
        for bucket in (1, 4):
            with numerics.flags(fired_bucket=bucket):
                sizes.clear()
                with torch.no_grad():
                    logits, used = model.forward_fired(x, taus)
                seen = sorted(set(sizes))
                grad = _grad(model, x, y, "fired", taus, truncate=True)
                runs[bucket] = (logits, used, grad, seen)
    finally:
        for h in hooks:
            h.remove()
    (l1, u1, g1, sizes1), (l4, u4, g4, sizes4) = runs[1], runs[4]
    assert torch.equal(u4, u1) and u1.unique().numel() >= 2
    torch.testing.assert_close(l4, l1, rtol=1e-4, atol=1e-5)
    assert torch.equal(g4[1], g1[1]) and torch.equal(g4[2], g1[2])  # exit used, MACs
    assert ((g4[0] - g1[0]).abs().max() / g1[0].abs().max()) < 1e-4
    # each group the stages saw, padded to a multiple of the bucket, at most the batch
    assert sizes4 == sorted({min(10, -(-n // 4) * 4) for n in sizes1}), (sizes1, sizes4)


def test_forward_exit_equals_full_output_and_checks_its_argument():
    model = _peaky(DyNN(make_tiny_backbone()))
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        full = model(x)
        for k in range(-3, 3):
            assert torch.allclose(model.forward_exit(x, k), full[k], atol=1e-6)
    for bad in (3, -4, 1.0, True):
        with pytest.raises(ValueError, match="exit must be an integer"):
            model.forward_exit(x, bad)


def test_tau_tensor_is_checked_and_reused():
    t = tau_tensor((0.3, 0.8), 3)
    assert t.dtype == torch.float32 and t.tolist() == pytest.approx([0.3, 0.8])
    assert tau_tensor(t, 3) is t or torch.equal(tau_tensor(t, 3), t)
    z = torch.randn(3, 5, 4)
    assert torch.equal(exit_numbers(z, t), exit_numbers(z, (0.3, 0.8)))
    with pytest.raises(ValueError, match="one threshold per internal exit"):
        tau_tensor(torch.zeros(3), 3)
    with pytest.raises(ValueError, match="must lie in"):
        tau_tensor((0.3, 1.5), 3)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_truncated_equal_full_and_count_macs(name):
    model = _peaky(DyNN(make_tiny_backbone()))
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    x[3:] *= 0.2
    y = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(4))
    taus = _split_taus(model, x)[0]
    with_ics, alone = models.exit_macs(model), models.exit_macs(model, include_earlier_ics=False)
    steps = 1 if name == "fgsm" else 3
    kw = {} if name == "fgsm" else {"steps": steps}
    if name == "pgd":
        kw["random_start"] = False
    for exit_loss in ("fired", "final", 1):
        a, ia = ATTACKS[name](model, x, y, exit_loss=exit_loss, tau=taus, return_info=True, truncate=True, **kw)
        b, ib = ATTACKS[name](model, x, y, exit_loss=exit_loss, tau=taus, return_info=True, truncate=False, **kw)
        assert torch.equal(ia.exit_used, ib.exit_used)
        assert (a - b).abs().max() <= 1e-6 or (a != b).float().mean() < 0.01  # sign ties at most
        assert torch.equal(ib.macs, torch.full((6,), float(steps * with_ics[-1]), dtype=torch.float64))
        if exit_loss == "final":
            assert torch.equal(ia.macs, torch.full((6,), float(steps * alone[-1]), dtype=torch.float64))
        elif exit_loss == 1:
            assert torch.equal(ia.macs, torch.full((6,), float(steps * alone[1]), dtype=torch.float64))
        elif steps == 1:  # one step: its exit is exit_used
            assert torch.equal(ia.macs, torch.tensor([float(with_ics[e]) for e in ia.exit_used.tolist()],
                                                     dtype=torch.float64))
        else:
            assert ((ia.macs >= steps * with_ics[0]) & (ia.macs <= steps * with_ics[-1])).all()
    sd = SDNN(make_tiny_backbone()).eval()
    _, info = ATTACKS[name](sd, x, y, return_info=True, **kw)
    assert torch.equal(info.macs, torch.full((6,), float(steps * models.exit_macs(sd)[0]), dtype=torch.float64))


def test_attack_table_records_macs_and_batches():
    model = _peaky(DyNN(make_tiny_backbone(size=32)))
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (7,))
    cfg = ExperimentConfig(attack_batch_size=3, steps=2)
    out = _run_attack_batches(model, images, labels, "pgd", 4 / 255, cfg, "fired", 0.5, "cpu",
                              torch.Generator().manual_seed(0), 2)
    assert out.batch.tolist() == [0, 0, 0, 1, 1, 1, 2]
    ref = pgd(model, images[:3].float() / 255, labels[:3], eps=4 / 255, step=cfg.pgd_step, steps=2,
              exit_loss="fired", tau=0.5, generator=torch.Generator().manual_seed(0), return_info=True)[1]
    assert torch.equal(out.macs[:3], ref.macs) and torch.equal(out.exit_used[:3], ref.exit_used)
    assert (out.seconds > 0).all() and len(set(out.seconds[:3].tolist())) == 1
