"""GpuLoader: batches straight from uint8 tensors that already live on the target device."""
from __future__ import annotations

import functools
import math
from typing import Iterator

import torch
import torch.nn.functional as F

from ..early_exit import to_float_pixels

__all__ = ["GpuLoader", "random_crop_flip", "colour_jitter"]


def random_crop_flip(images: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Batched random crop with zero padding plus horizontal flip, by one gather (no Python loop).

    images: [B,C,H,W] (any dtype); offsets: int64 [B,2] (dy, dx) in 0..2*pad; flip: bool [B].
    Output [B,C,H,W]: out[b] = pad(images[b])[:, dy:dy+H, dx:dx+W], mirrored left-right if flip[b].
    """
    b, c, h, w = images.shape
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad))
    dev = images.device
    offsets = offsets.to(dev)
    flip = flip.to(dev)
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = offsets[:, 0:1] + ar_h                                    # [B,H]
    cols = offsets[:, 1:2] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # [B,W]
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return images[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


@functools.lru_cache(maxsize=None)
def _luma_weights(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """ITU-R 601 luma weights (0.299, 0.587, 0.114) as [1,3,1,1], built once per device and dtype
    (building them per batch would copy from the host, and wait for it, at every step)."""
    return torch.tensor([0.299, 0.587, 0.114], dtype=dtype).view(1, 3, 1, 1).to(device)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast, then saturation jitter on float images in [0,1].

    x: float [B,3,H,W]; factors: [B,3] multiplicative factors (brightness, contrast, saturation),
    as torchvision's ColorJitter draws them from [1-j, 1+j] (fixed order here, no hue). Clipped.
    """
    f = factors.to(x.device, x.dtype)
    wts = _luma_weights(x.device, x.dtype)
    x = (x * f[:, 0].view(-1, 1, 1, 1)).clamp(0, 1)
    mean = (x * wts).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * f[:, 1].view(-1, 1, 1, 1) + mean).clamp(0, 1)
    gray = (x * wts).sum(1, keepdim=True)
    return ((x - gray) * f[:, 2].view(-1, 1, 1, 1) + gray).clamp(0, 1)


class GpuLoader:
    """Mini-batches from uint8 images [N,3,H,W] and int64 labels [N] kept on ``device``.

    Iterating yields (x float32 [B,3,H,W] in [0,1], y int64 [B]) on the device. With
    ``augment``: random crop from the image zero-padded by ``pad`` pixels plus horizontal flip
    (p=0.5), and when ``jitter`` > 0 brightness/contrast/saturation factors in [1-j, 1+j].
    All randomness (order, crops, flips, jitter) comes from a CPU generator seeded by
    (seed, epoch): the same seed and epoch give the same batches on any device. The epoch
    advances by one after each iteration starts; :meth:`set_epoch` sets it explicitly.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 128,
                 shuffle: bool = False, augment: bool = False, pad: int = 4, jitter: float = 0.0,
                 drop_last: bool = False, seed: int = 0, device: torch.device | str | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.long)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.pad, self.jitter = shuffle, augment, int(pad), float(jitter)
        self.drop_last, self.seed, self.epoch = drop_last, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Use the randomness of ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.augment:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g)
            flips = torch.rand(n, generator=g) < 0.5
            factors = 1 + self.jitter * (2 * torch.rand(n, 3, generator=g) - 1)
            offsets, flips, factors = (t.to(self.device) for t in (offsets, flips, factors))
        order = order.to(self.device)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, n), self.batch_size):
            sl = slice(start, start + self.batch_size)
            idx = order[sl]
            x = self.images[idx]
            if self.augment:
                x = random_crop_flip(x, offsets[sl], flips[sl], self.pad)
            x = to_float_pixels(x)  # the same bits on every device
            if self.augment and self.jitter > 0:
                x = colour_jitter(x, factors[sl])
            yield x, self.labels[idx]
