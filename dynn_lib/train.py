"""The three training recipes of protocol section 4.

* ``cnn``: the static network (SDNN). SGD momentum 0.9, lr 0.1, weight decay 5e-4 (VGG) or
  1e-4 (ResNet, MobileNet), batch 128, 100 epochs, lr x0.1 at epochs 35, 60, 85, cross-entropy.
* ``sdn``: a DyNN trained from scratch with the same recipe and loss
  ``CE(final) + sum_i w_i(e) * CE(IC_i)``; ``w_i`` ramps linearly from 0.01 to
  (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)_i over the epochs (MobileNet uses the first five), as in
  the SDN code, whose loop counts epochs from 1: with the 0-based epoch ``e`` used here,
  ``w_i(e) = min(max_i, 0.01 + (e + 1) * max_i / epochs)``.
* ``ic_only``: IC heads on a trained CNN whose backbone is frozen (parameters and BatchNorm
  statistics: the backbone stays in eval mode). Adam lr 1e-3 with the CNN recipe's weight decay
  (5e-4 for VGG, 1e-4 otherwise: the SDN code keeps it for IC-only training), 25 epochs, lr x0.1
  at epoch 15, loss ``sum_i CE(IC_i)``. Its final exit *is* the CNN.

Milestones count epochs from 1, as the SDN code's loop does (it steps its scheduler at the start
of 1-based epoch E, so the rate drops *during* epoch 35: 34 epochs at 0.1, 16 at the last rate).

Those are the ``paper`` profile's numbers; a profile may change the batch, the epochs, the peak
learning rate and the schedule (``multistep`` or ``onecycle``: see :func:`learning_rate`).

Precision and layout: bf16 autocast and channels-last in training follow the config's ``amp`` /
``channels_last`` (``"auto"``: both on on CUDA and on a CPU with native bf16; channels-last alone,
in fp32, on other x86-64 CPUs, where it is measured to be faster; see :func:`resolve_flag`;
on a CPU, MobileNet's depthwise convolutions stay fp32, see
:class:`dynn_lib.models.mobilenet.DepthwiseConv2d`);
the resolved values are in the training record. The returned model is fp32 and in the memory
format that inference and attacks use (:func:`dynn_lib.numerics.inference_memory_format`, which
a :class:`~dynn_lib.zoo.Workspace` sets from the same ``channels_last`` setting; under ``"auto"``
channels-last on x86-64 CPUs, contiguous on CUDA), exactly as the workspace hands out a model
loaded from the store; evaluation is fp32.

Steps: on CUDA the whole training step (forward, backward, optimizer step; learning rate and SDN
loss weights as device tensors) is captured once as a CUDA graph and replayed on static input
buffers; the ragged last batch of an epoch runs eagerly. If capture fails, training continues
eagerly with a warning, and the record says so. Within an epoch nothing waits for the device: the
loss is summed on the device and read once per epoch. On the CPU every step is eager.

Checkpoints (atomic) hold the model, optimizer, epoch, history and the CPU and CUDA random states;
they are written every ``checkpoint_every`` epochs or ``checkpoint_minutes`` minutes, whichever
comes first, and after the last epoch. A training resumed from one equals an uninterrupted one
bit for bit (tested on the CPU, dropout included). Same seed, device and data give identical
weights on the CPU; on CUDA that holds only as far as its kernels are deterministic.
"""
from __future__ import annotations

import copy
import math
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from . import models, numerics
from .data import GpuLoader, get_info
from .early_exit import all_exit_logits
from .engines import device_shared
from .profiles import Profile, check_training_fields, get_profile
from .progress import progress
from .store import atomic_write, git_commit, load_checkpoint

RECIPES = ("cnn", "sdn", "ic_only")
SDN_MAX_WEIGHTS = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
GRAPH_WARMUP_STEPS = 3
"""Eager rehearsal steps before a CUDA-graph capture (torch's documented warm-up; undone after)."""
_CAPTURE_FAILED: str | None = None
"""Why the first CUDA-graph capture of this process failed, or None. A capture that ends in an error
can leave the CUDA caching allocator with a stale capture entry and its private pool unreleased
(torch releases them only when ``capture_end`` succeeds), so after one failure every later training
of the process steps eagerly (its record says why) rather than capturing again on that state."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (its artefact key is derived from this).

    labels: ``"true"`` for the dataset's labels, or a description of the label source for a
    surrogate (e.g. ``"target:<artefact key>"``); ``train_source``: ``"train"`` (the training
    split) or ``"query"`` (the black-box query set). ``base``: config of the CNN an ``ic_only``
    DyNN is built on. ``lr_schedule``: ``"multistep"`` (x ``gamma`` at the ``milestones`` epochs)
    or ``"onecycle"`` (see :func:`learning_rate`; ``warmup_frac`` of the steps warm up).
    ``amp`` / ``channels_last``: ``"auto"``, True or False (see :func:`resolve_flag`).
    ``cuda_graph``: ``"auto"`` (graph the step on CUDA), True (CUDA only) or False (eager).
    ``checkpoint_every`` (epochs) / ``checkpoint_minutes`` (None: no time trigger): when the
    resumable state is saved (see the module docstring).
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
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"
    cuda_graph: bool | str = "auto"
    lr_schedule: str = "multistep"
    warmup_frac: float = 0.0
    checkpoint_every: int = 5
    checkpoint_minutes: float | None = 10.0

    @property
    def exits(self) -> bool:
        return self.recipe != "cnn"


def recipe_config(recipe: str, arch: str, dataset: str, profile: str | Profile = "paper", seed: int = 0,
                  **overrides: Any) -> TrainConfig:
    """The protocol's recipe for (recipe, arch, dataset) at a profile's sizes and schedule, with overrides."""
    prof = get_profile(profile)
    _check_names(recipe, arch, dataset)
    common = dict(n_train=prof.n_train, batch_size=prof.batch_size, amp=prof.amp, channels_last=prof.channels_last,
                  cuda_graph=prof.cuda_graph, lr_schedule=prof.lr_schedule, warmup_frac=prof.warmup_frac,
                  checkpoint_every=prof.checkpoint_every, checkpoint_minutes=prof.checkpoint_minutes)
    weight_decay = 5e-4 if arch == "vgg16" else 1e-4  # the SDN code's, for its IC-only training too
    sgd_weight_decay = weight_decay if prof.weight_decay is None else float(prof.weight_decay)
    if recipe == "ic_only":
        cfg = TrainConfig(dataset, arch, recipe, seed, epochs=prof.ic_epochs, optimizer="adam", lr=prof.ic_lr,
                          weight_decay=weight_decay, milestones=prof.ic_milestones, **common)
    else:
        cfg = TrainConfig(dataset, arch, recipe, seed, epochs=prof.cnn_epochs, lr=prof.lr,
                          weight_decay=sgd_weight_decay, milestones=prof.cnn_milestones, **common)
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
    check_training_fields(cfg)
    if cfg.recipe == "ic_only" and cfg.base is None:
        raise ValueError("recipe 'ic_only' needs base= the config of the trained CNN it is built on")


def sdn_weights(epoch: int, epochs: int, num_ics: int) -> list[float]:
    """IC loss weights at 0-based ``epoch`` of ``epochs``: the SDN code's ramp from 0.01 towards
    the per-IC maxima, ``w_i = min(max_i, 0.01 + (epoch + 1) * max_i / epochs)`` (its loop counts
    epochs from 1), so the first epoch trains with ``0.01 + max_i / epochs`` and the last with
    ``max_i``."""
    maxima = SDN_MAX_WEIGHTS[:num_ics]
    return [min(m, 0.01 + (epoch + 1) * m / epochs) for m in maxima]


def ic_loss_weights(cfg: TrainConfig, epoch: int, num_ics: int) -> list[float]:
    """Weights of the IC losses at 0-based ``epoch``: the SDN ramp (``sdn``), all 1 (``ic_only``),
    none (``cnn``)."""
    if cfg.recipe == "sdn":
        return sdn_weights(epoch, cfg.epochs, num_ics)
    return [1.0] * num_ics if cfg.recipe == "ic_only" else []


def learning_rate(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate of 0-based ``step`` of 0-based ``epoch`` (``steps_per_epoch`` steps each).

    ``multistep``: ``lr * gamma**k`` with k the number of milestones <= ``epoch + 1``, the 1-based
    epoch (the SDN code steps its scheduler at the start of each 1-based epoch, so milestone 35
    already applies in the 35th epoch). ``onecycle``: over all ``T = epochs * steps_per_epoch``
    steps, global step ``k`` has ``lr * (k + 1) / W`` for ``k < W = max(1, round(warmup_frac * T))``
    (no warm-up when ``warmup_frac`` is 0), then ``lr * (1 + cos(pi * (k - W) / (T - W))) / 2``.
    """
    if cfg.lr_schedule == "multistep":
        lr = cfg.lr
        for m in sorted(cfg.milestones):
            if epoch + 1 >= m:
                lr *= cfg.gamma
        return lr
    total = cfg.epochs * steps_per_epoch
    k = epoch * steps_per_epoch + step
    warm = max(1, round(cfg.warmup_frac * total)) if cfg.warmup_frac > 0 else 0
    if k < warm:
        return cfg.lr * (k + 1) / warm
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (k - warm) / max(total - warm, 1)))


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512-BF16 or AMX tiles), by torch.cpu's checks."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # an unknown CPU: treat as unsupported
            pass
    return False


CHANNELS_LAST_CPU_MACHINES = ("x86_64", "amd64")
"""CPU architectures (``platform.machine()``, lower case) where ``channels_last="auto"`` turns
channels-last on in fp32 training too. Measured on a quiet 2-core AMD EPYC (AVX2, no bf16),
:func:`train` at smoke sizes (2,000 images, batch 128, one epoch), contiguous -> channels-last:
VGG-16 cnn 35.1 -> 31.6 s, sdn 34.2 -> 30.2 s, ic_only 11.2 -> 7.8 s; ResNet-56 cnn 16.4 -> 13.6 s,
sdn 17.1 -> 14.7 s, ic_only 4.8 -> 3.8 s; MobileNet cnn 11.4 -> 8.7 s, sdn 11.7 -> 9.9 s,
ic_only 3.3 -> 2.3 s (1.1x-1.45x, each the mean of two runs). Other CPU architectures (ARM) are
not measured, so ``"auto"`` leaves them contiguous."""


def resolve_flag(setting: bool | str, device: str | torch.device, name: str) -> bool:
    """Resolve the ``amp`` or ``channels_last`` setting (``name``) on ``device``: True/False as given;
    ``"auto"``: on CUDA, on when the GPU supports bf16; on a CPU, ``amp`` is on when
    :func:`cpu_has_native_bf16` and ``channels_last`` when that holds or the CPU is one of
    :data:`CHANNELS_LAST_CPU_MACHINES` (where channels-last speeds fp32 training too, measured)."""
    if name not in ("amp", "channels_last"):
        raise ValueError(f"unknown flag {name!r}; accepted: 'amp', 'channels_last'")
    device = torch.device(device)
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if cpu_has_native_bf16():
        return True
    return name == "channels_last" and platform.machine().lower() in CHANNELS_LAST_CPU_MACHINES


def build_model(cfg: TrainConfig, num_classes: int | None = None) -> nn.Module:
    """An untrained model of the config's architecture (DyNN for sdn/ic_only, SDNN for cnn)."""
    info = get_info(cfg.dataset)
    n = num_classes or info.num_classes
    if cfg.recipe == "ic_only":
        return models.attach_exits(models.build(cfg.arch, n, info.input_size, exits=False, mean=info.mean,
                                                std=info.std))
    return models.build(cfg.arch, n, info.input_size, exits=cfg.exits, mean=info.mean, std=info.std)


def loss_fn(cfg: TrainConfig, out, y: torch.Tensor, ic_weights: torch.Tensor) -> torch.Tensor:
    """The recipe's loss: ``CE(out)`` (cnn); ``CE(final) + sum_i w_i CE(IC_i)`` (sdn);
    ``sum_i w_i CE(IC_i)`` (ic_only, w = 1). ``ic_weights``: float32 [num ICs] on the device
    (a tensor, so that a captured CUDA graph reads each epoch's weights); see :func:`ic_loss_weights`."""
    if cfg.recipe == "cnn":
        return F.cross_entropy(out, y)
    ic = (ic_weights * torch.stack([F.cross_entropy(o, y) for o in out[:-1]])).sum()
    return F.cross_entropy(out[-1], y) + ic if cfg.recipe == "sdn" else ic


def _trainable(cfg: TrainConfig, model: nn.Module) -> list[nn.Parameter]:
    if cfg.recipe == "ic_only":
        model.backbone.requires_grad_(False)
        return list(model.ics.parameters())
    return list(model.parameters())


def _set_train_mode(cfg: TrainConfig, model: nn.Module) -> None:
    model.train()
    if cfg.recipe == "ic_only":
        model.backbone.eval()  # BatchNorm statistics frozen too


def _optimizer(cfg: TrainConfig, params: list[nn.Parameter], lr: torch.Tensor,
               graphed: bool) -> torch.optim.Optimizer:
    """SGD or Adam with the fused kernels and a tensor learning rate (read on the device, so a
    captured step follows the schedule); Adam is ``capturable`` when the step will be graphed."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, fused=True, capturable=graphed)


def _load_optimizer(opt: torch.optim.Optimizer, saved: dict, lr: torch.Tensor) -> None:
    """Resume ``opt`` from a checkpoint's optimizer state, keeping this run's learning-rate tensor
    (the one a graph reads; the schedule sets its value) and its ``capturable`` flag:
    ``load_state_dict`` takes every hyperparameter from the checkpoint, and an Adam saved by an
    eager run (``cuda_graph=False``) would come back non-capturable and break the capture."""
    kept = [{k: g[k] for k in ("capturable",) if k in g} for g in opt.param_groups]
    opt.load_state_dict(saved)
    for group, flags in zip(opt.param_groups, kept):
        group.update(flags)
        group["lr"] = lr


# -- CUDA graphs (the capture itself needs CUDA; everything around it also runs on the CPU) ----------
def _use_graph(setting: bool | str, device: torch.device) -> bool:
    """Whether the training step is graphed: ``"auto"`` -> on CUDA; True (CUDA only) / False."""
    if setting == "auto":
        return device.type == "cuda"
    if not isinstance(setting, bool):
        raise ValueError(f"cuda_graph must be 'auto', True or False; got {setting!r}")
    if setting and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device, got {device}; accepted here: 'auto', False")
    return setting


def _capture_graph(step: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """Capture ``step()`` (which must not synchronise) as a CUDA graph; returns its ``replay``."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


@contextmanager
def _side_stream(device: torch.device) -> Iterator[None]:
    """Run the block on a fresh CUDA side stream that waits for, and is waited for by, the current
    one (torch's rule for the warm-up before a capture); a no-op on the CPU."""
    if device.type != "cuda":
        yield
        return
    cur = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(cur)
    try:
        with torch.cuda.stream(side):
            yield
    finally:  # also when a rehearsal step fails: what follows on `cur` must wait for the side stream
        cur.wait_stream(side)


def _rng_state(device: torch.device) -> dict:
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["rng"])
    cuda_rng = state.get("cuda_rng")
    if device.type == "cuda" and cuda_rng:
        if len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
        else:  # resumed on a machine with another GPU count: restore the training device's generator
            idx = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.set_rng_state(cuda_rng[min(idx, len(cuda_rng) - 1)], device)


class _Snapshot:
    """Values of a model's parameters and buffers, an optimizer's state and the random generators,
    restored in place (same tensors, so a captured graph keeps pointing at them). Optimizer state
    created after the snapshot is zeroed on restore: for SGD's momentum and Adam's moments and step
    that is exactly their initial state."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, device: torch.device):
        self.device = device
        self.tensors = [(t, t.detach().clone()) for t in [*model.parameters(), *model.buffers()]]
        self.opt = opt
        self.opt_tensors = [(t, t.clone()) for st in opt.state.values() for t in st.values()
                            if isinstance(t, torch.Tensor)]
        self.rng = _rng_state(device)

    @torch.no_grad()
    def restore(self) -> None:
        for t, v in self.tensors:
            t.copy_(v)
        old = {id(t) for t, _ in self.opt_tensors}
        for t, v in self.opt_tensors:
            t.copy_(v)
        for st in self.opt.state.values():
            for t in st.values():
                if isinstance(t, torch.Tensor) and id(t) not in old:
                    t.zero_()
        self.opt.zero_grad(set_to_none=True)
        _set_rng_state(self.rng, self.device)


class _Stepper:
    """The training step of one config, eager or replayed from a CUDA graph.

    ``__call__(x, y)`` trains on one batch: a full batch replays the captured graph (captured on
    the first full batch after ``GRAPH_WARMUP_STEPS`` eager rehearsals on a side stream, whose
    effects are then undone, so every full batch of every epoch is a replay wherever training
    resumed); other batches, and every batch when not graphed, run eagerly. ``total`` holds the
    epoch's summed loss on the device (loss x batch size per step); nothing synchronises.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer, lr: torch.Tensor,
                 num_ics: int, amp: bool, channels_last: bool, device: torch.device, graphed: bool):
        self.cfg, self.model, self.opt, self.lr = cfg, model, opt, lr
        self.amp, self.channels_last, self.device = amp, channels_last, device
        self.graphed = graphed
        self.total = torch.zeros((), device=device)
        self.weights = torch.zeros(num_ics, device=device)
        self.replay: Callable[[], None] | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.fallback: str | None = None
        self.replays = self.eager_steps = 0

    def start_epoch(self, epoch: int) -> None:
        for i, w in enumerate(ic_loss_weights(self.cfg, epoch, len(self.weights))):
            self.weights[i].fill_(w)  # a kernel, not a host copy
        self.total.zero_()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            loss = loss_fn(self.cfg, self.model(x), y, self.weights)
        loss.backward()
        self.opt.step()
        self.total.add_(loss.detach() * y.shape[0])

    def _fall_back(self, reason: str) -> None:
        self.graphed, self.replay, self.fallback = False, None, reason
        warnings.warn(f"CUDA graph capture of the training step failed ({reason}); training continues eagerly",
                      RuntimeWarning, stacklevel=4)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        global _CAPTURE_FAILED
        if _CAPTURE_FAILED is not None:
            self._fall_back(f"an earlier capture in this process failed: {_CAPTURE_FAILED}")
            return
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        snap = _Snapshot(self.model, self.opt, self.device)
        total = self.total.clone()
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        try:
            sx, sy = torch.empty_like(x, memory_format=fmt), torch.empty_like(y)
            sx.copy_(x)
            sy.copy_(y)
            with _side_stream(self.device):
                for _ in range(GRAPH_WARMUP_STEPS):
                    self._step(sx, sy)
            self.opt.zero_grad(set_to_none=True)
            self.replay = _capture_graph(lambda: self._step(sx, sy), self.device)
            self.static = (sx, sy)
        except Exception as e:  # noqa: BLE001 -- any capture failure falls back, loudly
            if stream is not None:
                # a capture that ends in an error can leave torch.cuda.graph's capture stream current
                # (its __exit__ skips restoring the stream when capture_end raises); nothing ran on it
                torch.cuda.set_stream(stream)
            # the error that broke the capture comes first; capture_end's own error, raised while
            # handling it, after
            _CAPTURE_FAILED = " -> ".join(f"{type(err).__name__}: {err}" for err in (e.__context__, e)
                                          if err is not None)
            self._fall_back(_CAPTURE_FAILED)
        finally:
            snap.restore()
            self.total.copy_(total)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.graphed and y.shape[0] == self.cfg.batch_size:
            if self.replay is None:
                self._capture(x, y)
            if self.replay is not None:
                sx, sy = self.static
                sx.copy_(x)
                sy.copy_(y)
                self.replay()
                self.replays += 1
                return
        self._step(x, y)
        self.eager_steps += 1

    @property
    def mode(self) -> str:
        if self.fallback is not None:
            return "eager (CUDA graph capture failed)"
        return "cuda_graph" if self.graphed else "eager"


def checkpoint_due(cfg: TrainConfig, epochs_done: int, seconds_since_save: float) -> bool:
    """Whether to save the resumable state after ``epochs_done`` epochs: after the last epoch, after
    every ``checkpoint_every``-th, or once ``checkpoint_minutes`` have passed since the last save."""
    minutes = cfg.checkpoint_minutes
    return (epochs_done == cfg.epochs or epochs_done % cfg.checkpoint_every == 0
            or (minutes is not None and seconds_since_save >= 60 * minutes))


@contextmanager
def _save_on_interrupt(pending: Callable[[], dict | None], checkpoint: Path | None) -> Iterator[None]:
    """On KeyboardInterrupt (a time limit's SIGINT, Ctrl-C) write ``pending()``, the state of the
    last finished epoch not yet on disk, to ``checkpoint`` before re-raising, so a stopped
    training resumes from its last finished epoch rather than from its last scheduled save."""
    try:
        yield
    except KeyboardInterrupt:
        state = pending()
        if checkpoint is not None and state is not None:
            atomic_write(Path(checkpoint), lambda p: torch.save(state, p))
        raise


def train(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, eval_images: torch.Tensor,
          eval_labels: torch.Tensor, device: str | torch.device = "cpu", checkpoint: Path | None = None,
          base_state: dict | None = None, cuda_graph: bool | str | None = None) -> tuple[nn.Module, dict]:
    """Train one model; returns (model in eval mode on ``device``, fp32, in the inference memory
    format; result record).

    images/labels: uint8 ``[N,3,H,W]`` / int64 ``[N]`` training data (already subset to n_train);
    eval_images/eval_labels: the evaluation half, for the per-exit accuracies in the record.
    checkpoint: a path for the resumable state (deleted by the caller when done).
    base_state: the trained CNN's state dict (``ic_only`` only).
    cuda_graph: ``"auto"`` (graph the step on CUDA, eager elsewhere), True (CUDA only) or False;
    None (default): the config's ``cuda_graph``.
    The record holds per-exit accuracies, times, the per-epoch history (mean loss, lr of the
    epoch's last step, seconds), ``git_commit`` (the checkout's when this call started: the code
    that ran, even if the checkout moves on before the save; ``git_commit_before_resume`` when a
    resumed training began under another), the resolved ``amp`` / ``channels_last``, the ``step_mode``
    (``cuda_graph``, ``eager`` or ``eager (CUDA graph capture failed)`` with ``graph_fallback``
    giving the reason), the steps replayed / run eagerly in this call, and ``device_shared``
    (some epoch ran while other jobs of the run could use the device:
    :func:`dynn_lib.engines.device_shared`; the times then say little about the training).
    """
    validate(cfg)
    commit = git_commit()  # the code that runs now; a save hours later may see a newer checkout
    device = torch.device(device)
    graphed = _use_graph(cfg.cuda_graph if cuda_graph is None else cuda_graph, device)
    info = get_info(cfg.dataset)
    num_classes = info.num_classes
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"labels reach {int(labels.max())} but dataset {cfg.dataset} has {num_classes} classes")
    if cfg.recipe == "ic_only" and base_state is None:
        raise ValueError("ic_only training needs base_state (the trained CNN's weights)")
    amp = resolve_flag(cfg.amp, device, "amp")
    channels_last = resolve_flag(cfg.channels_last, device, "channels_last")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, num_classes)
    if cfg.recipe == "ic_only":
        model.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in base_state.items()})
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = GpuLoader(images.to(device), labels.to(device), batch_size=cfg.batch_size, shuffle=True,
                       augment=cfg.augment, pad=info.crop_padding, jitter=info.colour_jitter if cfg.augment else 0.0,
                       seed=cfg.seed, device=device, drop_last=False)
    steps_per_epoch = len(loader)
    lr = torch.tensor(learning_rate(cfg, 0, 0, steps_per_epoch), dtype=torch.float32, device=device)
    opt = _optimizer(cfg, _trainable(cfg, model), lr, graphed)
    start, history, elapsed = 0, [], 0.0
    first_commit = commit
    shared = device_shared()  # other jobs of the run may use this device meanwhile (times say little then)
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        _load_optimizer(opt, state["optimizer"], lr)
        start, history, elapsed = state["epoch"], list(state["history"]), float(state["elapsed"])
        first_commit = state.get("git_commit", commit)
        shared = shared or bool(state.get("device_shared", False))
        _set_rng_state(state, device)
    num_ics = model.num_exits - 1 if cfg.exits else 0
    stepper = _Stepper(cfg, model, opt, lr, num_ics, amp, channels_last, device, graphed)
    last_save, saves, unsaved = time.monotonic(), 0, None
    bar = progress(range(start, cfg.epochs), desc=f"train {cfg.arch}/{cfg.recipe}", initial=start, total=cfg.epochs)
    with warnings.catch_warnings(), _save_on_interrupt(lambda: unsaved, checkpoint):
        # Adam(capturable=True) warns once when a step runs outside a capture (rehearsals, last batch)
        warnings.filterwarnings("ignore", message=".*capturable=True.*running without", category=UserWarning)
        for epoch in bar:
            t0 = time.perf_counter()
            _set_train_mode(cfg, model)
            loader.set_epoch(epoch)
            stepper.start_epoch(epoch)
            count, current = 0, None
            for step, (x, y) in enumerate(loader):
                value = learning_rate(cfg, epoch, step, steps_per_epoch)
                if value != current:
                    lr.fill_(value)  # a kernel on the device, not a host copy
                    current = value
                stepper(x, y)
                count += len(y)
            loss_sum = float(stepper.total)  # the one host read of the epoch
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"training of {cfg.arch}/{cfg.recipe} diverged: the summed loss of epoch {epoch + 1} is {loss_sum} "
                    f"(lr {cfg.lr}, schedule {cfg.lr_schedule}); a NaN model would give meaningless results, so "
                    f"nothing is stored: lower lr (profile field lr / ic_lr) or check the data")
            dt = time.perf_counter() - t0
            elapsed += dt
            history.append({"epoch": epoch + 1, "loss": loss_sum / max(count, 1), "lr": current, "seconds": dt})
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
            done = epoch + 1
            if checkpoint is None:
                continue
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": done,
                     "history": history, "elapsed": elapsed, "git_commit": first_commit, "device_shared": shared,
                     **_rng_state(device)}
            if checkpoint_due(cfg, done, time.monotonic() - last_save):
                atomic_write(Path(checkpoint), lambda p: torch.save(state, p))
                last_save, saves, unsaved = time.monotonic(), saves + 1, None
            else:
                # an in-memory copy of the last finished epoch, written if the run is interrupted
                unsaved = copy.deepcopy(state)
    model.eval()
    model.to(memory_format=numerics.inference_memory_format())  # as the workspace hands out a stored model
    acc = exit_accuracies(model, eval_images, eval_labels, device)
    record = {"exit_accuracy": acc, "train_seconds": elapsed, "history": history, "n_train": int(len(labels)),
              "n_eval": int(len(eval_labels)),
              "seconds_per_epoch": elapsed / max(len(history), 1),
              "resumed_from_epoch": start,  # > 0 when an interrupted training resumed from its checkpoint
              "amp": amp, "channels_last": channels_last, "step_mode": stepper.mode,
              "graph_fallback": stepper.fallback, "graph_replays": stepper.replays,
              "eager_steps": stepper.eager_steps, "checkpoints_saved": saves, "device_shared": shared,
              "git_commit": commit}
    if first_commit != commit:  # resumed under other code: say which commit ran the earlier epochs
        record["git_commit_before_resume"] = first_commit
    return model, record


def exit_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    device: str | torch.device = "cpu") -> list[float]:
    """Accuracy (fraction) of every exit on a labelled set, final exit last."""
    z = all_exit_logits(model, images, device=device, desc="evaluate")
    return [float(v) for v in (z.argmax(-1) == labels.cpu()[None]).float().mean(1)]
