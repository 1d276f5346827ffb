"""What the ray engine costs and what GPU sharing buys (issue: scale-out on Ray), printed as ratios.

1. Scheduling overhead per job on the CPU: ``--jobs`` trivial jobs submitted the way the ray
   engine submits them (one task each, one CPU, ``max_retries``, each depending on the previous
   one through an object reference, so every job waits for a scheduling round trip), minus the
   same calls made in process; reported in milliseconds per job.
2. With a GPU: total throughput of 1, 2 and 4 concurrent trainings sharing one GPU
   (``num_gpus`` = 1, 1/2, 1/4) against one at a time: the same ``--trainings`` trainings of
   ``--arch`` (the library's trainer on generated data), wall time of the batch; speed-up =
   (serial wall time) / (shared wall time).

    python benchmarks/ray_overhead.py                 # CPU overhead; GPU sharing when CUDA is present
    python benchmarks/ray_overhead.py --quick         # small sizes
    python benchmarks/ray_overhead.py --json out.json # also write the numbers
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _noop(*deps) -> float:
    return time.perf_counter()


def scheduling_overhead(ray, jobs: int) -> dict:
    """Milliseconds per job added by Ray over an in-process call, chained jobs as in the engine."""
    t0 = time.perf_counter()
    for _ in range(jobs):
        _noop()
    local = time.perf_counter() - t0
    task = ray.remote(_noop)
    ray.get(task.remote())  # warm a worker
    t0 = time.perf_counter()
    ref = None
    for _ in range(jobs):
        ref = task.options(num_cpus=1, num_gpus=0, max_retries=2).remote(*([ref] if ref is not None else []))
    ray.get(ref)
    chained = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.get([task.options(num_cpus=1, max_retries=2).remote() for _ in range(jobs)])
    independent = time.perf_counter() - t0
    return {"jobs": jobs, "in_process_ms_per_job": 1e3 * local / jobs,
            "chained_ms_per_job": 1e3 * (chained - local) / jobs,
            "independent_ms_per_job": 1e3 * (independent - local) / jobs}


def _train_once(arch: str, n: int, epochs: int, seed: int) -> float:
    import torch

    from dynn_lib import data
    from dynn_lib.train import recipe_config, train
    ts = data.load("synthetic", "train")
    cfg = recipe_config("cnn", arch, "synthetic", "smoke", seed=seed, epochs=epochs, n_train=n, milestones=())
    t0 = time.perf_counter()
    train(cfg, ts.images[:n], ts.labels[:n], ts.images[:64], ts.labels[:64], torch.device("cuda"))
    return time.perf_counter() - t0


def gpu_sharing(ray, arch: str, trainings: int, n: int, epochs: int) -> list[dict]:
    """Wall time of ``trainings`` trainings with k = 1, 2, 4 sharing one GPU."""
    task = ray.remote(_train_once)
    ray.get(task.options(num_gpus=1).remote(arch, 64, 1, 0))  # warm-up (CUDA context, kernels)
    rows, serial = [], None
    for k in (1, 2, 4):
        t0 = time.perf_counter()
        ray.get([task.options(num_gpus=1 / k).remote(arch, n, epochs, i) for i in range(trainings)])
        wall = time.perf_counter() - t0
        serial = wall if k == 1 else serial
        rows.append({"concurrent": k, "num_gpus": 1 / k, "wall_s": wall, "trainings": trainings,
                     "speedup_vs_one_at_a_time": serial / wall})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--jobs", type=int, default=None, help="trivial jobs for the overhead (default 500, quick 50)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--trainings", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=None, help="images per training (default 2000, quick 512)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training (default 2, quick 1)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import ray
    import torch
    jobs = args.jobs or (50 if args.quick else 500)
    gpus = torch.cuda.device_count()
    ray.init(num_cpus=args.num_cpus, num_gpus=min(gpus, 1), include_dashboard=False, logging_level="ERROR")
    try:
        res = {"ray": ray.__version__, "overhead": scheduling_overhead(ray, jobs), "gpu_sharing": None}
        o = res["overhead"]
        print(f"Ray {ray.__version__}, {args.num_cpus} CPUs: scheduling overhead {o['chained_ms_per_job']:.2f} ms "
              f"per chained job, {o['independent_ms_per_job']:.2f} ms per independent job "
              f"(in process: {o['in_process_ms_per_job'] * 1e3:.2f} us) over {jobs} jobs")
        if gpus:
            rows = gpu_sharing(ray, args.arch, args.trainings, args.n_train or (512 if args.quick else 2000),
                               args.epochs or (1 if args.quick else 2))
            res["gpu_sharing"] = rows
            res["gpu"] = torch.cuda.get_device_name(0)
            for r in rows:
                print(f"{r['concurrent']} concurrent {args.arch} trainings per GPU ({res['gpu']}): "
                      f"{r['trainings']} in {r['wall_s']:.1f} s, x{r['speedup_vs_one_at_a_time']:.2f} vs one at a time")
        else:
            print("no CUDA device: GPU sharing not measured")
    finally:
        ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
