"""The verdict vocabulary and the interval estimators every table and finding uses."""
import math

import numpy as np
import pytest

from dynn_lib import metrics, verdicts


def test_wilson_known_values_and_bounds():
    lo, hi = metrics.wilson_interval(50, 100)
    assert lo == pytest.approx(40.383, abs=1e-3) and hi == pytest.approx(59.617, abs=1e-3)
    assert metrics.wilson_interval(0, 100) == (0.0, pytest.approx(3.699, abs=1e-3))
    lo, hi = metrics.wilson_interval(5, 5)
    assert hi == 100.0 and 50 < lo < 60  # not degenerate at 100 %
    assert all(math.isnan(v) for v in metrics.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="k <= n"):
        metrics.wilson_interval(6, 5)


def test_wilson_covers_true_rate_about_95_percent():
    rng = np.random.default_rng(0)
    p, n, cover = 0.3, 60, 0
    for _ in range(2000):
        lo, hi = metrics.wilson_interval(int(rng.binomial(n, p)), n)
        cover += lo <= 100 * p <= hi
    assert 0.92 < cover / 2000 < 0.98


def test_bootstrap_difference_is_seeded_paired_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    img = np.arange(400)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.45
    base = np.ones(400, bool)
    r1 = metrics.bootstrap_rate_difference(img, a, base, img, b, base, seed=3)
    r2 = metrics.bootstrap_rate_difference(img, a, base, img, b, base, seed=3)
    assert r1 == r2
    est, lo, hi = r1
    assert est == pytest.approx(100 * (a.mean() - b.mean()))
    assert lo < est < hi and lo > 0  # a real 15-point gap at n=400 is decisive
    # identical sides: a paired bootstrap gives exactly zero width
    assert metrics.bootstrap_rate_difference(img, a, base, img, a, base) == (0.0, 0.0, 0.0)
    # a denominator restricts the rate: only base rows count
    est, _, _ = metrics.bootstrap_rate_difference(img, a, a, img, b, np.zeros(400, bool), n_boot=10)
    assert math.isnan(est)


def test_thresholds_are_checked_with_their_name_and_range():
    from dynn_lib.verdicts import check_threshold
    assert check_threshold("t", 20) == 20.0 and check_threshold("t", 0.0, 0, 100) == 0.0
    for bad in (250, -1, float("nan"), None, "20", False):
        with pytest.raises(ValueError, match=r"transfer_threshold must be a number in \[0, 100\] \(%\), got"):
            check_threshold("transfer_threshold", bad, 0, 100)


def test_verdict_rules():
    assert verdicts.combine(["supports"] * 3) == "holds"
    assert verdicts.combine(["against"] * 2) == "does not hold"
    assert verdicts.combine(["supports", "against", "inconclusive"]) == "partly"
    assert verdicts.combine(["supports", "inconclusive"]) == "inconclusive"
    assert verdicts.combine([]) == "not testable"
    assert verdicts.combine([], "only cifar10 ran") == "not testable: only cifar10 ran"
    assert verdicts.compare(0.5, 3.0) == "supports" and verdicts.compare(-0.5, 3.0) == "inconclusive"
    assert verdicts.compare(-3.0, -0.5) == "against" and verdicts.compare(-3.0, -0.5, direction="<") == "supports"
    assert verdicts.compare(math.nan, 1.0) == "inconclusive"
    assert verdicts.family("not testable: x") == "not testable"
    with pytest.raises(ValueError, match="accepted"):
        verdicts.combine(["mixed"])
    with pytest.raises(ValueError, match="not a verdict"):
        verdicts.family("mixed")
    assert verdicts.combine_verdicts(["holds", "holds"]) == "holds"
    assert verdicts.combine_verdicts(["holds", "does not hold"]) == "partly"
    assert verdicts.combine_verdicts(["holds", "inconclusive"]) == "inconclusive"
    assert verdicts.tag("smoke") == "[smoke]" and verdicts.tag("paper") == ""


def test_newcombe_interval_known_value_and_bounds():
    # Newcombe (1998) table II, example (a): 56/70 vs 48/80 -> 0.2000, hybrid score interval 0.0524 to 0.3339
    d, lo, hi = metrics.newcombe_interval(56, 70, 48, 80)
    assert d == pytest.approx(20.0) and lo == pytest.approx(5.24, abs=0.01) and hi == pytest.approx(33.39, abs=0.01)
    assert all(math.isnan(v) for v in metrics.newcombe_interval(1, 0, 1, 5))


def test_bootstrap_mean_and_unpaired_difference():
    rng = np.random.default_rng(2)
    img = np.arange(300)
    v = rng.normal(30.0, 2.0, 300)
    m, lo, hi = metrics.bootstrap_mean(img, v, seed=1)
    assert m == pytest.approx(v.mean()) and lo < m < hi and hi - lo == pytest.approx(4 * 2 / np.sqrt(300), rel=0.25)
    # non-finite values (PSNR of an unchanged image) leave the mean, as in metrics.mean_psnr
    m_inf, _, _ = metrics.bootstrap_mean(np.arange(301), np.append(v, np.inf), seed=1)
    assert m_inf == pytest.approx(v.mean())
    # several rows per image move together: duplicating every row leaves the interval unchanged
    twice = metrics.bootstrap_mean(np.repeat(img, 2), np.repeat(v, 2), seed=1)
    assert twice == pytest.approx((m, lo, hi))
    # two different image sets: an unpaired difference is wider than the paired one on shared noise
    w = v + rng.normal(0.2, 0.1, 300)
    paired = metrics.bootstrap_mean_difference(img, w, img, v, seed=1)
    unpaired = metrics.bootstrap_mean_difference(img, w, img, v, paired=False, seed=1)
    assert paired[0] == pytest.approx(unpaired[0])
    assert (paired[2] - paired[1]) * 5 < unpaired[2] - unpaired[1]
    assert paired[1] > 0 and unpaired[1] < 0 < unpaired[2]


def test_wilson_columns_sit_beside_their_column():
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2], "rate": [50.0, 0.0], "z": [0, 0]})
    metrics.wilson_columns(df, "rate", [5, 0], [10, 10])
    assert list(df.columns) == ["a", "rate", "rate_lo", "rate_hi", "z"]
    assert (df.loc[0, "rate_lo"], df.loc[0, "rate_hi"]) == pytest.approx(metrics.wilson_interval(5, 10))
    assert df.loc[1, "rate_lo"] == 0.0
