"""The plugin's own tests of its weighting, with mtlsearch's conformance check."""

from __future__ import annotations

import pytest
import torch
from mtlsearch_example_plugin import InverseInitialLoss

from mtlsearch import SharingGraph, TrainConfig, create_space, load_dataset
from mtlsearch.engine.train import build_and_train


def test_each_task_starts_at_one():
    weighting = InverseInitialLoss()
    weighting.setup(["a", "b"], device=torch.device("cpu"))
    first = weighting.combine({"a": torch.tensor(4.0), "b": torch.tensor(0.25)}, None)
    assert float(first) == 2.0
    assert weighting.weights() == {"a": 0.25, "b": 4.0}


def test_trains_a_hard_sharing_network_when_installed():
    from mtlsearch.registry import list_weightings

    if "inverse_initial_loss" not in list_weightings():
        pytest.skip("the plugin is not installed: its entry point is not visible")
    data = load_dataset("synthetic", n_tasks=3, n_samples=200)
    space = create_space("mlp", input_shape=data.input_shape, widths=(8,))
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], 1)
    config = TrainConfig(epochs=1, weighting="inverse_initial_loss")
    result = build_and_train(graph, space, data.tasks, data.train, data.val, config)
    assert sorted(result.weighting["weights"]) == sorted(t.name for t in data.tasks)
    pytest.importorskip("mtlsearch.testing").check_weighting("inverse_initial_loss")
