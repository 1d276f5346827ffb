"""Named presets (protocol section 12): ``smoke`` (CPU, minutes; numbers meaningless, code paths
real) and ``paper`` (the full recipe on a GPU). Any field can be overridden."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    """Sizes of one reproduction run.

    n_train: training images per model (None = the whole training set).
    cnn_epochs / cnn_milestones: CNN and SDN-training epochs and lr-decay epochs (x0.1).
    ic_epochs / ic_milestones: IC-only training epochs and lr-decay epochs.
    n_query: query-half images used for calibration and the surrogates' query set (None = all).
    n_eval: evaluation-half images attacked (None = all 5,000).
    attack_steps: PGD / MI-FGSM iterations.
    ea_iters / ea_images: Early Attack iterations and number of images (paper: 1,000 / 100).
    batch_size: training batch (paper: 128).
    """

    name: str
    n_train: int | None
    cnn_epochs: int
    cnn_milestones: tuple[int, ...]
    ic_epochs: int
    ic_milestones: tuple[int, ...]
    n_query: int | None
    n_eval: int | None
    attack_steps: int
    ea_iters: int
    ea_images: int
    batch_size: int = 128


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_train=2000, cnn_epochs=1, cnn_milestones=(), ic_epochs=1, ic_milestones=(),
                     n_query=200, n_eval=200, attack_steps=2, ea_iters=20, ea_images=10),
    "paper": Profile("paper", n_train=None, cnn_epochs=100, cnn_milestones=(35, 60, 85), ic_epochs=25,
                     ic_milestones=(15,), n_query=None, n_eval=None, attack_steps=10, ea_iters=1000,
                     ea_images=100),
}


def get_profile(name: str | Profile, **overrides: Any) -> Profile:
    """The named profile with ``overrides`` applied (unknown names and fields are errors)."""
    if isinstance(name, Profile):
        base = name
    elif name in PROFILES:
        base = PROFILES[name]
    else:
        raise ValueError(f"unknown profile {name!r}; accepted: {', '.join(PROFILES)}")
    valid = {f.name for f in fields(Profile)} - {"name"}
    bad = set(overrides) - valid
    if bad:
        raise ValueError(f"unknown profile field(s) {sorted(bad)}; accepted: {sorted(valid)}")
    p = replace(base, **overrides)
    for f in ("cnn_epochs", "ic_epochs", "attack_steps", "ea_iters", "ea_images", "batch_size"):
        if getattr(p, f) < 1:
            raise ValueError(f"profile field {f} must be >= 1, got {getattr(p, f)}")
    for f in ("n_train", "n_query", "n_eval"):
        v = getattr(p, f)
        if v is not None and v < 1:
            raise ValueError(f"profile field {f} must be >= 1 or None (all), got {v}")
    return p
