"""Architectures (protocol section 3): parameter counts, shapes, shared backbones, early exit, MACs."""
from __future__ import annotations

import pytest
import torch

from dynn_lib.early_exit import early_exit_predict
from dynn_lib.models import (ARCHS, PROTOCOL_PARAM_COUNTS, DyNN, SDNN, attach_exits, backbone_macs, build,
                             count_trainable, exit_macs)

NUM_EXITS = {"vgg16": 7, "resnet56": 7, "mobilenet": 6}
PUBLISHED_MACS = {"vgg16": 313.7e6, "resnet56": 125.75e6, "mobilenet": 46.4e6}


def _x(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch,num_classes,exits", sorted(PROTOCOL_PARAM_COUNTS))
def test_param_counts_match_protocol(arch, num_classes, exits):
    model = build(arch, num_classes, exits=exits)
    assert count_trainable(model) == PROTOCOL_PARAM_COUNTS[(arch, num_classes, exits)]


def test_protocol_table_is_complete():
    assert len(PROTOCOL_PARAM_COUNTS) == 12
    assert {a for a, _, _ in PROTOCOL_PARAM_COUNTS} == set(ARCHS)


def test_count_trainable_ignores_frozen_and_buffers():
    model = build("resnet56", 10, exits=False)
    n = count_trainable(model)
    model.backbone.final_head[-1].weight.requires_grad_(False)
    assert count_trainable(model) == n - 640
    assert sum(b.numel() for b in model.buffers()) > 0  # BN statistics exist but are not counted


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("side,num_classes", [(32, 10), (32, 100), (64, 200)])
def test_forward_shapes(arch, side, num_classes):
    dynn = build(arch, num_classes, input_size=side).eval()
    sdnn = build(arch, num_classes, input_size=side, exits=False).eval()
    assert isinstance(dynn, DyNN) and isinstance(sdnn, SDNN)
    assert dynn.num_exits == NUM_EXITS[arch] and sdnn.num_exits == 1
    assert dynn.spec.input_size == side and dynn.spec.num_classes == num_classes
    x = _x(2, side)
    with torch.no_grad():
        outs, out = dynn(x), sdnn(x)
    assert isinstance(outs, list) and len(outs) == NUM_EXITS[arch]
    assert all(o.shape == (2, num_classes) for o in outs)
    assert isinstance(out, torch.Tensor) and out.shape == (2, num_classes)
    with torch.no_grad():  # the final exit is the backbone's own head
        assert torch.equal(outs[-1], dynn.backbone(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_attach_exits_shares_backbone_and_final_exit(arch):
    cnn = build(arch, 10, exits=False).eval()
    dynn = attach_exits(cnn).eval()
    assert dynn.backbone is cnn.backbone
    cnn_params = {id(p) for p in cnn.parameters()}
    assert all(id(p) in cnn_params for p in dynn.backbone.parameters())
    assert dynn.num_exits == NUM_EXITS[arch]
    x = _x(2, 32, seed=1)
    with torch.no_grad():
        assert torch.equal(dynn(x)[-1], cnn(x))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_early_exit_matches_batched_rule(arch, fmt):
    # in both memory formats: inference and attacks run channels-last on x86-64 CPUs (numerics)
    torch.manual_seed(0)
    model = build(arch, 10).eval().to(memory_format=fmt)
    x = _x(8, 32, seed=2)
    with torch.no_grad():
        logits = model(x)
    # per-exit tau at the batch median confidence (a midpoint, so no sample sits on it): several exits fire
    conf = torch.stack(logits[:-1]).softmax(-1).amax(-1)
    taus = [float(torch.quantile(c, 0.5)) for c in conf]
    preds, exits = early_exit_predict(logits, taus)
    got_logits, got_exits = model.forward_early_exit(x, taus)
    assert torch.equal(got_exits, exits)
    assert torch.equal(got_logits.argmax(1), preds)
    assert len(exits.unique()) >= 2
    stacked = torch.stack(logits)
    torch.testing.assert_close(got_logits, stacked[exits, torch.arange(8)], rtol=1e-4, atol=1e-5)
    # one global tau (protocol section 5's default) is accepted too; a wrong count names both
    tau = float(torch.quantile(conf.flatten(), 0.5))  # a midpoint too (the median of an even count is a sample's own)
    assert torch.equal(model.forward_early_exit(x, tau)[1], early_exit_predict(logits, tau)[1])
    with pytest.raises(ValueError, match=f"one threshold per internal exit \\({model.num_exits - 1}\\), got 2"):
        model.forward_early_exit(x, taus[:2])


@pytest.mark.parametrize("side", [32, 64])  # CIFAR-10 and Tiny ImageNet inputs (flattened heads differ)
@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_changes_logits_only_at_fp32_rounding(arch, side):
    torch.manual_seed(0)
    model = build(arch, 10, input_size=side).eval()
    x = _x(4, side, seed=3)
    with torch.no_grad():
        ref = torch.stack(model(x))
        model.to(memory_format=torch.channels_last)
        got = torch.stack(model(x))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    scale = ref.abs().amax(-1, keepdim=True)
    assert float(((got - ref).abs() / scale).max()) < 1e-4
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("kwargs,bad", [
    (dict(arch="vgg19", num_classes=10), "'vgg19'"),
    (dict(arch="resnet56", num_classes=1), "1"),
    (dict(arch="mobilenet", num_classes=10, input_size=48), "48"),
])
def test_build_rejects_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError) as err:
        build(**kwargs)
    msg = str(err.value)
    assert bad in msg
    if "arch" in msg:
        assert all(a in msg for a in ARCHS)
    if "input_size" in msg:
        assert "32" in msg and "64" in msg
    if "num_classes" in msg:
        assert ">= 2" in msg


@pytest.mark.parametrize("arch", ARCHS)
def test_macs_match_published_and_increase(arch):
    dynn = build(arch, 10)
    total = backbone_macs(dynn)
    assert abs(total - PUBLISHED_MACS[arch]) / PUBLISHED_MACS[arch] < 0.01
    costs = exit_macs(dynn)
    assert len(costs) == NUM_EXITS[arch]
    assert all(a < b for a, b in zip(costs, costs[1:]))
    own_head_only = exit_macs(dynn, include_earlier_ics=False)
    assert own_head_only[-1] == total and own_head_only[0] == costs[0]
    assert all(a <= b for a, b in zip(own_head_only, costs))
    assert exit_macs(SDNN(dynn.backbone)) == [total]


def test_macs_conventions_and_mode_restored():
    model = build("mobilenet", 10, exits=False)
    model.train()
    # the stem conv alone: 32*32 outputs * 32 channels * 3 in * 9
    stem = 32 * 32 * 32 * 3 * 9
    first_dw = 32 * 32 * 32 * 1 * 9  # depthwise: in_channels/groups = 1
    first_pw = 32 * 32 * 64 * 32
    assert backbone_macs(model) > stem + first_dw + first_pw
    assert model.training and all(m.training for m in model.modules())
    dynn = build("resnet56", 10).eval()
    exit_macs(dynn)
    assert not any(m.training for m in dynn.modules())
    big = build("resnet56", 200, input_size=64)
    assert exit_macs(big) == exit_macs(big, input_size=64)


def test_anchor_quirks_kept():
    vgg = build("vgg16", 10, exits=False)
    kinds = [type(m).__name__ for m in vgg.backbone.final_head]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "Dropout", "Linear"]  # no ReLU before the last
    res = build("resnet56", 10).eval()
    x, feats = _x(2, 32, seed=3), {}
    hook = res.backbone.stages[res.backbone.ic_after[0]].register_forward_hook(lambda m, i, o: feats.update(h=o))
    with torch.no_grad():
        res(x)
    hook.remove()
    assert (feats["h"] < 0).any()  # ResNet ICs see the block output before its final ReLU


def test_attach_exits_initialises_ics_like_the_anchor_sdn():
    """VGG's SDN initialises every linear layer N(0, 0.01) with zero bias; the IC-only heads match."""
    torch.manual_seed(0)
    dyn = attach_exits(build("vgg16", 10, exits=False))
    for ic in dyn.ics:
        w = ic.linear.weight.detach()
        assert abs(float(w.std()) - 0.01) < 0.002 and float(ic.linear.bias.detach().abs().max()) == 0.0


def test_mobilenet_depthwise_convolutions_stay_fp32_under_cpu_autocast():
    """Training speed on a CPU (oneDNN's bf16 depthwise kernels are slow): under CPU bf16 autocast
    a depthwise convolution computes exactly the fp32 convolution; the pointwise ones still run
    in bf16; the model's parameters and state-dict keys are those of plain convolutions."""
    from torch.nn import functional as F

    from dynn_lib.models.mobilenet import DepthwiseConv2d
    conv = DepthwiseConv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.randn(2, 8, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        pointwise = torch.nn.Conv2d(8, 4, 1, bias=False)(y)
    assert y.dtype == torch.float32 and torch.equal(y, F.conv2d(x, conv.weight, padding=1, groups=8))
    assert pointwise.dtype == torch.bfloat16
    model = build("mobilenet", 10, 32, exits=False)
    dw = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert len(dw) == 13 and all(m.groups == m.in_channels == m.out_channels for m in dw)
    assert all(type(m) is torch.nn.Conv2d for m in model.modules() if isinstance(m, torch.nn.Conv2d)
               and m.groups == 1)
