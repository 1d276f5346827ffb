"""The model zoo: every model a dataset needs, trained (or loaded), with its exit accuracies,
calibrated τ, mean exit and mean MACs on the evaluation half (``n_eval`` images). One row per model."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .. import early_exit, models
from ..progress import progress
from ..zoo import MODEL_KINDS, Workspace


def _recipe_params(model, kind: str) -> int:
    """Parameters the recipe trains (an IC-only DyNN: its internal classifiers only), the same
    whether the model was just trained or loaded from the store (a loaded model has every
    ``requires_grad`` set, so ``count_trainable`` would count its frozen backbone too)."""
    return sum(p.numel() for p in (model.ics if kind == "ic_only" else model).parameters())


def model_zoo(ws: Workspace, archs: Sequence[str] = models.ARCHS, kinds: Sequence[str] = MODEL_KINDS) -> pd.DataFrame:
    """Train/load each (arch, kind) of ``ws`` and summarise it (accuracies are fractions in [0,1]).

    ``tau_meets_rule``: True when the DyNN's calibrated τ keeps the protocol's rule on the query
    half, False when no τ of the grid does and the DyNN is deployed at the grid's largest (the
    fallback), None for a static network, a fixed τ or a calibration stored without the flag."""
    for a in archs:
        if a not in models.ARCHS:
            raise ValueError(f"unknown architecture {a!r}; accepted: {', '.join(models.ARCHS)}")
    rows = []
    ev_x, ev_y = ws.eval_half
    for arch in progress(archs, desc="model zoo"):
        for kind in kinds:
            model = ws.model(arch, kind)
            rec = ws.model_record(arch, kind)
            macs = models.exit_macs(model)
            row = {"dataset": ws.dataset, "arch": arch, "kind": kind, "exits": model.num_exits,
                   "params": _recipe_params(model, kind), "full_macs": macs[-1],
                   "train_seconds": rec.get("train_seconds"), "seconds_per_epoch": rec.get("seconds_per_epoch"),
                   "seconds_shared": bool(rec.get("device_shared", False)),
                   "epochs": rec["config"]["epochs"], "n_train": rec.get("n_train"), "device": rec.get("device_name"),
                   "exit_accuracy": [float(a) for a in rec["exit_accuracy"]], "n_eval": int(rec["n_eval"])}
            if model.num_exits > 1:
                tau = ws.tau(arch, kind)
                z = early_exit.all_exit_logits(model, ev_x, device=ws.device, desc="evaluation half")
                rep = early_exit.report(z, ev_y, tau, macs)
                row.update(tau=tau, tau_meets_rule=ws.tau_meets_rule(arch, kind), early_exit_accuracy=rep.accuracy,
                           mean_exit=rep.mean_exit, mean_macs=rep.mean_macs, macs_ratio=rep.macs_ratio)
            else:
                row.update(tau=float("nan"), tau_meets_rule=None, early_exit_accuracy=rec["exit_accuracy"][-1],
                           mean_exit=0.0, mean_macs=float(macs[-1]), macs_ratio=1.0)
            rows.append(row)
    return pd.DataFrame(rows)
