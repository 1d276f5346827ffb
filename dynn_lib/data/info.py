"""Dataset descriptions (protocol section 2) and the stratified query/evaluation split."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["DatasetInfo", "DATASETS", "get_info", "SPLIT_SEED", "query_eval_split", "stratified_subset"]

#: Seed of the one fixed test-set split into query and evaluation halves.
SPLIT_SEED = 0

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Hendrycks & Dietterich (2019) constants; index k is severity k+1.
_CIFAR_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
_CIFAR_BRIGHT = (0.05, 0.10, 0.15, 0.20, 0.30)
_TINY_NOISE = (0.04, 0.08, 0.12, 0.15, 0.18)
_TINY_BRIGHT = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``mean``/``std`` are per-channel statistics of x/255 used by the model's normalisation
    layer; ``crop_padding`` is in pixels; ``noise_sigmas`` (on [0,1] pixels) and
    ``brightness_shifts`` (added to HSV V) are indexed by severity 1..5 (element 0 = severity 1).
    """

    name: str
    label: str
    num_classes: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int
    colour_jitter: float
    noise_sigmas: tuple[float, ...]
    brightness_shifts: tuple[float, ...]
    train_size: int
    test_size: int
    generated: bool = False

    def noise_sigma(self, severity: int) -> float:
        """Gaussian-noise sigma (on [0,1] pixels) for severity 1..5."""
        return self.noise_sigmas[_check_severity(severity) - 1]

    def brightness_shift(self, severity: int) -> float:
        """Shift added to the HSV V channel for severity 1..5."""
        return self.brightness_shifts[_check_severity(severity) - 1]


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return severity


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10 (official, torchvision)", 10, 32, _IMAGENET_MEAN, _IMAGENET_STD,
        4, 0.0, _CIFAR_NOISE, _CIFAR_BRIGHT, 50_000, 10_000),
    "cifar100": DatasetInfo(
        "cifar100", "CIFAR-100 (official, torchvision)", 100, 32, (0.507, 0.487, 0.441),
        (0.267, 0.256, 0.276), 4, 0.0, _CIFAR_NOISE, _CIFAR_BRIGHT, 50_000, 10_000),
    "cifar10-jpeg": DatasetInfo(
        "cifar10-jpeg", "CIFAR-10 (JPEG re-encoding, quality 75)", 10, 32, _IMAGENET_MEAN,
        _IMAGENET_STD, 4, 0.0, _CIFAR_NOISE, _CIFAR_BRIGHT, 50_000, 10_000),
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", "Tiny ImageNet (200 classes, val as test)", 200, 64,
        (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262), 8, 0.2, _TINY_NOISE, _TINY_BRIGHT,
        100_000, 10_000),
    "synthetic": DatasetInfo(
        "synthetic", "Synthetic (generated test data, not a real dataset)", 10, 32,
        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 4, 0.0, _CIFAR_NOISE, _CIFAR_BRIGHT,
        2_000, 1_000, generated=True),
}


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ValueError naming the accepted names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; accepted names: {', '.join(DATASETS)}") from None


def query_eval_split(labels: torch.Tensor, seed: int = SPLIT_SEED,
                     query_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified seeded split of a test set into (query_idx, eval_idx).

    labels: int64 [N]. For each class (in increasing label order) the indices of that class are
    permuted with one CPU generator seeded by ``seed``; the first round(n_c * query_fraction)
    go to the query half. Returns two sorted int64 index tensors [Nq], [Ne] (on CPU), disjoint
    and together covering 0..N-1 (5,000 + 5,000 for a balanced 10k test set).
    """
    if not 0.0 <= query_fraction <= 1.0:
        raise ValueError(f"query_fraction must be in [0, 1], got {query_fraction}")
    labels = torch.as_tensor(labels).detach().cpu().long().reshape(-1)
    g = torch.Generator().manual_seed(int(seed))
    query, evaluation = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).reshape(-1)
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(math.floor(idx.numel() * query_fraction + 0.5))
        query.append(idx[:k])
        evaluation.append(idx[k:])
    empty = torch.empty(0, dtype=torch.long)
    q = torch.sort(torch.cat(query) if query else empty).values
    e = torch.sort(torch.cat(evaluation) if evaluation else empty).values
    return q, e


def stratified_subset(labels: torch.Tensor, n: int | None, seed: int = SPLIT_SEED) -> torch.Tensor:
    """Positions of a seeded, class-stratified sample of ``n`` items: **the** way this library
    takes "n images" of any split (n_train, n_query, n_eval, the Early Attack's images, image
    grids, calibration hold-outs). Never "the first n": some copies (``cifar10-jpeg``) are stored
    sorted by class, so the first n would be one class.

    Args:
        labels: int64 ``[N]`` class labels of the split (any order).
        n: sample size; None or >= N returns every position.
        seed: seed of the CPU generator drawing the sample.
    Returns:
        Sorted int64 positions ``[min(n, N)]``. Class c gets ``n * N_c / N`` items rounded by the
        largest-remainder rule (ties to the lower class label), so 100 items of 10 balanced
        classes are exactly 10 per class; within a class the items are a seeded random draw.
    """
    labels = torch.as_tensor(labels).detach().cpu().long().reshape(-1)
    N = labels.numel()
    if n is None or n >= N:
        return torch.arange(N, dtype=torch.long)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0 or None (all), got {n!r}")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = [n * int(c) / N for c in counts]
    quota = [int(math.floor(q)) for q in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: n - sum(quota)]:
        quota[i] += 1
    g = torch.Generator().manual_seed(int(seed))
    picks = []
    for c, q in zip(classes.tolist(), quota):
        idx = torch.nonzero(labels == c).reshape(-1)
        picks.append(idx[torch.randperm(idx.numel(), generator=g)[:q]])
    return torch.sort(torch.cat(picks)).values
