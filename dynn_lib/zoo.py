"""A workspace: one dataset at one profile, with its splits, trained models and calibrated τ.

Experiments ask the workspace for what they need (``ws.model("resnet56", "cnn")``,
``ws.tau(...)``, ``ws.eval_half``); everything expensive is computed once and kept in the
artefact store under a key derived from its configuration, so a second run (or a run resumed
after an interruption) reuses it.
"""
from __future__ import annotations

from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from . import data, early_exit, models, numerics, timing
from .profiles import Profile, get_profile
from .store import CorruptArtefactError, Store
from .train import TrainConfig, build_model, recipe_config, train

MODEL_KINDS = ("cnn", "sdn", "ic_only")
"""cnn = the SDNN; sdn = DyNN by SDN training; ic_only = the IC-only DyNN of the CNN."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``auto``/None -> cuda when available else cpu; anything else is checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; accepted here: cpu, auto")
    return dev


class Workspace:
    """Dataset + profile + store + device. Cheap to create; loads lazily.

    Creating one sets the numeric flags (:func:`dynn_lib.numerics.configure`; ``tf32=False`` by
    default; the models' memory format for inference and attacks from the profile's
    ``channels_last``, :func:`dynn_lib.numerics.inference_channels_last`; the fired-loss padding
    from its ``fired_bucket``), which every artefact's record then states.
    """

    def __init__(self, dataset: str, profile: str | Profile = "smoke", store: Store | str | Path | None = None,
                 data_dir: str | Path | None = None, device: str | torch.device | None = None, seed: int = 0,
                 recompute: bool = False, tf32: bool = False, **profile_overrides):
        self.info = data.get_info(dataset)
        self.dataset = dataset
        self.profile = get_profile(profile, **profile_overrides)
        self.store = store if isinstance(store, Store) else Store(store)
        self.data_dir = data_dir
        self.device = resolve_device(device)
        self.seed = seed
        self.recompute = recompute
        self._models: dict[tuple, nn.Module] = {}
        self._memo: dict[tuple, Any] = {}
        # explicit numeric flags (TF32 off: fp32 attacks and evaluation), recorded with every artefact
        self.numerics = numerics.configure(tf32=tf32, inference_channels_last=numerics.inference_channels_last(
            self.profile.channels_last, self.device), fired_bucket=self.profile.fired_bucket)

    # -- data -------------------------------------------------------------------------------
    @cached_property
    def train_set(self) -> data.ImageSet:
        return data.load(self.dataset, "train", self.data_dir)

    @cached_property
    def test_set(self) -> data.ImageSet:
        return data.load(self.dataset, "test", self.data_dir)

    @cached_property
    def _split(self) -> tuple[torch.Tensor, torch.Tensor]:
        return data.query_eval_split(self.test_set.labels, seed=data.SPLIT_SEED)

    def _half(self, idx: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        # a seeded class-stratified sample of the half (data.stratified_subset), never "the first n"
        idx = idx[data.stratified_subset(self.test_set.labels[idx], n, data.SPLIT_SEED)]
        return self.test_set.images[idx], self.test_set.labels[idx]

    @cached_property
    def query_half(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of the query half (calibration, black-box queries), n_query of them."""
        return self._half(self._split[0], self.profile.n_query)

    @cached_property
    def eval_half(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of the evaluation half (every attack is evaluated here), n_eval of them."""
        return self._half(self._split[1], self.profile.n_eval)

    def eval_subset(self, n: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(uint8 images, labels, positions)`` of a seeded class-stratified sample of ``n`` images
        of the evaluation half (all of it for None); ``positions`` index ``eval_half`` (sorted) and
        are the ``image`` ids of every attack table."""
        x, y = self.eval_half
        pos = data.stratified_subset(y, n, data.SPLIT_SEED)
        return x[pos], y[pos], pos

    def train_subset(self, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` training images, a class-stratified sample drawn with ``seed`` (all for None)."""
        ts = self.train_set
        if n is None or n >= len(ts.labels):
            return ts.images, ts.labels
        idx = data.stratified_subset(ts.labels, n, seed)
        return ts.images[idx], ts.labels[idx]

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per workspace and then kept in memory under ``key``.

        For values that several experiments would otherwise recompute identically, such as a
        target's outputs on the clean evaluation images (every attack table of that target reads
        them) or a surrogate's labels for them (every attack and ε through that surrogate), never
        for results (those go to the store). ``key`` is a hashable tuple naming everything the value
        depends on; a model in it counts by identity (the workspace keeps each model it hands out,
        so a model is never replaced while the workspace lives).
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- models -----------------------------------------------------------------------------
    def model_config(self, arch: str, kind: str) -> TrainConfig:
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}; accepted: {', '.join(MODEL_KINDS)}")
        base = asdict(self.model_config(arch, "cnn")) if kind == "ic_only" else None
        return recipe_config(kind, arch, self.dataset, self.profile, seed=self.seed, base=base)

    def model(self, arch: str, kind: str) -> nn.Module:
        """The trained model (eval mode, on the workspace device, in the inference memory format
        of :func:`dynn_lib.numerics.inference_memory_format`), trained now if not stored."""
        cfg = self.model_config(arch, kind)
        return self.trained(cfg, lambda: self.train_subset(cfg.n_train, cfg.seed))

    def trained(self, cfg: TrainConfig, training_data) -> nn.Module:
        """Load ``cfg``'s model from the store, or train it on ``training_data() -> (images, labels)``."""
        key = ("model", repr(cfg))
        if key in self._models:
            return self._models[key]
        st = self.store
        model = None
        if st.has("models", cfg, slug=_slug(cfg)) and not self.recompute:
            try:
                model = build_model(cfg)
                model.load_state_dict(st.load_model("models", cfg, slug=_slug(cfg)))
            except CorruptArtefactError as e:
                import warnings
                warnings.warn(f"{e} -- retraining", stacklevel=2)
                st.remove("models", cfg, slug=_slug(cfg))
                model = None
        if model is None:
            model = self._train_and_save(cfg, training_data)
            # the training's locals are freed by now; the heap they leave behind slows the attacks
            # timed next (dynn_lib.timing)
            timing.release_host_memory()
        model = model.to(self.device).eval().to(memory_format=numerics.inference_memory_format())
        self._models[key] = model
        return model

    def _train_and_save(self, cfg: TrainConfig, training_data) -> nn.Module:
        base_state = None
        if cfg.recipe == "ic_only":
            base_cfg = TrainConfig(**{**cfg.base, "milestones": tuple(cfg.base["milestones"])})
            base_state = self.trained(base_cfg, lambda: self.train_subset(base_cfg.n_train, base_cfg.seed)).state_dict()
        images, labels = training_data()
        ev_images, ev_labels = self.eval_half
        st = self.store
        ckpt = st.dir("models", cfg, slug=_slug(cfg)) / "partial.pt"
        model, rec = train(cfg, images, labels, ev_images, ev_labels, self.device, checkpoint=ckpt,
                           base_state=base_state)
        st.save_model("models", cfg, model.state_dict(), {**rec, "dataset_label": self.info.label},
                      slug=_slug(cfg), device=self.device)
        ckpt.unlink(missing_ok=True)
        return model

    def model_dir(self, arch: str, kind: str) -> Path:
        """Store folder of a model (``model.pt`` + ``record.json``)."""
        cfg = self.model_config(arch, kind)
        return self.store.dir("models", cfg, slug=_slug(cfg))

    def model_record(self, arch: str, kind: str) -> dict:
        cfg = self.model_config(arch, kind)
        self.model(arch, kind)
        return self.store.record("models", cfg, slug=_slug(cfg))

    def tau(self, arch: str, kind: str) -> float | tuple[float, ...]:
        """The deployed τ of a DyNN: ``profile.tau`` when set (a global float, or a tuple of per-exit
        thresholds, see :func:`tau_setting_for`), else calibrated on the query half (protocol
        section 5; cached per model)."""
        model = self.model(arch, kind)
        fixed = tau_setting_for(self.profile.tau, arch, model.num_exits)
        if fixed is not None:
            return fixed
        return self.calibrated_tau(model, self.model_config(arch, kind))

    def calibrated_tau(self, model: nn.Module, cfg: TrainConfig, labels: torch.Tensor | None = None,
                       label_source: str = "ground truth", images: torch.Tensor | None = None,
                       image_source: str = "query half") -> float:
        """τ of ``model`` by the protocol's rule; ``images`` default to the query half and ``labels``
        to its ground truth (the model owner's calibration); a black-box attacker passes its
        held-out query images and the target's answers on them."""
        return float(self._calibration(model, cfg, labels, label_source, images, image_source)["tau"].iloc[0])

    def tau_meets_rule(self, arch: str, kind: str) -> bool | None:
        """Whether the calibrated τ of this DyNN keeps the protocol's rule (early exit within one
        point of the final exit on the query half). False: no τ of the grid does, and the DyNN is
        deployed at the grid's largest (:func:`early_exit.calibrate`'s fallback). None for a fixed
        τ (``profile.tau``) and for a calibration stored before this flag was recorded."""
        model = self.model(arch, kind)
        if tau_setting_for(self.profile.tau, arch, model.num_exits) is not None:
            return None
        df = self._calibration(model, self.model_config(arch, kind))
        return bool(df["meets_rule"].iloc[0]) if "meets_rule" in df else None

    def _calibration(self, model: nn.Module, cfg: TrainConfig, labels: torch.Tensor | None = None,
                     label_source: str = "ground truth", images: torch.Tensor | None = None,
                     image_source: str = "query half") -> pd.DataFrame:
        """The stored calibration of ``model`` (computed once): τ, whether it meets the rule, and
        the early-exit report on the calibration images."""
        if not getattr(model, "is_dynamic", False):
            raise ValueError("τ is defined only for a DyNN (recipe sdn or ic_only)")
        labels = self.query_half[1] if labels is None else labels
        images = self.query_half[0] if images is None else images
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} calibration images but {len(labels)} labels")
        ccfg = {"model": asdict(cfg), "n_query": self.profile.n_query, "grid": early_exit.TAU_GRID,
                "tolerance": early_exit.CALIBRATION_TOLERANCE, "labels": label_source}
        if image_source != "query half":
            ccfg["images"] = image_source

        def compute():
            z = early_exit.all_exit_logits(model, images, device=self.device, desc="calibration")
            tau = early_exit.calibrate(z, labels)
            rep = early_exit.report(z, labels, tau, models.exit_macs(model))
            return pd.DataFrame([{"tau": tau, "meets_rule": early_exit.meets_rule(z, labels, tau),
                                  **{k: v for k, v in rep.as_dict().items() if k != "tau"}}]), {}

        return self.store.cached_table("calibration", ccfg, compute, slug=_slug(cfg), device=self.device,
                                       recompute=self.recompute)


def tau_setting_for(setting, arch: str, num_exits: int) -> float | tuple[float, ...] | None:
    """The fixed τ ``setting`` (``profile.tau``) resolved for one DyNN of ``arch`` with ``num_exits``
    exits: None (calibrate), a float (global τ), or a tuple of one threshold per internal exit.

    ``setting`` is None, a number, a list (per internal exit; ValueError naming the arch and the
    expected length when it does not fit) or a dict ``{arch: number | list}``.
    """
    if isinstance(setting, dict):
        setting = setting.get(arch)
    if setting is None:
        return None
    if isinstance(setting, (int, float)):
        return float(early_exit.resolve_taus(float(setting), num_exits)[0])
    if len(setting) != num_exits - 1:
        raise ValueError(f"tau lists one threshold per internal exit: {arch} has {num_exits - 1}, got "
                         f"{len(setting)} ({list(setting)}); pass a dict {{arch: [...]}} to set each architecture")
    return early_exit.resolve_taus(tuple(float(t) for t in setting), num_exits)


def _slug(cfg: TrainConfig) -> str:
    extra = "" if cfg.labels == "true" else "-surrogate"
    return f"{cfg.dataset}-{cfg.arch}-{cfg.recipe}{extra}-s{cfg.seed}"
