"""Paired statistics over seeds, against hand computations."""

from __future__ import annotations

import math

import pytest

from mtlsearch.stats import log_log_slope, mean_std, nan_mean_std, paired_difference
from mtlsearch.study.comparison import _paired


def test_mean_std_by_hand():
    assert mean_std([2.0, 4.0, 9.0]) == pytest.approx((5.0, math.sqrt(13.0)))
    assert mean_std([3.0]) == (3.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_paired_difference_by_hand():
    a = {0: 5.0, 1: 2.0, 2: 4.0, 3: 1.0}
    b = {0: 3.0, 1: 2.5, 2: 1.0, 4: 9.0}  # seed 3 and 4 are not in both
    d = paired_difference(a, b)
    # differences 2.0, -0.5, 3.0: mean 1.5, std sqrt(((0.5)^2 + 2^2 + 1.5^2) / 2)
    assert (d.n, d.wins, d.losses) == (3, 2, 1)
    assert d.mean == pytest.approx(1.5)
    assert d.std == pytest.approx(math.sqrt((0.25 + 4.0 + 2.25) / 2))
    assert d.beyond_noise == (1.5 > d.std / math.sqrt(3))
    assert d.text() == f"+1.50 ± {d.std:.2f} (2/3)"


def test_paired_noise_rule_and_non_finite_seeds():
    steady = paired_difference({0: 1.1, 1: 1.2, 2: 1.0}, {0: 1.0, 1: 1.0, 2: 0.9})
    assert steady.better() and steady.beyond_noise
    noisy = paired_difference({0: 5.0, 1: -4.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert not noisy.better() and not noisy.beyond_noise
    assert paired_difference({0: float("nan"), 1: 1.0}, {0: 0.0, 1: 0.0}).n == 1
    assert not paired_difference({0: 9.0}, {0: 0.0}).beyond_noise  # one seed: no noise estimate


def test_compare_pairs_each_strategy_with_the_baseline_seed_by_seed():
    runs = [
        {"strategy": "x", "seed": 0, "delta_mtl": 2.0, "delta_mtl_test": 1.0},
        {"strategy": "x", "seed": 1, "delta_mtl": 3.0, "delta_mtl_test": 0.0},
        {"strategy": "random_tree", "seed": 0, "delta_mtl": 1.0, "delta_mtl_test": 2.0},
        {"strategy": "random_tree", "seed": 1, "delta_mtl": 1.0, "delta_mtl_test": -1.0},
        {"strategy": "random_tree", "seed": 2, "error": "no complete trial"},
    ]
    paired = _paired("x", "random_tree", runs)
    assert paired["val"]["mean"] == pytest.approx(1.5) and paired["val"]["wins"] == 2
    assert paired["test"]["mean"] == pytest.approx(0.0) and paired["test"]["n"] == 2
    assert _paired("random_tree", "random_tree", runs) is None


def test_nan_mean_std_leaves_out_what_is_missing():
    # None (NaN through JSON) and NaN are missing; the rest is mean_std's
    assert nan_mean_std([2.0, None, 4.0, float("nan"), 9.0]) == mean_std([2.0, 4.0, 9.0])
    assert nan_mean_std([None, 3]) == (3.0, 0.0)
    assert all(math.isnan(v) for v in nan_mean_std([None, float("nan")]))
    assert nan_mean_std(iter([1.0, 3.0])) == pytest.approx((2.0, math.sqrt(2.0)))


def test_log_log_slope_is_the_exponent_of_a_power_law():
    assert log_log_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert log_log_slope([4, 8, 16], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    # a point at zero cannot be on a log scale: left out, the rest still fits
    assert log_log_slope([0, 1, 10], [5.0, 2.0, 20.0]) == pytest.approx(1.0)
    assert log_log_slope([5], [1]) is None
    assert log_log_slope([3, 3], [1, 2]) is None  # one x: no slope
