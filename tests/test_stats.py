"""Paired statistics over seeds, against hand computations."""

from __future__ import annotations

import math

import pytest

from mtlsearch.stats import mean_std, paired_difference
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
