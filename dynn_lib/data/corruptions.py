"""Common corruptions for the black-box query set (Hendrycks & Dietterich 2019), on tensors."""
from __future__ import annotations

import torch

from .info import get_info

__all__ = ["rgb_to_hsv", "hsv_to_rgb", "gaussian_noise", "brightness", "brightness_via_hsv", "query_set", "QUERY_SET_COPIES"]

#: Copies of each image in a query set: the original + 2 corruptions x 5 severities.
QUERY_SET_COPIES = 11


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB -> HSV for float images [...,3,H,W] in [0,1]; H, S, V all in [0,1] (H in turns).

    Black pixels get S = 0, gray pixels H = 0 (the skimage convention).
    """
    r, g, b = x.unbind(-3)
    v, _ = x.max(dim=-3)
    mn, _ = x.min(dim=-3)
    c = v - mn
    s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
    cz = c.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / cz, torch.where(v == g, 2.0 + (b - r) / cz, 4.0 + (r - g) / cz))
    h = torch.where(c > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack((h, s, v), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB, inverse of :func:`rgb_to_hsv` (same shapes and ranges)."""
    h, s, v = x.unbind(-3)
    h6 = (h % 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # sector k -> (r, g, b): 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
    cand = torch.stack((v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q), dim=-3)
    cand = cand.unflatten(-3, (3, 6))  # [...,3 channels, 6 sectors, H, W]
    idx = i.unsqueeze(-3).unsqueeze(-3).expand(*cand.shape[:-4], 3, 1, *cand.shape[-2:])
    return cand.gather(-3, idx).squeeze(-3)


def _to_uint8_trunc(x: torch.Tensor) -> torch.Tensor:
    """[0,1] floats -> uint8 by truncation of x*255 (as the benchmark's astype(np.uint8))."""
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def gaussian_noise(images: torch.Tensor, severity: int, dataset: str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, sigma^2) noise on [0,1] pixels (sigma from the dataset's table), clip, store uint8.

    images: uint8 [N,3,H,W] -> uint8 [N,3,H,W] on the same device. Noise is drawn on the
    generator's device (a fresh CPU generator seeded 0 when None) and moved to the images.
    """
    sigma = get_info(dataset).noise_sigma(severity)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator, device=generator.device)
    x = images.float() / 255.0 + sigma * noise.to(images.device)
    return _to_uint8_trunc(x)


def brightness(images: torch.Tensor, severity: int, dataset: str) -> torch.Tensor:
    """Add the dataset's shift to the HSV V channel, clip to [0,1], back to RGB, store uint8.

    images: uint8 [N,3,H,W] -> uint8 [N,3,H,W], truncated as the benchmark stores it.
    Closed form of the HSV round trip: H and S are unchanged and RGB is linear in V for fixed
    H, S, so each pixel scales by V'/V (the max channel becomes V'; black pixels, S=0, become
    gray V'). Computed on the 0..255 scale where every operand is exact in float32 and the one
    division is correctly rounded, so the result is the exact-arithmetic value truncated, the
    same on any device. (The benchmark's float64 skimage round trip can land 1 level lower
    where the exact value is an integer; :func:`brightness_via_hsv` is that literal round trip.)
    """
    shift = round(get_info(dataset).brightness_shift(severity) * 255.0, 6)  # in 1/255 levels
    x = images.float()
    v = x.amax(dim=-3, keepdim=True)
    v_new = (v + shift).clamp(0, 255)
    out = torch.where(x == v, v_new.expand_as(x), x * v_new / v.clamp_min(1.0))
    return out.clamp(0, 255).to(torch.uint8)


def brightness_via_hsv(images: torch.Tensor, severity: int, dataset: str) -> torch.Tensor:
    """Reference form of :func:`brightness`: RGB -> HSV, V += shift (clipped), HSV -> RGB, uint8."""
    shift = get_info(dataset).brightness_shift(severity)
    h, s, v = rgb_to_hsv(images.float() / 255.0).unbind(-3)
    return _to_uint8_trunc(hsv_to_rgb(torch.stack((h, s, (v + shift).clamp(0, 1)), dim=-3)))


def query_set(images: torch.Tensor, dataset: str, seed: int = 0,
              labels: torch.Tensor | None = None):
    """The black-box query inputs: uint8 [11N,3,H,W] (55,000 for 5,000 images).

    Order, in blocks of N: [originals, gaussian_noise s1..s5, brightness s1..s5], each block in
    the order of ``images``, so the label of row r is ``labels[r % N]``. Noise comes from one CPU
    generator seeded by ``seed``, consumed in severity order. With ``labels`` given, returns
    (images, labels.repeat(11)).
    """
    g = torch.Generator().manual_seed(int(seed))
    blocks = [images]
    blocks += [gaussian_noise(images, s, dataset, g) for s in range(1, 6)]
    blocks += [brightness(images, s, dataset) for s in range(1, 6)]
    out = torch.cat(blocks)
    if labels is None:
        return out
    return out, labels.repeat(QUERY_SET_COPIES)

