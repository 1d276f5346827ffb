"""VGG-16-BN of the SDN code (Kaya et al. 2019) for 32x32 or 64x64 inputs, as a :class:`Backbone`.

Stages = the 13 conv blocks (``Conv3x3(bias) -> BN -> ReLU [-> MaxPool2d(2)]``); the final head
is the classifier ``Flatten -> Linear(fc_in, f1) -> ReLU -> Dropout(0.5) -> Linear(f1, f2) ->
Dropout(0.5) -> Linear(f2, C)`` with (f1, f2) = (512, 512) for 32x32 and (2048, 1024) for 64x64.
There is **no ReLU between the last two linear layers**: a quirk of the anchor code, kept so
the parameter counts and trained behaviour match it.

ICs read the output of conv layers 2, 4, 6, 7, 9, 10 (1-based), after that block's max-pool.
"""
from __future__ import annotations

import math

from torch import nn

from .base import Backbone, ModelSpec
from .heads import Normalize

CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (2, 4, 7, 10, 13)
"""1-based conv layers followed by MaxPool2d(2) (the ``M`` entries of the config)."""
IC_AFTER_CONV = (2, 4, 6, 7, 9, 10)
"""1-based conv layers whose output feeds an internal classifier."""
FC_SIZES = {32: (512, 512), 64: (2048, 1024)}


def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """``[B, c_in, s, s] -> [B, c_out, s', s']`` with s' = s/2 when ``pool`` else s."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """The anchor's VGG init: conv N(0, 2/(k*k*out)) (He fan-out), BN (1, 0), linear N(0, 0.01), biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def vgg16_backbone(spec: ModelSpec, normalize: Normalize) -> Backbone:
    """VGG-16-BN backbone for ``spec.input_size`` in (32, 64); 13 stages, 6 IC positions."""
    stages, shapes, side, c_in = [], [], spec.input_size, 3
    for layer, c_out in enumerate(CHANNELS, start=1):
        pool = layer in POOL_AFTER
        stages.append(conv_block(c_in, c_out, pool))
        side //= 2 if pool else 1
        shapes.append((c_out, side))
        c_in = c_out
    f1, f2 = FC_SIZES[spec.input_size]
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c_in * side * side, f1), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(f1, f2), nn.Dropout(0.5),  # no ReLU here: anchor quirk
        nn.Linear(f2, spec.num_classes),
    )
    ic_after = [layer - 1 for layer in IC_AFTER_CONV]
    return Backbone(spec, normalize, stages, head, ic_after, [shapes[i] for i in ic_after])
