"""The plugin's own tests: what a third-party author would run in their CI."""

from __future__ import annotations

import pytest
from mtlsearch_example_plugin import SplitLast, split_last_partitions

from mtlsearch import SearchContext, TrainConfig, create_space, load_dataset, run_strategy


def test_partitions_branch_at_the_split():
    parts = split_last_partitions(["a", "b", "c"], 4, 2)
    assert parts[:2] == [[["a", "b", "c"]]] * 2
    assert parts[2:] == [[["a"], ["b"], ["c"]]] * 2


def test_one_trial_runs():
    data = load_dataset("synthetic", n_tasks=3, n_samples=200)
    space = create_space("mlp", input_shape=data.input_shape, widths=(8, 8))
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1))
    result = run_strategy(SplitLast(), ctx, params={"split": 1})
    assert result.info == {"split": 1, "shared_blocks": 1}


def test_conformance():
    # mtlsearch's shared conformance suite: forward/backward, graph validity, export.
    testing = pytest.importorskip("mtlsearch.testing")
    testing.check_strategy(SplitLast)


def test_registered_with_its_tiny_size():
    # Installed (pip install -e .), the entry point registers it with its tiny settings, and
    # the conformance check builds it from them when given the name.
    from mtlsearch.registry import list_strategies, tiny_settings

    if "split_last" not in list_strategies():
        pytest.skip("the plugin is not installed: its entry point is not visible")
    assert tiny_settings("strategy", "split_last") == {"max_split": 1}
    pytest.importorskip("mtlsearch.testing").check_strategy("split_last")
