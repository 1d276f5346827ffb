"""Self-check for a short GPU slot (issue 9 section 4): is this machine's CUDA path right, and how fast?

Claim: in at most ``--budget-s`` seconds (default 180) this script tells whether the library's CUDA
paths agree with the CPU in fp64, keep their guarantees (attack bounds, restored model state,
batched early exit equal to real early stopping, resumed training equal to uninterrupted) and how
fast they are, so that a failure costs a GPU slot minutes, not the whole run. It prints one
``PASS`` / ``FAIL`` / ``WARN`` / ``SKIP`` line per check plus ratios, and **rewrites**
``selfcheck.json`` after every section, so a run killed by a timeout still returns what it had.
Exit code 1 on any FAIL (a correctness problem); a WARN (a performance target missed, a sync
found, nondeterminism between two identical runs) never fails the run; SKIP says why (no CUDA, an
API the library does not have yet, the time budget spent). Every random network and input comes
from ``--seed``, so a run's numbers do not depend on which sections ran before.

Sections, in order (each checks the clock; when the budget is spent the rest are SKIP):

1. ``environment``: versions, the library imports, :func:`dynn_lib.numerics.state` after
   ``configure(tf32=False)`` (the library's default).
2. ``forward``: per architecture x exit layout (cnn, dynn), random BatchNorm statistics: the
   device's fp32 forward (TF32 off) against CPU fp64, relative error ``max|a-b| / max|b|`` over
   every exit < :data:`FWD_TOL` (1e-4); the fp32 input gradient of the summed cross-entropy of
   every exit against fp64: ``||g32-g64|| / ||g64||`` < :data:`GRAD_REL_TOL` (2e-2) and cosine >
   :data:`GRAD_COS_MIN` (0.9999); trainable parameters equal the protocol's counts. On CUDA also
   reported (no verdict): the error with TF32 on and with bf16 autocast + channels-last. On a
   CPU-only run the fp32 side is the CPU's (it says so in the JSON: ``compared``).
3. ``loader``: :class:`dynn_lib.data.GpuLoader` batches (shuffle, crop, flip) equal a per-sample
   reference built from the same seeded draws, and the device's batches equal the CPU's bit for
   bit (same seed; so do the uint8 -> float pixels of all 256 levels); with colour jitter the
   CPU/device difference is reported (< 1e-6).
4. ``attacks``: FGSM, PGD, MI-FGSM x exit losses (final, fired, mean, exit 0) on each DyNN:
   ``||delta||_inf <= eps + 1e-6``, values in [0, 1], finite, on the device, the model's module
   modes and ``requires_grad`` flags restored (a mixed state is set first). On CUDA: the PGD
   random start equals the CPU's, FGSM on CPU and CUDA agree on >= 99 % of the pixels (WARN).
5. ``early_attack``: same state/range checks; its success flags equal a rescoring of ``x_adv``;
   a row equals, bit for bit, the same row in a batch of its own copies (same shape, other
   neighbours) and, within 1e-4, the single-image run from the same ``w0`` (a WARN: batch 1 may
   run other kernels); a per-sample alpha tensor equals the scalar alpha run bit for bit. On CUDA
   under ``numerics.configure(deterministic=True)``.
6. ``early_exit``: the batched decision (``exit_numbers`` / ``fired_logits`` of the full forward)
   equals :meth:`DyNN.forward_early_exit` (exit numbers and predictions exactly, logits within
   :data:`FWD_TOL`), with each τ in the widest gap of its exit's confidences.
7. ``resume``: :func:`dynn_lib.train.train` of a VGG-16 SDN (dropout) interrupted after its first
   epoch and resumed from the checkpoint equals the uninterrupted training bit for bit; on CUDA a
   graphed training also equals the same training with every step eager (a WARN: the profile
   field ``cuda_graph`` is in no artefact key on that premise). On CUDA
   under ``numerics.configure(deterministic=True)``; when two uninterrupted runs already differ
   (nondeterministic kernels) that is a WARN, and the resumed run's distance to the reference is
   judged against that run-to-run gap g: PASS up to max(2 g, 1e-6), WARN up to RESUME_GAP_FAIL / 2
   times that (two samples of the same noise can differ that much), FAIL beyond (a resume that
   restores the wrong random state or optimizer state moves the weights by far more than rounding
   noise).
8. ``sync_audit`` (CUDA only): ``torch.cuda.set_sync_debug_mode("warn")`` around a training run,
   a colour-jitter loader epoch, a fired-loss PGD and an Early Attack; synchronisations counted
   per ``dynn_lib`` file:line (the innermost library frame) and written to ``syncs.txt``. Each is
   audited twice, at n and 2n steps (iterations), and :func:`per_unit_lines` keeps the lines whose
   count grows by at least the n added units: once-per-run work (``model.to(device)`` copies every
   parameter, a sync each) does not grow and is not per step. WARN when a training line syncs once
   per step or an Early Attack line once per iteration.
9. ``pgd_speed``: PGD-10 images/s of :func:`dynn_lib.attacks.pgd` and of ``torchattacks.PGD``
   (when importable) on the ResNet-56 CNN (target on CUDA: >= 1.5x, WARN below); and the same PGD
   with the model channels-last (``channels_last_speedup``: contiguous seconds / channels-last
   seconds, fp32). :func:`dynn_lib.numerics.inference_channels_last` leaves ``"auto"`` off on CUDA
   until this says channels-last is faster there. On CUDA also, for information: the speed-up of
   cuDNN autotuning and of TF32 convolutions, and images/s at batch 128 (``speedup_of_variants``).
   The ratio to torchattacks takes the faster of two timings of each.
10. ``timings``: seconds per step and per 50k-image epoch of the real trainer, eager vs CUDA-graphed
    (``train(..., cuda_graph=False / "auto")``), per architecture x kind (cnn, sdn, ic_only) at
    batch 128 (the ``paper`` batch; target: graphed >= 4x eager, WARN below) and graphed at the
    ``fast`` batch (512). Each the faster of the second and third of three epochs (the first holds
    the capture; the record of 2026-12-05 took the second of two, and timed the eager SDN steps of
    ResNet-56 and VGG-16 faster than their CNNs' with fewer layers).
11. ``extrapolation``: training wall time of the ``fast`` and ``paper`` runs on ``cifar10-jpeg``,

        T = sum over models m of  epochs_m x ceil(N_m / B) x t_step(arch_m, kind_m, B)

    over the 9 zoo models (N = 50,000) and the 6 RQ1 surrogates (N = 11 x 5,000 x (1 - 0.1) =
    49,500), B the profile's batch, ``t_step`` the measured graphed step (eager on a CPU) at B, or
    scaled per image from the other batch when B was not measured. Training only (about 94 % of
    the run by the CUDA review); models whose step was not measured are listed as missing. Also
    ``fast`` at the schedule probe's later steps (``fast_cnn_epochs_60``: what ``gpu_run.sh`` runs
    when 45 epochs miss a floor), with ``probe_miss_minutes``: the ResNet-56 CNN trained at 45 first.
    On CUDA, ``paper`` above :data:`PAPER_MINUTES_TARGET` (30) is a WARN.
12. ``concurrency``: total training throughput of 1, 2 and 3 trainings started together, each in
    its own process (a ResNet-56 CNN, 15,360 images x 2 epochs at batch 512 on CUDA), against
    one at a time, and the largest worker count whose every step up gains at least
    :data:`CONCURRENCY_GAIN_MIN` (``data.concurrency.recommended_workers``; ``gpu_run.sh`` then
    runs the job graph with that many workers: ``dynn reproduce --workers K``).
13. ``fired_shapes``: a fired-loss PGD (the DyNN surrogates' attack in RQ1 and the appendix) on a
    ResNet-56 DyNN, timed twice with the still-running samples padded to multiples of
    :func:`dynn_lib.numerics.fired_bucket` rows (64 on CUDA, the default) and twice without
    (``fired_bucket=1``: a new batch size after every exit and step), padded first so that its
    sizes are the new ones when first timed: ``first`` includes what choosing kernels for new
    shapes costs, ``again`` the same attack with every shape seen. Ratios unpadded / padded
    (> 1: the padding pays); WARN (on CUDA) when the padded attack is slower either way, or when the two
    agree on fewer than :data:`FGSM_AGREE_MIN` of the pixels or differ in any exit used (the
    padded batch may run other kernels: last-bit differences can flip a sign step). When the
    unpadded attack is faster on CUDA both times, ``data.fired_shapes.recommended_fired_bucket``
    is 1 (else ``"auto"``), and ``gpu_run.sh`` then runs the experiments with ``fired_bucket=1``.
    Runs last: the sections above matter more when the budget is short.

Usage::

    python benchmarks/gpu_check.py --out OUTDIR            # on a GPU, 3 minutes at most
    python benchmarks/gpu_check.py --tiny --device cpu     # CI: tiny sizes, resnet56 only
    python benchmarks/gpu_check.py --sections forward,loader --archs vgg16

Timings are wall-clock with ``torch.cuda.synchronize`` around each measured region; on a shared
machine they say little. Nothing here trains a model that is kept.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn import functional as F

SECTIONS = ("environment", "forward", "loader", "attacks", "early_attack", "early_exit", "resume",
            "sync_audit", "pgd_speed", "timings", "extrapolation", "concurrency", "fired_shapes")
"""Every section, in the order they run."""

FWD_TOL = 1e-4
"""Relative forward error allowed for fp32 without TF32 against fp64."""
GRAD_REL_TOL = 2e-2
"""Relative input-gradient error allowed for fp32 against fp64 (the CUDA review's bound)."""
GRAD_COS_MIN = 0.9999
"""Least cosine between the fp32 and fp64 input gradients."""
TF32_TOL, BF16_TOL = 3e-2, 1e-1
"""Reported beside the TF32 / bf16+channels-last forward errors (no verdict: random nets)."""
GRAPH_SPEEDUP_TARGET = 4.0
"""Issue 9: graphed trainer >= 4x the eager one at batch 128 on one H200."""
PGD_SPEEDUP_TARGET = 1.5
"""Issue 9: PGD >= 1.5x torchattacks."""
PAPER_MINUTES_TARGET = 30.0
"""Issue 9: the ``paper`` profile's extrapolated time at most 30 minutes on one H200 (judged here on
its training alone, on CUDA; WARN above)."""
FGSM_AGREE_MIN = 0.99
"""Least fraction of identical FGSM pixels between CPU and CUDA (TF32 off)."""
SURROGATE_IMAGES = 11 * 5_000 * 0.9
"""Images a surrogate trains on: 11 copies of the 5,000 query images less the 10 % hold-out."""
FULL_TRAIN = 50_000
"""Training images of the zoo models on cifar10-jpeg."""
CONCURRENCY_GAIN_MIN = 1.15
"""Least total-throughput gain (k concurrent trainings against one at a time) for which
``gpu_run.sh`` runs k jobs at once (each further worker must add this much again)."""
RESUME_GAP_FAIL = 10.0
"""With nondeterministic kernels, how many times the run-to-run weight gap g a resumed training
may lie from the uninterrupted one before the resume check FAILs (above 2 g it WARNs; both limits
at least 1e-6 and 5e-6)."""

STATUSES = ("PASS", "FAIL", "WARN", "SKIP")


class Skip(Exception):
    """Raised inside a section (or a check) to SKIP it with a reason."""


# ================================================================================ the report
class Report:
    """Checks grouped by section, printed as they come and rewritten to ``selfcheck.json``."""

    def __init__(self, out: Path, budget_s: float, meta: dict):
        self.out = out
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.data: dict[str, Any] = {"meta": {**meta, "budget_s": budget_s, "finished": False},
                                     "sections": {}, "summary": {}}
        self.current: dict | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def need_time(self, seconds: float = 1.0) -> None:
        """SKIP the rest of the section when less than ``seconds`` of the budget is left."""
        if self.left() < seconds:
            raise Skip(f"time budget spent ({self.data['meta']['budget_s']:.0f} s)")

    def check(self, name: str, ok: bool | None, value: Any = None, threshold: Any = None, note: str = "",
              level: str = "FAIL") -> bool:
        """Record one check: ``ok`` True -> PASS, False -> ``level`` (FAIL or WARN), None -> SKIP."""
        status = "SKIP" if ok is None else ("PASS" if ok else level)
        entry = {"name": name, "status": status}
        if value is not None:
            entry["value"] = value
        if threshold is not None:
            entry["threshold"] = threshold
        if note:
            entry["note"] = note
        self.current["checks"].append(entry)
        shown = _fmt(value)
        print(f"{status:4s} {self.current['name']}/{name}" + (f"  {shown}" if shown else "")
              + (f" (limit {threshold})" if threshold is not None else "") + (f"  [{note}]" if note else ""),
              flush=True)
        return bool(ok)

    def info(self, key: str, value: Any) -> None:
        self.current["info"][key] = value
        print(f"     {self.current['name']}/{key}: {_fmt(value)}", flush=True)

    @contextmanager
    def section(self, name: str):
        sec = {"name": name, "status": "SKIP", "seconds": 0.0, "checks": [], "info": {}}
        self.current = sec
        self.data["sections"][name] = sec
        t = time.monotonic()
        try:
            yield sec
        except Skip as e:
            sec["reason"] = str(e)
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 -- a crash fails its own section only
            sec["error"] = f"{type(e).__name__}: {e}"
            sec["traceback"] = traceback.format_exc(limit=8)
            self.check("crashed", False, note=sec["error"])
        finally:
            sec["seconds"] = round(time.monotonic() - t, 3)
            got = {c["status"] for c in sec["checks"]}
            for s in ("FAIL", "WARN", "PASS"):
                if s in got:
                    sec["status"] = s
                    break
            if sec["status"] == "SKIP" and "reason" not in sec:
                sec["reason"] = "nothing to check here"
            self.write()

    def write(self) -> None:
        secs = self.data["sections"]
        self.data["summary"] = {s: sum(v["status"] == s for v in secs.values()) for s in STATUSES}
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.t0, 3)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.out)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


# ================================================================================ helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def _speed_target(r: "Report", name: str, ratio: float, target: float, device: torch.device, note: str) -> None:
    """A speed ratio against ``target``: judged on CUDA (WARN below it); on a CPU only reported,
    and the note says so."""
    cuda = device.type == "cuda"
    r.check(name, ratio >= target if cuda else True, ratio, target if cuda else None, level="WARN",
            note=note + ("" if cuda else "; target judged on CUDA only"))


def _lib(modname: str, *attrs: str):
    """Import ``dynn_lib.<modname>`` and fetch ``attrs``; Skip naming what is missing."""
    import importlib
    try:
        mod = importlib.import_module(f"dynn_lib.{modname}" if modname else "dynn_lib")
    except ImportError as e:
        raise Skip(f"dynn_lib.{modname} cannot be imported ({e})") from e
    if not attrs:
        return mod
    out = []
    for a in attrs:
        obj = mod
        for part in a.split("."):
            if not hasattr(obj, part):
                raise Skip(f"the library has no dynn_lib.{modname}.{a} yet")
            obj = getattr(obj, part)
        out.append(obj)
    return out[0] if len(out) == 1 else tuple(out)


def _network(arch: str, exits: bool, seed: int) -> torch.nn.Module:
    """A freshly built network whose initial weights depend on ``seed`` only (the default
    initialisation draws from the global generator, which is seeded here: otherwise every run of
    the check, and every order of its sections, would test another network)."""
    torch.manual_seed(seed)
    return _lib("models").build(arch, 10, 32, exits=exits)


def _randomise(model: torch.nn.Module, seed: int, linear_scale: float = 1.0) -> torch.nn.Module:
    """Random BatchNorm running statistics (mean N(0, 0.1), var U(0.5, 2)), eval mode; Linear
    weights times ``linear_scale`` (spreads the softmax confidences, so exits fire variably)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            if isinstance(m, torch.nn.Linear) and linear_scale != 1.0:
                m.weight.mul_(linear_scale)
    return model.eval()


def _exits(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two flat tensors in fp64, whatever their scale: each is divided by its own norm
    first. (``F.cosine_similarity`` clamps each norm at 1e-8, so two equal gradients of norm 1e-11,
    as a random deep network's input gradient may be, read as orthogonal: on 2026-12-05 the H100
    self-check FAILed MobileNet's CNN that way with a relative error of 1e-6.)"""
    a, b = a.double().cpu().flatten(), b.double().cpu().flatten()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 1.0 if bool(na == nb) else 0.0
    return float((a / na) @ (b / nb))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _state(model: torch.nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def _mixed_state(model: torch.nn.Module) -> None:
    """A state an attack must give back: training mode, one submodule in eval, one frozen parameter."""
    model.train()
    next(iter(model.children())).eval()
    next(iter(model.parameters())).requires_grad_(False)


# ================================================================================ sections
def sec_environment(r: Report, ctx: dict) -> None:
    dev = ctx["device"]
    r.info("versions", {"python": platform.python_version(), "torch": torch.__version__,
                        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
                        if torch.backends.cudnn.is_available() else None})
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        r.info("gpu", {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                       "sms": p.multi_processor_count, "bf16": torch.cuda.is_bf16_supported()})
    missing = []
    for m in ("numerics", "models", "train", "early_exit", "attacks", "data", "zoo", "store", "cli",
              "experiments.runner", "experiments.rq1", "experiments.rq4", "experiments.appendix", "blackbox"):
        try:
            __import__(f"dynn_lib.{m}")
        except Exception as e:  # noqa: BLE001
            missing.append(f"{m} ({type(e).__name__}: {e})")
    r.check("imports", not missing, note="; ".join(missing) or f"torch {torch.__version__}")
    numerics = _lib("numerics")
    state = numerics.configure(tf32=False)
    r.info("numerics", state)
    r.check("tf32_off", not state["cudnn_allow_tf32"] and not state["cuda_matmul_allow_tf32"],
            note="configure(tf32=False) leaves TF32 off")


def sec_forward(r: Report, ctx: dict) -> None:
    models = _lib("models")
    dev, B = ctx["device"], ctx["fwd_batch"]
    compared = "CPU fp64 vs CUDA fp32 (TF32 off)" if dev.type == "cuda" else "CPU fp64 vs CPU fp32 (no GPU here)"
    r.info("compared", compared)
    for arch in ctx["archs"]:
        for layout in ("cnn", "dynn"):
            r.need_time(5.0)
            exits = layout == "dynn"
            name = f"{arch}/{layout}"
            model = _randomise(_network(arch, exits, ctx["seed"]), ctx["seed"])
            want = models.PROTOCOL_PARAM_COUNTS[(arch, 10, exits)]
            got = models.count_trainable(model)
            r.check(f"{name}/params", got == want, got, want)
            g = torch.Generator().manual_seed(ctx["seed"])
            x = torch.rand(B, 3, 32, 32, generator=g)
            y = torch.randint(0, 10, (B,), generator=g)

            def run(m, xx, yy):
                xx = xx.clone().requires_grad_(True)
                outs = _exits(m(xx))
                loss = sum(F.cross_entropy(o.float() if o.dtype != xx.dtype else o, yy, reduction="sum")
                           for o in outs)
                (grad,) = torch.autograd.grad(loss, xx)
                return [o.detach() for o in outs], grad.detach()

            ref_out, ref_grad = run(copy.deepcopy(model).double(), x.double(), y)
            m32 = model.to(dev)
            out, grad = run(m32, x.to(dev), y.to(dev))
            fwd = max(_rel(a, b) for a, b in zip(out, ref_out))
            r.check(f"{name}/forward_rel_err", fwd < FWD_TOL, fwd, FWD_TOL)
            gd, gr = grad.double().cpu().flatten(), ref_grad.flatten()
            grel = float((gd - gr).norm() / gr.norm().clamp_min(1e-30))
            cos = _cosine(gd, gr)
            r.check(f"{name}/grad_rel_err", grel < GRAD_REL_TOL, grel, GRAD_REL_TOL,
                    note=f"||g64|| = {float(gr.norm()):.3g}")
            r.check(f"{name}/grad_cosine", cos > GRAD_COS_MIN, cos, GRAD_COS_MIN)
            if dev.type == "cuda":
                with _lib("numerics").flags(tf32=True), torch.no_grad():
                    tf = max(_rel(a, b) for a, b in zip(_exits(m32(x.to(dev))), ref_out))
                mcl = copy.deepcopy(m32).to(memory_format=torch.channels_last)
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    xcl = x.to(dev).contiguous(memory_format=torch.channels_last)
                    bf = max(_rel(a.float(), b) for a, b in zip(_exits(mcl(xcl)), ref_out))
                r.info(f"{name}/other_precisions", {"tf32_rel_err": tf, "tf32_reference_bound": TF32_TOL,
                                                    "bf16_channels_last_rel_err": bf,
                                                    "bf16_reference_bound": BF16_TOL})
            del model, m32


def _reference_batches(images, labels, batch, seed, epoch, pad):
    """The GpuLoader's batches rebuilt sample by sample from the same seeded draws (shuffle, crop, flip)."""
    n = images.shape[0]
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    out = []
    for s in range(0, n, batch):
        xs = []
        for j in range(s, min(s + batch, n)):
            im = F.pad(images[order[j]], (pad,) * 4)
            dy, dx = int(offsets[j, 0]), int(offsets[j, 1])
            im = im[:, dy:dy + images.shape[2], dx:dx + images.shape[3]]
            xs.append(im.flip(-1) if flips[j] else im)
        out.append((torch.stack(xs).float() / 255, labels[order[s:s + batch]]))
    return out


def sec_loader(r: Report, ctx: dict) -> None:
    GpuLoader = _lib("data", "GpuLoader")
    dev, seed = ctx["device"], ctx["seed"]
    g = torch.Generator().manual_seed(seed)
    n, batch, pad = ctx["loader_n"], ctx["loader_batch"], 4
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)

    def batches(device, jitter=0.0, epoch=1):
        ld = GpuLoader(images, labels, batch_size=batch, shuffle=True, augment=True, pad=pad, jitter=jitter,
                       seed=seed, device=device)
        ld.set_epoch(epoch)
        return [(x.cpu(), y.cpu()) for x, y in ld]

    cpu = batches("cpu")
    ref = _reference_batches(images, labels, batch, seed, 1, pad)
    same_ref = len(cpu) == len(ref) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                            for a, b in zip(cpu, ref))
    r.check("crop_flip_equals_per_sample_reference", same_ref, f"{len(cpu)} batches of {batch}")
    if dev.type != "cuda":
        again = batches("cpu")
        r.check("same_seed_same_batches_cpu", all(torch.equal(a[0], b[0]) for a, b in zip(cpu, again)))
        r.check("cpu_vs_cuda_bitwise", None, note="no CUDA device here")
        return
    to_float_pixels = _lib("early_exit", "to_float_pixels")
    levels = torch.arange(256, dtype=torch.uint8)
    r.check("pixels_cpu_vs_cuda_bitwise", torch.equal(to_float_pixels(levels), to_float_pixels(levels.to(dev)).cpu()),
            note="uint8 -> float32 of all 256 levels")
    plain = (levels.to(dev).float() / 255).cpu()  # what the library avoids on the device
    r.info("levels_off_by_plain_division_on_device", int((plain != to_float_pixels(levels)).sum()))
    gpu = batches(dev)
    r.check("cpu_vs_cuda_bitwise", all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                       for a, b in zip(cpu, gpu)), f"{len(gpu)} batches")
    jc, jg = batches("cpu", 0.2), batches(dev, 0.2)
    diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(jc, jg))
    r.check("cpu_vs_cuda_jitter_max_abs_diff", diff <= 1e-6, diff, 1e-6)


def _dynn(arch: str, seed: int, dev: torch.device):
    return _randomise(_network(arch, True, seed), seed, linear_scale=25.0).to(dev)


def sec_attacks(r: Report, ctx: dict) -> None:
    attacks = _lib("attacks")
    uniform_like = _lib("attacks.harness", "uniform_like")
    dev, B, eps = ctx["device"], ctx["attack_batch"], 8 / 255
    for arch in ctx["attack_archs"]:
        model = _dynn(arch, ctx["seed"], dev)
        g = torch.Generator().manual_seed(ctx["seed"])
        x = torch.rand(B, 3, 32, 32, generator=g).to(dev)
        y = torch.randint(0, 10, (B,), generator=g).to(dev)
        bad = []
        for name in ("fgsm", "pgd", "mifgsm"):
            fn = attacks.ATTACKS[name]
            for loss in ("final", "fired", "mean", 0):
                r.need_time(3.0)
                _mixed_state(model)
                before = _state(model)
                kw = {} if name == "fgsm" else {"steps": ctx["attack_steps"]}
                if name == "pgd":
                    kw["generator"] = torch.Generator().manual_seed(1)
                xa = fn(model, x, y, eps=eps, exit_loss=loss, tau=0.5 if loss == "fired" else None, **kw)
                delta = float((xa - x).abs().max())
                problems = [p for p, ok in (
                    (f"|delta|_inf {delta:.3g} > eps+1e-6", delta <= eps + 1e-6),
                    ("outside [0,1]", bool((xa >= 0).all() and (xa <= 1).all())),
                    ("not finite", bool(torch.isfinite(xa).all())),
                    (f"on {xa.device}", xa.device == x.device),
                    ("model state not restored", _state(model) == before)) if not ok]
                if problems:
                    bad.append(f"{name}/{loss}: {', '.join(problems)}")
        r.check(f"{arch}/bounds_range_finite_device_state", not bad, "12 attack x loss runs",
                note="; ".join(bad))
        if dev.type == "cuda":
            s_cpu = uniform_like(x.cpu(), -eps, eps, torch.Generator().manual_seed(3))
            s_gpu = uniform_like(x, -eps, eps, torch.Generator().manual_seed(3))
            r.check(f"{arch}/pgd_start_cpu_equals_cuda", torch.equal(s_cpu, s_gpu.cpu()))
            m_cpu = copy.deepcopy(model).cpu()
            a_cpu = attacks.fgsm(m_cpu, x.cpu(), y.cpu(), eps=eps)
            a_gpu = attacks.fgsm(model, x, y, eps=eps)
            agree = float((a_cpu == a_gpu.cpu()).float().mean())
            r.check(f"{arch}/fgsm_cpu_vs_cuda_identical_pixels", agree >= FGSM_AGREE_MIN, agree, FGSM_AGREE_MIN,
                    level="WARN")
        del model


@contextmanager
def _deterministic_on_cuda(numerics, dev: torch.device):
    """On CUDA, TF32 off and deterministic cuDNN kernels while the block runs (two runs of one
    batch shape then agree bit for bit); the previous numeric flags afterwards, on any device."""
    with numerics.flags(**(dict(tf32=False, deterministic=True) if dev.type == "cuda" else {})):
        yield


def sec_early_attack(r: Report, ctx: dict) -> None:
    """Early Attack on random DyNNs: range, device, state, flags equal to a rescoring, and rows
    independent of their batch. On CUDA the section runs with deterministic cuDNN kernels, so two
    runs of one batch shape agree bit for bit. A row against the same row in a batch of its own
    copies (the same shape, other neighbours) must agree exactly; against its single-image run
    (another batch shape, so possibly other kernels, whose last-bit differences 50 Adam steps can
    grow to 1e-3: seen here on the CPU for some random networks) it is only a WARN."""
    early_attack, initial_w = _lib("attacks", "early_attack", "initial_w")
    success = _lib("metrics", "early_attack_success")
    numerics = _lib("numerics")
    dev, B, iters = ctx["device"], ctx["ea_batch"], ctx["ea_iters"]
    with _deterministic_on_cuda(numerics, dev):
        for arch in ctx["attack_archs"]:
            r.need_time(5.0)
            model = _dynn(arch, ctx["seed"], dev)
            g = torch.Generator().manual_seed(ctx["seed"])
            x = torch.rand(B, 3, 32, 32, generator=g).to(dev)
            w0 = initial_w(x, "random", torch.Generator().manual_seed(5))
            _mixed_state(model)
            before = _state(model)
            res = early_attack(model, x, alpha=1.0, iters=iters, w0=w0)
            xa = res.x_adv
            r.check(f"{arch}/range_finite_device_state",
                    bool((xa >= 0).all() and (xa <= 1).all() and torch.isfinite(xa).all()) and xa.device == x.device
                    and _state(model) == before)
            model.eval()
            with torch.no_grad():
                rescored = success(_exits(model(xa)), res.p)
            r.check(f"{arch}/success_equals_rescoring", torch.equal(rescored.cpu(), res.success.cpu()),
                    f"{int(res.success.sum())}/{B} succeeded in {iters} iterations")

            def same_row(other, d):  # every row of `other` against row 0 of the batch
                return (bool((other.success == res.success[0]).all())
                        and bool((other.iters_used == res.iters_used[0]).all()) and d)

            copies = early_attack(model, x[:1].expand_as(x).contiguous(), alpha=1.0, iters=iters,
                                  w0=w0[:1].expand_as(w0).contiguous())
            d_copies = float((copies.x_adv - xa[:1]).abs().max())  # every copy equals the batch's row 0
            r.check(f"{arch}/row_independent_of_batch_neighbours", same_row(copies, d_copies == 0.0), d_copies, 0.0,
                    note="row 0 of the batch vs every row of a batch of its copies: success, iterations used, "
                         "max |x_adv diff|")
            one = early_attack(model, x[:1], alpha=1.0, iters=iters, w0=w0[:1])
            d = float((one.x_adv - xa[:1]).abs().max())
            r.check(f"{arch}/batched_row_equals_single_run", same_row(one, d <= 1e-4), d, 1e-4, level="WARN",
                    note="success, iterations used, max |x_adv diff|; batch 1 may run other kernels than batch B")
            vec = early_attack(model, x, alpha=torch.full((B,), 1.0, device=dev), iters=iters, w0=w0)
            r.check(f"{arch}/per_sample_alpha_equals_scalar", torch.equal(vec.x_adv, xa)
                    and torch.equal(vec.success, res.success))
            del model


def _gap_taus(conf: torch.Tensor) -> list[float]:
    """Per internal exit, the midpoint of the widest gap between its sorted confidences ``[E-1, B]``."""
    taus = []
    for c in conf:
        s = torch.sort(c.double()).values
        if len(s) < 2:
            taus.append(float(s[0]) - 1e-3)
            continue
        gaps = s[1:] - s[:-1]
        i = int(gaps.argmax())
        taus.append(float((s[i] + s[i + 1]) / 2))
    return taus


def sec_early_exit(r: Report, ctx: dict) -> None:
    ee = _lib("early_exit")
    dev, B = ctx["device"], ctx["ee_batch"]
    for arch in ctx["attack_archs"]:
        r.need_time(3.0)
        model = _dynn(arch, ctx["seed"], dev)
        if not hasattr(model, "forward_early_exit"):
            raise Skip("DyNN has no forward_early_exit")
        x = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(ctx["seed"] + 1)).to(dev)
        with torch.no_grad():
            z = torch.stack(_exits(model(x))).float()
        conf = z[:-1].softmax(-1).amax(-1)
        taus = _gap_taus(conf)
        ex_b = ee.exit_numbers(z, taus)
        lg_b = ee.fired_logits(z, taus)
        lg_t, ex_t = model.forward_early_exit(x, taus)
        counts = torch.bincount(ex_b.cpu(), minlength=z.shape[0]).tolist()
        r.check(f"{arch}/exit_numbers_equal", torch.equal(ex_b.cpu(), ex_t.cpu()), f"exits used {counts}")
        r.check(f"{arch}/predictions_equal", torch.equal(lg_b.argmax(-1).cpu(), lg_t.argmax(-1).cpu()))
        rel = _rel(lg_t, lg_b)
        r.check(f"{arch}/logits_rel_err", rel < FWD_TOL, rel, FWD_TOL)
        del model


class _Interrupt(Exception):
    """Raised by the patched loader to interrupt a training at an epoch boundary."""


@contextmanager
def _interrupt_at_epoch(GpuLoader, epoch: int):
    real = GpuLoader.set_epoch

    def set_epoch(self, e):
        if e == epoch:
            raise _Interrupt
        real(self, e)

    GpuLoader.set_epoch = set_epoch
    try:
        yield
    finally:
        GpuLoader.set_epoch = real


def _max_weight_diff(m1, m2) -> float:
    return max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
               for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def sec_resume(r: Report, ctx: dict) -> None:
    T = _lib("train")
    data = _lib("data")
    numerics = _lib("numerics")
    GpuLoader = _lib("data", "GpuLoader")
    dev, n, batch, epochs = ctx["device"], ctx["resume_n"], ctx["resume_batch"], ctx["resume_epochs"]
    tr, te = data.make_synthetic(num_classes=10, size=32, n_train=n, n_test=ctx["eval_n"], seed=ctx["seed"] + 7)
    args = (tr.images, tr.labels, te.images, te.labels)
    cfg = T.recipe_config("sdn", "vgg16", "synthetic", "smoke", seed=2, epochs=epochs, batch_size=batch, n_train=n,
                          checkpoint_every=1, checkpoint_minutes=None)
    ckpt = ctx["workdir"] / "resume-partial.pt"
    ckpt.unlink(missing_ok=True)
    try:
        with _deterministic_on_cuda(numerics, dev):
            r.need_time(10.0)
            ref, rec = T.train(cfg, *args, device=dev)
            r.info("step_mode", rec.get("step_mode", "eager (the trainer records no step_mode)"))
            if dev.type == "cuda":
                r.need_time(10.0)
                ref2, _ = T.train(cfg, *args, device=dev)
                rerun = _max_weight_diff(ref, ref2)
                r.check("two_runs_bitwise_equal", rerun == 0.0, rerun, 0.0, level="WARN", note="" if rerun == 0 else
                        "nondeterministic kernels: resume judged against this run-to-run gap")
            else:  # CPU kernels are deterministic (tests/test_train.py checks same seed -> same weights)
                rerun = 0.0
                r.check("two_runs_bitwise_equal", None, note="CPU: deterministic, tested in tests/test_train.py")
            if dev.type == "cuda" and rec.get("step_mode") == "cuda_graph":
                # the profile field cuda_graph is key-neutral because graphed and eager steps compute the same
                r.need_time(10.0)
                eager, _ = T.train(cfg, *args, device=dev, cuda_graph=False)
                d_eager = _max_weight_diff(ref, eager)
                r.check("graphed_equals_eager", d_eager <= 2 * rerun, d_eager, 2 * rerun,
                        level="WARN", note="max |weight difference| against the same training with every step eager "
                                           "(within the run-to-run gap)")
            else:
                r.check("graphed_equals_eager", None, note=f"no graphed training here ({rec.get('step_mode')})")
            r.need_time(10.0)
            with _interrupt_at_epoch(GpuLoader, 1):
                try:
                    T.train(cfg, *args, device=dev, checkpoint=ckpt)
                except _Interrupt:
                    pass
            if not ckpt.is_file():
                raise RuntimeError("no checkpoint after the first epoch with checkpoint_every=1")
            res, rrec = T.train(cfg, *args, device=dev, checkpoint=ckpt)
            r.check("resumed_from_epoch_1", rrec.get("resumed_from_epoch") == 1, rrec.get("resumed_from_epoch"))
            d = _max_weight_diff(ref, res)
            note = "max |weight difference|, VGG-16 SDN (dropout)"
            pass_limit = max(2 * rerun, 1e-6)
            fail_limit = RESUME_GAP_FAIL / 2 * pass_limit
            if rerun == 0.0:
                r.check("resumed_equals_uninterrupted", d == 0.0, d, 0.0, note=note)
            elif d <= pass_limit:
                r.check("resumed_equals_uninterrupted", True, d, pass_limit, note=note)
            else:  # two samples of nondeterministic noise can differ a few fold; a wrong resume differs far more
                r.check("resumed_equals_uninterrupted", False, d, fail_limit,
                        note=f"{note}; above {pass_limit:.3g} (2x the run-to-run gap {rerun:.3g}), FAIL only beyond "
                             f"{fail_limit:.3g}", level="FAIL" if d > fail_limit else "WARN")
            r.check("same_loss_history", [h["loss"] for h in rrec["history"]] == [h["loss"] for h in rec["history"]]
                    if rerun == 0.0 else None, note="" if rerun == 0.0 else "not bitwise reproducible here")
    finally:
        ckpt.unlink(missing_ok=True)


def _library_frame() -> str:
    """``dynn_lib/FILE:LINE`` of the innermost library frame on the caller's stack, else ``other``."""
    import traceback as tb
    root = str(Path(__file__).resolve().parents[1] / "dynn_lib")
    for fr in reversed(tb.extract_stack()[:-1]):
        if "dynn_lib" in fr.filename and (fr.filename.startswith(root) or "/dynn_lib/" in fr.filename):
            return f"dynn_lib/{fr.filename.split('dynn_lib/', 1)[-1]}:{fr.lineno}"
    return "other"


@contextmanager
def _sync_counter(counts: dict):
    """Count CUDA synchronisations (``set_sync_debug_mode("warn")`` warnings) per innermost
    ``dynn_lib`` frame (file:line; ``other`` when no library frame is on the stack)."""
    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        where = _library_frame()
        counts[where] = counts.get(where, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.set_sync_debug_mode(0)


def _can_audit_syncs(device: torch.device) -> bool:
    return device.type == "cuda"


def per_unit_lines(small: dict[str, int], large: dict[str, int], added_units: int) -> dict[str, int]:
    """Lines (``file:line`` -> extra syncs) whose count grew by at least ``added_units`` from the
    audit of n units (``small``) to the audit of n + ``added_units`` (``large``): a sync per step,
    not a fixed cost of the run (set-up copies, one read per epoch). ``other`` (no library frame)
    is left out."""
    grown = {k: v - small.get(k, 0) for k, v in large.items() if k != "other"}
    return {k: d for k, d in grown.items() if d >= added_units}


def sec_sync_audit(r: Report, ctx: dict) -> None:
    dev = ctx["device"]
    if not _can_audit_syncs(dev):
        raise Skip("CUDA only (set_sync_debug_mode audits device synchronisations)")
    T = _lib("train")
    data = _lib("data")
    attacks = _lib("attacks")
    GpuLoader = _lib("data", "GpuLoader")
    lines = []
    batch, steps, epochs, n_x, pgd_steps, ea_iters = ctx["audit"]
    model = _dynn("resnet56", ctx["seed"], dev)
    x = torch.rand(n_x, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(dev)
    y = torch.randint(0, 10, (n_x,), generator=torch.Generator().manual_seed(2)).to(dev)

    def train(k):  # k x steps full batches per epoch
        tr, te = data.make_synthetic(n_train=batch * steps * k, n_test=n_x, seed=ctx["seed"])
        cfg = T.recipe_config("sdn", "resnet56", "synthetic", "smoke", epochs=epochs, batch_size=batch,
                              n_train=batch * steps * k, checkpoint_minutes=None)
        return lambda: T.train(cfg, tr.images, tr.labels, te.images, te.labels, device=dev)

    def loader(k):
        tr, _ = data.make_synthetic(n_train=batch * steps * k, n_test=8, seed=ctx["seed"])
        xs, ys = tr.images.to(dev), tr.labels.to(dev)
        return lambda: [None for _ in GpuLoader(xs, ys, batch, shuffle=True, augment=True, jitter=0.2, device=dev)]

    def pgd(k):
        return lambda: attacks.pgd(model, x, y, exit_loss="fired", tau=0.5, steps=pgd_steps * k,
                                   generator=torch.Generator().manual_seed(0))

    def early(k):
        return lambda: attacks.early_attack(model, x, alpha=1.0, iters=ea_iters * k,
                                            generator=torch.Generator().manual_seed(0))

    # phase, factory of the run at k units, units at k = 1 (each phase audited at k = 1 and k = 2)
    phases = [("train", train, epochs * steps), ("loader_jitter_epoch", loader, steps),
              ("pgd_fired", pgd, pgd_steps), ("early_attack", early, ea_iters)]
    for phase, make, per in phases:
        r.need_time(15.0)
        runs = {k: make(k) for k in (1, 2)}
        runs[1]()  # warm-up outside the audit (first-call allocations, cuDNN heuristics)
        counts: dict[int, dict[str, int]] = {}
        for k, fn in runs.items():
            counts[k] = {}
            with _sync_counter(counts[k]):
                fn()
            _sync(dev)
        total = sum(counts[1].values())
        grown = per_unit_lines(counts[1], counts[2], per)
        r.info(f"{phase}/syncs", {"total": total, "total_at_twice_the_units": sum(counts[2].values()),
                                  "units": per, "lines": len([k for k in counts[1] if k != "other"]),
                                  "per_unit_lines": grown})
        for k, v in sorted(counts[1].items(), key=lambda kv: -kv[1]):
            lines.append(f"{phase}\t{v}\t{counts[2].get(k, 0)}\t{k}")
        if phase in ("train", "early_attack"):
            unit = "step" if phase == "train" else "iteration"
            r.check(f"{phase}/no_sync_per_{unit}", not grown, total,
                    note="; ".join(f"{k} +{v} for {per} more {unit}s" for k, v in grown.items())
                    or f"{per} {unit}s audited, then {2 * per}: no line grows with them", level="WARN")
        else:
            r.check(f"{phase}/audited", True, total,
                    note="forward_fired syncs once per exit reached, by design" if phase == "pgd_fired" else "")
    out = ctx["syncs_path"]
    out.write_text("phase\tcount\tcount at twice the steps\twhere (innermost dynn_lib frame)\n"
                   + "\n".join(lines) + "\n")
    r.info("syncs_file", str(out))


def _measure_step(T, data, arch: str, kind: str, batch: int, mode: str, ctx: dict) -> dict:
    """Seconds per step of ``train()`` at ``batch``: the faster of the second and third of three epochs
    of ``steps`` full batches."""
    models = _lib("models")
    dev, steps = ctx["device"], ctx["timing_steps"]
    n = batch * steps
    tr, te = data.make_synthetic(n_train=n, n_test=ctx["eval_n"], seed=ctx["seed"])
    base_state = None
    over = {}
    if kind == "ic_only":
        over["base"] = dataclasses.asdict(T.recipe_config("cnn", arch, "synthetic", "smoke"))
        torch.manual_seed(0)
        base_state = models.build(arch, 10, 32, exits=False).state_dict()
    cfg = T.recipe_config(kind, arch, "synthetic", "smoke", epochs=3, batch_size=batch, n_train=n,
                          checkpoint_minutes=None, **over)
    kw = {"base_state": base_state}
    if "cuda_graph" in inspect.signature(T.train).parameters:
        kw["cuda_graph"] = "auto" if mode == "graphed" else False
    _, rec = T.train(cfg, tr.images, tr.labels, te.images, te.labels, device=dev, **kw)
    sec = min(h["seconds"] for h in rec["history"][1:])
    return {"arch": arch, "kind": kind, "batch": batch, "mode": mode, "step_mode": rec.get("step_mode", "eager"),
            "s_per_step": sec / steps, "s_per_50k_epoch": sec / steps * math.ceil(FULL_TRAIN / batch)}


def sec_timings(r: Report, ctx: dict) -> None:
    T = _lib("train")
    data = _lib("data")
    dev = ctx["device"]
    graph_ok = dev.type == "cuda" and "cuda_graph" in inspect.signature(T.train).parameters
    rows = ctx["timing_rows"]
    archs, kinds, batches = ctx["timing_archs"], ctx["timing_kinds"], ctx["timing_batches"]
    if dev.type == "cuda":  # first what the fast extrapolation needs, then the eager/graphed pairs
        plan = [(a, k, b, "graphed") for b in batches[1:] for a in archs for k in kinds]
        plan += [(a, k, batches[0], m) for a in archs for k in kinds for m in ("eager", "graphed")]
    else:
        plan = [(a, k, b, "eager") for b in batches for a in archs for k in kinds]
    if dev.type != "cuda":
        r.info("graphed", "SKIP: CUDA graphs need a GPU (eager only)")
    elif not graph_ok:
        r.info("graphed", "SKIP: train() has no cuda_graph parameter yet")
        plan = [p for p in plan if p[3] == "eager"]
    for arch, kind, b, mode in plan:
        r.need_time(8.0)
        row = _measure_step(T, data, arch, kind, b, mode, ctx)
        rows.append(row)
        r.check(f"{arch}/{kind}/b{b}/{mode}", row["s_per_step"] > 0,
                {"s_per_step": row["s_per_step"], "s_per_50k_epoch": row["s_per_50k_epoch"]},
                note=row["step_mode"])
        if mode == "graphed":
            eager = [x for x in rows if (x["arch"], x["kind"], x["batch"], x["mode"]) == (arch, kind, b, "eager")]
            if eager:
                ratio = eager[0]["s_per_step"] / row["s_per_step"]
                r.check(f"{arch}/{kind}/b{b}/graphed_speedup", ratio >= GRAPH_SPEEDUP_TARGET, ratio,
                        GRAPH_SPEEDUP_TARGET, level="WARN", note="eager / graphed seconds per step")


def sec_pgd_speed(r: Report, ctx: dict) -> None:
    attacks = _lib("attacks")
    dev, B, steps = ctx["device"], ctx["pgd_batch"], ctx["pgd_steps"]
    model = _randomise(_network("resnet56", False, ctx["seed"]), ctx["seed"]).to(dev)
    x = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dev)
    y = torch.randint(0, 10, (B,), generator=torch.Generator().manual_seed(1)).to(dev)

    def seconds(m, n: int = B) -> float:
        """Seconds of one dynn_lib PGD on ``m`` over the first ``n`` images, after one warm-up run."""
        run = lambda: attacks.pgd(m, x[:n], y[:n], eps=8 / 255, step=2 / 255, steps=steps,  # noqa: E731
                                  generator=torch.Generator().manual_seed(0))
        run()
        return _timed(run, dev)[1]

    t = seconds(model)
    ips = B / t
    r.check("dynn_lib_pgd_img_per_s", ips > 0, ips, note=f"resnet56 CNN, batch {B}, {steps} steps")
    ctx["pgd"] = {"dynn_lib_img_s": ips}
    r.need_time(5.0)
    t_cl = seconds(copy.deepcopy(model).to(memory_format=torch.channels_last))
    ctx["pgd"]["channels_last_img_s"] = B / t_cl
    r.info("channels_last_speedup", t / t_cl)  # > 1: channels-last faster (fp32; inference_channels_last)
    # The H100 check of 2026-12-05 found dynn_lib's PGD as fast as torchattacks' (0.96x) at batch 512,
    # both fp32 with TF32 off: compute-bound, the same kernels. What would change that, for a decision
    # (no verdict): cuDNN autotuning, TF32 convolutions (both change the arithmetic's last bits), a
    # smaller batch (more launch-bound).
    numerics = _lib("numerics")
    variants = {}
    for label, fl in (("cudnn_benchmark", {"cudnn_benchmark": True}), ("tf32", {"tf32": True})):
        r.need_time(5.0)
        with numerics.flags(**fl):  # (on a CPU neither flag changes anything: a rehearsal)
            variants[label] = t / seconds(model)
    r.need_time(5.0)
    b = 128 if B > 128 else max(1, B // 2)
    variants[f"batch_{b}_img_s"] = b / seconds(model, b)
    ctx["pgd"]["variants"] = variants
    r.info("speedup_of_variants", variants)  # contiguous fp32 seconds / the variant's; images/s at the small batch
    try:
        import torchattacks
    except Exception as e:  # noqa: BLE001
        r.check("torchattacks_ratio", None, note=f"torchattacks not importable ({type(e).__name__})")
        return
    r.need_time(5.0)
    ta = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=steps, random_start=True)
    ta(x, y)
    _, t2 = _timed(lambda: ta(x, y), dev)
    t = min(t, seconds(model))  # a second sample of each, taken after the other's (one timing each read 0.96x)
    t2 = min(t2, _timed(lambda: ta(x, y), dev)[1])
    ratio = t2 / t
    ctx["pgd"].update({"dynn_lib_img_s": B / t, "torchattacks_img_s": B / t2, "ratio": ratio})
    _speed_target(r, "speedup_vs_torchattacks", ratio, PGD_SPEEDUP_TARGET, dev,
                  "torchattacks seconds / dynn_lib seconds")


def _training_jobs() -> list[tuple[str, str, str]]:
    """(label, arch, kind) of every model a run trains on cifar10-jpeg: the 9 zoo models, then
    the distinct RQ1 surrogates (each trains on the labelled query set)."""
    models = _lib("models")
    pairs = _lib("blackbox", "PAIRS")
    jobs = [("zoo", a, k) for a in models.ARCHS for k in ("cnn", "sdn", "ic_only")]
    seen = set()
    for p in pairs:
        key = (p.surrogate_arch, p.surrogate_kind, p.target_arch, p.target_kind)
        if key not in seen:
            seen.add(key)
            jobs.append(("surrogate", p.surrogate_arch, p.surrogate_kind))
    return jobs


def sec_extrapolation(r: Report, ctx: dict) -> None:
    get_profile = _lib("profiles", "get_profile")
    rows = ctx["timing_rows"]
    if not rows:
        raise Skip("no training step was timed")
    pref = "graphed" if ctx["device"].type == "cuda" else "eager"

    def t_step(arch, kind, batch):
        cands = [x for x in rows if x["arch"] == arch and x["kind"] == kind]
        cands.sort(key=lambda x: (x["mode"] != pref, x["batch"] != batch))
        if not cands:
            return None, None
        c = cands[0]
        if c["batch"] == batch:
            return c["s_per_step"], f"{c['mode']} at b{batch}"
        return c["s_per_step"] * batch / c["batch"], f"{c['mode']} at b{c['batch']}, scaled per image"

    r.info("formula", "T = sum_m epochs_m * ceil(N_m / B) * t_step(arch_m, kind_m, B); N = 50,000 (zoo), "
                      "49,500 (surrogates); training only")
    def minutes(p, jobs):
        total, missing, used = 0.0, [], {}
        for label, arch, kind in jobs:
            epochs = p.ic_epochs if kind == "ic_only" else p.cnn_epochs
            n = FULL_TRAIN if label == "zoo" else SURROGATE_IMAGES
            ts, how = t_step(arch, kind, p.batch_size)
            if ts is None:
                missing.append(f"{label}:{arch}/{kind}")
                continue
            used[f"{arch}/{kind}"] = how
            total += epochs * math.ceil(n / p.batch_size) * ts
        return total / 60, missing, used

    where = "" if ctx["device"].type == "cuda" else "; measured on a CPU"
    fast = get_profile("fast")
    # the schedule probe's later steps (gpu_run.sh's default: 45, then 60 epochs): the run at that
    # length, plus the ResNet-56 CNN trained at the first step, where the probe stops at its miss
    steps = _lib("floors", "default_probe_steps")("fast")
    jobs = _training_jobs()
    miss = minutes(fast, [("zoo", "resnet56", "cnn")])[0]  # None below: not a probe step
    variants = [("fast", fast, None)]
    variants += [(f"fast_cnn_epochs_{e}", dataclasses.replace(fast, cnn_epochs=e), miss) for e in steps[1:]]
    variants.append(("paper", get_profile("paper"), None))
    out = {}
    for name, p, probe_miss in variants:
        total, missing, used = minutes(p, jobs)
        out[name] = {"training_minutes": total, "batch": p.batch_size, "cnn_epochs": p.cnn_epochs, "missing": missing,
                     "t_step_from": used}
        note = (f"missing {len(missing)} of {len(jobs)} models" if missing else "all models") + where
        if probe_miss is not None:
            out[name]["probe_miss_minutes"] = probe_miss
            note += (f"; the probe's step at {p.cnn_epochs} epochs, plus {probe_miss:.2f} min for the ResNet-56 CNN "
                     f"at {fast.cnn_epochs} when that step misses")
        if name == "paper" and ctx["device"].type == "cuda" and not missing:  # issue 9's target, training alone
            r.check(f"{name}_training_minutes", total <= PAPER_MINUTES_TARGET, total, PAPER_MINUTES_TARGET,
                    note=note + "; at most the target (minutes)", level="WARN")
        else:
            r.check(f"{name}_training_minutes", total > 0, total, note=note)
    ctx["extrapolation"] = out
    r.data["extrapolation"] = out


def _concurrent_training_worker(spec: str) -> None:
    """``gpu_check.py --training-worker JSON``: one training in its own process. Prints ``ready``
    once CUDA and the data are up, waits for a line on stdin, trains, prints ``done T0 T1``
    (wall-clock times of the training)."""
    arch, kind, n, epochs, batch, seed, device = json.loads(spec)
    from dynn_lib import data, numerics, train as T
    numerics.configure(**numerics.DEFAULTS)  # TF32 off, as in a real run (torch's default would turn it on)
    dev = torch.device(device)
    torch.zeros(1, device=dev)  # the CUDA context, outside the timed part
    tr, te = data.make_synthetic(n_train=n, n_test=64, seed=seed)
    cfg = T.recipe_config(kind, arch, "synthetic", "smoke", seed=seed, epochs=epochs, batch_size=batch,
                          n_train=n, checkpoint_minutes=None)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    T.train(cfg, tr.images, tr.labels, te.images, te.labels, device=dev)
    print(f"done {t0!r} {time.time()!r}", flush=True)


def _run_concurrently(k: int, ctx: dict, timeout: float) -> float:
    """Wall seconds from the first start to the last end of ``k`` identical trainings started
    together, each in its own process (this script with ``--training-worker``)."""
    import selectors
    import subprocess
    import tempfile
    import dynn_lib
    arch, kind, n, epochs, batch = ctx["conc_job"]
    # the children import the library this process runs (an uninstalled checkout too), first on their path
    lib_root = str(Path(dynn_lib.__file__).resolve().parents[1])
    env = {**os.environ, "DYNN_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [lib_root, os.environ.get("PYTHONPATH")]))}
    errs = [tempfile.TemporaryFile(mode="w+") for _ in range(k)]  # a pipe could fill up and block the child
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--training-worker",
                               json.dumps([arch, kind, n, epochs, batch, ctx["seed"] + i, str(ctx["device"])])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
             for i, err in enumerate(errs)]
    deadline = time.monotonic() + timeout

    def line(p, err) -> str:
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ)
            if not sel.select(max(0.1, deadline - time.monotonic())):
                raise TimeoutError("a training process did not answer within the budget")
        out = p.stdout.readline().strip()
        if not out:
            p.wait(timeout=10)
            err.seek(0)
            raise RuntimeError(f"a training process failed (exit {p.returncode}): {err.read()[-500:]}")
        return out

    try:
        for p, err in zip(procs, errs):
            if line(p, err) != "ready":
                raise RuntimeError("a training process did not start")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = [tuple(float(v) for v in line(p, err).split()[1:]) for p, err in zip(procs, errs)]
        return max(e for _, e in spans) - min(b for b, _ in spans)
    finally:
        for p, err in zip(procs, errs):
            if p.poll() is None:
                p.kill()
            p.wait()
            err.close()


def sec_concurrency(r: Report, ctx: dict) -> None:
    """Total training throughput of k = 1, 2, 3 trainings sharing the device, each in its own
    process (what ``dynn reproduce --workers k`` does), against one at a time; the largest k
    whose every step up gains >= CONCURRENCY_GAIN_MIN is recommended (``gpu_run.sh`` reads it)."""
    arch, kind, n, epochs, batch = ctx["conc_job"]
    r.info("job", f"{arch}/{kind}, {n} images x {epochs} epochs at batch {batch}, per process; "
                  "speed-up = k x (one training's wall time) / (k trainings' wall time)")
    walls: dict[int, float] = {}
    speedups: dict[int, float] = {1: 1.0}
    best = 1
    out = {"seconds": walls, "speedup": speedups, "recommended_workers": best, "gain_min": CONCURRENCY_GAIN_MIN,
           "job": dict(zip(("arch", "kind", "n", "epochs", "batch"), ctx["conc_job"]))}
    r.data["concurrency"] = out  # updated after every level: a budget cut keeps what was measured
    for k in ctx["conc_levels"]:
        r.need_time(10.0 + 4 * k)
        try:
            walls[k] = _run_concurrently(k, ctx, r.left())
        except Exception as e:  # noqa: BLE001 -- a measurement, not a correctness check: WARN, run on 1 worker
            r.check(f"k{k}_ran", False, note=f"{type(e).__name__}: {e}; stays at {best} worker(s)", level="WARN")
            break
        if k == 1:
            r.check("k1_seconds", walls[1] > 0, walls[1])
            continue
        speedups[k] = k * walls[1] / walls[k]
        gain = speedups[k] / speedups[max(j for j in speedups if j < k)]
        if best == k - 1 and gain >= CONCURRENCY_GAIN_MIN:
            best = out["recommended_workers"] = k
        r.check(f"k{k}_speedup", True, speedups[k], note=f"{k} trainings in {walls[k]:.1f} s; "
                f"gain over k-1: {gain:.2f}x" + ("" if ctx["device"].type == "cuda" else "; on a CPU the "
                                                   "processes share the same cores"))
    r.info("recommended_workers", best)


def fired_recommendation(device: torch.device, padded_s: tuple[float, float], unpadded_s: tuple[float, float]
                         ) -> int | str:
    """``fired_bucket`` for the run from (first, again) seconds padded and unpadded: 1 (no padding)
    on CUDA when the unpadded attack was faster both times, else ``"auto"`` (the library's default;
    always on a CPU, which pads nothing by default)."""
    faster = all(u < p for p, u in zip(padded_s, unpadded_s))
    return 1 if device.type == "cuda" and faster else "auto"


def sec_fired_shapes(r: Report, ctx: dict) -> None:
    """A fired-loss PGD on a ResNet-56 DyNN whose batch shrinks exit by exit, with the still-running
    rows padded to the device's ``numerics.fired_bucket`` and unpadded, each timed on its first call
    (new shapes) and again. On CUDA the padding is recommended off (``recommended_fired_bucket`` 1,
    which ``gpu_run.sh`` reads) only when the unpadded run is faster on both; else ``"auto"`` (the
    library's default) stays."""
    attacks, numerics = _lib("attacks"), _lib("numerics")
    if not hasattr(numerics, "fired_bucket"):
        raise Skip("the library has no numerics.fired_bucket yet")
    dev, B, steps = ctx["device"], ctx["pgd_batch"], ctx["pgd_steps"]
    model = _dynn("resnet56", ctx["seed"], dev)
    x = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(ctx["seed"] + 3)).to(dev)
    with torch.no_grad():
        z = torch.stack(_exits(model(x))).float()
    # each exit's τ between two neighbouring confidences near its 75th percentile (no sample on a tie):
    # about a quarter of the samples reaching an exit leave there, so the batch shrinks exit by exit
    conf = z[:-1].softmax(-1).amax(-1).double().sort(dim=1).values
    i = min(int(0.75 * (B - 1)), B - 2)
    taus, y = ((conf[:, i] + conf[:, i + 1]) / 2).tolist(), z[-1].argmax(-1)
    padded = numerics.fired_bucket(dev) if dev.type == "cuda" else max(2, B // 8)  # a CPU pads nothing by default

    def attack():
        return attacks.pgd(model, x, y, eps=8 / 255, step=2 / 255, steps=steps, exit_loss="fired", tau=taus,
                           generator=torch.Generator().manual_seed(0), return_info=True)

    runs = {}
    for rows in (padded, 1):
        r.need_time(15.0)
        with numerics.flags(fired_bucket=rows):
            out, first = _timed(attack, dev)
            again = _timed(attack, dev)[1]
        runs[rows] = (out, first, again)
        r.info(f"bucket_{rows}_seconds", {"first": first, "again": again})
    ((adv_p, info_p), first_p, again_p), ((adv_1, info_1), first_1, again_1) = runs[padded], runs[1]
    recommended = fired_recommendation(dev, (first_p, again_p), (first_1, again_1))
    r.data["fired_shapes"] = {"padded_bucket": padded, "recommended_fired_bucket": recommended,
                              "seconds": {str(k): {"first": v[1], "again": v[2]} for k, v in runs.items()}}
    counts = torch.bincount(info_1.exit_used.cpu(), minlength=model.num_exits).tolist()
    note = f"resnet56 DyNN, batch {B}, {steps} steps, fired loss, exits used {counts}"
    ctx["pgd"] = {**ctx.get("pgd", {}), "fired_unpadded_over_padded_first": first_1 / first_p,
                  "fired_unpadded_over_padded_again": again_1 / again_p}
    # a CPU pads nothing by default (numerics.fired_bucket): judged on CUDA only
    _speed_target(r, "padded_faster_first", first_1 / first_p, 1.0, dev,
                  f"unpadded / padded seconds, new shapes included; {note}")
    _speed_target(r, "padded_faster_again", again_1 / again_p, 1.0, dev, "unpadded / padded seconds, every shape seen")
    agree = float((adv_p == adv_1).float().mean())
    r.check("identical_pixels", agree >= FGSM_AGREE_MIN, agree, FGSM_AGREE_MIN, level="WARN")
    r.check("exits_used_equal", torch.equal(info_p.exit_used, info_1.exit_used), level="WARN")
    r.info("recommended_fired_bucket", recommended)


# ================================================================================ main
def _sizes(tiny: bool, device: torch.device) -> dict:
    if tiny:
        return dict(fwd_batch=2, loader_n=20, loader_batch=8, attack_batch=2, attack_steps=1, ea_batch=2,
                    ea_iters=3, ee_batch=8, resume_n=8, resume_batch=4, resume_epochs=2, eval_n=4,
                    timing_steps=2, timing_batches=(8,), timing_archs=("resnet56",), timing_kinds=("cnn",),
                    pgd_batch=4, pgd_steps=2, archs=("resnet56",), attack_archs=("resnet56",),
                    conc_job=("resnet56", "cnn", 16, 1, 8), conc_levels=(1, 2), audit=(4, 2, 2, 2, 2, 3))
    big = device.type == "cuda"
    return dict(fwd_batch=4, loader_n=1000, loader_batch=128, attack_batch=16, attack_steps=5, ea_batch=8,
                ea_iters=50, ee_batch=64, resume_n=256 if big else 32, resume_batch=64 if big else 16,
                resume_epochs=3, eval_n=64, timing_steps=8, timing_batches=(128, 512),
                timing_archs=("resnet56", "vgg16", "mobilenet"), timing_kinds=("cnn", "sdn", "ic_only"),
                pgd_batch=512 if big else 32, pgd_steps=10, archs=("vgg16", "resnet56", "mobilenet"),
                attack_archs=("vgg16", "resnet56", "mobilenet"),
                conc_job=("resnet56", "cnn", 512 * 30, 2, 512) if big else ("resnet56", "cnn", 256, 1, 64),
                conc_levels=(1, 2, 3), audit=(128, 8, 2, 64, 10, 100))
    # audit: batch, steps per epoch, epochs, attacked images, PGD steps, Early Attack iterations


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} asked for but CUDA is not available; accepted here: auto, cpu")
    return dev


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, resnet56 only (CI, on a CPU)")
    p.add_argument("--budget-s", type=float, default=180.0, help="wall-time budget in seconds (default 180)")
    p.add_argument("--out", default="gpu-check",
                   help="folder for selfcheck.json and syncs.txt, or the path of the JSON itself (*.json)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--archs", default=None, help="comma-separated architectures (default: all; --tiny: resnet56)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--training-worker", default=None, help=argparse.SUPPRESS)  # the concurrency section's children
    args = p.parse_args(argv)
    secs = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in secs if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; accepted: {', '.join(SECTIONS)}")
    args.sections = secs
    if not args.budget_s > 0:
        raise ValueError(f"--budget-s must be > 0 seconds, got {args.budget_s}")
    if args.archs is not None:
        archs = tuple(a.strip() for a in args.archs.split(",") if a.strip())
        known = ("vgg16", "resnet56", "mobilenet")
        if not archs or any(a not in known for a in archs):
            raise ValueError(f"--archs must name some of {', '.join(known)}; got {args.archs!r}")
        args.archs = archs
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the check; returns the report's data (``selfcheck.json``). ``sys.exit`` is the caller's."""
    args = parse_args(argv)
    if args.training_worker is not None:
        _concurrent_training_worker(args.training_worker)
        return {"summary": {}}
    device = _resolve_device(args.device)
    # the library's flags (TF32 off) whichever sections run: torch's own default lets cuDNN use TF32,
    # which the fp32 forward check's tolerance would fail
    try:
        num = _lib("numerics")
        num.configure(**num.DEFAULTS)
    except Skip:
        pass  # the environment section says what cannot be imported
    os.environ.setdefault("DYNN_PROGRESS", "0")  # the library's progress bars would drown the lines
    out = Path(args.out)
    json_path = out if out.suffix == ".json" else out / "selfcheck.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = dict(_sizes(args.tiny, device), device=device, seed=args.seed, workdir=json_path.parent,
               syncs_path=json_path.parent / "syncs.txt", timing_rows=[])
    if args.archs:
        ctx.update(archs=args.archs, attack_archs=args.archs, timing_archs=args.archs)
    try:  # the code that runs (a copy without .git: DYNN_GIT_COMMIT, as every record of the library)
        commit = _lib("store", "git_commit")()
    except Skip:
        commit = "unknown"
    meta = {"device": str(device), "tiny": args.tiny, "sections": args.sections, "argv": sys.argv[1:] if argv is None
            else list(argv), "git_commit": commit, "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "thresholds": {"forward_rel": FWD_TOL, "grad_rel": GRAD_REL_TOL, "grad_cos": GRAD_COS_MIN,
                           "graph_speedup": GRAPH_SPEEDUP_TARGET, "pgd_speedup": PGD_SPEEDUP_TARGET,
                           "paper_minutes": PAPER_MINUTES_TARGET,
                           "fgsm_agree": FGSM_AGREE_MIN}}
    report = Report(json_path, args.budget_s, meta)
    print(f"gpu_check on {device} ({'tiny' if args.tiny else 'full'} sizes), budget {args.budget_s:.0f} s, "
          f"writing {json_path}", flush=True)
    funcs = {name: globals()[f"sec_{name}"] for name in SECTIONS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TF32.*")
        for name in SECTIONS:
            if name not in args.sections:
                continue
            with report.section(name):
                if name != "extrapolation":  # arithmetic on the timings: no budget needed
                    report.need_time(2.0)
                funcs[name](report, ctx)
    if "timings" in args.sections:
        report.data["timings"] = ctx["timing_rows"]
    if "pgd" in ctx:
        report.data["pgd"] = ctx["pgd"]
    report.data["meta"]["finished"] = True
    report.write()
    s = report.data["summary"]
    print(f"gpu_check: {s['PASS']} PASS, {s['FAIL']} FAIL, {s['WARN']} WARN, {s['SKIP']} SKIP sections in "
          f"{report.data['meta']['elapsed_s']:.0f} s -> {json_path}", flush=True)
    return report.data


if __name__ == "__main__":
    try:
        result = main()
    except ValueError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result["summary"].get("FAIL") else 0)
