"""Finding 2: time and MACs per example of SDNN and DyNN surrogates, each with its verdict."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dynn_lib import metrics
from dynn_lib.experiments import rq1


@pytest.fixture(autouse=True)
def _bootstrap_on_few_images(monkeypatch):
    """These tests exercise the verdict logic on N = 16 images, under the library's minimum for a
    bootstrap interval (``metrics.MIN_BOOTSTRAP_IMAGES``, tested in test_experiments)."""
    monkeypatch.setattr(metrics, "MIN_BOOTSTRAP_IMAGES", 2)


def _rows(arch: str, kind: str, macs, seconds_per_batch, batch_size: int = 4, attack: str = "pgd") -> list[dict]:
    """Per-image rows of one surrogate attack table: image i costs ``macs[i]`` MACs; images are
    timed in batches of ``batch_size`` whose seconds per example are ``seconds_per_batch``."""
    direction, pair = ("D2S", f"{arch}→vgg16") if kind == "sdn" else ("S2D", f"{arch}→resnet56")
    return [{"dataset": "synthetic", "direction": direction, "pair": pair, "surrogate_arch": arch,
             "surrogate_kind": kind, "attack": attack, "eps": 8 / 255, "eps_255": 8.0, "image": i,
             "surrogate_exit": 0, "gen_macs": float(m), "gen_batch": i // batch_size,
             "gen_seconds": float(seconds_per_batch[i // batch_size])} for i, m in enumerate(macs)]


N = 16
RNG = np.random.default_rng(0)
CHEAP = 1e6 * (3 + RNG.integers(0, 4, N))   # a DyNN whose samples stop at various exits: 3-6 M
FULL = np.full(N, 10e6)                     # the static network: 10 M every image
FAST, SLOW = [1e-3, 1.1e-3, 0.9e-3, 1.05e-3], [2e-3, 2.1e-3, 1.9e-3, 2.05e-3]


def _table(*parts) -> pd.DataFrame:
    return pd.DataFrame([r for p in parts for r in p])


def test_both_verdicts_from_per_image_rows():
    df = _table(_rows("mobilenet", "sdn", CHEAP, FAST), _rows("mobilenet", "cnn", FULL, SLOW),
                _rows("resnet56", "sdn", CHEAP, FAST), _rows("resnet56", "cnn", FULL, SLOW))
    f = rq1.finding_2(df, n_boot=300)
    assert f["verdict"] == "holds" and f["time_verdict"] == "holds"
    assert f["finding"] == 2 and f["n_images"] == N and len(f["comparisons"]) == 2
    c = f["comparisons"][0]
    assert c["macs_difference"] == pytest.approx(CHEAP.mean() - 10e6)
    assert c["macs_lo"] <= c["macs_difference"] <= c["macs_hi"] < 0
    assert c["batches_dynn"] == c["batches_sdnn"] == 4 and c["seconds_hi"] < 0
    assert f["mean_macs_dynn"] == pytest.approx(CHEAP.mean()) and f["mean_macs_sdnn"] == 10e6
    assert "MACs per example" in f["evidence"] and "Wall time per example" in f["evidence"]
    assert rq1.finding_2(df, n_boot=300) == f  # seeded: reproducible from its record
    # a DyNN-only surrogate (VGG-16) is in no comparison and in none of the headline means
    vgg = rq1.finding_2(_table(*[_rows(*a) for a in (("mobilenet", "sdn", CHEAP, FAST), ("mobilenet", "cnn", FULL, SLOW),
                                                    ("resnet56", "sdn", CHEAP, FAST), ("resnet56", "cnn", FULL, SLOW),
                                                    ("vgg16", "sdn", 50 * FULL, SLOW))]), n_boot=300)
    assert vgg["mean_macs_dynn"] == pytest.approx(CHEAP.mean()) and len(vgg["comparisons"]) == 2

    # reversed costs: the DyNN is the expensive one in both quantities
    rev = _table(_rows("mobilenet", "sdn", FULL + 5e6, SLOW), _rows("mobilenet", "cnn", FULL, FAST))
    g = rq1.finding_2(rev, n_boot=300)
    assert g["verdict"] == "does not hold" and g["time_verdict"] == "does not hold"

    # MACs cheaper on one architecture, dearer on the other: partly; one timed batch: inconclusive
    mix = _table(_rows("mobilenet", "sdn", CHEAP, [1e-3], batch_size=N), _rows("mobilenet", "cnn", FULL, [2e-3], N),
                 _rows("resnet56", "sdn", FULL + 5e6, [1e-3], N), _rows("resnet56", "cnn", FULL, [2e-3], N))
    h = rq1.finding_2(mix, n_boot=300)
    assert h["verdict"] == "partly" and h["time_verdict"] == "inconclusive"
    assert math.isnan(h["comparisons"][0]["seconds_lo"])


def test_overlapping_costs_are_inconclusive_and_no_pair_is_not_testable():
    noisy = 10e6 + 1e6 * np.where(np.arange(N) % 2 == 0, -3, 3)  # mean 10 M, wide spread
    df = _table(_rows("mobilenet", "sdn", noisy[::-1], FAST), _rows("mobilenet", "cnn", FULL - 0.1e6, FAST))
    assert rq1.finding_2(df, n_boot=300)["verdict"] == "inconclusive"
    only_dynn = _table(_rows("vgg16", "sdn", CHEAP, FAST))
    f = rq1.finding_2(only_dynn)
    assert f["verdict"].startswith("not testable") and f["time_verdict"].startswith("not testable")


def test_wall_times_taken_on_a_shared_device_are_left_out_of_the_time_verdict():
    """A table timed while other jobs could use the device (a Ray run sharing GPUs) says little
    about the attack: its comparison leaves the time verdict, the MACs verdict is unchanged."""
    parts = [_rows("mobilenet", "sdn", CHEAP, FAST), _rows("mobilenet", "cnn", FULL, SLOW),
             _rows("resnet56", "sdn", CHEAP, FAST), _rows("resnet56", "cnn", FULL, SLOW)]
    for r in parts[0]:  # the MobileNet DyNN surrogate's table was timed on a shared device
        r["gen_seconds_shared"] = True
    df = _table(*parts).assign(gen_seconds_shared=lambda d: d["gen_seconds_shared"].fillna(False).astype(bool))
    f = rq1.finding_2(df, n_boot=300)
    mob, res = f["comparisons"]
    assert mob["seconds_shared"] and mob["time_outcome"] == "shared device" and mob["macs_outcome"] == "supports"
    assert not res["seconds_shared"] and res["time_outcome"] == "supports"
    assert f["verdict"] == f["time_verdict"] == "holds" and "1 left out" in f["evidence"]
    everywhere = rq1.finding_2(df.assign(gen_seconds_shared=True), n_boot=300)
    assert everywhere["verdict"] == "holds"
    assert everywhere["time_verdict"] == ("not testable: the attacks were timed while other jobs of the run could use "
                                          "the same device")
    gt = rq1.generation_time(df, n_boot=100)
    assert gt.set_index(["surrogate_arch", "surrogate"])["seconds_shared"].to_dict() == {
        ("mobilenet", "DyNN"): True, ("mobilenet", "SDNN"): False, ("resnet56", "DyNN"): False,
        ("resnet56", "SDNN"): False}
    assert not rq1.shared_seconds(df.drop(columns="gen_seconds_shared"))  # tables from before the column
    from dynn_lib import display
    assert "1 of the 4 attack tables" in display.shared_timing_note(gt)  # the caption sentence of the timing tables
    assert display.shared_timing_note(gt.assign(seconds_shared=False)) == ""


def test_generation_time_reports_time_and_macs_per_surrogate():
    df = _table(_rows("mobilenet", "sdn", CHEAP, FAST), _rows("mobilenet", "cnn", FULL, SLOW))
    gt = rq1.generation_time(df, n_boot=200)
    dy, sd = (gt[gt["surrogate"] == k].iloc[0] for k in ("DyNN", "SDNN"))
    assert dy["macs_per_example"] == pytest.approx(CHEAP.mean()) and sd["macs_per_example"] == 10e6
    assert dy["macs_per_example_lo"] <= dy["macs_per_example"] <= dy["macs_per_example_hi"]
    assert sd["macs_per_example_lo"] == sd["macs_per_example_hi"] == 10e6
    assert dy["seconds_per_example"] == pytest.approx(np.mean(FAST)) and dy["n_batches"] == 4 and dy["n"] == N
    with pytest.raises(ValueError, match="per-image"):
        rq1.finding_2(gt)


def test_welch_interval():
    d, lo, hi = rq1.welch_interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    assert d == -3.5 and lo < -3.5 < hi < 0
    assert rq1.welch_interval([1.0, 2.0], [1.5])[0] == pytest.approx(0.0) and math.isnan(rq1.welch_interval([1.0, 2.0],
                                                                                                           [1.5])[1])
    d, lo, hi = rq1.welch_interval([2.0, 2.0], [1.0, 1.0])
    assert d == lo == hi == 1.0
    stats = pytest.importorskip("scipy.stats")
    ref = stats.ttest_ind([1.0, 2.0, 3.0, 2.5], [4.0, 5.0, 6.0, 7.0, 5.5], equal_var=False).confidence_interval()
    _, lo, hi = rq1.welch_interval([1.0, 2.0, 3.0, 2.5], [4.0, 5.0, 6.0, 7.0, 5.5])
    # degrees of freedom rounded down: a slightly wider (conservative) interval than scipy's
    assert lo <= ref.low and hi >= ref.high and lo == pytest.approx(ref.low, abs=0.2)
