"""Named presets (protocol section 12): ``smoke`` (CPU, minutes; numbers meaningless, code paths
real), ``paper`` (the full recipe on a GPU) and ``fast`` (the paper's experiment on a shortened
training schedule, for one short GPU slot). Any field can be overridden.

``fast`` differs from ``paper`` in the training recipe only (its schedule, and one weight decay);
data, splits, architectures, losses (no label smoothing or anything else that changes confidences),
attacks and sample counts are the paper's (n_train/n_query/n_eval all, PGD/MI-FGSM 10 steps, Early
Attack 1,000 iterations on 100 images). The differences, every one of them:

* batch 512 instead of 128 (CNN, SDN, IC-only and surrogate training);
* one-cycle learning rate (linear warm-up over the first 15% of the steps from lr/W to the peak,
  then cosine decay towards 0, updated every step) instead of x0.1 steps at fixed epochs;
* SGD peak lr 0.4 instead of 0.1 (the linear scaling rule for batch 512: 0.1 x 512/128);
  Adam (IC-only) peak lr 2e-3 instead of 1e-3 (square-root scaling for the 4x batch);
* 45 epochs instead of 100 for CNNs, SDN-trained DyNNs and surrogates; 8 instead of 25 for the
  IC-only heads;
* SGD weight decay 5e-4 for every network (CNNs, SDN-trained DyNNs, surrogates) instead of 1e-4 for
  ResNet-56 and MobileNet; VGG-16 keeps the paper's 5e-4, and the IC-only (Adam) recipe its own;
* resumable checkpoints every 10 epochs or 2 minutes instead of every 5 epochs or 10 minutes
  (this changes no weight: a resumed training equals an uninterrupted one).

Momentum, the SDN loss-weight ramp (over all the epochs), the frozen backbone of the IC-only recipe
and the training data are unchanged. ``fast`` is accepted only while its static networks reach the
accuracy floors of :data:`dynn_lib.floors.FAST_FLOORS` (final exit on ``cifar10-jpeg``: ResNet-56
and VGG-16 >= 88 %, MobileNet >= 85 %). The model-zoo page judges every ``fast`` run against them;
single models trained with this schedule before the experiments (``results/schedule-checks/``) are
shown on the methods page.

How the numbers were chosen, and what is measured:

* 0.4 / 2e-3 / 15 % warm-up are not tuned: they are the linear (SGD) and square-root (Adam)
  scaling of the paper's rates to batch 512.
* Epochs and weight decay come from schedule checks of ResNet-56 (the network nearest its floor)
  trained on a 2-core CPU with bf16 autocast, committed under ``results/schedule-checks/``; their
  numbers, with intervals over the 5,000 evaluation images, are generated from those records on the
  methods page (Table M.1 and :func:`dynn_lib.floors.checks_summary` below it). In short: at the
  paper's weight decay 1e-4, 30 epochs fell below the 88 % floor and 45 were inconclusive; 5e-4
  (the paper's value for VGG-16, at no cost in time) came out higher at 45 epochs but still
  inconclusive, and neither single change is a decided gain. At 60 epochs with 5e-4 ResNet-56
  cleared its floor (again no decided gain over 45). With this recipe at 45 epochs MobileNet
  cleared its 85 % floor and VGG-16 its 88 %, so ResNet-56 alone is undecided there. So the run's
  schedule is still chosen on the GPU: ``benchmarks/gpu_run.sh`` probes 45, then 60 epochs
  (:func:`dynn_lib.floors.probe_epochs`), keeping the first at which the three static networks clear
  their floors; ``-p weight_decay None`` (or a probe step ``45:weight_decay=None``) trains with the
  paper's values instead.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, fields, replace
from typing import Any

from .numerics import check_fired_bucket


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
    lr: SGD learning rate of the CNN/SDN recipes (the peak of a one-cycle schedule; paper: 0.1).
    ic_lr: Adam learning rate of the IC-only recipe (the peak of a one-cycle schedule; paper: 1e-3).
    weight_decay: SGD weight decay of the CNN and SDN recipes (static networks, SDN-trained DyNNs,
        surrogates). None (default): the SDN code's, 5e-4 for VGG-16 and 1e-4 for ResNet-56 and
        MobileNet; a number: that value for every architecture. The IC-only recipe (Adam) keeps the
        SDN code's value either way.
    lr_schedule: ``"multistep"`` (the paper: x0.1 at the milestone epochs) or ``"onecycle"``
        (linear warm-up over ``warmup_frac`` of all steps, then cosine decay; milestones unused).
    warmup_frac: fraction of the training steps spent warming up (``onecycle`` only), in [0, 1).
    amp: bf16 autocast in training. ``"auto"`` (default): on on CUDA (when the GPU supports bf16)
        and on a CPU with native bf16 (AVX-512-BF16 or AMX), else off; or True / False. Attacks and
        evaluation always run in fp32. The resolved value is in each model's training record.
    channels_last: channels-last memory format in training; ``"auto"``: the same rule as ``amp``,
        and also on (in fp32) on other x86-64 CPUs, where it is measured to be faster
        (:data:`dynn_lib.train.CHANNELS_LAST_CPU_MACHINES`). It also sets the models' format for
        inference and attacks (fp32): ``"auto"`` turns that on on those CPUs and leaves it off on
        CUDA (slower there in the one GPU measurement: :data:`dynn_lib.numerics.INFERENCE_CHANNELS_LAST_MEASURED`);
        True / False set both
        (:func:`dynn_lib.numerics.inference_channels_last`; recorded in every record's numerics).
    cuda_graph: whether a CUDA training captures its step as a CUDA graph and replays it:
        ``"auto"`` (default: on CUDA), False (every step eager: the way out if graphed training
        misbehaves on some GPU or PyTorch) or True (CUDA only). The same computation either way
        (the graphed path equals the eager one, tested on the CPU), so it is in no artefact key;
        each training record's ``step_mode`` says which ran.
    fired_bucket: rows to whose multiple the truncated ``"fired"``-loss attacks (the DyNN surrogates'
        in RQ1 and the appendix) pad the samples still running after an exit, so that the layers
        after it see few batch sizes (:func:`dynn_lib.numerics.fired_bucket`): ``"auto"`` (default:
        64 on CUDA, where cuDNN chooses kernels again for every new shape, none on a CPU), or an
        integer >= 1 on every device (1: no padding). It changes the attacks' speed and at most the
        last bits of their results (other kernels for other batch sizes), so it is in no
        artefact key (stored tables are reused; ``--recompute`` times them again) and is recorded
        in every record's ``numerics``.
    checkpoint_every / checkpoint_minutes: save the resumable training state after every
        ``checkpoint_every`` epochs or when ``checkpoint_minutes`` have passed since the last save
        (None: no time trigger), whichever comes first, and after the last epoch.
    surrogate_holdout: fraction of the attacker's clean query images held out of surrogate
        training (with their corrupted copies) to calibrate a DyNN surrogate's τ on data it did
        not train on (default 0.1: 500 of 5,000; a seeded class-stratified sample).
    tau: the model owner's early-exit threshold(s) for every DyNN target. None (default):
        calibrate each DyNN on the query half (protocol section 5). A number in [0, 1]: one
        global τ. A list: one τ per internal exit (its length must match each DyNN's internal
        exits: 6 for VGG-16 and ResNet-56, 5 for MobileNet). A dict ``{arch: number | list}``:
        per architecture (architectures left out are calibrated).
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
    surrogate_holdout: float = 0.1
    tau: Any = None
    lr: float = 0.1
    ic_lr: float = 1e-3
    weight_decay: float | None = None
    lr_schedule: str = "multistep"
    warmup_frac: float = 0.0
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"
    cuda_graph: bool | str = "auto"
    fired_bucket: int | str = "auto"
    checkpoint_every: int = 5
    checkpoint_minutes: float | None = 10.0


PROFILES: dict[str, Profile] = {
    # smoke: lr 0.02, because with one epoch the SDN ramp reaches its maxima at once (the SDN code's
    # rule), which diverges at 0.1 (ResNet-56: NaN after 16 steps, measured)
    "smoke": Profile("smoke", n_train=2000, cnn_epochs=1, cnn_milestones=(), ic_epochs=1, ic_milestones=(),
                     n_query=200, n_eval=200, attack_steps=2, ea_iters=20, ea_images=10, lr=0.02),
    "paper": Profile("paper", n_train=None, cnn_epochs=100, cnn_milestones=(35, 60, 85), ic_epochs=25,
                     ic_milestones=(15,), n_query=None, n_eval=None, attack_steps=10, ea_iters=1000,
                     ea_images=100),
    "fast": Profile("fast", n_train=None, cnn_epochs=45, cnn_milestones=(), ic_epochs=8, ic_milestones=(),
                    n_query=None, n_eval=None, attack_steps=10, ea_iters=1000, ea_images=100, batch_size=512,
                    lr=0.4, ic_lr=2e-3, weight_decay=5e-4, lr_schedule="onecycle", warmup_frac=0.15,
                    checkpoint_every=10, checkpoint_minutes=2.0),
}
"""``fast`` = ``paper`` with the shortened training schedule and the weight decay listed in the module docstring."""

LR_SCHEDULES = ("multistep", "onecycle")


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
    if isinstance(p.tau, list):
        p = replace(p, tau=tuple(p.tau))
    _check_tau_setting(p.tau)
    for f in ("lr", "ic_lr"):
        if not 0 < getattr(p, f) <= 10:
            raise ValueError(f"profile field {f} must be in (0, 10], got {getattr(p, f)}")
    check_training_fields(p)
    check_fired_bucket(p.fired_bucket, "profile field fired_bucket")
    wd = p.weight_decay
    if wd is not None and (isinstance(wd, bool) or not isinstance(wd, (int, float)) or not 0.0 <= wd < 1.0):
        raise ValueError(f"profile field weight_decay must be None (the SDN code's: 5e-4 VGG-16, 1e-4 otherwise) "
                         f"or a number in [0, 1), got {wd!r}")
    if not 0.0 < p.surrogate_holdout < 1.0:
        raise ValueError(f"profile field surrogate_holdout must lie in (0, 1), got {p.surrogate_holdout}")
    for f in ("n_train", "n_query", "n_eval"):
        v = getattr(p, f)
        if v is not None and v < 1:
            raise ValueError(f"profile field {f} must be >= 1 or None (all), got {v}")
    return p


_ALL = {"n_train": "all", "n_query": "all", "n_eval": "all", "tau": "calibrated", "weight_decay": "the SDN code's"}
"""How a ``None`` of these fields reads (every image; τ calibrated per model; per-architecture weight decay)."""


def parse_value(text: str) -> Any:
    """A field's value given as text (``dynn -o NAME=VALUE``, a probe step's ``NAME=VALUE``): the
    Python literal it spells (``0.0005``, ``None``, ``[1, 2]``), else the text itself (``onecycle``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def changed_fields(recorded: Any) -> list[tuple[str, Any, Any]]:
    """``(field, recorded value, the named profile's value)`` for each field in which a recorded
    profile (a result's ``record["config"]["profile"]``, or a :class:`Profile`) differs from the
    profile of its name today, in field order, both values in their recorded form
    (:func:`dynn_lib.store.canonical`: lists for tuples); [] for an unknown name. The fields of
    :data:`dynn_lib.store.KEY_NEUTRAL` (checkpoint cadence, ``cuda_graph``), which records leave
    out because they change no number, and fields a record lacks (added since) are not compared."""
    from .store import canonical

    rec = canonical(recorded or {})
    base = PROFILES.get(str(rec.get("name")))
    if base is None:
        return []
    ref = canonical(base)
    return [(f.name, rec[f.name], ref[f.name]) for f in fields(Profile)
            if f.name != "name" and f.name in rec and f.name in ref and rec[f.name] != ref[f.name]]


def describe_changes(recorded: Any) -> str:
    """:func:`changed_fields` as text, e.g. ``"cnn_epochs 60 (fast: 45); n_eval 1000 (fast: all)"``;
    "" when none."""
    name = recorded.name if isinstance(recorded, Profile) else dict(recorded or {}).get("name")

    def show(field, v):
        return _ALL[field] if v is None and field in _ALL else (repr(v) if isinstance(v, str) else str(v))
    return "; ".join(f"{k} {show(k, v)} ({name}: {show(k, d)})" for k, v, d in changed_fields(recorded))


def _check_tau_setting(tau: Any) -> None:
    """ValueError unless ``tau`` is None, a threshold in [0, 1], a list of them, or a dict of those by arch."""
    def ok(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return 0.0 <= float(v) <= 1.0
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(ok(t) and not isinstance(t, (list, tuple))
                                                                  for t in v)
    if tau is None or ok(tau):
        return
    if isinstance(tau, dict) and tau and all(isinstance(k, str) and ok(v) for k, v in tau.items()):
        return
    raise ValueError(f"profile field tau must be None (calibrate), a threshold in [0, 1], a list of per-exit "
                     f"thresholds, or a dict {{arch: threshold or list}}; got {tau!r}")


def check_auto_flag(name: str, value: Any) -> None:
    """ValueError unless ``value`` is ``"auto"``, True or False (the ``amp`` / ``channels_last`` /
    ``cuda_graph`` settings)."""
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(f"{name} must be 'auto', True or False; got {value!r}")


def check_training_fields(p: Any) -> None:
    """ValueError naming the bad value for the training-schedule fields shared by Profile and TrainConfig
    (``lr_schedule``, ``warmup_frac``, ``amp``, ``channels_last``, ``cuda_graph``, ``checkpoint_every``,
    ``checkpoint_minutes``)."""
    if p.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {p.lr_schedule!r}; accepted: {', '.join(LR_SCHEDULES)}")
    if not 0.0 <= p.warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must lie in [0, 1), got {p.warmup_frac}")
    check_auto_flag("amp", p.amp)
    check_auto_flag("channels_last", p.channels_last)
    check_auto_flag("cuda_graph", p.cuda_graph)
    if isinstance(p.checkpoint_every, bool) or not isinstance(p.checkpoint_every, int) or p.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1 (epochs), got {p.checkpoint_every!r}")
    m = p.checkpoint_minutes
    if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0):
        raise ValueError(f"checkpoint_minutes must be > 0 or None (no time trigger), got {m!r}")
