"""Δ_MTL (AdaShare eq. 6) against hand computations, and evaluation over a dataset."""

from __future__ import annotations

import pytest
import torch

from mtlsearch import (
    SharingGraph,
    TaskSpec,
    create_space,
    delta_mtl,
    evaluate,
    from_arrays,
    materialize,
)


def test_delta_mtl_by_hand_with_lower_is_better_metrics():
    tasks = [TaskSpec("cls"), TaskSpec("reg", kind="regression")]
    reference = {"cls": {"accuracy": 0.80}, "reg": {"mae": 2.0, "rmse": 4.0}}
    metrics = {"cls": {"accuracy": 0.88}, "reg": {"mae": 1.0, "rmse": 5.0}}
    result = delta_mtl(metrics, reference, tasks)
    # cls: +10%; reg: mean(+50%, -25%) = +12.5%; overall = 11.25%.
    assert result.per_task == pytest.approx({"cls": 10.0, "reg": 12.5})
    assert result.overall == pytest.approx(11.25)


def test_delta_mtl_of_the_reference_is_zero():
    tasks = [TaskSpec("a")]
    ref = {"a": {"accuracy": 0.7}}
    assert delta_mtl(ref, ref, tasks).overall == 0.0


def test_evaluate_matches_a_manual_pass():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(120, 4, generator=gen)
    splits = from_arrays(X, {"a": (X[:, 0] > 0).float()})
    space = create_space("mlp", input_shape=(4,), widths=(8,))
    model = materialize(SharingGraph.hard_sharing(["a"], 1), space, splits.tasks).eval()
    metrics = evaluate(model, splits.val, batch_size=7)
    with torch.no_grad():
        logits = model(splits.val.inputs)["a"].reshape(-1)
    target = splits.val.targets["a"]
    manual_acc = float(((logits > 0).float() == target).float().mean())
    manual_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
    assert metrics["a"]["accuracy"] == pytest.approx(manual_acc)
    assert metrics["a"]["loss"] == pytest.approx(manual_loss, rel=1e-5)


def test_routed_evaluation_splits_tasks_into_chunks_with_the_same_metrics():
    import numpy as np

    from mtlsearch.engine import scoring

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 4, generator=gen)
    names = [f"t{i}" for i in range(6)]
    splits = from_arrays(X, {n: (X[:, i % 4] > 0).float() for i, n in enumerate(names)})
    space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    graph = SharingGraph.hard_sharing(names, 2)
    rng = np.random.default_rng(0)
    for n in names:
        for node in graph.route(n):
            graph.set_mask(n, node, rng.integers(0, 2, 8))
    model = materialize(graph, space, splits.tasks).eval()
    whole = evaluate(model, splits.val, batch_size=50)
    # 6 distinct routes x 50 rows x 8 features x 4 bytes = 9600 bytes: force chunks of 2 tasks.
    assert scoring.task_chunks(model, names, 50, max_bytes=3200) == [names[0:2], names[2:4], names[4:6]]
    assert scoring.task_chunks(model, names, 50, max_bytes=10**6) == [names]
    chunked = evaluate(model, splits.val, batch_size=50, max_memory=3200)
    for n in names:
        assert chunked[n]["accuracy"] == whole[n]["accuracy"]
        assert chunked[n]["loss"] == pytest.approx(whole[n]["loss"], rel=1e-6)
