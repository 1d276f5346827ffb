"""MobileNet (v1) of the SDN code (Kaya et al. 2019) for 32x32 or 64x64 inputs, as a :class:`Backbone`.

``stem (Conv3x3 32, stride 1, BN, ReLU) -> 13 depthwise-separable blocks -> AvgPool2d(2)
(AvgPool2d(4) for 64x64) -> Flatten -> Linear(1024, C)``. Stages = the stem, then the 13
blocks; ICs after blocks 3, 5, 7, 9, 12 (1-based).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, ModelSpec
from .heads import Normalize

CFG = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)
"""Block output channels; ``(c, 2)`` marks a stride-2 block."""
IC_AFTER_BLOCK = (3, 5, 7, 9, 12)
"""1-based blocks whose output feeds an internal classifier."""
FINAL_POOL = {32: 2, 64: 4}


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution (``groups`` = channels) that runs in fp32 when bf16 autocast is on
    **on a CPU**: there oneDNN's bf16 depthwise kernels are slower than its fp32 ones, while the
    pointwise convolutions gain from bf16. One MobileNet training epoch (quiet 2-core
    AVX-512-BF16 machine, 1,024 images, batch 128, channels-last) against a plain fp32 loop:
    all bf16 1.5x, all fp32 1.6x, bf16 with fp32 depthwise 2.3x. Everywhere else (CUDA,
    evaluation, attacks: no CPU autocast) it is an ``nn.Conv2d``, with the same parameters and
    state-dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def separable_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise Conv3x3(stride)-BN-ReLU then pointwise Conv1x1-BN-ReLU, no biases.

    ``[B, c_in, s, s] -> [B, c_out, s/stride, s/stride]``.
    """
    return nn.Sequential(
        DepthwiseConv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


def mobilenet_backbone(spec: ModelSpec, normalize: Normalize) -> Backbone:
    """MobileNet backbone for ``spec.input_size`` in (32, 64); 14 stages, 5 IC positions.

    Weights keep torch's default init (the anchor's MobileNet defines no custom init).
    """
    stages: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())]
    shapes = [(32, spec.input_size)]
    c_in, side = 32, spec.input_size
    for entry in CFG:
        c_out, stride = (entry, 1) if isinstance(entry, int) else entry
        stages.append(separable_block(c_in, c_out, stride))
        c_in, side = c_out, side // stride
        shapes.append((c_out, side))
    head = nn.Sequential(nn.AvgPool2d(FINAL_POOL[spec.input_size]), nn.Flatten(), nn.Linear(c_in, spec.num_classes))
    ic_after = list(IC_AFTER_BLOCK)  # stage 0 is the stem, so block k (1-based) is stage k
    return Backbone(spec, normalize, stages, head, ic_after, [shapes[i] for i in ic_after])
