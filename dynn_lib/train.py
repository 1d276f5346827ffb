"""The three training recipes of protocol section 4.

* ``cnn``: the static network (SDNN). SGD momentum 0.9, lr 0.1, weight decay 5e-4 (VGG) or
  1e-4 (ResNet, MobileNet), batch 128, 100 epochs, lr x0.1 at epochs 35, 60, 85, cross-entropy.
* ``sdn``: a DyNN trained from scratch with the same recipe and loss
  ``CE(final) + sum_i w_i(e) * CE(IC_i)``; ``w_i`` ramps linearly from 0.01 to
  (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)_i over the epochs (MobileNet uses the first five), as in
  the SDN code: ``w_i(e) = min(max_i, 0.01 + e * max_i / epochs)``.
* ``ic_only``: IC heads on a trained CNN whose backbone is frozen (parameters and BatchNorm
  statistics: the backbone stays in eval mode). Adam lr 1e-3 (weight decay 1e-4, as the SDN code),
  25 epochs, lr x0.1 at epoch 15, loss ``sum_i CE(IC_i)``. Its final exit *is* the CNN.

Training checkpoints after every epoch (atomically) and resumes from the last finished epoch.
Same seed, device and data give identical weights.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import models
from .data import GpuLoader, get_info
from .early_exit import all_exit_logits
from .profiles import Profile, get_profile
from .progress import progress
from .store import atomic_write, load_checkpoint

RECIPES = ("cnn", "sdn", "ic_only")
SDN_MAX_WEIGHTS = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (its artefact key is derived from this).

    labels: ``"true"`` for the dataset's labels, or a description of the label source for a
    surrogate (e.g. ``"target:<artefact key>"``); ``train_source``: ``"train"`` (the training
    split) or ``"query"`` (the black-box query set). ``base``: config of the CNN an ``ic_only``
    DyNN is built on.
    """

    dataset: str
    arch: str
    recipe: str
    seed: int = 0
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (35, 60, 85)
    gamma: float = 0.1
    n_train: int | None = None
    augment: bool = True
    labels: str = "true"
    train_source: str = "train"
    base: dict | None = None
    amp: bool = True
    channels_last: bool = True

    @property
    def exits(self) -> bool:
        return self.recipe != "cnn"


def recipe_config(recipe: str, arch: str, dataset: str, profile: str | Profile = "paper", seed: int = 0,
                  **overrides: Any) -> TrainConfig:
    """The protocol's recipe for (recipe, arch, dataset) at a profile's sizes, with overrides."""
    prof = get_profile(profile)
    _check_names(recipe, arch, dataset)
    if recipe == "ic_only":
        cfg = TrainConfig(dataset, arch, recipe, seed, epochs=prof.ic_epochs, optimizer="adam", lr=1e-3,
                          weight_decay=1e-4, milestones=prof.ic_milestones, n_train=prof.n_train,
                          batch_size=prof.batch_size)
    else:
        cfg = TrainConfig(dataset, arch, recipe, seed, epochs=prof.cnn_epochs,
                          weight_decay=5e-4 if arch == "vgg16" else 1e-4, milestones=prof.cnn_milestones,
                          n_train=prof.n_train, batch_size=prof.batch_size)
    cfg = replace(cfg, **overrides)
    validate(cfg)
    return cfg


def _check_names(recipe: str, arch: str, dataset: str) -> None:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; accepted: {', '.join(RECIPES)}")
    if arch not in models.ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; accepted: {', '.join(models.ARCHS)}")
    get_info(dataset)


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError naming the bad value before any work starts."""
    _check_names(cfg.recipe, cfg.arch, cfg.dataset)
    if not (0 < cfg.lr <= 10):
        raise ValueError(f"lr must be in (0, 10], got {cfg.lr}")
    if cfg.optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; accepted: sgd, adam")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {cfg.epochs}, {cfg.batch_size}")
    if cfg.weight_decay < 0 or not (0 <= cfg.momentum < 1) or not (0 < cfg.gamma <= 1):
        raise ValueError(f"need weight_decay >= 0, 0 <= momentum < 1, 0 < gamma <= 1; got "
                         f"{cfg.weight_decay}, {cfg.momentum}, {cfg.gamma}")
    if cfg.recipe == "ic_only" and cfg.base is None:
        raise ValueError("recipe 'ic_only' needs base= the config of the trained CNN it is built on")


def sdn_weights(epoch: int, epochs: int, num_ics: int) -> list[float]:
    """IC loss weights at 0-based ``epoch`` (SDN ramp from 0.01 towards the per-IC maxima)."""
    maxima = SDN_MAX_WEIGHTS[:num_ics]
    return [min(m, 0.01 + epoch * m / epochs) for m in maxima]


def build_model(cfg: TrainConfig, num_classes: int | None = None) -> nn.Module:
    """An untrained model of the config's architecture (DyNN for sdn/ic_only, SDNN for cnn)."""
    info = get_info(cfg.dataset)
    n = num_classes or info.num_classes
    if cfg.recipe == "ic_only":
        return models.attach_exits(models.build(cfg.arch, n, info.input_size, exits=False, mean=info.mean,
                                                std=info.std))
    return models.build(cfg.arch, n, info.input_size, exits=cfg.exits, mean=info.mean, std=info.std)


def loss_fn(cfg: TrainConfig, out, y: torch.Tensor, epoch: int) -> torch.Tensor:
    if cfg.recipe == "cnn":
        return F.cross_entropy(out, y)
    if cfg.recipe == "sdn":
        w = sdn_weights(epoch, cfg.epochs, len(out) - 1)
        return F.cross_entropy(out[-1], y) + sum(wi * F.cross_entropy(o, y) for wi, o in zip(w, out[:-1]))
    return sum(F.cross_entropy(o, y) for o in out[:-1])


def _trainable(cfg: TrainConfig, model: nn.Module) -> list[nn.Parameter]:
    if cfg.recipe == "ic_only":
        model.backbone.requires_grad_(False)
        return list(model.ics.parameters())
    return list(model.parameters())


def _set_train_mode(cfg: TrainConfig, model: nn.Module) -> None:
    model.train()
    if cfg.recipe == "ic_only":
        model.backbone.eval()  # BatchNorm statistics frozen too


def train(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, eval_images: torch.Tensor,
          eval_labels: torch.Tensor, device: str | torch.device = "cpu", checkpoint: Path | None = None,
          base_state: dict | None = None) -> tuple[nn.Module, dict]:
    """Train one model; returns (model in eval mode on ``device``, result record).

    images/labels: uint8 ``[N,3,H,W]`` / int64 ``[N]`` training data (already subset to n_train);
    eval_images/eval_labels: the evaluation half, for the per-exit accuracies in the record.
    checkpoint: a path for the per-epoch resumable state (deleted by the caller when done).
    base_state: the trained CNN's state dict (``ic_only`` only).
    """
    validate(cfg)
    info = get_info(cfg.dataset)
    num_classes = info.num_classes
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"labels reach {int(labels.max())} but dataset {cfg.dataset} has {num_classes} classes")
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, num_classes)
    if cfg.recipe == "ic_only":
        if base_state is None:
            raise ValueError("ic_only training needs base_state (the trained CNN's weights)")
        model.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in base_state.items()})
    model.to(device)
    use_cl = cfg.channels_last and device.type == "cuda"
    if use_cl:
        model.to(memory_format=torch.channels_last)
    params = _trainable(cfg, model)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    start, history, elapsed = 0, [], 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history, elapsed = state["epoch"], list(state["history"]), float(state["elapsed"])
        torch.set_rng_state(state["rng"])
    loader = GpuLoader(images.to(device), labels.to(device), batch_size=cfg.batch_size, shuffle=True,
                       augment=cfg.augment, pad=info.crop_padding, jitter=info.colour_jitter if cfg.augment else 0.0,
                       seed=cfg.seed, device=device, drop_last=False)
    amp = cfg.amp and device.type == "cuda"
    bar = progress(range(start, cfg.epochs), desc=f"train {cfg.arch}/{cfg.recipe}", initial=start, total=cfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        _set_train_mode(cfg, model)
        loader.set_epoch(epoch)
        total, count = torch.zeros((), device=device), 0
        for x, y in loader:
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(cfg, model(x), y, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(y)
            count += len(y)
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        elapsed += dt
        history.append({"epoch": epoch + 1, "loss": float(total) / max(count, 1), "seconds": dt})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        if checkpoint is not None:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch + 1, "history": history, "elapsed": elapsed, "rng": torch.get_rng_state()}
            atomic_write(Path(checkpoint), lambda p: torch.save(state, p))
    model.eval()
    acc = exit_accuracies(model, eval_images, eval_labels, device)
    record = {"exit_accuracy": acc, "train_seconds": elapsed, "history": history, "n_train": int(len(labels)),
              "n_eval": int(len(eval_labels)),
              "seconds_per_epoch": elapsed / max(len(history), 1)}
    return model, record


def exit_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    device: str | torch.device = "cpu") -> list[float]:
    """Accuracy (fraction) of every exit on a labelled set, final exit last."""
    z = all_exit_logits(model, images, device=device, desc="evaluate")
    return [float(v) for v in (z.argmax(-1) == labels.cpu()[None]).float().mean(1)]
