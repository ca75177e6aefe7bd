"""A small end-to-end run on multi_digits: single-task, hard sharing and a random tree."""

from __future__ import annotations

import pytest

from mtlsearch import (
    SearchContext,
    TrainConfig,
    create_space,
    create_strategy,
    load_dataset,
    run_strategy,
)
from mtlsearch.graph.summary import summarize


@pytest.fixture(scope="module")
def ctx():
    data = load_dataset("multi_digits", n_train=600, n_val=200, n_test=200, seed=0)
    space = create_space("small_cnn", input_shape=data.input_shape, channels=(8, 16, 16, 16))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=3, batch_size=32, lr=3e-3), seed=0)


def test_baselines_and_random_tree_on_multi_digits(ctx):
    single = run_strategy(create_strategy("single_task"), ctx)
    hard = run_strategy(create_strategy("hard_sharing"), ctx)
    tree = run_strategy(create_strategy("random_tree"), ctx, params={"branch_depth": 2, "groups": 3, "tree_seed": 0})

    # The single-task strategy reproduces the cached reference exactly (same seed, same run).
    assert single.delta_mtl == 0.0 and single.delta_mtl_test == 0.0
    reference = ctx.reference()
    assert single.metrics["val"] == reference["val"]

    # Parameter counts, checked against the space's own block costs.
    blocks = sum(ctx.space.block_cost(i).params for i in range(ctx.space.num_blocks))
    head = ctx.space.head_cost(ctx.tasks[0]).params
    n = len(ctx.tasks)
    assert hard.params == blocks + n * head
    assert single.params == n * blocks + n * head
    shared = sum(ctx.space.block_cost(i).params for i in range(2))
    own = sum(ctx.space.block_cost(i).params for i in range(2, 4))
    assert tree.params == shared + 3 * own + n * head
    assert hard.params < tree.params < single.params
    assert hard.macs < tree.macs < single.macs

    # Every task learned something, and Δ_MTL is the mean of the per-task changes.
    for result in (hard, tree):
        accuracies = [m["accuracy"] for m in result.metrics["val"].values()]
        assert sum(accuracies) / n > 0.6, accuracies
        assert result.delta_mtl == pytest.approx(sum(result.per_task_delta.values()) / n)
        assert -50 < result.delta_mtl < 50
    assert tree.info["branch_depth"] == 2 and len(tree.info["partition"]) == 3
    assert summarize(ctx.new_graph("hard_sharing"), ctx.space, ctx.tasks).params == hard.params
