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
* Images: the **first** ``n_images`` of the workspace's evaluation half (``ws.eval_half``, in
  its stored order); the paper attacked 100 test images. ``image`` in every table is that
  0-based position.
* Early Attack (:func:`dynn_lib.attacks.early_attack.early_attack`) for each alpha in
  ``alphas``; each block draws its initial ``w`` for all images at once from
  ``torch.Generator().manual_seed(seed)`` (CPU), so every alpha and every architecture starts
  from the same ``w`` and a block does not depend on ``batch_size``.
* Baselines (:func:`dynn_lib.attacks.baselines.early_attack_baseline`): FGSM (one step of
  ``baseline_eps``) and PGD (``baseline_steps`` steps of ``baseline_step`` = eps/4 by default,
  i.e. 2/255 at 8/255, uniform random start drawn batch after batch from
  ``Generator().manual_seed(seed)``, so PGD rows depend on ``batch_size``, which is in the key).
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
    finding_9(out["table1"]), finding_10(out["table3"])
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import data, metrics, models
from ..attacks.baselines import early_attack_baseline
from ..attacks.early_attack import EARLY_ATTACK_INITS, early_attack
from ..early_exit import all_exit_logits, to_float_pixels
from ..progress import progress
from ..store import RECORD, CorruptArtefactError, atomic_write, load_checkpoint
from ..zoo import Workspace

__all__ = [
    "RQ4Config", "DYNN_KINDS", "METHODS", "TRANSFER_EXAMPLES", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3",
    "PAPER_ALPHAS", "dataset_family", "alpha_column", "paper_column", "run", "load_adversarial",
    "table1", "table2", "table3", "finding_9", "finding_10",
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
    c, lr, init, min_iters: Early Attack parameters (c = 50, Adam lr 0.01, w ~ U[0,1), no
        minimum; the released code used min_iters = 200). iters: most Adam updates
        (None -> ``profile.ea_iters``; paper 1,000).
    n_images: first n images of the evaluation half (None -> ``profile.ea_images``; paper 100).
    kind: which DyNN is attacked, one of :data:`DYNN_KINDS` ("sdn": SDN training, as released).
    archs: architectures (subset of ``models.ARCHS``), in table order.
    baseline_eps / baseline_step / baseline_steps: FGSM/PGD budget on [0,1] pixels (8/255),
        PGD step (None -> eps/4) and steps (None -> ``profile.attack_steps``).
    transfer_alpha: the alpha whose examples feed Table 3 (must be in ``alphas``; None skips
        the transfer study). transfer_examples: "all" (default) or "successful" (only examples
        that succeeded on the surrogate).
    seed: attack seed (Early-Attack initial w, PGD random start). batch_size: images per batch.
    """

    alphas: tuple[float, ...] = PAPER_ALPHAS
    c: float = 50.0
    iters: int | None = None
    lr: float = 0.01
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
    seed: int = 0
    batch_size: int = 100

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
        for name in ("c", "lr", "baseline_eps"):
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
        if not _pos_int_or_none(self.batch_size) or self.batch_size is None:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
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
    """First ``n`` images of the evaluation half: (float [n,3,H,W] in [0,1] on CPU, labels [n])."""
    x, y = ws.eval_half
    if n > len(y):
        raise ValueError(f"n_images={n} exceeds the evaluation half ({len(y)} images at profile "
                         f"{ws.profile.name!r}); lower n_images or raise n_eval")
    return to_float_pixels(x[:n]), y[:n].long()


def _images_key(ws: Workspace, n: int) -> dict:
    return {"dataset": ws.dataset, "half": "eval", "n_eval": ws.profile.n_eval, "split_seed": data.SPLIT_SEED,
            "first": n}


def _block_config(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None) -> dict:
    """Everything that determines one (arch, method, alpha) block (its store key)."""
    base = {"experiment": "rq4", "block": method, "version": 1,
            "model": asdict(ws.model_config(arch, cfg.kind)),
            "images": _images_key(ws, cfg.resolved_n_images(ws)), "seed": cfg.seed, "batch_size": cfg.batch_size}
    if method == "early_attack":
        base.update(alpha=alpha, c=cfg.c, iters=cfg.resolved_iters(ws), lr=cfg.lr, init=cfg.init,
                    min_iters=cfg.min_iters)
    else:
        base.update(eps=cfg.baseline_eps)
        if method == "pgd":
            base.update(step=cfg.resolved_step(), steps=cfg.resolved_steps(ws), random_start=True)
    return base


def _slug(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None) -> str:
    a = "" if alpha is None else f"-a{alpha:g}"
    return f"{ws.dataset}-{arch}-{cfg.kind}-{method}{a}"


def _as_int_lists(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Parquet returns list columns as numpy arrays; make them plain ``list[int]``."""
    for c in cols:
        if c in df.columns:
            df[c] = df[c].map(lambda v: [int(i) for i in v])
    return df


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _attack_block(ws: Workspace, cfg: RQ4Config, arch: str, method: str, alpha: float | None,
                  need_adv: bool = False) -> pd.DataFrame:
    """Run (or load) one block; its adversarial images are saved beside the table as ``x_adv.pt``.

    ``need_adv``: a stored table whose ``x_adv.pt`` is missing or unreadable is recomputed.
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
        bs = cfg.batch_size
        z_clean = all_exit_logits(model, x_all, batch_size=bs, device=dev)
        p = z_clean[-1].argmax(-1)
        advs, iters_used = [], []
        g = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on every device
        w0 = torch.rand(x_all.shape, generator=g) if method == "early_attack" and cfg.init == "random" else None
        _sync(dev)
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            xb = x_all[i:i + bs].to(dev)
            if method == "early_attack":
                res = early_attack(model, xb, alpha=alpha, c=cfg.c, iters=cfg.resolved_iters(ws), lr=cfg.lr,
                                   init=cfg.init, min_iters=cfg.min_iters,
                                   w0=None if w0 is None else w0[i:i + bs].to(dev))
                advs.append(res.x_adv.float().cpu())
                iters_used.append(res.iters_used.cpu())
            else:
                kw = {"steps": cfg.resolved_steps(ws), "step": cfg.resolved_step(), "random_start": True,
                      "generator": g} if method == "pgd" else {}
                xa, _ = early_attack_baseline(model, xb, attack=method, eps=cfg.baseline_eps, **kw)
                advs.append(xa.float().cpu())
                iters_used.append(torch.full((xb.shape[0],), -1, dtype=torch.long))
        _sync(dev)
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
            "target_model": asdict(ws.model_config(target, cfg.kind)), "batch_size": cfg.batch_size}
    slug = f"{ws.dataset}-{surrogate}-to-{target}-{cfg.kind}-a{cfg.transfer_alpha:g}"

    def compute():
        x_adv = load_checkpoint(ws.store.dir("rq4", a_cfg, _slug(ws, cfg, surrogate, "early_attack",
                                                               cfg.transfer_alpha)) / _ADV_FILE)
        n = len(x_adv)
        x, y = _images(ws, n)
        model_b = ws.model(target, cfg.kind)
        zc = all_exit_logits(model_b, x, batch_size=cfg.batch_size, device=ws.device)
        za = all_exit_logits(model_b, x_adv, batch_size=cfg.batch_size, device=ws.device)
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
    (:func:`alpha_column`), then the paper's value per alpha (:func:`paper_column`; NaN when the
    dataset has no paper numbers or the alpha is not in the paper's grid)."""
    ea = per_image[per_image["method"] == "early_attack"]
    alphas = sorted(ea["alpha"].unique())
    rows = []
    for (ds, arch), g in ea.groupby(["dataset", "arch"], sort=False):
        fam = dataset_family(ds)
        row = {"dataset": ds, "arch": arch, "kind": g["kind"].iloc[0], "n_images": int(g["image"].nunique())}
        for a in alphas:
            s = g.loc[g["alpha"] == a, "success"]
            row[alpha_column(a)] = 100.0 * float(s.mean()) if len(s) else math.nan
        paper = PAPER_TABLE2.get((fam, arch), {}) if fam else {}
        for a in alphas:
            row[paper_column(a)] = paper.get(float(a), math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def table1(per_image: pd.DataFrame, exits: dict[str, int] | None = None) -> pd.DataFrame:
    """Paper Table 1: per (dataset, arch) the Early-Attack success % at its best alpha, that
    alpha (ties -> the smallest alpha), PGD % and FGSM %, then the paper's values
    (``paper_*``, NaN without paper numbers). ``exits``: arch -> number of exits (column
    ``exits``, used by :func:`finding_9`'s evidence)."""
    rows = []
    for (ds, arch), g in per_image.groupby(["dataset", "arch"], sort=False):
        fam = dataset_family(ds)
        ea = g[g["method"] == "early_attack"]
        rates = ea.groupby("alpha")["success"].mean().mul(100.0).sort_index()
        if len(rates):
            best = float(rates.max())
            best_alpha = float(rates[rates == best].index.min())
        else:
            best = best_alpha = math.nan

        def rate(m):
            s = g.loc[g["method"] == m, "success"]
            return 100.0 * float(s.mean()) if len(s) else math.nan

        paper = PAPER_TABLE1.get((fam, arch), {}) if fam else {}
        rows.append({"dataset": ds, "arch": arch, "kind": g["kind"].iloc[0],
                     "exits": (exits or {}).get(arch, math.nan), "n_images": int(g["image"].nunique()),
                     "early_attack": best, "best_alpha": best_alpha, "pgd": rate("pgd"), "fgsm": rate("fgsm"),
                     **{f"paper_{k}": paper.get(k, math.nan) for k in ("early_attack", "best_alpha", "pgd", "fgsm")}})
    return pd.DataFrame(rows)


def _one_hot(preds: list[list[int]], num_classes: int) -> torch.Tensor:
    """Per-image per-exit predictions -> logits ``[E, N, C]`` whose argmax is those predictions."""
    p = torch.tensor(preds, dtype=torch.long).T  # [E, N]
    return torch.nn.functional.one_hot(p, num_classes).float()


def table3(transfer: pd.DataFrame, examples: str = "all") -> pd.DataFrame:
    """Paper Table 3: T1 % and T2 per ordered (surrogate, target) pair, from the stored predictions.

    T1/T2 are :func:`dynn_lib.metrics.t1_t2` on B's per-exit logits; the stored argmax
    predictions are turned into one-hot logits, which have the same argmax, so the values are
    identical. ``full_success_on_b`` = % of examples meeting the full Early-Attack criterion on
    B (final prediction p_B, every internal exit != p_B). ``examples="successful"`` keeps only
    examples that succeeded on the surrogate (n may then be 0 and the rates NaN).
    """
    if examples not in TRANSFER_EXAMPLES:
        raise ValueError(f"unknown examples {examples!r}; accepted: {', '.join(TRANSFER_EXAMPLES)}")
    cols = ["dataset", "kind", "surrogate_arch", "target_arch", "alpha", "n", "t1", "t2", "full_success_on_b",
            "target_internal_exits", "paper_t1", "paper_t2"]
    rows = []
    for (ds, a, b), g in transfer.groupby(["dataset", "surrogate_arch", "target_arch"], sort=False):
        if examples == "successful":
            g = g[g["a_success"]]
        fam = dataset_family(ds)
        paper = PAPER_TABLE3.get((fam, a), {}).get(b, {}) if fam else {}
        n = len(g)
        if n:
            nc = 1 + max(max(max(v) for v in g["b_pred_clean"]), max(max(v) for v in g["b_pred_adv"]))
            zc, za = _one_hot(list(g["b_pred_clean"]), nc), _one_hot(list(g["b_pred_adv"]), nc)
            t1, t2 = metrics.t1_t2(zc, za)
            full = 100.0 * float(metrics.early_attack_success(za, zc[-1].argmax(-1)).float().mean())
            e_int = int(zc.shape[0]) - 1
        else:
            t1 = t2 = full = math.nan
            e_int = len(transfer.loc[transfer["target_arch"] == b, "b_pred_clean"].iloc[0]) - 1
        rows.append({"dataset": ds, "kind": g["kind"].iloc[0] if n else transfer["kind"].iloc[0],
                     "surrogate_arch": a, "target_arch": b, "alpha": float(transfer["alpha"].iloc[0]), "n": n,
                     "t1": t1, "t2": t2, "full_success_on_b": full, "target_internal_exits": e_int,
                     "paper_t1": paper.get("t1", math.nan), "paper_t2": paper.get("t2", math.nan)})
    return pd.DataFrame(rows, columns=cols)


_PER_IMAGE_COLS = ["dataset", "arch", "kind", "method", "alpha", "image", "label", "p", "success", "iters_used",
                   "l2", "linf", "psnr", "final_pred_adv", "pred_adv", "internal_changed", "seconds", "seed"]
_TRANSFER_COLS = ["dataset", "kind", "surrogate_arch", "target_arch", "alpha", "image", "label", "p_b",
                  "a_success", "b_pred_clean", "b_pred_adv", "b_final_kept", "b_internal_changed",
                  "b_full_success", "seed"]


# ================================================================ the experiment

def run(ws: Workspace, cfg: RQ4Config = RQ4Config()) -> dict[str, pd.DataFrame]:
    """Run RQ4 on ``ws`` (every block cached; see the module docstring).

    Returns ``{"per_image", "table1", "table2", "transfer", "table3"}``:

    * per_image: one row per (dataset, arch, method, alpha, image); ``alpha`` NaN and
      ``iters_used`` -1 for the baselines; ``success`` bool; ``p`` = final benign prediction;
      ``pred_adv`` list of per-exit predictions on the adversarial image (final last);
      ``internal_changed`` = internal exits whose prediction != p; ``l2``/``linf`` in [0,1]
      pixel units, ``psnr`` dB (+inf when unchanged); ``seconds`` = block attack time / n.
    * table1, table2, table3: :func:`table1`, :func:`table2`, :func:`table3`.
    * transfer: per (surrogate_arch, target_arch, image): ``p_b``, ``a_success`` (success on
      the surrogate), ``b_pred_clean`` / ``b_pred_adv`` per-exit lists, ``b_final_kept``,
      ``b_internal_changed``, ``b_full_success``. Empty (with its columns) when
      ``transfer_alpha`` is None or fewer than two archs.
    """
    if not isinstance(cfg, RQ4Config):
        raise TypeError(f"cfg must be an RQ4Config, got {type(cfg).__name__}")
    n = cfg.resolved_n_images(ws)
    _images(ws, n)  # size check before any work
    if cfg.iters is None and cfg.min_iters > ws.profile.ea_iters:
        raise ValueError(f"min_iters={cfg.min_iters} exceeds iters={ws.profile.ea_iters} (profile ea_iters)")
    blocks = [(arch, "early_attack", a) for arch in cfg.archs for a in cfg.alphas]
    blocks += [(arch, m, None) for arch in cfg.archs for m in ("pgd", "fgsm")]
    parts, exits, transfer_rows = [], {}, {}
    for arch, method, alpha in progress(blocks, desc="RQ4 blocks"):
        for_transfer = method == "early_attack" and alpha == cfg.transfer_alpha
        df = _attack_block(ws, cfg, arch, method, alpha, need_adv=for_transfer)
        exits[arch] = len(df["pred_adv"].iloc[0])
        parts.append(df)
        if for_transfer:
            transfer_rows[arch] = df
    per_image = pd.concat(parts, ignore_index=True)[_PER_IMAGE_COLS]

    pairs = [(a, b) for a in cfg.archs for b in cfg.archs if a != b] if cfg.transfer_alpha is not None else []
    tparts = [_transfer_pair(ws, cfg, a, b, transfer_rows[a]) for a, b in progress(pairs, desc="RQ4 transfer")]
    transfer = (pd.concat(tparts, ignore_index=True)[_TRANSFER_COLS] if tparts
                else pd.DataFrame(columns=_TRANSFER_COLS))
    return {"per_image": per_image, "table1": table1(per_image, exits), "table2": table2(per_image),
            "transfer": transfer, "table3": table3(transfer, cfg.transfer_examples)}


# ================================================================ findings

def _verdict(support: int, total: int) -> str:
    """All comparisons support -> holds; none -> does not hold; some (or no comparison) -> mixed."""
    if total == 0:
        return "mixed"
    return "holds" if support == total else ("does not hold" if support == 0 else "mixed")


def _finding9_compare(rates: dict[tuple[str, str], float], margin: float) -> tuple[list[dict], int]:
    comps, support = [], 0
    for (ds, arch), r in rates.items():
        if arch == "resnet56":
            continue
        rn = rates.get((ds, "resnet56"))
        if rn is None or math.isnan(rn) or math.isnan(r):
            continue
        ok = rn > r + margin
        support += ok
        comps.append({"dataset": ds, "other": arch, "resnet56": rn, "other_rate": r, "supports": bool(ok)})
    return comps, support


def finding_9(table1_df: pd.DataFrame, margin: float = 0.0) -> dict:
    """Finding 9: more / denser exits make a DyNN more robust to the Early Attack.

    Operational test: the paper's argument contrasts ResNet-56 (7 exits spread over 27 blocks,
    the sparsest placement) with VGG-16 and MobileNet (exits over 13 layers/blocks, denser).
    For each dataset and each other architecture present, the comparison *supports* the
    finding when ResNet-56's best Early-Attack success % (Table 1) exceeds the other's by more
    than ``margin`` points. Verdict: "holds" when every comparison supports it, "does not hold"
    when none does (ties count against), "mixed" otherwise. ``paper_verdict`` applies the same
    test to the paper's Table 1 (same datasets' families, same architectures).

    Returns {"verdict", "evidence", "comparisons", "paper_verdict", "mean_resnet56", "mean_others"}.
    """
    if "resnet56" not in set(table1_df["arch"]) or len(set(table1_df["arch"]) - {"resnet56"}) == 0:
        raise ValueError("finding_9 compares resnet56 with vgg16 and/or mobilenet; table1 must hold resnet56 "
                         f"and at least one of them, got archs {sorted(set(table1_df['arch']))}")
    rates = {(r.dataset, r.arch): float(r.early_attack) for r in table1_df.itertuples()}
    comps, support = _finding9_compare(rates, margin)
    archs = set(table1_df["arch"])
    fams = {dataset_family(d) for d in table1_df["dataset"]} - {None} or {"cifar10", "cifar100"}
    paper_rates = {(f, a): v["early_attack"] for (f, a), v in PAPER_TABLE1.items() if f in fams and a in archs}
    pcomps, psupport = _finding9_compare(paper_rates, margin)
    verdict = _verdict(support, len(comps))
    others = [c["other_rate"] for c in comps]
    rn = sorted({(c["dataset"], c["resnet56"]) for c in comps})
    ex = ({r.arch: r.exits for r in table1_df.itertuples()} if "exits" in table1_df else {})
    parts = [f"{c['dataset']}: resnet56 {c['resnet56']:.1f}% vs {c['other']} {c['other_rate']:.1f}%"
             f"{' (supports)' if c['supports'] else ' (against)'}" for c in comps]
    evidence = (f"best Early-Attack success, ResNet-56 (sparse exits) against denser-exit DyNNs: "
                f"{'; '.join(parts)}. {support}/{len(comps)} comparisons support the finding"
                f"{f' (exits per model: {ex})' if ex else ''}. Paper's Table 1 under the same test: "
                f"{_verdict(psupport, len(pcomps))} ({psupport}/{len(pcomps)}).")
    return {"verdict": verdict, "evidence": evidence, "comparisons": comps,
            "paper_verdict": _verdict(psupport, len(pcomps)),
            "mean_resnet56": float(np.mean([v for _, v in rn])) if rn else math.nan,
            "mean_others": float(np.mean(others)) if others else math.nan}


def finding_10(table3_df: pd.DataFrame, threshold: float = 20.0) -> dict:
    """Finding 10: Early-Attack examples do not transfer significantly between DyNNs.

    Criterion: an example *transfers* when it meets the full Early-Attack criterion on the
    target B (B's final prediction stays p_B and every internal exit of B leaves p_B), the
    ``full_success_on_b`` column of Table 3 (T1 alone or T2 alone are each only half of the
    criterion). Verdict: "holds" when the mean of ``full_success_on_b`` over the ordered pairs
    is below ``threshold`` % (default 20) and no single pair reaches it; "mixed" when the mean is
    below but some pair reaches it; "does not hold" when the mean reaches it. Mean T1 and T2
    are reported beside (with the paper's means when available).

    Returns {"verdict", "evidence", "mean_full_success_on_b", "max_full_success_on_b",
    "mean_t1", "mean_t2", "paper_mean_t1", "paper_mean_t2", "pairs"}.
    """
    t = table3_df.dropna(subset=["full_success_on_b"])
    if t.empty:
        raise ValueError("finding_10 needs table3 with at least one pair with examples "
                         "(run with two or more archs and transfer_alpha set)")
    mean_full = float(t["full_success_on_b"].mean())
    max_full = float(t["full_success_on_b"].max())
    if mean_full >= threshold:
        verdict = "does not hold"
    elif max_full >= threshold:
        verdict = "mixed"
    else:
        verdict = "holds"
    mean_t1 = float(t["t1"].mean())
    mean_t2 = float(t["t2"].mean()) if t["t2"].notna().any() else math.nan
    p_t1 = float(t["paper_t1"].mean()) if t["paper_t1"].notna().any() else math.nan
    p_t2 = float(t["paper_t2"].mean()) if t["paper_t2"].notna().any() else math.nan
    pairs = [f"{r.surrogate_arch}->{r.target_arch}: T1 {r.t1:.1f}%, T2 {r.t2:.2f}, full {r.full_success_on_b:.1f}%"
             for r in t.itertuples()]
    paper = (f" Paper means over the same pairs: T1 {p_t1:.1f}%, T2 {p_t2:.2f}." if not math.isnan(p_t1) else "")
    evidence = (f"mean over {len(t)} ordered pairs: {mean_full:.1f}% of examples reach full Early-Attack success "
                f"on the target (max {max_full:.1f}%, threshold {threshold:g}%); mean T1 {mean_t1:.1f}%, "
                f"mean T2 {mean_t2:.2f}. {'; '.join(pairs)}.{paper}")
    return {"verdict": verdict, "evidence": evidence, "mean_full_success_on_b": mean_full,
            "max_full_success_on_b": max_full, "mean_t1": mean_t1, "mean_t2": mean_t2,
            "paper_mean_t1": p_t1, "paper_mean_t2": p_t2, "pairs": len(t)}
