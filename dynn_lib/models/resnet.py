"""ResNet-56 of the SDN code (Kaya et al. 2019) for 32x32 or 64x64 inputs, as a :class:`Backbone`.

``stem (Conv3x3 16, BN, ReLU; stride 2 for 64x64 as in the anchor) -> 3 groups x 9 basic blocks
(16, 32/2, 64/2 channels/stride) -> ReLU -> AvgPool2d(8) -> Flatten -> Linear(64, C)``.
Stages = the stem, then the 27 blocks; ICs after blocks 4, 8, 12, 16, 20, 24 (1-based).

ICs read a block's output **before its final ReLU** (anchor quirk, kept). To make that the
stage output, each :class:`BasicBlock` *starts* with the ReLU that ends the anchor's previous
block and returns its pre-ReLU sum; the final head starts with the last ReLU. ReLU is
idempotent, so the first block (after the stem's ReLU) computes the same function.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, ModelSpec
from .heads import Normalize

GROUPS = ((16, 1), (32, 2), (64, 2))
"""(channels, stride of the first block) of the three groups."""
BLOCKS_PER_GROUP = 9
IC_AFTER_BLOCK = (4, 8, 12, 16, 20, 24)
"""1-based blocks (of 27) whose pre-ReLU output feeds an internal classifier."""


class BasicBlock(nn.Module):
    """``x -> relu(x) = r -> conv3x3-BN-ReLU-conv3x3-BN(r) + shortcut(r)`` (returned *before* ReLU).

    Shortcut: identity, or Conv1x1(stride, bias=False) + BN when the shape changes.
    ``[B, c_in, s, s] -> [B, c_out, s/stride, s/stride]``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.relu_in = nn.ReLU()
        self.residual = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.relu_in(x)
        return self.residual(r) + self.shortcut(r)


def init_weights(model: nn.Module, normal_linear: bool = True) -> None:
    """The anchor's ResNet init: conv He-normal (fan-out), BN (1, 0), and with ``normal_linear``
    linear layers N(0, 0.01) with zero bias (the anchor's CNN does this, its SDN keeps torch defaults)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif normal_linear and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def resnet56_backbone(spec: ModelSpec, normalize: Normalize) -> Backbone:
    """ResNet-56 backbone for ``spec.input_size`` in (32, 64); 28 stages, 6 IC positions."""
    stem_stride = 1 if spec.input_size == 32 else 2
    stages: list[nn.Module] = [nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())]
    shapes = [(16, spec.input_size // stem_stride)]
    c_in, side = 16, shapes[0][1]
    for c_out, stride in GROUPS:
        for b in range(BLOCKS_PER_GROUP):
            s = stride if b == 0 else 1
            stages.append(BasicBlock(c_in, c_out, s))
            c_in, side = c_out, side // s
            shapes.append((c_out, side))
    head = nn.Sequential(nn.ReLU(), nn.AvgPool2d(side), nn.Flatten(), nn.Linear(c_in, spec.num_classes))
    ic_after = list(IC_AFTER_BLOCK)  # stage 0 is the stem, so block k (1-based) is stage k
    return Backbone(spec, normalize, stages, head, ic_after, [shapes[i] for i in ic_after])
