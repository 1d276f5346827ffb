"""What RQ1-RQ3 and the appendix share: the experiment config, the attack loop, and the two
per-image tables every result is computed from (protocol sections 6-8).

* :func:`transfer_table` (black-box, one pair of :data:`dynn_lib.blackbox.PAIRS`): attack the
  pair's surrogate, labelled with its own deployed prediction (section 6), then run the target
  on the benign and the adversarial images.
* :func:`whitebox_table`: attack the CNN ``ws.model(arch, "cnn")`` with the ground truth and
  read its IC-only DyNN ``ws.model(arch, "ic_only")`` at its calibrated τ.

Both tables have one row per (setting, image) and the same columns (:data:`COLUMNS`); each is
stored under its full configuration (``Store.cached_table``), so RQ1, RQ2, RQ3 and the appendix
reuse the same adversarial examples and nothing is attacked twice. Every exit's confidence and
prediction is stored, so the deployed behaviour at *any* τ is a pure function of the table
(:func:`deployed`: the widgets' τ slider recomputes nothing).

Schema (:data:`COLUMNS`, in order)::

    dataset str · setting "black-box"|"white-box" · direction "S2D"|"D2S"|"white-box"
    pair str ("resnet56→vgg16"; white-box: the arch) · surrogate_arch · surrogate_kind "cnn"|"sdn"
    target_arch · target_kind "cnn"|"sdn"|"ic_only" · attack · eps float · eps_255 (eps*255, 3 dp)
    exit_loss str (the one the attack used) · image int (position in the evaluation half; a subset
        of ``n_images`` is a seeded class-stratified sample, :meth:`Workspace.eval_subset`)
    label int (ground truth) · tau float (target's global τ; NaN for a CNN target or per-exit τ)
    taus list[float] E-1 (target's threshold per internal exit, what early exit applies; [] for a CNN)
    surrogate_exit int (exit differentiated at the last attack step; 0 for a CNN surrogate,
        -1 when several exits enter the loss) · gen_seconds (per-image share of its batch's
        attack wall time) · gen_macs float (forward MACs the attack spent on this image over all
        its steps, each step up to the exit it stopped at: the truncated path of
        :mod:`dynn_lib.attacks.losses`; NaN when unknown) · gen_batch int (0-based attack batch
        the image was in; its batch's ``gen_seconds`` are one timing sample) · gen_seconds_shared
        bool (the batches were timed while other jobs of the run could use the same device: a Ray
        run that shares GPUs or nodes; :func:`dynn_lib.engines.device_shared`) · psnr (dB) ·
        linf ([0,1] pixels)
    conf_clean list[float] E · pred_clean list[int] E · conf_adv list[float] E · pred_adv list[int] E
        (max-softmax confidence and argmax of every exit of the target, final exit last)
    exit_macs list[float] E (cost of answering at each exit of the target) · seed int
"""
from __future__ import annotations

import functools
import hashlib

import math
import time
import warnings
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import attacks as _attacks
from .. import blackbox, data, early_exit, metrics, models, timing, verdicts
from ..blackbox import Pair
from ..engines import device_shared
from ..progress import progress
from ..zoo import Workspace

__all__ = ["ExperimentConfig", "COLUMNS", "LIST_COLUMNS", "DEPLOYED_COLUMNS", "GROUP_KEYS", "exit_outputs",
           "run_attack", "transfer_table", "whitebox_table", "transfer_key", "whitebox_key", "deployed", "verdict",
           "eps_255", "attack_steps", "surrogate_labels", "clean_exit_outputs", "clean_surrogate_labels", "num_exits",
           "setting_tables", "one_row_per_cell", "compare_datasets", "larger_smaller", "final_flipped_and_first",
           "surrogate_exit_loss", "fmt"]

TABLE_VERSION = 4
"""Bumped when the content of a stored table changes meaning (part of every cache key).
3: ``gen_macs`` and ``gen_batch`` columns; attacks stop at the exit their loss uses.
4: ``gen_seconds_shared`` column."""

COLUMNS: tuple[str, ...] = (
    "dataset", "setting", "direction", "pair", "surrogate_arch", "surrogate_kind", "target_arch", "target_kind",
    "attack", "eps", "eps_255", "exit_loss", "image", "label", "tau", "taus", "surrogate_exit", "gen_seconds",
    "gen_macs", "gen_batch", "gen_seconds_shared", "psnr", "linf", "conf_clean", "pred_clean", "conf_adv",
    "pred_adv", "exit_macs", "seed",
)
"""Columns of :func:`transfer_table` and :func:`whitebox_table`, in order."""

LIST_COLUMNS: tuple[str, ...] = ("taus", "conf_clean", "pred_clean", "conf_adv", "pred_adv", "exit_macs")
"""Per-exit columns (one Python list of length E per row)."""

DEPLOYED_COLUMNS: tuple[str, ...] = ("exit_clean", "exit_adv", "final_pred_clean", "final_pred_adv",
                                     "deployed_pred_clean", "deployed_pred_adv", "macs_clean", "macs_adv")
"""Columns added by :func:`deployed`."""

GROUP_KEYS: tuple[str, ...] = ("dataset", "setting", "direction", "pair", "surrogate_arch", "surrogate_kind",
                               "target_arch", "target_kind", "attack", "eps", "eps_255")
"""One experimental setting (what the summaries group by)."""


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class ExperimentConfig:
    """Attack settings shared by RQ1-RQ3 and the appendix (protocol section 6 defaults).

    eps: L-inf budgets on [0,1] pixels, each in (0, 1] (a single float is accepted).
    attacks: names from :data:`dynn_lib.attacks.ATTACKS` ("fgsm", "pgd", "mifgsm").
    exit_loss_surrogate: ``exit_loss`` for a DyNN surrogate in RQ1/RQ2 ("fired": the exit where
        early exit stops for the current iterate, the paper's Fig. 7 count). A CNN surrogate
        always uses "final" (its only exit).
    exit_loss_rq3: ``exit_loss`` of RQ3 (its white-box and S2D attacks hit a CNN, so "final").
    pgd_step: PGD step (2/255); MI-FGSM uses eps / steps.
    steps: PGD / MI-FGSM iterations (None: the profile's ``attack_steps``).
    random_start: PGD uniform random start in the eps-ball.
    mifgsm_decay: MI-FGSM momentum decay.
    n_images: evaluation-half images attacked (None: all of ``ws.eval_half``, which the
        profile's ``n_eval`` already limits; otherwise a seeded class-stratified sample of
        ``n_images`` of it, :func:`dynn_lib.data.stratified_subset`).
    attack_batch_size: images per attack batch (memory and speed only; PGD's random start is drawn per batch,
        so it is part of PGD's cache key). Default 512, a compromise: on a GPU these small networks
        are launch-bound at a few hundred images (the CUDA review's reading of ResNet-56), so larger
        batches spread each kernel launch over more images; but RQ1's wall-time comparison
        (Finding 2) takes one sample per timed batch, and 512 still gives 10 per table of 5,000
        images. Measured on a CPU, a PGD step with the mean loss over every exit holds 3-5.3 MB
        per image (VGG-16 3.1, MobileNet 4.1, ResNet-56 5.3): about 2.7 GB at 512.
    seed: seed of the attack's generator (PGD random start).
    """

    eps: tuple[float, ...] = (8 / 255,)
    attacks: tuple[str, ...] = ("fgsm", "pgd")
    exit_loss_surrogate: str | int = "fired"
    exit_loss_rq3: str | int = "final"
    pgd_step: float = 2 / 255
    steps: int | None = None
    random_start: bool = True
    mifgsm_decay: float = 1.0
    n_images: int | None = None
    attack_batch_size: int = 512
    seed: int = 0

    def __post_init__(self):
        eps = (self.eps,) if isinstance(self.eps, Real) else tuple(self.eps)
        atk = (self.attacks,) if isinstance(self.attacks, str) else tuple(self.attacks)
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "attacks", atk)
        if not eps:
            raise ValueError("eps must hold at least one budget")
        for e in eps:
            if not _is_real(e) or math.isnan(e) or not 0 < float(e) <= 1:
                raise ValueError(f"eps is an L-inf budget on [0,1] pixels and must lie in (0, 1], got {e!r} "
                                 f"(8/255 = {8 / 255:.5f}; did you pass 8 instead of 8/255?)")
        object.__setattr__(self, "eps", tuple(float(e) for e in eps))
        if len(set(self.eps)) < len(self.eps):  # a repeated budget would count every image twice
            raise ValueError(f"eps has duplicates: {list(self.eps)}")
        if len(set(atk)) < len(atk):
            raise ValueError(f"attacks has duplicates: {list(atk)}")
        if not atk:
            raise ValueError(f"attacks must name at least one attack; accepted: {', '.join(_attacks.ATTACKS)}")
        for a in atk:
            if a not in _attacks.ATTACKS:
                raise ValueError(f"unknown attack {a!r}; accepted: {', '.join(_attacks.ATTACKS)}")
        for name in ("exit_loss_surrogate", "exit_loss_rq3"):
            v = getattr(self, name)
            if not ((isinstance(v, str) and v in _attacks.EXIT_LOSSES)
                    or (isinstance(v, Integral) and not isinstance(v, bool))):
                raise ValueError(f"{name}={v!r} is not an exit loss; accepted: {', '.join(_attacks.EXIT_LOSSES)} "
                                 f"or an exit index")
        if not _is_real(self.pgd_step) or not 0 < self.pgd_step <= 1:
            raise ValueError(f"pgd_step must lie in (0, 1] ([0,1] pixels), got {self.pgd_step!r}")
        for name in ("steps", "n_images"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, Integral) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {v!r}")
        if (not isinstance(self.attack_batch_size, Integral) or isinstance(self.attack_batch_size, bool)
                or self.attack_batch_size < 1):
            raise ValueError(f"attack_batch_size must be an integer >= 1, got {self.attack_batch_size!r}")
        if not _is_real(self.mifgsm_decay) or not self.mifgsm_decay >= 0:
            raise ValueError(f"mifgsm_decay must be a number >= 0, got {self.mifgsm_decay!r}")
        if not isinstance(self.random_start, bool):
            raise ValueError(f"random_start must be True or False, got {self.random_start!r}")
        if not isinstance(self.seed, Integral) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def eps_255(eps: float) -> float:
    """``eps`` in 0-255 pixel units, rounded to 3 decimals (8/255 -> 8.0)."""
    return round(float(eps) * 255, 3)


def attack_steps(ws: Workspace, cfg: ExperimentConfig) -> int:
    """Iterations of PGD / MI-FGSM: ``cfg.steps`` or the profile's ``attack_steps``."""
    return int(cfg.steps if cfg.steps is not None else ws.profile.attack_steps)


def _call_kwargs(attack: str, eps: float, cfg: ExperimentConfig, steps: int) -> dict:
    """Keyword arguments of ``ATTACKS[attack]`` beyond the shared ones (section 6 defaults)."""
    if attack == "pgd":
        return {"step": float(cfg.pgd_step), "steps": int(steps), "random_start": cfg.random_start}
    if attack == "mifgsm":
        return {"step": float(eps) / steps, "steps": int(steps), "decay": float(cfg.mifgsm_decay)}
    return {}


def _attack_params(ws: Workspace, attack: str, eps: float, cfg: ExperimentConfig) -> dict:
    """The attack's hyper-parameters (what enters its cache key)."""
    p: dict[str, Any] = {"name": attack, "eps": float(eps), **_call_kwargs(attack, eps, cfg, attack_steps(ws, cfg))}
    if attack == "pgd" and cfg.random_start:  # the random start is drawn batch by batch from one generator
        p.update(seed=cfg.seed, batch_size=cfg.attack_batch_size)
    return p


def _images(ws: Workspace, cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(uint8 images, labels, positions in the evaluation half)`` of the images attacked: all of
    ``ws.eval_half``, or a seeded class-stratified sample of ``cfg.n_images`` (never the first n)."""
    return ws.eval_subset(cfg.n_images)


# ---------------------------------------------------------------- model outputs and the attack loop

@torch.no_grad()
def exit_outputs(model: nn.Module, images: torch.Tensor, device: torch.device | str | None = None,
                 batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-softmax confidence and prediction of every exit.

    Args:
        model: a CNN (one exit) or a DyNN.
        images: uint8 ``[N, 3, H, W]`` (divided by 255) or float pixels in [0, 1].
        device: where to run (default: the model's).
    Returns:
        ``(conf float32 [N, E], pred int64 [N, E])`` on the CPU, final exit last (E = 1 for a CNN).
    """
    z = early_exit.all_exit_logits(model, images, batch_size=batch_size, device=device, desc="exit outputs")
    conf, pred = z.softmax(-1).max(-1)  # [E, N]
    return conf.T.contiguous().float(), pred.T.contiguous().long()


class AttackBatches(NamedTuple):
    """What :func:`_run_attack_batches` returns, one entry per image (all on the CPU).

    x_adv float32 [N,3,H,W]; exit_used int64 [N]; seconds float64 [N] (the image's share of its
    batch's wall time); macs float64 [N] (forward MACs spent on the image over all attack steps,
    ``AttackInfo.macs``; NaN when the attack does not count); batch int64 [N] (0-based batch).
    """

    x_adv: torch.Tensor
    exit_used: torch.Tensor
    seconds: torch.Tensor
    macs: torch.Tensor
    batch: torch.Tensor


def _warms_up(device: torch.device) -> bool:
    """Whether an attack table warms up before timing: on CUDA, where kernels are loaded, and chosen
    by shape, on first use (on a CPU the first pass at a new batch size cost about 3 % more than the
    next, measured with ResNet-56: not worth an untimed attack)."""
    return device.type == "cuda"


def _warm_up(fn, model, x, y, kw: dict) -> None:
    """One untimed call of attack ``fn`` on a batch itself, at one step and without the seeded
    generator (so the timed batches draw the same random starts as without it).

    :func:`_run_attack_batches` calls it before the first timed batch of each batch size (the first
    batch, and the last when it is smaller). It absorbs CUDA initialisation and the lazy loading of
    the kernels that this batch shape selects (cuBLAS and cuDNN pick kernels by shape, so a warm-up
    on a couple of images, as before, left the first timed batch paying for kernels it had not yet
    loaded, and the last, smaller batch paid for its own); one step costs about one forward and
    backward pass of the batch, against the ``steps`` of the timed call."""
    warm = {**kw, "generator": None}
    if "steps" in warm:
        warm["steps"] = 1
    fn(model, x, y, **warm)


def _run_attack_batches(model, images, labels, attack, eps, cfg, exit_loss, tau, device, generator, steps
                        ) -> AttackBatches:
    """Attack in batches of ``cfg.attack_batch_size``, timing each batch (:class:`AttackBatches`)."""
    device = torch.device(device)
    fn = _attacks.ATTACKS[attack]  # looked up at call time (tests may replace an entry)
    kw = dict(_call_kwargs(attack, eps, cfg, steps), eps=float(eps), exit_loss=exit_loss, tau=tau,
              generator=generator, return_info=True)
    n = len(labels)
    if n == 0:
        raise ValueError("no images to attack")
    advs, used, secs, macs, batch = [], [], [], [], []
    bs = cfg.attack_batch_size
    warm, warmed = _warms_up(device), set()  # batch sizes warmed up
    for b, i in enumerate(progress(range(0, n, bs), desc=f"{attack} ε={eps_255(eps):g}/255", leave=False)):
        x = early_exit.to_float_pixels(images[i:i + bs].to(device))
        y = labels[i:i + bs].to(device)
        if warm and len(y) not in warmed:
            _warm_up(fn, model, x, y, kw)
            warmed.add(len(y))
        timing.sync(device)
        t0 = time.perf_counter()
        x_adv, info = fn(model, x, y, **kw)
        timing.sync(device)
        dt = time.perf_counter() - t0
        advs.append(x_adv.detach().float().cpu())
        used.append(info.exit_used.detach().long().cpu())
        secs.append(torch.full((len(y),), dt / len(y), dtype=torch.float64))
        m = getattr(info, "macs", None)
        macs.append(m.detach().double().cpu() if m is not None else torch.full((len(y),), math.nan,
                                                                                dtype=torch.float64))
        batch.append(torch.full((len(y),), b, dtype=torch.long))
    return AttackBatches(torch.cat(advs), torch.cat(used), torch.cat(secs), torch.cat(macs), torch.cat(batch))


def run_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: str, eps: float,
               cfg: ExperimentConfig, exit_loss: str | int = "final", tau: float | None = None,
               device: torch.device | str = "cpu", generator: torch.Generator | None = None,
               steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Attack ``images`` in batches of ``cfg.attack_batch_size`` with ``ATTACKS[attack]``.

    PGD uses ``cfg.pgd_step``; MI-FGSM uses ``eps / steps`` and ``cfg.mifgsm_decay``; ``steps`` is
    ``steps`` if given, else ``cfg.steps`` (which must then be set: pass ``attack_steps(ws, cfg)``
    to fall back on the profile). On CUDA the timing synchronises before and after each batch,
    after one untimed one-step warm-up call on the first batch, and one on the last when it is
    smaller (:func:`_warm_up`).

    Returns:
        ``(x_adv float32 [N, 3, H, W] on the CPU, exit_used int64 [N], seconds)`` where seconds is
        the total attack wall time.
    """
    steps = steps if steps is not None else cfg.steps
    if steps is None and attack != "fgsm":
        raise ValueError("steps is None in both the call and cfg; pass steps=attack_steps(ws, cfg)")
    x_adv, used, secs, _, _ = _run_attack_batches(model, images, labels, attack, eps, cfg, exit_loss, tau,
                                                  torch.device(device), generator, steps or 1)
    return x_adv, used, float(secs.sum())


def surrogate_labels(model: nn.Module, images: torch.Tensor, tau: float | None, device) -> torch.Tensor:
    """The surrogate's own deployed prediction (protocol section 6: black-box attack labels);
    a DyNN surrogate answers through early exit at its calibrated ``tau``."""
    pred, _ = blackbox.deployed_predict(model, images, tau, device)
    return pred.long().cpu()


def _positions_digest(positions: torch.Tensor) -> str:
    return hashlib.sha1(positions.detach().cpu().long().numpy().tobytes()).hexdigest()


def clean_exit_outputs(ws: Workspace, model: nn.Module, images: torch.Tensor, positions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exit_outputs` of ``model`` on the clean evaluation images at ``positions``
    (``images`` are those images), computed once per workspace (:meth:`Workspace.memo`): every
    attack table of a target reads the same clean outputs, so a target's clean predictions are
    identical in all of its tables."""
    return ws.memo(("clean exit outputs", model, _positions_digest(positions), str(ws.device)),
                   lambda: exit_outputs(model, images, ws.device))


def clean_surrogate_labels(ws: Workspace, model: nn.Module, images: torch.Tensor, positions: torch.Tensor,
                           tau: float | None) -> torch.Tensor:
    """:func:`surrogate_labels` on the clean evaluation images at ``positions``, computed once per
    workspace, surrogate and τ (every attack and ε through a surrogate uses the same labels)."""
    key = ("surrogate labels", model, tau, _positions_digest(positions), str(ws.device))
    return ws.memo(key, lambda: surrogate_labels(model, images, tau, ws.device)).clone()


# ---------------------------------------------------------------- the two tables

def _rows(meta: dict, images: torch.Tensor, labels: torch.Tensor, image_ids: torch.Tensor, x_adv: torch.Tensor,
          tau: float | None, surrogate_exit: torch.Tensor, seconds: torch.Tensor, target: nn.Module, device,
          gen_macs: torch.Tensor | None, gen_batch: torch.Tensor | None,
          clean: tuple[torch.Tensor, torch.Tensor]) -> pd.DataFrame:
    """The per-image rows of one attack table; ``clean``: the target's :func:`exit_outputs` on
    ``images`` (:func:`clean_exit_outputs`)."""
    images = early_exit.to_float_pixels(images)  # the exact float pixels the attack started from
    macs = [float(m) for m in models.exit_macs(target)]
    conf_c, pred_c = clean
    conf_a, pred_a = exit_outputs(target, x_adv, device)
    n = len(labels)
    df = pd.DataFrame({
        **{k: [v] * n for k, v in meta.items()},
        "image": np.asarray(image_ids, dtype=np.int64),
        "label": labels.numpy().astype(np.int64),
        "tau": np.full(n, float(tau) if isinstance(tau, Real) else np.nan),
        "taus": [list(early_exit.resolve_taus(tau, len(macs))) if tau is not None else []] * n,
        "surrogate_exit": surrogate_exit.numpy().astype(np.int64),
        "gen_seconds": seconds.numpy().astype(np.float64),
        "gen_macs": np.full(n, np.nan) if gen_macs is None else gen_macs.numpy().astype(np.float64),
        "gen_batch": np.full(n, -1, dtype=np.int64) if gen_batch is None else gen_batch.numpy().astype(np.int64),
        "gen_seconds_shared": np.full(n, device_shared(), dtype=bool),
        "psnr": metrics.psnr(images, x_adv).numpy(),
        "linf": metrics.linf(images, x_adv).numpy(),
        "conf_clean": conf_c.tolist(), "pred_clean": pred_c.tolist(),
        "conf_adv": conf_a.tolist(), "pred_adv": pred_a.tolist(),
        "exit_macs": [macs] * n,
    })
    return df[list(COLUMNS)]


def _meta(ws, setting, direction, pair, s_arch, s_kind, t_arch, t_kind, attack, eps, exit_loss, seed) -> dict:
    return {"dataset": ws.dataset, "setting": setting, "direction": direction, "pair": pair,
            "surrogate_arch": s_arch, "surrogate_kind": s_kind, "target_arch": t_arch, "target_kind": t_kind,
            "attack": attack, "eps": float(eps), "eps_255": eps_255(eps), "exit_loss": str(exit_loss),
            "seed": int(seed)}


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Same Python types whether the table was just computed or read back from parquet."""
    df = df.copy()
    for c in LIST_COLUMNS:  # parquet reads a NaN inside a list back as None: restore NaN
        df[c] = [[math.nan if x is None else x for x in (v.tolist() if hasattr(v, "tolist") else list(v))]
                 for v in df[c]]
    for c in ("image", "label", "surrogate_exit", "gen_batch", "seed"):
        df[c] = df[c].astype(np.int64)
    for c in ("eps", "eps_255", "tau", "gen_seconds", "gen_macs", "psnr", "linf"):
        df[c] = df[c].astype(np.float64)
    df["gen_seconds_shared"] = df["gen_seconds_shared"].astype(bool)
    return df[list(COLUMNS)]


def _common_key(ws: Workspace, cfg: ExperimentConfig, attack: str, eps: float, n: int) -> dict:
    return {"version": TABLE_VERSION, "dataset": ws.dataset, "ws_seed": ws.seed, "n_query": ws.profile.n_query,
            "n_eval": ws.profile.n_eval, "n_images": n, "attack": _attack_params(ws, attack, eps, cfg),
            "seed": cfg.seed,
            "calibration": {"grid": early_exit.TAU_GRID, "tolerance": early_exit.CALIBRATION_TOLERANCE},
            **({"fixed_tau": ws.profile.tau} if ws.profile.tau is not None else {})}


def _check_attack(attack: str, eps: float) -> None:
    if attack not in _attacks.ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; accepted: {', '.join(_attacks.ATTACKS)}")
    if not _is_real(eps) or not 0 < float(eps) <= 1:
        raise ValueError(f"eps must lie in (0, 1] ([0,1] pixels), got {eps!r}")


def surrogate_exit_loss(pair: Pair, cfg: ExperimentConfig, exit_loss: str | int | None = None) -> str | int:
    """The exit loss a pair's surrogate is attacked with: ``exit_loss`` (default
    ``cfg.exit_loss_surrogate``) for a DyNN surrogate, ``"final"`` for a CNN (its only exit)."""
    if pair.surrogate_kind == "cnn":
        return "final"
    return cfg.exit_loss_surrogate if exit_loss is None else exit_loss


def transfer_key(ws: Workspace, pair: Pair, attack: str, eps: float, cfg: ExperimentConfig = ExperimentConfig(),
                 exit_loss: str | int | None = None, n: int | None = None) -> tuple[dict, str]:
    """``(config, slug)`` under which :func:`transfer_table` stores its table (store kind
    ``"transfer"``); ``n`` = images attacked (default: computed from ``cfg``, which loads the
    evaluation half). :mod:`dynn_lib.plan` names its jobs by this key."""
    n = len(_images(ws, cfg)[1]) if n is None else n
    key = {**_common_key(ws, cfg, attack, eps, n), "table": "transfer", "pair": asdict(pair),
           "surrogate": asdict(blackbox.surrogate_config(ws, pair)),
           "target": asdict(ws.model_config(pair.target_arch, pair.target_kind)),
           "exit_loss": surrogate_exit_loss(pair, cfg, exit_loss), "labels": "surrogate-deployed"}
    slug = (f"{ws.dataset}-{pair.surrogate_arch}-{pair.surrogate_kind}-to-{pair.target_arch}-{pair.target_kind}"
            f"-{attack}-{eps_255(eps):g}")
    return key, slug


def whitebox_key(ws: Workspace, arch: str, attack: str, eps: float, cfg: ExperimentConfig = ExperimentConfig(),
                 exit_loss: str | int = "final", n: int | None = None) -> tuple[dict, str]:
    """``(config, slug)`` under which :func:`whitebox_table` stores its table (store kind
    ``"whitebox"``); ``n`` as in :func:`transfer_key`."""
    n = len(_images(ws, cfg)[1]) if n is None else n
    key = {**_common_key(ws, cfg, attack, eps, n), "table": "whitebox",
           "source": asdict(ws.model_config(arch, "cnn")), "target": asdict(ws.model_config(arch, "ic_only")),
           "exit_loss": exit_loss, "labels": "ground-truth"}
    return key, f"{ws.dataset}-{arch}-whitebox-{attack}-{eps_255(eps):g}"


def transfer_table(ws: Workspace, pair: Pair, attack: str, eps: float, cfg: ExperimentConfig = ExperimentConfig(),
                   exit_loss: str | int | None = None) -> pd.DataFrame:
    """Black-box transfer of one attack at one ε through one surrogate/target pair (cached).

    The surrogate (trained on the target's deployed answers, :func:`dynn_lib.blackbox.surrogate`)
    is attacked with labels = its own deployed prediction; a DyNN surrogate with ``exit_loss``
    (default ``cfg.exit_loss_surrogate``) at its calibrated τ, a CNN surrogate with "final". The
    target is then run on the benign and the adversarial images (every exit stored).
    One row per evaluation image; columns :data:`COLUMNS`.
    """
    _check_attack(attack, eps)
    if pair not in blackbox.PAIRS:
        warnings.warn(f"{pair} is not one of the protocol's pairs (blackbox.PAIRS)", stacklevel=2)
    images, labels, ids = _images(ws, cfg)
    loss = surrogate_exit_loss(pair, cfg, exit_loss)
    key, slug = transfer_key(ws, pair, attack, eps, cfg, exit_loss, n=len(labels))

    def compute():
        sur = blackbox.surrogate(ws, pair)
        s_tau = blackbox.surrogate_tau(ws, pair)
        tgt = blackbox.target(ws, pair)
        t_tau = blackbox.target_tau(ws, pair.target_arch, pair.target_kind)
        y_sur = clean_surrogate_labels(ws, sur, images, ids, s_tau)
        g = torch.Generator().manual_seed(cfg.seed)
        x_adv, used, secs, gmacs, gbatch = _run_attack_batches(sur, images, y_sur, attack, eps, cfg, loss, s_tau,
                                                               ws.device, g, attack_steps(ws, cfg))
        if pair.surrogate_kind == "cnn":
            used = torch.zeros_like(used)
        meta = _meta(ws, "black-box", pair.direction, pair.short, pair.surrogate_arch, pair.surrogate_kind,
                     pair.target_arch, pair.target_kind, attack, eps, loss, cfg.seed)
        df = _rows(meta, images, labels, ids, x_adv, t_tau, used, secs, tgt, ws.device, gmacs, gbatch,
                   clean_exit_outputs(ws, tgt, images, ids))
        extra = {"surrogate_tau": s_tau, "target_tau": t_tau,
                 "surrogate_label_agreement": float((y_sur == labels).double().mean()),
                 "attack_seconds": float(secs.sum())}
        return df, extra

    df = ws.store.cached_table("transfer", key, compute, slug=slug, device=ws.device, recompute=ws.recompute)
    return _normalise(df)


def whitebox_table(ws: Workspace, arch: str, attack: str, eps: float, cfg: ExperimentConfig = ExperimentConfig(),
                   exit_loss: str | int = "final") -> pd.DataFrame:
    """White-box (RQ2, RQ3): attack the CNN ``ws.model(arch, "cnn")`` with the ground-truth labels
    and read its IC-only DyNN (``ws.model(arch, "ic_only")``, whose final exit *is* the CNN) at
    its τ (cached). ``exit_loss`` is passed to the attack (a CNN accepts "final", 0 or -1).
    One row per evaluation image; columns :data:`COLUMNS`.
    """
    _check_attack(attack, eps)
    if arch not in models.ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; accepted: {', '.join(models.ARCHS)}")
    _attacks.resolve_exit_loss(exit_loss, 1)  # the attacked CNN has one exit: "final", 0 or -1
    images, labels, ids = _images(ws, cfg)
    key, slug = whitebox_key(ws, arch, attack, eps, cfg, exit_loss, n=len(labels))

    def compute():
        cnn = ws.model(arch, "cnn")
        dynn = ws.model(arch, "ic_only")
        tau = ws.tau(arch, "ic_only")
        g = torch.Generator().manual_seed(cfg.seed)
        x_adv, used, secs, gmacs, gbatch = _run_attack_batches(cnn, images, labels.long(), attack, eps, cfg,
                                                               exit_loss, None, ws.device, g, attack_steps(ws, cfg))
        meta = _meta(ws, "white-box", "white-box", arch, arch, "cnn", arch, "ic_only", attack, eps, exit_loss,
                     cfg.seed)
        df = _rows(meta, images, labels, ids, x_adv, tau, torch.zeros_like(used), secs, dynn, ws.device, gmacs,
                   gbatch, clean_exit_outputs(ws, dynn, images, ids))
        return df, {"target_tau": tau, "attack_seconds": float(secs.sum())}

    df = ws.store.cached_table("whitebox", key, compute, slug=slug, device=ws.device, recompute=ws.recompute)
    return _normalise(df)


def setting_tables(ws: Workspace, cfg: ExperimentConfig = ExperimentConfig(), archs: Sequence[str] = models.ARCHS,
                   pairs: Sequence[Pair] | None = None, exit_loss_whitebox: str | int = "final",
                   exit_loss_surrogate: str | int | None = None) -> pd.DataFrame:
    """RQ2/RQ3 inputs: white-box tables of ``archs`` and black-box transfer tables of ``pairs``
    (default: the S2D pairs) for every attack and ε of ``cfg``, concatenated (:data:`COLUMNS`).

    The black-box tables are RQ1's (same cache keys): an S2D surrogate is a CNN, attacked with
    "final" whatever ``exit_loss_surrogate`` (default ``cfg.exit_loss_surrogate``) says.
    """
    pairs = tuple(blackbox.get_pairs("S2D") if pairs is None else pairs)
    for a in archs:
        if a not in models.ARCHS:
            raise ValueError(f"unknown architecture {a!r}; accepted: {', '.join(models.ARCHS)}")
    jobs = [("white-box", a, atk, e) for a in archs for atk in cfg.attacks for e in cfg.eps]
    jobs += [("black-box", p, atk, e) for p in pairs for atk in cfg.attacks for e in cfg.eps]
    frames = []
    for setting, what, atk, e in progress(jobs, desc="attack tables"):
        if setting == "white-box":
            frames.append(whitebox_table(ws, what, atk, e, cfg, exit_loss=exit_loss_whitebox))
        else:
            frames.append(transfer_table(ws, what, atk, e, cfg, exit_loss=exit_loss_surrogate))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- pure functions of the schema

def _stack(col: pd.Series) -> np.ndarray:
    return np.asarray([np.asarray(v) for v in col])


def _by_exits(df: pd.DataFrame) -> dict[int, np.ndarray]:
    """Row positions grouped by number of exits E (tables of different targets have different E)."""
    lens = np.fromiter((len(v) for v in df["pred_clean"]), dtype=np.int64, count=len(df))
    return {int(e): np.flatnonzero(lens == e) for e in np.unique(lens)}


def _row_thresholds(sub: pd.DataFrame, E: int, tau=None) -> np.ndarray:
    """Thresholds ``[n, E-1]`` of rows with E exits: ``tau`` when given (a float, a list of E-1
    per-exit thresholds, or a dict ``{target_arch: float | list}``), else each row's stored
    ``taus`` (``tau`` for tables without that column)."""
    n = len(sub)
    if E == 1:
        return np.zeros((n, 0))
    if tau is not None:
        out = np.empty((n, E - 1))
        archs = sub["target_arch"].to_numpy() if isinstance(tau, dict) else np.full(n, "")
        for a in np.unique(archs):
            setting = tau.get(a) if isinstance(tau, dict) else tau
            if setting is None:
                raise ValueError(f"tau has no entry for target {a!r}; given for {sorted(tau)}")
            if isinstance(setting, bool) or not (_is_real(setting) or isinstance(setting, (list, tuple))):
                raise ValueError(f"tau must be a threshold in [0, 1], a list of per-exit thresholds or a dict of "
                                 f"those by target arch, got {setting!r}")
            out[archs == a] = early_exit.resolve_taus(setting, E)
        return out
    if "taus" in sub.columns and all(len(v) == E - 1 for v in sub["taus"]):
        return _stack(sub["taus"]).astype(np.float64).reshape(n, E - 1)
    t = sub["tau"].to_numpy(dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("a DyNN row has no τ (NaN); pass tau=")
    return np.repeat(t[:, None], E - 1, axis=1)


def _exit_numbers(conf: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """First internal exit with conf >= its threshold (float32, as
    :func:`dynn_lib.early_exit.exit_numbers`), else E - 1. conf [n, E], tau [n, E-1] (or [n]: one
    threshold per row)."""
    n, E = conf.shape
    if E == 1:
        return np.zeros(n, dtype=np.int64)
    tau = np.asarray(tau)
    if tau.ndim == 1:
        tau = tau[:, None]
    fires = conf[:, :-1].astype(np.float32) >= tau.astype(np.float32)
    fires = np.concatenate([fires, np.ones((n, 1), dtype=bool)], 1)
    return fires.argmax(1).astype(np.int64)


def deployed(df: pd.DataFrame, tau: float | None = None) -> pd.DataFrame:
    """The target's deployed behaviour per row, from the stored per-exit outputs (no model run).

    Args:
        df: rows with the :data:`COLUMNS` schema (any mix of targets and exit counts).
        tau: None = each row's stored thresholds (the target's deployed τ); a float in [0, 1]
            overrides them for every DyNN row (the widgets' τ slider), a list gives one
            threshold per internal exit, a dict ``{target_arch: float | list}`` sets each target
            architecture. A CNN row (E = 1) always answers at exit 0.
    Returns:
        A copy of ``df`` with :data:`DEPLOYED_COLUMNS`: ``exit_clean``/``exit_adv`` (0-based exit
        where early exit stops, same rule as :func:`dynn_lib.early_exit.exit_numbers`),
        ``final_pred_*`` (final exit's prediction), ``deployed_pred_*`` (prediction at that exit)
        and ``macs_*`` (``exit_macs[exit]``).
    """
    out = df.copy()
    n = len(df)
    cols = {c: np.zeros(n, dtype=np.int64) for c in DEPLOYED_COLUMNS[:6]}
    cols.update(macs_clean=np.zeros(n, dtype=np.float64), macs_adv=np.zeros(n, dtype=np.float64))
    for E, idx in _by_exits(df).items():
        if len(idx) == 0:
            continue
        sub = df.iloc[idx]
        t = _row_thresholds(sub, E, tau)
        macs = _stack(sub["exit_macs"]).astype(np.float64)
        r = np.arange(len(idx))
        for side in ("clean", "adv"):
            conf = _stack(sub[f"conf_{side}"]).reshape(len(idx), E)
            pred = _stack(sub[f"pred_{side}"]).reshape(len(idx), E).astype(np.int64)
            ex = _exit_numbers(conf, t)
            cols[f"exit_{side}"][idx] = ex
            cols[f"final_pred_{side}"][idx] = pred[:, -1]
            cols[f"deployed_pred_{side}"][idx] = pred[r, ex]
            cols[f"macs_{side}"][idx] = macs[r, ex]
    for c in DEPLOYED_COLUMNS:
        out[c] = cols[c]
    return out


def final_flipped_and_first(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (final exit's prediction changed [bool], first changed exit [int, -1 if the final
    prediction did not change]); the definitions of :func:`dynn_lib.metrics.final_flipped` and
    :func:`dynn_lib.metrics.first_changed_exit`, on the stored predictions."""
    n = len(df)
    flipped = np.zeros(n, dtype=bool)
    first = np.full(n, -1, dtype=np.int64)
    for E, idx in _by_exits(df).items():
        sub = df.iloc[idx]
        pc = _stack(sub["pred_clean"]).reshape(len(idx), E)
        pa = _stack(sub["pred_adv"]).reshape(len(idx), E)
        diff = pc != pa
        f = diff[:, -1]
        flipped[idx] = f
        first[idx] = np.where(f, diff.argmax(1), -1)
    return flipped, first


def num_exits(arch: str, kind: str = "sdn", num_classes: int = 10, input_size: int = 32) -> int:
    """Exits of an architecture (1 for a CNN), read from a freshly built model (no training)."""
    return len(exit_costs(arch, kind, num_classes, input_size))


@functools.lru_cache(maxsize=None)
def exit_costs(arch: str, kind: str = "sdn", num_classes: int = 10, input_size: int = 32) -> tuple[int, ...]:
    """MACs of each exit of an architecture (a CNN: one entry, the whole network), from a freshly
    built model (no training; the count does not depend on the weights)."""
    return tuple(models.exit_macs(models.build(arch, num_classes, input_size, exits=kind != "cnn")))


def larger_smaller(datasets: Sequence[str]) -> tuple[str, str] | None:
    """(dataset with the larger models, with the smaller): more classes = larger IC heads and
    final layer (the paper's "CIFAR-100 uses a larger model"); None when not comparable."""
    by = sorted(set(datasets), key=lambda d: data.get_info(d).num_classes)
    if len(by) < 2 or data.get_info(by[0]).num_classes == data.get_info(by[-1]).num_classes:
        return None
    return by[-1], by[0]


def one_row_per_cell(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``summary`` indexed by ``keys``, which must name one row each; two rows of one cell (two
    seeds' or two exit losses' summaries concatenated, say) are an error naming the cell, never
    silently one of them."""
    dup = summary.duplicated(list(keys), keep=False)
    if dup.any():
        first = summary.loc[dup, list(keys)].iloc[0].tolist()
        raise ValueError(f"{int(dup.sum())} summary rows share their cell {dict(zip(keys, first))} (keys "
                         f"{list(keys)}); pass one run's summary per dataset")
    return summary.set_index(list(keys))


def compare_datasets(summaries: Sequence[pd.DataFrame], metric: str, keys: Sequence[str],
                     count: str | None = None, total: str = "n") -> tuple[list[dict], str]:
    """Matched comparisons of ``metric`` (a % share) between the dataset with the larger models
    and the one with the smaller: only cells present on both sides with the same ``keys``
    (setting or direction, pair, attack, ε: never averages over whatever cells each run had).

    Args:
        summaries: summary tables (one or several datasets; a ``dataset`` column).
        metric: the compared share, percent.
        keys: what makes two cells the same cell.
        count, total: columns holding the share's numerator and denominator (images); with
            them each comparison gets the 95 % Newcombe interval of the difference (two
            independent image sets, :func:`dynn_lib.metrics.newcombe_interval`); without
            ``count`` the interval is NaN (the comparison is then inconclusive).
    Returns:
        ``([{"key", "larger", "smaller", "difference", "lo", "hi", "n_larger", "n_smaller"}], description)``
        with the difference larger minus smaller in percentage points.
    """
    allsum = pd.concat(list(summaries), ignore_index=True) if len(summaries) else pd.DataFrame()
    pair = larger_smaller(allsum["dataset"].unique()) if len(allsum) else None
    if pair is None:
        return [], "needs two datasets whose models differ in size (e.g. CIFAR-10 and CIFAR-100)"
    big, small = pair
    cols = [metric] + ([count, total] if count else [])
    a = one_row_per_cell(allsum[allsum["dataset"] == big], keys)[cols]
    b = one_row_per_cell(allsum[allsum["dataset"] == small], keys)[cols]
    out = []
    for k in a.index.intersection(b.index):
        x, y = float(a.loc[k, metric]), float(b.loc[k, metric])
        if math.isnan(x) or math.isnan(y):
            continue
        if count:
            d, lo, hi = metrics.newcombe_interval(float(a.loc[k, count]), float(a.loc[k, total]),
                                                  float(b.loc[k, count]), float(b.loc[k, total]))
            na, nb = int(a.loc[k, total]), int(b.loc[k, total])
        else:
            d, lo, hi, na, nb = x - y, math.nan, math.nan, 0, 0
        out.append({"key": k, "larger": x, "smaller": y, "difference": d, "lo": lo, "hi": hi,
                    "n_larger": na, "n_smaller": nb})
    return out, f"{big} (larger models) vs {small}"


def verdict(checks: Sequence, reason: str = "") -> str:
    """The verdict (:data:`dynn_lib.verdicts.VERDICTS`) of a claim from its comparisons.

    Each item is a comparison outcome of :func:`dynn_lib.verdicts.compare` ("supports",
    "against", "inconclusive") or a bool for an exact comparison with no sampling noise
    (MACs: True = supports, False = against). No comparison gives ``"not testable"``
    (``": reason"`` appended). See :func:`dynn_lib.verdicts.combine`.
    """
    outcomes = [("supports" if c else "against") if isinstance(c, (bool, np.bool_)) else c for c in checks]
    return verdicts.combine(outcomes, reason)


def fmt(v: float, unit: str = "", digits: int = 1, lo: float | None = None, hi: float | None = None,
        missing: str | None = None) -> str:
    """A number for an evidence sentence (nan -> 'n/a'), with its 95 % interval when ``lo`` and
    ``hi`` are given: ``"12.3 pp [4.1, 20.5]"`` (NaN bounds: why there is none, ``missing`` or the
    bootstrap's reason, :func:`dynn_lib.metrics.interval_text`). A value that rounds to 0 keeps its
    sign with more digits, as the bounds do (:func:`dynn_lib.metrics.number_text`): ``-0.03 %``, never
    ``-0.0 %``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    out = f"{metrics.number_text(float(v), digits)}{unit}"
    if lo is not None and hi is not None:
        out += " " + metrics.interval_text(lo, hi, digits, missing)
    return out
