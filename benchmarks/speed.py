"""Side-by-side speed benchmarks, printed as ratios (issue: GPU speed).

Measured in one process and run, on the same model and data:

1. seconds per training epoch per architecture: ``dynn_lib.train.train`` itself (uint8 data on
   the device, batched on-device crop/flip; bf16 autocast + channels-last where its ``"auto"``
   rule turns them on: CUDA, or a CPU with native bf16, where MobileNet's depthwise convolutions
   stay fp32; channels-last alone on other x86-64 CPUs; the step graphed on CUDA) vs a plain fp32
   loop on the same on-device batches
   (eager, contiguous, SGD; target on a bf16 CPU: >= 1.5x) and vs a reference loop of the usual kind (torchvision DataLoader over PIL images with PIL
   transforms, eager fp32), all batch 128, over ``--n-train`` images: the fastest of
   ``--repeats`` epochs (one for the reference loop);
2. PGD-10 throughput (images/s): ``dynn_lib.attacks.pgd`` vs ``torchattacks.PGD`` (when installed),
   and on a ResNet-56 DyNN with ``exit_loss="fired"``: the truncated path (each step stops at the
   fired exit, fired samples leave the batch) vs the full path (every exit computed), with the
   forward-MAC ratio the attacks report (``AttackInfo.macs``);
3. early-exit latency per image (batch 1, real early stopping) and per image in a batch, vs the
   full network, next to the MAC ratio at the same τ.

Timing: a warm-up pass first; CUDA timings synchronise before reading the clock. Everything runs
under the library's numeric settings (``dynn_lib.numerics.configure()``: TF32 off, cuDNN
heuristics rather than autotuning), printed first and kept in the JSON.

    python benchmarks/speed.py                 # CUDA when available, else CPU at small sizes
    python benchmarks/speed.py --quick         # tiny sizes (CI runs this on the CPU)
    python benchmarks/speed.py --json out.json # also write the numbers
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dynn_lib import data, early_exit, models, numerics
from dynn_lib import train as T
from dynn_lib.attacks import pgd
from dynn_lib.data import GpuLoader


@contextmanager
def timer(device: torch.device, out: list):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out.append(time.perf_counter() - t0)


def sgd_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool) -> None:
    """One cross-entropy SGD step on the final output (bf16 autocast when ``amp``)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
        loss = F.cross_entropy(out if isinstance(out, torch.Tensor) else out[-1], y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def project_epoch(arch: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                  epochs: int = 1) -> tuple[float, dict]:
    """Seconds of the fastest of ``epochs`` epochs of ``dynn_lib.train.train`` (the ``cnn`` recipe
    at batch 128, its own precision, layout and step-mode choices for ``device``), and its record."""
    cfg = T.recipe_config("cnn", arch, "synthetic", "paper", epochs=epochs, batch_size=128, n_train=len(labels))
    _, rec = T.train(cfg, images, labels, images[:8], labels[:8], device)
    return min(h["seconds"] for h in rec["history"]), rec


def plain_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """One epoch of a plain fp32 loop on the same on-device batches: eager, contiguous, no autocast."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = GpuLoader(images.to(device), labels.to(device), batch_size=128, shuffle=True, augment=True, pad=4,
                       seed=0, device=device)
    t: list = []
    with timer(device, t):
        for x, y in loader:
            sgd_step(model, opt, x, y, amp=False)
    return t[0]


def reference_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    workers: int) -> float:
    """One epoch the usual way: PIL images, torchvision transforms, DataLoader, eager fp32."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class PilSet(Dataset):
        def __init__(self):
            self.pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
            self.tf = transforms.Compose([transforms.RandomCrop(images.shape[-1], padding=4),
                                          transforms.RandomHorizontalFlip(), transforms.ToTensor()])

        def __len__(self):
            return len(self.pil)

        def __getitem__(self, i):
            return self.tf(self.pil[i]), int(labels[i])

    model.train()
    model.to(memory_format=torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PilSet(), batch_size=128, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda")
    t: list = []
    with timer(device, t):
        for x, y in loader:
            sgd_step(model, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True), amp=False)
    return t[0]


def bench_training(archs, images, labels, device, workers, repeats: int = 3) -> list[dict]:
    """Per architecture: the fastest of ``repeats`` epochs of the trainer and of the plain loop
    (single CPU epochs vary by up to 30 % from run to run), one epoch of the reference loop."""
    rows = []
    for arch in archs:
        project_epoch(arch, images[:256], labels[:256], device)  # warm-up (kernel selection, graph capture)
        ours, rec = project_epoch(arch, images, labels, device, epochs=repeats)
        m = models.build(arch, 10, exits=False).to(device)
        plain_epoch(m, images[:256], labels[:256], device)
        plain = min(plain_epoch(m, images, labels, device) for _ in range(repeats))
        m = models.build(arch, 10, exits=False).to(device)
        reference_epoch(m, images[:256], labels[:256], device, workers)
        ref = reference_epoch(m, images, labels, device, workers)
        rows.append({"arch": arch, "n_images": len(labels), "project_s": ours, "plain_fp32_s": plain,
                     "reference_s": ref, "speedup_vs_plain_fp32": plain / ours, "speedup": ref / ours,
                     "amp": rec["amp"], "channels_last": rec["channels_last"], "step_mode": rec["step_mode"]})
    return rows


def bench_pgd(images, labels, device, steps: int) -> dict:
    model = models.build("resnet56", 10, exits=False).to(device).eval()
    x = images.to(device).float() / 255
    y = labels.to(device)
    pgd(model, x[:32], y[:32], steps=1)
    t: list = []
    with timer(device, t):
        pgd(model, x, y, steps=steps, random_start=False)
    row = {"attack": f"PGD-{steps}", "n_images": len(y), "project_img_s": len(y) / t[0]}
    try:
        import torchattacks
    except ImportError:
        row["torchattacks_img_s"] = None
        return row
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=steps, random_start=False)
    atk(x[:32], y[:32])
    t2: list = []
    with timer(device, t2):
        atk(x, y)
    row["torchattacks_img_s"] = len(y) / t2[0]
    row["speedup"] = row["project_img_s"] / row["torchattacks_img_s"]
    return row


def median_taus(model: nn.Module, x: torch.Tensor) -> tuple[float, ...]:
    """Per-exit τ at each internal exit's median confidence on ``x``: untrained ICs are never
    confident, so a fixed τ would send every image to the final exit."""
    with torch.no_grad():
        conf = torch.stack(model(x))[:-1].softmax(-1).amax(-1)
    return tuple(float(c) for c in conf.median(1).values)


def bench_pgd_truncated(images, labels, device, steps: int) -> dict:
    """PGD with the fired-exit loss on a ResNet-56 DyNN: truncated vs full path, images/s and MACs."""
    model = models.build("resnet56", 10, exits=True).to(device).eval()
    x = images.to(device).float() / 255
    y = labels.to(device)
    taus = median_taus(model, x)
    row = {"attack": f"PGD-{steps} fired", "model": "resnet56 DyNN", "n_images": len(y)}
    for name, truncate in (("truncated", True), ("full", False)):
        pgd(model, x[:32], y[:32], steps=1, exit_loss="fired", tau=taus, truncate=truncate)  # warm-up
        t: list = []
        with timer(device, t):
            _, info = pgd(model, x, y, steps=steps, random_start=False, exit_loss="fired", tau=taus,
                          truncate=truncate, return_info=True)
        row[f"{name}_img_s"] = len(y) / t[0]
        row[f"{name}_macs_per_example"] = float(info.macs.mean())
        row[f"{name}_mean_exit"] = float(info.exit_used.float().mean())
    row["speedup"] = row["truncated_img_s"] / row["full_img_s"]
    row["macs_ratio"] = row["truncated_macs_per_example"] / row["full_macs_per_example"]
    return row


def bench_early_exit(images, device, n_single: int, tau: float) -> dict:
    model = models.build("resnet56", 10, exits=True).to(device).eval()
    # untrained ICs are never confident: calibrate a per-exit τ at the batch's median confidence
    x = images.to(device).float() / 255
    with torch.no_grad():
        z = torch.stack(model(x))
    conf = z[:-1].softmax(-1).amax(-1)
    taus = tuple(float(c) for c in conf.median(1).values) if tau <= 0 else (tau,) * (model.num_exits - 1)
    _, ex = early_exit.early_exit_predict(z, taus)
    macs = models.exit_macs(model)
    mac_ratio = float(np.mean([macs[i] for i in ex.tolist()])) / macs[-1]
    cnn = models.SDNN(model.backbone)
    single_ee, single_full = [], []
    with torch.no_grad():
        for i in range(n_single + 3):
            xi = x[i % len(x)][None]
            a: list = []
            with timer(device, a):
                model.forward_early_exit(xi, taus)
            b: list = []
            with timer(device, b):
                cnn(xi)
            if i >= 3:
                single_ee.append(a[0])
                single_full.append(b[0])
        tb, tf = [], []
        with timer(device, tb):
            model.forward_early_exit(x, taus)
        with timer(device, tf):
            cnn(x)
    return {"model": "resnet56 DyNN", "mean_exit": float(ex.float().mean()), "mac_ratio": mac_ratio,
            "batch1_early_exit_ms": 1e3 * float(np.median(single_ee)),
            "batch1_full_ms": 1e3 * float(np.median(single_full)),
            "batch1_latency_ratio": float(np.median(single_ee) / np.median(single_full)),
            "batched_early_exit_ms_per_img": 1e3 * tb[0] / len(x), "batched_full_ms_per_img": 1e3 * tf[0] / len(x),
            "batched_latency_ratio": tb[0] / tf[0]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    p.add_argument("--archs", nargs="+", default=list(models.ARCHS))
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per training loop, fastest kept (default 3)")
    a = p.parse_args(argv)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    cuda = device.type == "cuda"
    n_train = a.n_train or (50_000 if cuda else (256 if a.quick else 1024))
    n_attack = 5000 if cuda else (64 if a.quick else 256)
    workers = a.workers if a.workers is not None else (8 if cuda else 0)
    archs = a.archs if not a.quick else ["resnet56"]
    tr, _ = data.make_synthetic(num_classes=10, size=32, n_train=max(n_train, n_attack), n_test=10, seed=0)
    images, labels = tr.images[:n_train], tr.labels[:n_train]
    # the library's numeric settings (TF32 off, cuDNN heuristics): what its trainings and attacks run under
    res = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
           "torch": torch.__version__, "numerics": numerics.configure()}
    print("numerics: " + ", ".join(f"{k} {v}" for k, v in res["numerics"].items()))
    res["training"] = bench_training(archs, images, labels, device, workers, repeats=1 if a.quick else a.repeats)
    for r in res["training"]:
        print(f"train epoch {r['arch']:10s} {r['n_images']} imgs: trainer {r['project_s']:.2f} s "
              f"(bf16 {r['amp']}, channels-last {r['channels_last']}, {r['step_mode']}); plain fp32 loop "
              f"{r['plain_fp32_s']:.2f} s -> {r['speedup_vs_plain_fp32']:.2f}x (target >= 1.5x where bf16 is on); "
              f"PIL/DataLoader reference {r['reference_s']:.2f} s -> {r['speedup']:.2f}x")
    res["pgd"] = bench_pgd(tr.images[:n_attack], tr.labels[:n_attack], device, steps=2 if a.quick else 10)
    r = res["pgd"]
    ta = f"{r['torchattacks_img_s']:.1f} img/s -> {r['speedup']:.2f}x" if r.get("torchattacks_img_s") else "n/a"
    print(f"{r['attack']} on {r['n_images']} imgs: project {r['project_img_s']:.1f} img/s, torchattacks {ta}")
    res["pgd_truncated"] = bench_pgd_truncated(tr.images[:n_attack], tr.labels[:n_attack], device,
                                               steps=2 if a.quick else 10)
    r = res["pgd_truncated"]
    print(f"{r['attack']} on a {r['model']}, {r['n_images']} imgs (mean exit {r['truncated_mean_exit']:.2f}): "
          f"truncated {r['truncated_img_s']:.1f} img/s vs full {r['full_img_s']:.1f} img/s -> {r['speedup']:.2f}x; "
          f"forward MACs per example {r['macs_ratio']:.2f}x of the full path's")
    res["early_exit"] = bench_early_exit(tr.images[:n_attack], device, n_single=10 if a.quick else 100, tau=0.0)
    r = res["early_exit"]
    print(f"early exit ({r['model']}, mean exit {r['mean_exit']:.2f}, MAC ratio {r['mac_ratio']:.2f}): "
          f"batch-1 latency ratio {r['batch1_latency_ratio']:.2f} ({r['batch1_early_exit_ms']:.2f} vs "
          f"{r['batch1_full_ms']:.2f} ms), batched ratio {r['batched_latency_ratio']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
