"""Task partitions of sharing graphs and their adjusted Rand index, against hand computations.

ARI = (index - expected) / (max - expected) with index = sum_ij C(n_ij, 2),
expected = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2), max = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2,
n_ij the contingency table, a_i and b_j its row and column sums. Each expected value below is
worked out in its comment.
"""

from __future__ import annotations

import numpy as np
import pytest

from mtlsearch import SharingGraph
from mtlsearch.errors import GraphError
from mtlsearch.graph.grouping import (
    ari_per_depth,
    discovered_grouping,
    grouping_ari,
    last_shared_depth,
    planted_labels,
    task_partition,
)

TASKS4 = ["a", "b", "c", "d"]


def tree4() -> SharingGraph:
    """Shared block 0, {a, b} | {c, d} at block 1, {a, b} | {c} | {d} at block 2."""
    return SharingGraph.from_partitions(
        TASKS4,
        [[TASKS4], [["a", "b"], ["c", "d"]], [["a", "b"], ["c"], ["d"]]],
    )


def test_tree_partition_per_depth_features_and_nodes_agree():
    g = tree4()
    expected = [[TASKS4], [["a", "b"], ["c", "d"]], [["a", "b"], ["c"], ["d"]]]
    for depth, want in enumerate(expected):
        assert task_partition(g, depth) == want
        assert task_partition(g, depth, by="nodes") == want


def test_groups_follow_task_order_not_node_names():
    # Group "b0.0" holds c and d, "b0.1" holds a and b: groups are ordered by their first task.
    g = SharingGraph.from_partitions(TASKS4, [[["c", "d"], ["a", "b"]]])
    assert task_partition(g, 0) == [["a", "b"], ["c", "d"]]


def test_skip_splits_features_but_not_nodes():
    g = SharingGraph.hard_sharing(["a", "b", "c"], 3)
    g.set_skip("b", "b1.0")  # b skips block 1: from depth 1 on its features differ
    assert task_partition(g, 0) == [["a", "b", "c"]]
    assert task_partition(g, 1) == [["a", "c"], ["b"]]
    assert task_partition(g, 2) == [["a", "c"], ["b"]]  # a prefix once split stays split
    assert task_partition(g, 2, by="nodes") == [["a", "b", "c"]]
    assert last_shared_depth(g) == 2
    assert discovered_grouping(g) == [["a", "c"], ["b"]]


def test_masks_split_only_where_they_differ():
    g = SharingGraph.hard_sharing(["a", "b", "c"], 2)
    same = np.array([1, 0, 1, 1])
    g.set_mask("a", "b0.0", same)
    g.set_mask("b", "b0.0", same.copy())  # equal masks: same features
    g.set_mask("c", "b0.0", [1, 1, 0, 0])
    g.set_mask("a", "b1.0", [1, 1, 0, 0])
    g.set_mask("b", "b1.0", [0, 0, 1, 1])
    assert task_partition(g, 0) == [["a", "b"], ["c"]]
    assert task_partition(g, 1) == [["a"], ["b"], ["c"]]
    assert last_shared_depth(g) == 0
    assert discovered_grouping(g) == [["a", "b"], ["c"]]
    assert task_partition(g, 1, by="nodes") == [["a", "b", "c"]]


def test_last_shared_depth_and_discovered_grouping():
    assert last_shared_depth(tree4()) == 2
    assert discovered_grouping(tree4()) == [["a", "b"], ["c"], ["d"]]
    # A tree ending in single tasks: the last shared depth is the one above.
    g = SharingGraph.from_partitions(
        TASKS4, [[TASKS4], [["a", "b"], ["c", "d"]], [["a"], ["b"], ["c"], ["d"]]]
    )
    assert last_shared_depth(g) == 1
    assert discovered_grouping(g) == [["a", "b"], ["c", "d"]]
    single = SharingGraph.single_task(TASKS4, 3)
    assert last_shared_depth(single) is None
    assert discovered_grouping(single) == [["a"], ["b"], ["c"], ["d"]]
    hard = SharingGraph.hard_sharing(TASKS4, 3)
    assert last_shared_depth(hard) == 2
    assert discovered_grouping(hard) == [TASKS4]


def test_ari_hand_computations():
    planted = [["a", "b"], ["c", "d"]]
    # Found {a,b},{c},{d}: n_ij (2, 1, 1) -> index 1; rows (2, 2) -> 2; columns (2, 1, 1) -> 1;
    # expected 2*1/6 = 1/3; max 1.5; ARI = (2/3) / (7/6) = 4/7.
    assert grouping_ari(tree4(), planted) == pytest.approx(4 / 7)
    # At depth 1 the tree is exactly the planted grouping.
    assert grouping_ari(tree4(), planted, depth=1) == pytest.approx(1.0)
    # Crossed grouping {a,c},{b,d}: index 0; rows 2, columns 2; expected 4/6; max 2;
    # ARI = (0 - 2/3) / (2 - 2/3) = -1/2.
    crossed = SharingGraph.from_partitions(TASKS4, [[["a", "c"], ["b", "d"]]])
    assert grouping_ari(crossed, planted) == pytest.approx(-0.5)


def test_ari_six_tasks_hand_computation():
    tasks = ["t0", "t1", "t2", "t3", "t4", "t5"]
    planted = {"t0": "x", "t1": "x", "t2": "x", "t3": "y", "t4": "y", "t5": "y"}
    g = SharingGraph.from_partitions(
        tasks, [[tasks], [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]]]
    )
    # n_ij: (2, 1, 1, 2) -> index 2; rows (3, 3) -> 6; columns (2, 2, 2) -> 3; C(6,2) = 15;
    # expected 6*3/15 = 1.2; max 4.5; ARI = 0.8 / 3.3 = 8/33.
    assert grouping_ari(g, planted) == pytest.approx(8 / 33)
    assert ari_per_depth(g, planted) == pytest.approx([0.0, 8 / 33])


def test_trivial_architectures_have_ari_zero():
    planted = [["a", "b"], ["c", "d"]]
    # One group (hard sharing): index 1+1 = 2; rows 2; column C(4,2) = 6; expected 2*6/6 = 2;
    # max 4; ARI = 0/2 = 0. Singletons (single task): index 0; rows 2; columns 0; expected 0;
    # max 1; ARI = 0/1 = 0.
    assert grouping_ari(SharingGraph.hard_sharing(TASKS4, 2), planted) == 0.0
    assert grouping_ari(SharingGraph.single_task(TASKS4, 2), planted) == 0.0


def test_accepts_graph_dict_and_label_mapping():
    g = tree4()
    planted = {"a": 7, "b": 7, "c": 3, "d": 3}
    assert grouping_ari(g.to_dict(), planted, depth=1) == pytest.approx(1.0)
    assert task_partition(g.to_dict(), 2) == [["a", "b"], ["c"], ["d"]]


def test_planted_labels():
    assert planted_labels([["b"], ["a", "c"]], ["a", "b", "c"]) == [0, 1, 0]
    assert planted_labels({"a": "g2", "b": "g1", "c": "g2"}, ["a", "b", "c"]) == [0, 1, 0]


@pytest.mark.parametrize(
    "planted, message",
    [
        ([["a", "b"], ["c"]], "leaves out tasks \\['d'\\]"),
        ([["a", "b"], ["c", "d", "e"]], "names tasks \\['e'\\]"),
        ([["a", "b"], ["b", "c", "d"]], "task 'b' is in several planted groups"),
        (["ab", "cd"], "is a string"),
    ],
)
def test_bad_planted_grouping_is_named(planted, message):
    with pytest.raises(ValueError, match=message):
        grouping_ari(tree4(), planted)


def test_bad_depth_and_mode():
    with pytest.raises(GraphError, match="use 0..2"):
        task_partition(tree4(), 3)
    with pytest.raises(GraphError, match="not a block depth"):
        task_partition(tree4(), -1)
    with pytest.raises(ValueError, match="use one of \\['features', 'nodes'\\]"):
        task_partition(tree4(), 0, by="weights")
    with pytest.raises(TypeError, match="SharingGraph"):
        task_partition("graph.json", 0)  # type: ignore[arg-type]
