"""Same seed, same search: proposals, graphs and metrics repeat exactly on the CPU (issue 8)."""

from __future__ import annotations

import pytest

from mtlsearch.engine.train import TrainConfig
from mtlsearch.registry import list_strategies
from mtlsearch.study import search


def _run(strategy: str) -> list[tuple]:
    result = search(strategy=strategy, dataset="synthetic", space="mlp", trials=2, seed=3,
                    progress=False, pruner="none",
                    dataset_kwargs={"n_tasks": 3, "n_samples": 160},
                    space_kwargs={"widths": [8, 8]}, budget=TrainConfig(epochs=1))
    return [(t.state.name, t.params, t.user_attrs.get("graph"), t.user_attrs.get("metrics"),
             t.user_attrs.get("delta_mtl"), t.user_attrs.get("fail_reason"))
            for t in result.study.trials]


@pytest.mark.parametrize("strategy", list_strategies())
def test_same_seed_same_search(strategy):
    first, second = _run(strategy), _run(strategy)
    assert any(row[0] == "COMPLETE" for row in first), first
    assert first == second
