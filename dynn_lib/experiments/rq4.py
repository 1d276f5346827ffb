"""RQ4: the Early Attack against early-exit DyNNs, its baselines and its transferability.

Claim checked (paper section 6.2, Tables 1-3, Findings 9-10; protocol sections 9-10): an
attack that keeps the final exit's answer and moves every internal exit off it succeeds often
on DyNNs whose exits are sparse (ResNet-56) and less often on densely exited ones (VGG-16,
MobileNet) (Finding 9), while L-inf FGSM / PGD on the internal exits almost never meet the
criterion (Table 1); examples made on one DyNN rarely reach full success on another
(Finding 10, Table 3).

Setup, all parameters in :class:`RQ4Config`:

* Attacked models: the SDN-trained DyNNs (``kind="sdn"``, what the released code loads) of
  ``archs``; ``kind="ic_only"`` attacks the IC-only DyNNs instead.
* Images: a seeded class-stratified sample of ``n_images`` of the workspace's evaluation half
  (:meth:`Workspace.eval_subset`; 10 per class for 100 CIFAR-10 images); the paper attacked
  100 test images. ``image`` in every table is the 0-based position within that sample.
* Early Attack (:func:`dynn_lib.attacks.early_attack.early_attack`) for each alpha in
  ``alphas``; each block draws its initial ``w`` for all images at once from
  ``torch.Generator().manual_seed(seed)`` (CPU), so every alpha and every architecture starts
  from the same ``w`` and a block does not depend on ``attack_batch_size``. The alphas of an
  architecture run together as per-sample alphas (a batch = ``attack_batch_size`` images times the
  alphas still to compute), each row equal to its single-alpha run.
* Baselines (:func:`dynn_lib.attacks.baselines.early_attack_baseline`): FGSM (one step of
  ``baseline_eps``) and PGD (``baseline_steps`` steps of ``baseline_step`` = eps/4 by default,
  i.e. 2/255 at 8/255, uniform random start drawn batch after batch from
  ``Generator().manual_seed(seed)``, so PGD rows depend on ``attack_batch_size``, which is in the key).
* Start contrast (Tables RQ4.5 and RQ4.6 of the book; ``init_contrast``, on by default): the paper
  starts w at random and does not discuss it, yet the start decides how far the successes lie
  from their images. The Early Attack at ``transfer_alpha`` also runs from the other start
  (from x itself when ``init`` is ``"random"``), in the same batch as the alpha grid, and so
  does its transfer study (:func:`contrast_config`, :func:`init_table`, :func:`init_table3`).
  No table or finding of the paper's reads it.
* Success is scored on a fresh forward pass of the returned images (the same criterion as the
  attack's own early-stopping test; the two agree except on exact floating-point ties).
* Transfer (Table 3): the Early-Attack examples of ``alpha = transfer_alpha`` made on DyNN A
  are run on DyNN B for every ordered pair A != B. The adversarial images are **not**
  recomputed: each Early-Attack block saves its exact float32 images as ``x_adv.pt`` beside its
  table in the store (:func:`load_adversarial`), and the transfer step reads them back. All
  examples are used by default (``transfer_examples="all"``; the paper does not filter);
  ``"successful"`` keeps only those that succeeded on A.

Caching: every (arch, method, alpha) block and every transfer pair is one store table (kind
``"rq4"``) keyed by everything that determines it (model config, images, attack parameters,
seed, batch size), so an interrupted run resumes without redoing finished blocks and changing
one parameter recomputes only the blocks it affects.

Example::

    ws = Workspace("cifar10", "paper")
    out = run(ws, RQ4Config())
    out["table2"]            # success % per (dataset, arch) x alpha, paper values beside
    finding_9(out["table1"], per_image=out["per_image"]), finding_10(out["table3"], transfer=out["transfer"])
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import data, metrics, models, timing, verdicts
from ..attacks.baselines import early_attack_baseline
from ..attacks.early_attack import EARLY_ATTACK_INITS, early_attack, initial_w
from ..early_exit import all_exit_logits, to_float_pixels
from ..progress import progress
from ..store import RECORD, CorruptArtefactError, atomic_write, load_checkpoint
from ..zoo import Workspace

__all__ = [
    "RQ4Config", "DYNN_KINDS", "METHODS", "TRANSFER_EXAMPLES", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3",
    "PAPER_ALPHAS", "dataset_family", "alpha_column", "paper_column", "run", "early_attack_grid", "load_adversarial",
    "table1", "table2", "table3", "success_detail", "finding_9", "finding_10", "contrast_config",
    "contrast_block", "init_table", "init_table3",
]

# ================================================================ constants: the paper's numbers

PAPER_ALPHAS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 20.0, 40.0)
"""The alpha grid of the paper (section 6.2.1)."""

PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("cifar10", "vgg16"): {"early_attack": 35.0, "best_alpha": 1.0, "pgd": 0.0, "fgsm": 0.0},
    ("cifar10", "mobilenet"): {"early_attack": 11.0, "best_alpha": 0.1, "pgd": 0.0, "fgsm": 0.0},
    ("cifar10", "resnet56"): {"early_attack": 81.0, "best_alpha": 1.0, "pgd": 0.0, "fgsm": 0.0},
    ("cifar100", "vgg16"): {"early_attack": 86.0, "best_alpha": 20.0, "pgd": 0.0, "fgsm": 1.0},
    ("cifar100", "mobilenet"): {"early_attack": 97.0, "best_alpha": 1.0, "pgd": 0.0, "fgsm": 0.0},
    ("cifar100", "resnet56"): {"early_attack": 96.0, "best_alpha": 1.0, "pgd": 0.0, "fgsm": 2.0},
}
"""Paper Table 1 (success %, 100 images): Early Attack at its best alpha, that alpha, PGD, FGSM."""

_T2_ROWS = {
    ("cifar10", "vgg16"): (0, 0, 0, 35, 10, 4),
    ("cifar10", "mobilenet"): (0, 0, 11, 4, 0, 0),
    ("cifar10", "resnet56"): (7, 32, 73, 81, 49, 32),
    ("cifar100", "vgg16"): (1, 5, 48, 82, 86, 70),
    ("cifar100", "mobilenet"): (0, 16, 74, 97, 92, 77),
    ("cifar100", "resnet56"): (46, 74, 92, 96, 96, 93),
}
PAPER_TABLE2: dict[tuple[str, str], dict[float, float]] = {
    k: {a: float(v) for a, v in zip(PAPER_ALPHAS, row)} for k, row in _T2_ROWS.items()}
"""Paper Table 2: Early Attack success % per alpha, keyed (family, arch) -> {alpha: %}."""

PAPER_TABLE3: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("cifar10", "vgg16"): {"mobilenet": {"t1": 85.0, "t2": 0.73}, "resnet56": {"t1": 73.0, "t2": 1.65}},
    ("cifar10", "mobilenet"): {"vgg16": {"t1": 86.0, "t2": 1.06}, "resnet56": {"t1": 74.0, "t2": 2.3}},
    ("cifar10", "resnet56"): {"vgg16": {"t1": 89.0, "t2": 0.95}, "mobilenet": {"t1": 82.0, "t2": 0.85}},
    ("cifar100", "vgg16"): {"mobilenet": {"t1": 65.0, "t2": 1.58}, "resnet56": {"t1": 39.0, "t2": 2.69}},
    ("cifar100", "mobilenet"): {"vgg16": {"t1": 51.0, "t2": 1.52}, "resnet56": {"t1": 38.0, "t2": 3.26}},
    ("cifar100", "resnet56"): {"vgg16": {"t1": 79.0, "t2": 1.32}, "mobilenet": {"t1": 75.0, "t2": 1.28}},
}
"""Paper Table 3, keyed (family, surrogate arch) -> {target arch: {"t1": %, "t2": mean count}}."""

DYNN_KINDS: tuple[str, ...] = ("sdn", "ic_only")
"""Model kinds that are DyNNs (the Early Attack needs internal exits)."""

METHODS: tuple[str, ...] = ("early_attack", "pgd", "fgsm")
TRANSFER_EXAMPLES: tuple[str, ...] = ("all", "successful")

_FAMILIES = {"cifar10": "cifar10", "cifar10-jpeg": "cifar10", "cifar100": "cifar100"}
_ADV_FILE = "x_adv.pt"


def dataset_family(dataset: str) -> str | None:
    """"cifar10" for cifar10 / cifar10-jpeg, "cifar100" for cifar100, None otherwise (no paper numbers)."""
    return _FAMILIES.get(dataset)


def alpha_column(alpha: float) -> str:
    """Name of the measured success column of ``alpha`` in Table 2, e.g. ``"alpha=0.001"``."""
    return f"alpha={float(alpha):g}"


def paper_column(alpha: float) -> str:
    """Name of the paper's column of ``alpha`` in Table 2, e.g. ``"paper alpha=0.001"``."""
    return f"paper {alpha_column(alpha)}"


# ================================================================ configuration

def _finite(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _pos_int_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, Integral) and not isinstance(v, bool) and v >= 1)


@dataclass(frozen=True)
class RQ4Config:
    """Parameters of RQ4 (protocol section 9). ``None`` sizes come from the workspace profile.

    alphas: Early Attack weights of L1 (>= 0), one block each (paper grid by default).
    c, ea_lr, init, min_iters: Early Attack parameters (c = 50, Adam lr 0.01, w ~ U[0,1), no
        minimum; the released code used min_iters = 200). ``ea_lr`` is not named ``lr``: that is
        the profile's training learning rate, and one ``-p lr`` override would set both. iters: most Adam updates
        (None -> ``profile.ea_iters``; paper 1,000).
    n_images: images of the evaluation half, a seeded class-stratified sample (None ->
        ``profile.ea_images``; paper 100).
    kind: which DyNN is attacked, one of :data:`DYNN_KINDS` ("sdn": SDN training, as released).
    archs: architectures (subset of ``models.ARCHS``), in table order.
    baseline_eps / baseline_step / baseline_steps: FGSM/PGD budget on [0,1] pixels (8/255),
        PGD step (None -> eps/4) and steps (None -> ``profile.attack_steps``).
    transfer_alpha: the alpha whose examples feed Table 3 (must be in ``alphas``; None skips
        the transfer study). transfer_examples: "all" (default) or "successful" (only examples
        that succeeded on the surrogate).
    init_contrast: also run the Early Attack at ``transfer_alpha`` from the other start of
        :data:`~dynn_lib.attacks.early_attack.EARLY_ATTACK_INITS` (``"input"`` when ``init`` is
        ``"random"``), in the same batch as the alpha grid, and its transfer study: the tables
        ``init_table`` and ``init_table3`` (:func:`init_table`). Part of the transfer study: with
        ``transfer_alpha=None`` there is nothing to contrast and nothing runs.
    seed: attack seed (Early-Attack initial w, PGD random start). attack_batch_size: images per
        attack batch (the profile's ``batch_size`` is the training batch).
    """

    alphas: tuple[float, ...] = PAPER_ALPHAS
    c: float = 50.0
    iters: int | None = None
    ea_lr: float = 0.01
    init: str = "random"
    min_iters: int = 0
    n_images: int | None = None
    kind: str = "sdn"
    archs: tuple[str, ...] = ("vgg16", "mobilenet", "resnet56")
    baseline_eps: float = 8 / 255
    baseline_step: float | None = None
    baseline_steps: int | None = None
    transfer_alpha: float | None = 1.0
    transfer_examples: str = "all"
    init_contrast: bool = True
    seed: int = 0
    attack_batch_size: int = 100

    def __post_init__(self):
        alphas = tuple(self.alphas) if isinstance(self.alphas, (list, tuple)) else (self.alphas,)
        if not alphas:
            raise ValueError("alphas must hold at least one value")
        for a in alphas:
            if not _finite(a) or a < 0:
                raise ValueError(f"every alpha must be a finite number >= 0, got {a!r} in alphas={alphas!r}")
        alphas = tuple(float(a) for a in alphas)
        if len(set(alphas)) != len(alphas):
            raise ValueError(f"alphas has duplicates: {alphas}")
        object.__setattr__(self, "alphas", alphas)
        archs = (self.archs,) if isinstance(self.archs, str) else tuple(self.archs)
        if not archs:
            raise ValueError(f"archs must hold at least one of {', '.join(models.ARCHS)}")
        for a in archs:
            if a not in models.ARCHS:
                raise ValueError(f"unknown architecture {a!r}; accepted: {', '.join(models.ARCHS)}")
        if len(set(archs)) != len(archs):
            raise ValueError(f"archs has duplicates: {archs}")
        object.__setattr__(self, "archs", archs)
        if self.kind not in DYNN_KINDS:
            raise ValueError(f"unknown DyNN kind {self.kind!r}; accepted: {', '.join(DYNN_KINDS)} "
                             "(a 'cnn' has no internal exits to attack)")
        for name in ("c", "ea_lr", "baseline_eps"):
            v = getattr(self, name)
            if not _finite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if self.baseline_eps > 1:
            raise ValueError(f"baseline_eps is on [0,1] pixels, got {self.baseline_eps}")
        if self.baseline_step is not None and (not _finite(self.baseline_step) or self.baseline_step <= 0):
            raise ValueError(f"baseline_step must be > 0 or None (eps/4), got {self.baseline_step!r}")
        for name in ("iters", "n_images", "baseline_steps"):
            if not _pos_int_or_none(getattr(self, name)):
                raise ValueError(f"{name} must be an integer >= 1 or None (profile default), "
                                 f"got {getattr(self, name)!r}")
        if not _pos_int_or_none(self.attack_batch_size) or self.attack_batch_size is None:
            raise ValueError(f"attack_batch_size must be an integer >= 1, got {self.attack_batch_size!r}")
        if not isinstance(self.min_iters, Integral) or isinstance(self.min_iters, bool) or self.min_iters < 0:
            raise ValueError(f"min_iters must be an integer >= 0, got {self.min_iters!r}")
        if self.iters is not None and self.min_iters > self.iters:
            raise ValueError(f"min_iters={self.min_iters} exceeds iters={self.iters}")
        if self.init not in EARLY_ATTACK_INITS:
            raise ValueError(f"unknown init {self.init!r}; accepted: {', '.join(EARLY_ATTACK_INITS)}")
        if self.transfer_alpha is not None:
            if not _finite(self.transfer_alpha) or float(self.transfer_alpha) not in self.alphas:
                raise ValueError(f"transfer_alpha={self.transfer_alpha!r} must be one of alphas {self.alphas} "
                                 "(its examples are reused) or None to skip the transfer study")
            object.__setattr__(self, "transfer_alpha", float(self.transfer_alpha))
        if self.transfer_examples not in TRANSFER_EXAMPLES:
            raise ValueError(f"unknown transfer_examples {self.transfer_examples!r}; "
                             f"accepted: {', '.join(TRANSFER_EXAMPLES)}")
        if not isinstance(self.seed, Integral) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.init_contrast, bool):
            raise ValueError(f"init_contrast must be True or False (capitalised, also on the command line), "
                             f"got {self.init_contrast!r}")

    # -- profile-resolved sizes ------------------------------------------------------------
    def resolved_iters(self, ws: Workspace) -> int:
        return self.iters if self.iters is not None else ws.profile.ea_iters

    def resolved_n_images(self, ws: Workspace) -> int:
        return self.n_images if self.n_images is not None else ws.profile.ea_images

    def resolved_steps(self, ws: Workspace) -> int:
        return self.baseline_steps if self.baseline_steps is not None else ws.profile.attack_steps

    def resolved_step(self) -> float:
        return self.baseline_step if self.baseline_step is not None else self.baseline_eps / 4


# ================================================================ blocks (one cached table each)

def _images(ws: Workspace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded class-stratified sample of ``n`` evaluation images (:meth:`Workspace.eval_subset`):
    (float [n,3,H,W] in [0,1] on CPU, labels [n]), in evaluation-half order."""
    y = ws.eval_half[1]
    if n > len(y):
        raise ValueError(f"n_images={n} exceeds the evaluation half ({len(y)} images at profile "
                         f"{ws.profile.name!r}); lower n_images or raise n_eval")
    x, y, _ = ws.eval_subset(n)
    return to_float_pixels(x), y.long()


def _images_key(ws: Workspace, n: int) -> dict:
    return {"dataset": ws.dataset, "half": "eval", "n_eval": ws.profile.n_eval, "split_seed": data.SPLIT_SEED,
            "stratified": n}


def _block_config(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None) -> dict:
    """Everything that determines one (arch, method, alpha) block (its store key)."""
    base = {"experiment": "rq4", "block": method, "version": 1,
            "model": asdict(ws.model_config(arch, cfg.kind)),
            "images": _images_key(ws, cfg.resolved_n_images(ws)), "seed": cfg.seed, "batch_size": cfg.attack_batch_size}
    if method == "early_attack":
        base.update(alpha=alpha, c=cfg.c, iters=cfg.resolved_iters(ws), lr=cfg.ea_lr, init=cfg.init,
                    min_iters=cfg.min_iters)
    else:
        base.update(eps=cfg.baseline_eps)
        if method == "pgd":
            base.update(step=cfg.resolved_step(), steps=cfg.resolved_steps(ws), random_start=True)
    return base


def _start_tag(cfg: RQ4Config) -> str:
    """``-input`` for a non-random start, "" for the default: store folders name the start (the key
    holds it anyway)."""
    return "" if cfg.init == "random" else f"-{cfg.init}"


def _slug(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None) -> str:
    a = "" if alpha is None else f"-a{alpha:g}"
    start = _start_tag(cfg) if method == "early_attack" else ""
    return f"{ws.dataset}-{arch}-{cfg.kind}-{method}{a}{start}"


def _as_int_lists(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Parquet returns list columns as numpy arrays; make them plain ``list[int]``."""
    for c in cols:
        if c in df.columns:
            df[c] = df[c].map(lambda v: [int(i) for i in v])
    return df


def _early_attack_runs(ws: Workspace, cfg: RQ4Config, arch: str, runs: Sequence[tuple[float, str]]
                       ) -> dict[tuple[float, str], tuple[torch.Tensor, torch.Tensor, float]]:
    """The Early Attack of every ``(alpha, init)`` in ``runs`` on ``arch``, run together.

    Each batch holds ``cfg.attack_batch_size`` images once per run, with alpha and the initial w
    per sample (:func:`dynn_lib.attacks.early_attack.early_attack`; exact, per-sample losses are
    summed and Adam works element by element), so the paper's grid (and the start contrast of
    :attr:`RQ4Config.init_contrast`) is one batch per architecture at 100 images. Every
    ``"random"`` run starts from the same initial w (one draw for all images from
    ``Generator().manual_seed(cfg.seed)``, CPU), every ``"input"`` run from x itself
    (:func:`~dynn_lib.attacks.early_attack.initial_w`, on the device), so a row equals the
    single run. Returns ``(alpha, init)`` -> (x_adv float32 [n,3,H,W] CPU, iters_used int64
    [n], seconds: the run's wall time shared evenly over the runs).
    """
    model = ws.model(arch, cfg.kind)
    n = cfg.resolved_n_images(ws)
    x_all, _ = _images(ws, n)
    dev = ws.device
    bs = cfg.attack_batch_size
    runs = [(float(a), init) for a, init in runs]
    for _, init in runs:
        if init not in EARLY_ATTACK_INITS:
            raise ValueError(f"unknown init {init!r}; accepted: {', '.join(EARLY_ATTACK_INITS)}")
    g = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on every device
    starts = {init for _, init in runs}
    w_random = torch.rand(x_all.shape, generator=g) if "random" in starts else None
    R = len(runs)
    advs: dict[tuple[float, str], list] = {r: [] for r in runs}
    its: dict[tuple[float, str], list] = {r: [] for r in runs}
    timing.sync(dev)
    t0 = time.perf_counter()
    for i in range(0, n, bs):
        b = len(x_all[i:i + bs])
        xb = x_all[i:i + bs].to(dev)
        x_rep = xb.repeat(R, 1, 1, 1)  # rows j*b .. (j+1)*b - 1 run runs[j]
        a_vec = torch.tensor([a for a, _ in runs], dtype=x_rep.dtype).repeat_interleave(b).to(dev)
        w_of = {init: w_random[i:i + bs].to(dev) if init == "random" else initial_w(xb, init) for init in starts}
        w_rep = torch.cat([w_of[init] for _, init in runs])
        res = early_attack(model, x_rep, alpha=a_vec, c=cfg.c, iters=cfg.resolved_iters(ws), lr=cfg.ea_lr,
                           min_iters=cfg.min_iters, w0=w_rep)
        x_adv, used = res.x_adv.float().cpu(), res.iters_used.cpu()
        for j, r in enumerate(runs):
            advs[r].append(x_adv[j * b:(j + 1) * b])
            its[r].append(used[j * b:(j + 1) * b])
    timing.sync(dev)
    seconds = time.perf_counter() - t0
    return {r: (torch.cat(advs[r]), torch.cat(its[r]), seconds / R) for r in runs}


def _block_missing(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None,
                   need_adv: bool) -> bool:
    """Whether :func:`_attack_block` would compute this block (no usable stored table)."""
    bcfg, slug = _block_config(ws, cfg, arch, method, alpha), _slug(ws, cfg, arch, method, alpha)
    if ws.recompute or not ws.store.has("rq4", bcfg, slug):
        return True
    return need_adv and not _adv_ok(ws.store.dir("rq4", bcfg, slug))


def _attack_block(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None,
                  need_adv: bool = False,
                  precomputed: tuple[torch.Tensor, torch.Tensor, float] | None = None) -> pd.DataFrame:
    """Run (or load) one block; its adversarial images are saved beside the table as ``x_adv.pt``.

    ``need_adv``: a stored table whose ``x_adv.pt`` is missing or unreadable is recomputed.
    ``precomputed``: this Early-Attack block's ``(x_adv, iters_used, seconds)`` from a joint
    :func:`_early_attack_runs` (used only if the block has to be computed); ``seconds`` per
    image is then the joint run's time / (n * alphas run together).
    """
    bcfg = _block_config(ws, cfg, arch, method, alpha)
    slug = _slug(ws, cfg, arch, method, alpha)
    st = ws.store
    d = st.dir("rq4", bcfg, slug)

    def compute():
        (d / RECORD).unlink(missing_ok=True)
        model = ws.model(arch, cfg.kind)
        n = cfg.resolved_n_images(ws)
        x_all, y_all = _images(ws, n)
        dev = ws.device
        bs = cfg.attack_batch_size
        z_clean = all_exit_logits(model, x_all, batch_size=bs, device=dev)
        p = z_clean[-1].argmax(-1)
        if method == "early_attack":
            x_adv, its, seconds = (precomputed if precomputed is not None
                                   else _early_attack_runs(ws, cfg, arch, [(alpha, cfg.init)])[(alpha, cfg.init)])
        else:
            advs, iters_used = [], []
            g = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on every device
            timing.sync(dev)
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                xb = x_all[i:i + bs].to(dev)
                kw = {"steps": cfg.resolved_steps(ws), "step": cfg.resolved_step(), "random_start": True,
                      "generator": g} if method == "pgd" else {}
                xa, _ = early_attack_baseline(model, xb, attack=method, eps=cfg.baseline_eps, **kw)
                advs.append(xa.float().cpu())
                iters_used.append(torch.full((xb.shape[0],), -1, dtype=torch.long))
            timing.sync(dev)
            seconds = time.perf_counter() - t0
            x_adv = torch.cat(advs)
            its = torch.cat(iters_used)
        z_adv = all_exit_logits(model, x_adv, batch_size=bs, device=dev)
        pred_adv = z_adv.argmax(-1)  # [E, n]
        success = metrics.early_attack_success(z_adv, p)
        changed = (pred_adv[:-1] != p).sum(0)
        l2, linf, psnr = metrics.l2(x_all, x_adv), metrics.linf(x_all, x_adv), metrics.psnr(x_all, x_adv)
        atomic_write(d / _ADV_FILE, lambda path: torch.save(x_adv.contiguous(), path))
        df = pd.DataFrame({
            "dataset": ws.dataset, "arch": arch, "kind": cfg.kind, "method": method,
            "alpha": float("nan") if alpha is None else float(alpha),
            "image": np.arange(n, dtype=np.int64), "label": y_all.numpy().astype(np.int64),
            "p": p.numpy().astype(np.int64), "success": success.numpy().astype(bool),
            "iters_used": its.numpy().astype(np.int64),
            "l2": l2.numpy(), "linf": linf.numpy(), "psnr": psnr.numpy(),
            "final_pred_adv": pred_adv[-1].numpy().astype(np.int64),
            "pred_adv": [[int(v) for v in pred_adv[:, j]] for j in range(n)],
            "internal_changed": changed.numpy().astype(np.int64),
            "seconds": seconds / n, "seed": cfg.seed,
        })
        return df, {"seconds": seconds, "n_images": n, "exits": int(z_adv.shape[0])}

    recompute = ws.recompute
    if not recompute and need_adv and st.has("rq4", bcfg, slug) and not _adv_ok(d):
        recompute = True  # table without its images (older run or damaged file): make both again
    try:
        df = st.cached_table("rq4", bcfg, compute, slug=slug, device=ws.device, recompute=recompute)
    except CorruptArtefactError:
        df = st.cached_table("rq4", bcfg, compute, slug=slug, device=ws.device, recompute=True)
    return _as_int_lists(df, ["pred_adv"])


def contrast_config(cfg: RQ4Config) -> RQ4Config | None:
    """The configuration of the start contrast (:attr:`RQ4Config.init_contrast`): ``cfg`` with the
    other init of :data:`~dynn_lib.attacks.early_attack.EARLY_ATTACK_INITS` and ``transfer_alpha``
    as its only alpha; None when ``cfg`` asks for no contrast or has no transfer study. Its blocks
    and transfer pairs are cached like any other (the init is in their keys)."""
    if not cfg.init_contrast or cfg.transfer_alpha is None:
        return None
    other = next(i for i in EARLY_ATTACK_INITS if i != cfg.init)
    return replace(cfg, init=other, alphas=(cfg.transfer_alpha,), init_contrast=False)


def early_attack_grid(ws: Workspace, cfg: RQ4Config, arch: str) -> dict[float, pd.DataFrame]:
    """Every Early-Attack block of ``arch`` (one per alpha of ``cfg.alphas``), loaded or computed.

    The alphas whose blocks are missing run **together** (:func:`_early_attack_runs`), with the
    start contrast's block (:func:`contrast_config`) when that is missing too, so the numbers do
    not depend on which blocks were already stored, nor on the engine: :func:`run` and the job
    graph's RQ4 job (:mod:`dynn_lib.plan`, one job per architecture) both call this. Returns
    alpha -> per-image table of the block (the contrast's block is stored, and read with
    :func:`contrast_block`).
    """
    todo = [(a, cfg.init) for a in cfg.alphas
            if _block_missing(ws, cfg, arch, "early_attack", a, a == cfg.transfer_alpha)]
    ccfg = contrast_config(cfg)
    if ccfg is not None and _block_missing(ws, ccfg, arch, "early_attack", ccfg.transfer_alpha, True):
        todo.append((ccfg.transfer_alpha, ccfg.init))
    joint = _early_attack_runs(ws, cfg, arch, todo) if todo else {}
    grid = {a: _attack_block(ws, cfg, arch, "early_attack", a, need_adv=a == cfg.transfer_alpha,
                             precomputed=joint.get((a, cfg.init))) for a in cfg.alphas}
    if ccfg is not None and (ccfg.transfer_alpha, ccfg.init) in joint:
        contrast_block(ws, cfg, arch, precomputed=joint[(ccfg.transfer_alpha, ccfg.init)])
    return grid


def contrast_block(ws: Workspace, cfg: RQ4Config, arch: str,
                   precomputed: tuple[torch.Tensor, torch.Tensor, float] | None = None) -> pd.DataFrame:
    """The per-image table of the start contrast's Early-Attack block of ``arch`` (the other init
    at ``transfer_alpha``; :func:`contrast_config`), loaded, or computed alone when missing."""
    ccfg = contrast_config(cfg)
    if ccfg is None:
        raise ValueError("this configuration has no start contrast (init_contrast=False or transfer_alpha=None)")
    return _attack_block(ws, ccfg, arch, "early_attack", ccfg.transfer_alpha, need_adv=True,
                         precomputed=precomputed)


def _adv_ok(d) -> bool:
    try:
        load_checkpoint(d / _ADV_FILE)
        return True
    except (FileNotFoundError, CorruptArtefactError):
        return False


def load_adversarial(ws: Workspace, cfg: RQ4Config, arch: str, method: str = "early_attack",
                     alpha: float | None = None) -> torch.Tensor:
    """The exact float32 adversarial images ``[n, 3, H, W]`` of one block (computed if missing).

    ``alpha`` is required for ``method="early_attack"`` and ignored for the baselines.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    if method == "early_attack":
        if alpha is None:
            raise ValueError("alpha is required for method='early_attack'")
        alpha = float(alpha)
    else:
        alpha = None
    if arch not in cfg.archs:
        raise ValueError(f"arch {arch!r} is not in cfg.archs {cfg.archs}")
    _attack_block(ws, cfg, arch, method, alpha, need_adv=True)
    return load_checkpoint(ws.store.dir("rq4", _block_config(ws, cfg, arch, method, alpha),
                                        _slug(ws, cfg, arch, method, alpha)) / _ADV_FILE)


def _transfer_pair(ws: Workspace, cfg: RQ4Config, surrogate: str, target: str, a_rows: pd.DataFrame
                   ) -> pd.DataFrame:
    """Rows per image: target B's per-exit predictions on the benign images and on A's examples.

    ``a_rows``: the per-image rows of A's ``transfer_alpha`` block, whose ``x_adv.pt`` exists.
    """
    a_cfg = _block_config(ws, cfg, surrogate, "early_attack", cfg.transfer_alpha)
    tcfg = {"experiment": "rq4", "block": "transfer", "version": 1, "surrogate_block": a_cfg,
            "target_model": asdict(ws.model_config(target, cfg.kind)), "batch_size": cfg.attack_batch_size}
    slug = f"{ws.dataset}-{surrogate}-to-{target}-{cfg.kind}-a{cfg.transfer_alpha:g}{_start_tag(cfg)}"

    def compute():
        x_adv = load_checkpoint(ws.store.dir("rq4", a_cfg, _slug(ws, cfg, surrogate, "early_attack",
                                                               cfg.transfer_alpha)) / _ADV_FILE)
        n = len(x_adv)
        x, y = _images(ws, n)
        model_b = ws.model(target, cfg.kind)
        zc = all_exit_logits(model_b, x, batch_size=cfg.attack_batch_size, device=ws.device)
        za = all_exit_logits(model_b, x_adv, batch_size=cfg.attack_batch_size, device=ws.device)
        pc, pa = zc.argmax(-1), za.argmax(-1)  # [E, n]
        p_b = pc[-1]
        df = pd.DataFrame({
            "dataset": ws.dataset, "kind": cfg.kind, "surrogate_arch": surrogate, "target_arch": target,
            "alpha": cfg.transfer_alpha, "image": np.arange(n, dtype=np.int64),
            "label": y.numpy().astype(np.int64), "p_b": p_b.numpy().astype(np.int64),
            "a_success": a_rows.sort_values("image")["success"].to_numpy(dtype=bool),
            "b_pred_clean": [[int(v) for v in pc[:, j]] for j in range(n)],
            "b_pred_adv": [[int(v) for v in pa[:, j]] for j in range(n)],
            "b_final_kept": (pa[-1] == p_b).numpy(),
            "b_internal_changed": (pa[:-1] != p_b).sum(0).numpy().astype(np.int64),
            "b_full_success": metrics.early_attack_success(za, p_b).numpy().astype(bool),
            "seed": cfg.seed,
        })
        return df, {"n_images": n}

    df = ws.store.cached_table("rq4", tcfg, compute, slug=slug, device=ws.device, recompute=ws.recompute)
    return _as_int_lists(df, ["b_pred_clean", "b_pred_adv"])


# ================================================================ tables

def table2(per_image: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2 layout: Early-Attack success % per (dataset, arch), one column per alpha
    (:func:`alpha_column`) followed by its 95 % Wilson bounds (``<column>_lo``, ``<column>_hi``,
    percent, over ``n_images``), then the paper's value per alpha (:func:`paper_column`; NaN
    when the dataset has no paper numbers or the alpha is not in the paper's grid)."""
    ea = per_image[per_image["method"] == "early_attack"]
    alphas = sorted(ea["alpha"].unique())
    rows = []
    for (ds, arch), g in ea.groupby(["dataset", "arch"], sort=False):
        fam = dataset_family(ds)
        row = {"dataset": ds, "arch": arch, "kind": g["kind"].iloc[0], "n_images": int(g["image"].nunique())}
        for a in alphas:
            s = g.loc[g["alpha"] == a, "success"]
            row[alpha_column(a)] = 100.0 * float(s.mean()) if len(s) else math.nan
            row[alpha_column(a) + "_lo"], row[alpha_column(a) + "_hi"] = (
                metrics.wilson_interval(int(s.sum()), len(s)) if len(s) else (math.nan, math.nan))
        paper = PAPER_TABLE2.get((fam, arch), {}) if fam else {}
        for a in alphas:
            row[paper_column(a)] = paper.get(float(a), math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def table1(per_image: pd.DataFrame, exits: dict[str, int] | None = None) -> pd.DataFrame:
    """Paper Table 1: per (dataset, arch) the Early-Attack success % at its best alpha, that
    alpha (ties -> the smallest alpha), PGD % and FGSM %, each rate with its 95 % Wilson bounds
    (``early_attack_lo``/``_hi``, ``pgd_lo``/``_hi``, ``fgsm_lo``/``_hi``, percent, over
    ``n_images``; the best alpha is chosen on the same images, so its interval is slightly
    optimistic), ``alpha_decides`` (False when every alpha gave the same rate, none succeeding
    included: then no alpha is best, and ``best_alpha`` is only the smallest one), then the
    paper's values (``paper_*``, NaN without paper numbers). ``exits``:
    arch -> number of exits (column ``exits``, used by :func:`finding_9`'s evidence)."""
    rows = []
    for (ds, arch), g in per_image.groupby(["dataset", "arch"], sort=False):
        fam = dataset_family(ds)
        ea = g[g["method"] == "early_attack"]
        stats = ea.groupby("alpha")["success"].agg(["sum", "count"]).sort_index()
        rates = 100.0 * stats["sum"] / stats["count"]
        if len(rates):
            best = float(rates.max())
            best_alpha = float(rates[rates == best].index.min())
            best_ci = metrics.wilson_interval(int(stats.loc[best_alpha, "sum"]), int(stats.loc[best_alpha, "count"]))
        else:
            best = best_alpha = math.nan
            best_ci = (math.nan, math.nan)

        def rate(m):
            s = g.loc[g["method"] == m, "success"]
            if not len(s):
                return math.nan, math.nan, math.nan
            return (100.0 * float(s.mean()), *metrics.wilson_interval(int(s.sum()), len(s)))

        paper = PAPER_TABLE1.get((fam, arch), {}) if fam else {}
        pgd, fgsm = rate("pgd"), rate("fgsm")
        rows.append({"dataset": ds, "arch": arch, "kind": g["kind"].iloc[0],
                     "exits": (exits or {}).get(arch, math.nan), "n_images": int(g["image"].nunique()),
                     "early_attack": best, "early_attack_lo": best_ci[0], "early_attack_hi": best_ci[1],
                     "best_alpha": best_alpha, "alpha_decides": bool(rates.nunique() > 1),
                     "pgd": pgd[0], "pgd_lo": pgd[1], "pgd_hi": pgd[2],
                     "fgsm": fgsm[0], "fgsm_lo": fgsm[1], "fgsm_hi": fgsm[2],
                     **{f"paper_{k}": paper.get(k, math.nan) for k in ("early_attack", "best_alpha", "pgd", "fgsm")}})
    return pd.DataFrame(rows)


def _success_stats(rows: pd.DataFrame) -> dict:
    """Of one block's per-image rows: ``successes``, ``at_start`` (successes with ``iters_used``
    0) and ``median_iters``, ``median_l2``, ``median_psnr`` over the successes (NaN without one)."""
    won = rows[rows["success"]]
    med = (lambda c: float(won[c].median()) if len(won) else math.nan)
    return {"successes": len(won), "at_start": int((won["iters_used"] == 0).sum()),
            "median_iters": med("iters_used"), "median_l2": med("l2"), "median_psnr": med("psnr")}


def success_detail(per_image: pd.DataFrame, table1_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """What the Early Attack's successes are, per (dataset, arch): how many were found *before any
    update*, and how far they are from the benign images.

    Algorithm 1 of the paper (and :func:`dynn_lib.attacks.early_attack.early_attack` with its
    default ``min_iters=0``) tests the starting point first. With the released code's random
    start (w ~ U[0,1), so every pixel of x' lies in [0.5, 0.88]) that starting point is a noise
    image unrelated to x, and it counts as a success whenever the network happens to answer p at
    its final exit and something else at every internal one. Such a success says nothing about
    x; ``min_iters`` (the released code used 200) leaves them out.

    Columns: ``alpha`` (the best α of ``table1_df``, by default :func:`table1` of ``per_image``),
    ``n_images``, ``successes`` and ``at_start`` (successes with
    ``iters_used == 0``) at that α, ``at_start_pct`` (% of its successes, NaN without one;
    95 % Wilson bounds ``at_start_pct_lo``/``_hi`` follow it),
    ``median_iters``, ``median_l2`` and ``median_psnr`` (dB) over its successes, then
    ``successes_all_alphas`` and ``at_start_all_alphas`` over the whole α grid.
    """
    cols = ["dataset", "arch", "alpha", "n_images", "successes", "at_start", "at_start_pct", "median_iters",
            "median_l2", "median_psnr", "successes_all_alphas", "at_start_all_alphas"]
    ea = per_image[per_image["method"] == "early_attack"]
    t1 = table1(per_image) if table1_df is None else table1_df
    best = {(r.dataset, r.arch): r.best_alpha for r in t1.itertuples()}
    rows = []
    for (ds, arch), g in ea.groupby(["dataset", "arch"], sort=False):
        a = best.get((ds, arch), math.nan)
        at = g[np.isclose(g["alpha"], a)] if _finite(a) else g.iloc[:0]
        won, start = _success_stats(at), g["success"] & (g["iters_used"] == 0)
        rows.append({"dataset": ds, "arch": arch, "alpha": a, "n_images": int(g["image"].nunique()), **won,
                     "at_start_pct": 100.0 * (won["at_start"] / won["successes"]) if won["successes"] else math.nan,
                     "successes_all_alphas": int(g["success"].sum()), "at_start_all_alphas": int(start.sum())})
    out = pd.DataFrame(rows, columns=cols)
    if len(out):  # the share of successes found at the start, with its Wilson interval over the successes
        metrics.wilson_columns(out, "at_start_pct", out["at_start"], out["successes"])
    return out


def _one_hot(preds: list[list[int]], num_classes: int) -> torch.Tensor:
    """Per-image per-exit predictions -> logits ``[E, N, C]`` whose argmax is those predictions."""
    p = torch.tensor(preds, dtype=torch.long).T  # [E, N]
    return torch.nn.functional.one_hot(p, num_classes).float()


def table3(transfer: pd.DataFrame, examples: str = "all", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper Table 3: T1 % and T2 per ordered (surrogate, target) pair, from the stored predictions.

    T1/T2 are :func:`dynn_lib.metrics.t1_t2` on B's per-exit logits; the stored argmax
    predictions are turned into one-hot logits, which have the same argmax, so the values are
    identical. ``full_success_on_b`` = % of examples meeting the full Early-Attack criterion on
    B (final prediction p_B, every internal exit != p_B). ``examples="successful"`` keeps only
    examples that succeeded on the surrogate (n may then be 0 and the rates NaN); the ``examples``
    column says which (so :func:`finding_10` pools the same examples).

    Uncertainty: T1 and full_success_on_b have 95 % Wilson bounds over the ``n`` examples
    (``t1_lo``/``t1_hi``, ``full_success_on_b_lo``/``_hi``, percent; ``n_t1_kept`` and
    ``n_full_success`` are the counts); T2 (a mean count over the ``n_t1_kept`` examples) a
    seeded bootstrap-over-images interval (``t2_lo``/``t2_hi``; ``n_boot``, ``seed``).
    """
    if examples not in TRANSFER_EXAMPLES:
        raise ValueError(f"unknown examples {examples!r}; accepted: {', '.join(TRANSFER_EXAMPLES)}")
    cols = ["dataset", "kind", "surrogate_arch", "target_arch", "alpha", "n", "t1", "t1_lo", "t1_hi", "n_t1_kept",
            "t2", "t2_lo", "t2_hi", "full_success_on_b", "full_success_on_b_lo", "full_success_on_b_hi",
            "n_full_success", "target_internal_exits", "paper_t1", "paper_t2", "examples"]
    rows = []
    for (ds, a, b), g in transfer.groupby(["dataset", "surrogate_arch", "target_arch"], sort=False):
        if examples == "successful":
            g = g[g["a_success"]]
        fam = dataset_family(ds)
        paper = PAPER_TABLE3.get((fam, a), {}).get(b, {}) if fam else {}
        n = len(g)
        nan2 = (math.nan, math.nan)
        if n:
            nc = 1 + max(max(max(v) for v in g["b_pred_clean"]), max(max(v) for v in g["b_pred_adv"]))
            zc, za = _one_hot(list(g["b_pred_clean"]), nc), _one_hot(list(g["b_pred_adv"]), nc)
            t1, t2 = metrics.t1_t2(zc, za)
            p_b = zc[-1].argmax(-1)
            pa = za.argmax(-1)
            kept = (pa[-1] == p_b).numpy()
            changed = (pa[:-1] != p_b).sum(0).numpy().astype(np.float64)
            full_mask = metrics.early_attack_success(za, p_b).numpy()
            full = 100.0 * float(full_mask.mean())
            e_int = int(zc.shape[0]) - 1
            n_kept, n_full = int(kept.sum()), int(full_mask.sum())
            t1_ci, full_ci = metrics.wilson_interval(n_kept, n), metrics.wilson_interval(n_full, n)
            t2_ci = metrics.bootstrap_mean(g["image"].to_numpy(), changed, kept, n_boot=n_boot, seed=seed)[1:]
        else:
            t1 = t2 = full = math.nan
            n_kept = n_full = 0
            t1_ci = full_ci = t2_ci = nan2
            e_int = len(transfer.loc[transfer["target_arch"] == b, "b_pred_clean"].iloc[0]) - 1
        rows.append({"dataset": ds, "kind": g["kind"].iloc[0] if n else transfer["kind"].iloc[0],
                     "surrogate_arch": a, "target_arch": b, "alpha": float(transfer["alpha"].iloc[0]), "n": n,
                     "t1": t1, "t1_lo": t1_ci[0], "t1_hi": t1_ci[1], "n_t1_kept": n_kept,
                     "t2": t2, "t2_lo": t2_ci[0], "t2_hi": t2_ci[1],
                     "full_success_on_b": full, "full_success_on_b_lo": full_ci[0],
                     "full_success_on_b_hi": full_ci[1], "n_full_success": n_full, "target_internal_exits": e_int,
                     "paper_t1": paper.get("t1", math.nan), "paper_t2": paper.get("t2", math.nan),
                     "examples": examples})
    return pd.DataFrame(rows, columns=cols)


_INIT_COLS = ["dataset", "arch", "kind", "alpha", "init", "n_images", "success", "success_lo", "success_hi",
              "successes", "at_start", "median_iters", "median_l2", "median_psnr", "median_l2_all", "median_psnr_all"]


def init_table(init_per_image: pd.DataFrame) -> pd.DataFrame:
    """The start contrast (:attr:`RQ4Config.init_contrast`), one row per (dataset, arch, init) of
    ``init_per_image`` (``run(...)["init_per_image"]``: the Early-Attack rows at ``transfer_alpha``
    from each start, with an ``init`` column), in its order.

    Columns: ``n_images``; ``success`` % with its 95 % Wilson bounds (``success_lo``/``_hi``) and
    the count ``successes``; ``at_start`` (successes found before any update); ``median_iters``,
    ``median_l2`` and ``median_psnr`` (dB) over the successes (NaN without one); ``median_l2_all``
    and ``median_psnr_all`` over every returned image (a failure returns its last iterate). Both
    starts attack the same images with the same alpha, c, iterations and seed; only w's first
    value differs.
    """
    rows = []
    for (ds, arch, init), g in init_per_image.groupby(["dataset", "arch", "init"], sort=False):
        won = _success_stats(g)
        rows.append({"dataset": ds, "arch": arch, "kind": g["kind"].iloc[0], "alpha": float(g["alpha"].iloc[0]),
                     "init": init, "n_images": int(g["image"].nunique()),
                     "success": 100.0 * won["successes"] / len(g), "n": len(g), **won,
                     "median_l2_all": float(g["l2"].median()), "median_psnr_all": float(g["psnr"].median())})
    out = pd.DataFrame(rows, columns=[c for c in _INIT_COLS if not c.startswith("success_")] + ["n"])
    metrics.wilson_columns(out, "success", out["successes"], out["n"])
    return out.drop(columns="n")


def init_table3(init_transfer: pd.DataFrame, examples: str = "all") -> pd.DataFrame:
    """:func:`table3` once per start of ``init_transfer`` (``run(...)["init_transfer"]``, the
    transfer rows of both starts with an ``init`` column), with ``init`` after ``kind``; one row
    per (pair, start), the pairs in their order in ``init_transfer``, each pair's starts together."""
    parts = []
    for init, g in init_transfer.groupby("init", sort=False):
        t = table3(g.drop(columns="init"), examples)
        t.insert(t.columns.get_loc("kind") + 1, "init", init)
        parts.append(t)
    if parts:
        out = pd.concat(parts, ignore_index=True)
        pairs = list(dict.fromkeys(zip(init_transfer["dataset"], init_transfer["surrogate_arch"],
                                       init_transfer["target_arch"])))
        order = [pairs.index(k) for k in zip(out["dataset"], out["surrogate_arch"], out["target_arch"])]
        return out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    cols = list(table3(pd.DataFrame(columns=_TRANSFER_COLS), examples).columns)
    return pd.DataFrame(columns=cols[:cols.index("kind") + 1] + ["init"] + cols[cols.index("kind") + 1:])


_PER_IMAGE_COLS = ["dataset", "arch", "kind", "method", "alpha", "image", "label", "p", "success", "iters_used",
                   "l2", "linf", "psnr", "final_pred_adv", "pred_adv", "internal_changed", "seconds", "seed"]
_TRANSFER_COLS = ["dataset", "kind", "surrogate_arch", "target_arch", "alpha", "image", "label", "p_b",
                  "a_success", "b_pred_clean", "b_pred_adv", "b_final_kept", "b_internal_changed",
                  "b_full_success", "seed"]
_INIT_PER_IMAGE_COLS = _PER_IMAGE_COLS[:5] + ["init"] + _PER_IMAGE_COLS[5:]
_INIT_TRANSFER_COLS = _TRANSFER_COLS[:5] + ["init"] + _TRANSFER_COLS[5:]


# ================================================================ the experiment

def run(ws: Workspace, cfg: RQ4Config = RQ4Config()) -> dict[str, pd.DataFrame]:
    """Run RQ4 on ``ws`` (every block cached; see the module docstring).

    Returns ``{"per_image", "table1", "table2", "transfer", "table3", "init_per_image",
    "init_transfer", "init_table", "init_table3"}``:

    * per_image: one row per (dataset, arch, method, alpha, image); ``alpha`` NaN and
      ``iters_used`` -1 for the baselines; ``success`` bool; ``p`` = final benign prediction;
      ``pred_adv`` list of per-exit predictions on the adversarial image (final last);
      ``internal_changed`` = internal exits whose prediction != p; ``l2``/``linf`` in [0,1]
      pixel units, ``psnr`` dB (+inf when unchanged); ``seconds`` = block attack time / n (the
      Early-Attack alphas of an architecture run as one batch, :func:`_early_attack_runs`; each
      block gets an even share of that run's time).
    * table1, table2, table3: :func:`table1`, :func:`table2`, :func:`table3`.
    * transfer: per (surrogate_arch, target_arch, image): ``p_b``, ``a_success`` (success on
      the surrogate), ``b_pred_clean`` / ``b_pred_adv`` per-exit lists, ``b_final_kept``,
      ``b_internal_changed``, ``b_full_success``. Empty (with its columns) when
      ``transfer_alpha`` is None or fewer than two archs.
    * init_per_image, init_transfer: the start contrast (:attr:`RQ4Config.init_contrast`): the
      Early-Attack rows at ``transfer_alpha`` and their transfer rows, from ``cfg.init`` (the
      rows of per_image and transfer) and from the other start, with an ``init`` column;
      init_table and init_table3: :func:`init_table` and :func:`init_table3` of them. Empty (with
      their columns) without a contrast (:func:`contrast_config` None).
    """
    if not isinstance(cfg, RQ4Config):
        raise TypeError(f"cfg must be an RQ4Config, got {type(cfg).__name__}")
    n = cfg.resolved_n_images(ws)
    _images(ws, n)  # size check before any work
    if cfg.iters is None and cfg.min_iters > ws.profile.ea_iters:
        raise ValueError(f"min_iters={cfg.min_iters} exceeds iters={ws.profile.ea_iters} (profile ea_iters)")
    blocks = [(arch, "early_attack", a) for arch in cfg.archs for a in cfg.alphas]
    blocks += [(arch, m, None) for arch in cfg.archs for m in ("pgd", "fgsm")]
    done, exits, transfer_rows = {}, {}, {}
    for arch in progress(cfg.archs, desc="RQ4 blocks"):
        grid = early_attack_grid(ws, cfg, arch)
        for _, method, alpha in [b for b in blocks if b[0] == arch]:
            for_transfer = method == "early_attack" and alpha == cfg.transfer_alpha
            df = grid[alpha] if method == "early_attack" else _attack_block(ws, cfg, arch, method, alpha)
            exits[arch] = len(df["pred_adv"].iloc[0])
            done[(arch, method, alpha)] = df
            if for_transfer:
                transfer_rows[arch] = df
        del grid
    per_image = pd.concat([done[b] for b in blocks], ignore_index=True)[_PER_IMAGE_COLS]

    pairs = [(a, b) for a in cfg.archs for b in cfg.archs if a != b] if cfg.transfer_alpha is not None else []
    tparts = [_transfer_pair(ws, cfg, a, b, transfer_rows[a]) for a, b in progress(pairs, desc="RQ4 transfer")]
    transfer = (pd.concat(tparts, ignore_index=True)[_TRANSFER_COLS] if tparts
                else pd.DataFrame(columns=_TRANSFER_COLS))
    init_pi, init_tr = _contrast(ws, cfg, pairs, transfer_rows, transfer)
    return {"per_image": per_image, "table1": table1(per_image, exits), "table2": table2(per_image),
            "transfer": transfer, "table3": table3(transfer, cfg.transfer_examples),
            "init_per_image": init_pi, "init_transfer": init_tr, "init_table": init_table(init_pi),
            "init_table3": init_table3(init_tr, cfg.transfer_examples)}


def _contrast(ws: Workspace, cfg: RQ4Config, pairs: list[tuple[str, str]], transfer_rows: dict[str, pd.DataFrame],
              transfer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(init_per_image, init_transfer) of :func:`run`: ``cfg.init``'s rows, then the other start's."""
    ccfg = contrast_config(cfg)
    if ccfg is None:
        return pd.DataFrame(columns=_INIT_PER_IMAGE_COLS), pd.DataFrame(columns=_INIT_TRANSFER_COLS)
    other = {arch: contrast_block(ws, cfg, arch) for arch in cfg.archs}
    pi = pd.concat([transfer_rows[a].assign(init=cfg.init) for a in cfg.archs]
                   + [other[a].assign(init=ccfg.init) for a in cfg.archs], ignore_index=True)[_INIT_PER_IMAGE_COLS]
    tparts = [transfer.assign(init=cfg.init)]
    tparts += [_transfer_pair(ws, ccfg, a, b, other[a]).assign(init=ccfg.init)
               for a, b in progress(pairs, desc="RQ4 transfer, other start")]
    tr = pd.concat(tparts, ignore_index=True)[_INIT_TRANSFER_COLS]
    return pi, tr


# ================================================================ findings

def _finding9_compare(rates: dict[tuple[str, str], tuple[float, int]], margin: float,
                      per_image: pd.DataFrame | None = None, best: dict | None = None, n_boot: int = 1000,
                      seed: int = 0) -> list[dict]:
    """ResNet-56 minus each other architecture, per dataset: difference (pp) and 95 % interval.

    ``rates``: (dataset, arch) -> (success %, images). With ``per_image`` (and ``best``:
    (dataset, arch) -> best alpha) the interval is a paired bootstrap over images of the two
    best-alpha blocks (the same images); otherwise Newcombe's interval for two independent
    proportions (what the paper's Table 1, 100 images per model, allows).
    """
    comps = []
    for (ds, arch), (r, n) in rates.items():
        if arch == "resnet56" or (ds, "resnet56") not in rates:
            continue
        rn, nn = rates[(ds, "resnet56")]
        if math.isnan(rn) or math.isnan(r):
            continue
        if per_image is not None:
            def rows(a):
                m = ((per_image["dataset"] == ds) & (per_image["arch"] == a) & (per_image["method"] == "early_attack")
                     & np.isclose(per_image["alpha"].astype(float), best[(ds, a)]))
                return per_image[m]
            x, y = rows("resnet56"), rows(arch)
            d, lo, hi = metrics.bootstrap_rate_difference(x["image"], x["success"], np.ones(len(x), bool), y["image"],
                                                          y["success"], np.ones(len(y), bool), n_boot=n_boot, seed=seed)
            how = "bootstrap"
        else:
            d, lo, hi = metrics.newcombe_interval(round(rn * nn / 100), nn, round(r * n / 100), n)
            how = "Newcombe"
        outcome = verdicts.compare(lo, hi, margin, ">")
        comps.append({"dataset": ds, "other": arch, "resnet56": rn, "other_rate": r, "difference": d, "lo": lo,
                      "hi": hi, "interval": how, "outcome": outcome, "supports": outcome == "supports"})
    return comps


def finding_9(table1_df: pd.DataFrame, margin: float = 0.0, per_image: pd.DataFrame | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 9: more / denser exits make a DyNN more robust to the Early Attack.

    Operational test: the paper's argument contrasts ResNet-56 (7 exits spread over 27 blocks,
    the sparsest placement) with VGG-16 and MobileNet (exits over 13 layers/blocks, denser).
    Deciding difference, for each dataset and each other architecture present: ResNet-56's best
    Early-Attack success % (Table 1) minus the other's, in percentage points, with a 95 %
    interval: a seeded paired bootstrap over images of the two best-alpha blocks when
    ``per_image`` (``run(...)["per_image"]``) is given (``n_boot``, ``seed``; the best alpha is
    chosen on the same images, a small optimism the interval ignores), else Newcombe's interval
    from the rates and ``n_images``. A comparison supports the finding when the interval lies
    above ``margin``, is against it when below, inconclusive otherwise; the verdict combines them
    (:func:`dynn_lib.verdicts.combine`). ``paper_verdict`` applies the same test to the paper's
    Table 1 (100 images per model, Newcombe).

    Returns {"finding", "verdict", "evidence", "n_images", "comparisons", "paper_verdict",
    "mean_resnet56", "mean_others"}.
    """
    if "resnet56" not in set(table1_df["arch"]) or len(set(table1_df["arch"]) - {"resnet56"}) == 0:
        raise ValueError("finding_9 compares resnet56 with vgg16 and/or mobilenet; table1 must hold resnet56 "
                         f"and at least one of them, got archs {sorted(set(table1_df['arch']))}")
    rates = {(r.dataset, r.arch): (float(r.early_attack), int(r.n_images)) for r in table1_df.itertuples()}
    best = {(r.dataset, r.arch): float(r.best_alpha) for r in table1_df.itertuples()}
    comps = _finding9_compare(rates, margin, per_image, best, n_boot, seed)
    archs = set(table1_df["arch"])
    fams = {dataset_family(d) for d in table1_df["dataset"]} - {None} or {"cifar10", "cifar100"}
    paper_rates = {(f, a): (v["early_attack"], 100) for (f, a), v in PAPER_TABLE1.items() if f in fams and a in archs}
    pcomps = _finding9_compare(paper_rates, margin)
    verdict = verdicts.combine([c["outcome"] for c in comps], "no dataset with ResNet-56 and another model")
    paper_verdict = verdicts.combine([c["outcome"] for c in pcomps], "no paper numbers for these models")
    others = [c["other_rate"] for c in comps]
    rn = sorted({(c["dataset"], c["resnet56"]) for c in comps})
    ex = ({r.arch: r.exits for r in table1_df.itertuples()} if "exits" in table1_df else {})
    n_images = int(table1_df.groupby("dataset")["n_images"].max().sum())
    parts = [f"{c['dataset']}: resnet56 {c['resnet56']:.1f}% vs {c['other']} {c['other_rate']:.1f}%, difference "
             f"{c['difference']:.1f} pp {metrics.interval_text(c['lo'], c['hi'])} ({c['interval']}; {c['outcome']})"
             for c in comps]
    support = sum(c["outcome"] == "supports" for c in comps)
    psupport = sum(c["outcome"] == "supports" for c in pcomps)
    evidence = (f"best Early-Attack success on {n_images} images, ResNet-56 (sparse exits) minus denser-exit DyNNs "
                f"with 95 % intervals: {'; '.join(parts)}. {support}/{len(comps)} intervals lie above "
                f"{margin:g} pp{f' (exits per model: {ex})' if ex else ''}. Paper's Table 1 under the same test "
                f"(100 images per model): {paper_verdict} ({psupport}/{len(pcomps)}).")
    return {"finding": 9, "verdict": verdict, "evidence": evidence, "n_images": n_images, "comparisons": comps,
            "paper_verdict": paper_verdict,
            "mean_resnet56": float(np.mean([v for _, v in rn])) if rn else math.nan,
            "mean_others": float(np.mean(others)) if others else math.nan}


def finding_10(table3_df: pd.DataFrame, threshold: float = 20.0, transfer: pd.DataFrame | None = None,
               examples: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding 10: Early-Attack examples do not transfer significantly between DyNNs.

    Criterion: an example *transfers* when it meets the full Early-Attack criterion on the
    target B (B's final prediction stays p_B and every internal exit of B leaves p_B), the
    ``full_success_on_b`` column of Table 3 (T1 alone or T2 alone are each only half of the
    criterion). Comparisons, each against ``threshold`` % (default 20; a parameter, the paper
    gives no number): the rate pooled over all ordered pairs, with a seeded bootstrap over
    images when ``transfer`` (``run(...)["transfer"]``, filtered by ``examples`` as Table 3 is)
    is given, else a Wilson interval on the pooled counts (which treats an image's examples in
    several pairs as independent: too narrow); and each pair's rate with its Wilson interval.
    ``examples`` (None: Table 3's ``examples`` column, "all" for a table without it) must be the
    filter Table 3 was made with, so that the pooled rate and the pairs' rates count the same
    examples; a different value is an error (a table without the column takes the value given).
    A comparison supports the finding when its 95 % interval lies below the threshold, is
    against it when above; the verdict combines them ("partly": the pooled rate stays below but
    some pair reaches it). Mean T1 and T2 are reported beside (with the paper's means when
    available).

    Returns {"finding", "verdict", "evidence", "n_images", "mean_full_success_on_b",
    "pooled_full_success_on_b", "pooled_lo", "pooled_hi", "max_full_success_on_b", "mean_t1",
    "mean_t2", "paper_mean_t1", "paper_mean_t2", "pairs"}.
    """
    threshold = verdicts.check_threshold("threshold", threshold, 0.0, 100.0)
    made_with = set(table3_df["examples"].dropna()) if "examples" in table3_df else set()
    if len(made_with) > 1:
        raise ValueError(f"table3 mixes example filters {sorted(made_with)}; pool one of them")
    table_examples = made_with.pop() if made_with else None  # None: a table from before the column
    examples = (table_examples or "all") if examples is None else examples
    if examples not in TRANSFER_EXAMPLES:
        raise ValueError(f"unknown examples {examples!r}; accepted: {', '.join(TRANSFER_EXAMPLES)}")
    if table_examples is not None and examples != table_examples:
        raise ValueError(f"examples={examples!r} but table3 was made with examples={table_examples!r}: the pooled "
                         f"rate would count other examples than the pairs' rates")
    t = table3_df.dropna(subset=["full_success_on_b"])
    if t.empty:
        raise ValueError("finding_10 needs table3 with at least one pair with examples "
                         "(run with two or more archs and transfer_alpha set)")
    k = (t["n_full_success"] if "n_full_success" in t else (t["full_success_on_b"] * t["n"] / 100).round())
    k = k.astype(float).to_numpy()
    n = t["n"].astype(float).to_numpy()
    pooled = 100.0 * k.sum() / n.sum()
    if transfer is not None and len(transfer):
        rows = transfer[transfer["a_success"]] if examples == "successful" else transfer
        # one resampling unit per image of each dataset: image ids restart at 0 in every dataset
        unit = rows.groupby(["dataset", "image"], sort=False).ngroup()
        pooled, plo, phi = metrics.bootstrap_rate(unit, rows["b_full_success"], n_boot=n_boot, seed=seed)
        how = f"bootstrap over images, {n_boot} replicates, seed {seed}"
        n_images = int(rows[["dataset", "image"]].drop_duplicates().shape[0])
    else:
        plo, phi = metrics.wilson_interval(k.sum(), n.sum())
        how = "Wilson on pooled counts"
        n_images = int(t.groupby("dataset")["n"].max().sum())
    pair_ci = [metrics.wilson_interval(a, b) for a, b in zip(k, n)]
    outcomes = [verdicts.compare(plo, phi, threshold, "<")] + [verdicts.compare(lo, hi, threshold, "<")
                                                                for lo, hi in pair_ci]
    verdict = verdicts.combine(outcomes)
    mean_full = float(t["full_success_on_b"].mean())
    max_full = float(t["full_success_on_b"].max())
    mean_t1 = float(t["t1"].mean())
    mean_t2 = float(t["t2"].mean()) if t["t2"].notna().any() else math.nan
    p_t1 = float(t["paper_t1"].mean()) if t["paper_t1"].notna().any() else math.nan
    p_t2 = float(t["paper_t2"].mean()) if t["paper_t2"].notna().any() else math.nan
    pairs = [f"{r.surrogate_arch}->{r.target_arch}: T1 {r.t1:.1f}%, T2 {r.t2:.2f}, full {r.full_success_on_b:.1f}% "
             f"[{lo:.1f}, {hi:.1f}] of {int(r.n)}" for r, (lo, hi) in zip(t.itertuples(), pair_ci)]
    paper = (f" Paper means over the same pairs: T1 {p_t1:.1f}%, T2 {p_t2:.2f}." if not math.isnan(p_t1) else "")
    evidence = (f"pooled over {len(t)} ordered pairs ({n_images} images): {pooled:.1f}% "
                f"{metrics.interval_text(plo, phi)} "
                f"({how}) of examples reach full Early-Attack success on the target (threshold {threshold:g}%; max "
                f"per pair {max_full:.1f}%); mean T1 {mean_t1:.1f}%, mean T2 {mean_t2:.2f}. {'; '.join(pairs)}.{paper}")
    return {"finding": 10, "verdict": verdict, "evidence": evidence, "n_images": n_images,
            "mean_full_success_on_b": mean_full, "pooled_full_success_on_b": pooled, "pooled_lo": plo,
            "pooled_hi": phi, "max_full_success_on_b": max_full, "mean_t1": mean_t1, "mean_t2": mean_t2,
            "paper_mean_t1": p_t1, "paper_mean_t2": p_t2, "pairs": len(t)}
