"""The sharing graph: constructors, queries, validation messages and serialisation."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from mtlsearch import GraphError, SharingGraph, create_space

TASKS = ["a", "b", "c", "d"]
TREE = [[TASKS], [["a", "b"], ["c", "d"]], [["a"], ["b"], ["c", "d"]]]


def test_hard_sharing_is_one_chain_for_every_task():
    g = SharingGraph.hard_sharing(TASKS, 3)
    assert g.branches_per_depth() == [1, 1, 1]
    assert all(g.route(t) == ["b0.0", "b1.0", "b2.0"] for t in TASKS)
    assert g.tasks_through("b1.0") == set(TASKS)


def test_single_task_shares_nothing():
    g = SharingGraph.single_task(TASKS, 2)
    assert g.branches_per_depth() == [4, 4]
    nodes = [set(g.route(t)) for t in TASKS]
    assert all(not (nodes[i] & nodes[j]) for i in range(4) for j in range(i + 1, 4))


def test_tree_from_partitions_round_trips_its_partitions():
    g = SharingGraph.from_partitions(TASKS, TREE)
    assert g.branches_per_depth() == [1, 2, 3]
    assert g.partitions() == TREE
    assert g.route("c") == g.route("d") == ["b0.0", "b1.1", "b2.2"]


def test_partition_that_does_not_refine_is_refused():
    bad = [[TASKS], [["a", "b"], ["c", "d"]], [["a", "c"], ["b"], ["d"]]]
    with pytest.raises(GraphError, match=r"depth 2 does not refine depth 1.*\['a', 'c'\]"):
        SharingGraph.from_partitions(TASKS, bad)


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        ([["a", "b", "c"]], "leaves out tasks \\['d'\\]"),
        ([["a", "b"], ["b", "c", "d"]], "several groups"),
        ([["a", "b", "c", "d", "e"]], "unknown tasks \\['e'\\]"),
    ],
)
def test_bad_partitions_name_the_problem(partition, message):
    with pytest.raises(GraphError, match=message):
        SharingGraph.from_partitions(TASKS, [partition])


def test_masks_and_skips_are_exclusive_and_listed():
    g = SharingGraph.hard_sharing(TASKS, 2)
    g.set_mask("a", "b0.0", [1, 0, 1])
    g.set_skip("a", "b0.0")
    assert g.masks() == {}
    assert g.skips()["a"] == ["b0.0"]
    g.set_mask("a", "b0.0", [1, 0, 1])
    assert g.skips()["a"] == []
    np.testing.assert_array_equal(g.steps("a")[0].mask, [True, False, True])


def test_cycle_is_reported_with_its_nodes():
    g = SharingGraph.hard_sharing(["a"], 2)
    g.nx.add_edge("b1.0", "b0.0", tasks={"a"})
    with pytest.raises(GraphError, match="cycle"):
        g.validate()


def test_task_with_no_route_is_named():
    g = SharingGraph.hard_sharing(["a", "b"], 2)
    g.clear_route("b")
    with pytest.raises(GraphError, match="task 'b' has no route out of the input"):
        g.validate()


def test_task_with_two_routes_is_named():
    g = SharingGraph.hard_sharing(["a"], 2)
    extra = g.add_block(1)
    g.nx.add_edge("b0.0", extra, tasks={"a"})
    g.nx.add_edge(extra, "head:a", tasks={"a"})
    with pytest.raises(GraphError, match="task 'a' has two routes out of node 'b0.0'"):
        g.validate()


def test_route_out_of_order_is_refused():
    g = SharingGraph(["a"], 3)
    n0, n1, n2 = g.add_block(0), g.add_block(1), g.add_block(2)
    g.set_route("a", [n0, n2, n1])
    with pytest.raises(GraphError, match="visits block 1 \\(node 'b1.0'\\) after block 2"):
        g.validate()


def test_route_leaving_out_a_block_explains_skips():
    g = SharingGraph(["a"], 3)
    g.set_route("a", [g.add_block(0), g.add_block(2)])
    with pytest.raises(GraphError, match="leaves out blocks \\[1\\].*set_skip"):
        g.validate()


def test_unknown_block_index_is_refused():
    g = SharingGraph(["a"], 2)
    with pytest.raises(GraphError, match="outside 0..1"):
        g.add_block(5)
    g = SharingGraph.hard_sharing(["a"], 2)
    g.nx.nodes["b1.0"]["index"] = 7
    with pytest.raises(GraphError, match="node 'b1.0' has block index 7"):
        g.validate()


def test_mask_length_must_match_block_channels():
    space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    g = SharingGraph.hard_sharing(["a"], 2)
    g.set_mask("a", "b1.0", [1] * 5)
    with pytest.raises(GraphError, match="node 'b1.0' has 5 entries but block 1 has 8 channels"):
        g.validate(space)


def test_skipping_an_unskippable_block_is_refused():
    space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    g = SharingGraph.hard_sharing(["a"], 2)
    g.set_skip("a", "b0.0")  # 4 -> 8 features: no identity, no projection
    with pytest.raises(GraphError, match="cannot be skipped"):
        g.validate(space)


def test_graph_depth_must_match_space():
    space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    with pytest.raises(GraphError, match="3 block depths but search space 'mlp' has 2"):
        SharingGraph.hard_sharing(["a"], 3).validate(space)


def _rich_graph() -> SharingGraph:
    g = SharingGraph.from_partitions(
        TASKS, TREE, space={"name": "mlp", "kwargs": {"widths": [3, 3, 3]}}, info={"alpha": 0.5}
    )
    rng = np.random.default_rng(0)
    g.set_mask("a", "b0.0", rng.integers(0, 2, 3))
    g.set_mask("b", "b0.0", [1, 1, 0])
    g.set_skip("c", "b2.2")
    return g


def test_json_round_trip_is_lossless():
    g = _rich_graph()
    text = g.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 1 and data["space"]["name"] == "mlp"
    again = SharingGraph.from_json(text)
    assert again == g
    np.testing.assert_array_equal(again.steps("a")[0].mask, g.steps("a")[0].mask)
    assert again.skips()["c"] == ["b2.2"]
    assert again.partitions() == g.partitions()


def test_json_file_round_trip(tmp_path):
    g = _rich_graph()
    path = tmp_path / "g.json"
    g.to_json(path)
    assert SharingGraph.from_json(path) == g


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=99), "newer than this mtlsearch"),
        (lambda d: d.update(format="other"), "field 'format'"),
        (lambda d: d.update(tasks="abc"), "field 'tasks'"),
        (lambda d: d["graph"]["edges"].append({"source": "x", "target": "y", "tasks": []}), "names a node"),
        (lambda d: d["graph"]["nodes"][-1].update(index="two"), "'index' must be an integer"),
        (lambda d: d["graph"]["nodes"][-1].update(masks={"a": "012"}), "string of 0s and 1s"),
    ],
)
def test_malformed_json_gives_clear_errors(mutate, message):
    data = _rich_graph().to_dict()
    mutate(data)
    with pytest.raises(GraphError, match=message):
        SharingGraph.from_dict(data)


def test_invalid_json_text():
    with pytest.raises(GraphError, match="not valid JSON"):
        SharingGraph.from_json("{not json")


def test_graphml_export_is_readable_by_networkx(tmp_path):
    g = _rich_graph()
    path = tmp_path / "g.graphml"
    g.write_graphml(path)
    back = nx.read_graphml(path)
    assert set(back.nodes) == set(g.nx.nodes)
    assert back.edges["b0.0", "b1.1"]["tasks"] == "c,d"
    assert json.loads(back.nodes["b0.0"]["masks"])["b"] == "110"
    assert back.nodes["b2.2"]["skips"] == "c"


def test_all_routes_in_one_pass_equal_each_route():
    tasks = [f"t{i:02d}" for i in range(40)]
    partitions = [[tasks], [tasks[:20], tasks[20:]], [tasks[:5], tasks[5:20], tasks[20:]],
                  [[t] for t in tasks]]
    g = SharingGraph.from_partitions(tasks, partitions)
    assert g.routes() == {t: g.route(t) for t in tasks}


def test_all_routes_report_a_broken_route_like_route_does():
    g = SharingGraph.hard_sharing(["a", "b"], 2)
    g.clear_route("b")
    with pytest.raises(GraphError, match="task 'b' has no route out of the input"):
        g.routes()
