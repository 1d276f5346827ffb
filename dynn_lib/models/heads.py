"""Classifier heads: the SDN internal classifier (mixed pooling + linear) and input normalisation."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel (x - mean) / std on [0,1] pixels, shape [B, 3, H, W]. Buffers, not parameters."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class InternalClassifier(nn.Module):
    """SDN internal classifier (Kaya et al. 2019) reading a [B, C, s, s] feature map.

    For s >= 4: ``a * maxpool(k) + (1 - a) * avgpool(k)`` with k = s // 4 (one learnable scalar a,
    initialised uniform in [0,1) as in the SDN code), flatten to C*16, one linear layer.
    For s < 4: flatten to C*s*s and one linear layer. Output: logits [B, num_classes].
    """

    def __init__(self, channels: int, size: int, num_classes: int):
        super().__init__()
        self.channels, self.size = channels, size
        if size >= 4:
            k = size // 4
            self.kernel = k
            self.alpha = nn.Parameter(torch.rand(1))
            self.linear = nn.Linear(channels * (size // k) ** 2, num_classes)
        else:
            self.kernel = 0
            self.alpha = None
            self.linear = nn.Linear(channels * size * size, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.kernel:
            k = self.kernel
            h = self.alpha * nn.functional.max_pool2d(h, k) + (1 - self.alpha) * nn.functional.avg_pool2d(h, k)
        return self.linear(h.flatten(1))
