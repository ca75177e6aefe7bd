"""Tests of the pictures: files written, and the figures show what they should."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.viz import (
    draw_architecture,
    draw_masks,
    draw_skip_grid,
    plot_pareto,
    plot_task_metrics,
    task_order,
)

TASKS6 = ["left_even", "left_big", "right_even", "right_big", "sum_even", "sum_big"]
TASKS40 = [f"attr_{i:02d}" for i in range(40)]
CHANNELS = (16, 32, 32, 32)  # small_cnn's default blocks
SPACE = {"name": "small_cnn", "kwargs": {"input_shape": [1, 12, 24]}}


def _tree6() -> SharingGraph:
    t = TASKS6
    return SharingGraph.from_partitions(
        t,
        [[t], [t[:4], t[4:]], [t[:2], t[2:4], t[4:]], [t[:2], t[2:3], t[3:4], t[4:]]],
        space=SPACE,
    )


def _tree40() -> SharingGraph:
    t = TASKS40
    parts = [[t], [t[:15], t[15:28], t[28:]], [t[:5], t[5:15], t[15:28], t[28:]], [[x] for x in t]]
    return SharingGraph.from_partitions(t, parts, space=SPACE)


def _masked(tasks=TASKS6) -> SharingGraph:
    graph = SharingGraph.hard_sharing(tasks, len(CHANNELS), space=SPACE)
    rng = np.random.default_rng(0)
    for task in tasks:
        for node in graph.route(task):
            graph.set_mask(task, node, rng.random(CHANNELS[graph.node_index(node)]) < 0.7)
    return graph


def _skipping() -> SharingGraph:
    graph = SharingGraph.hard_sharing(TASKS6, len(CHANNELS), space=SPACE)
    for task in TASKS6[:3]:
        graph.set_skip(task, "b2.0")
    for task in TASKS6:
        graph.set_skip(task, "b3.0")
    return graph


def _block_boxes(fig: Figure) -> list[str]:
    return [
        p.get_gid()[len("block:") :]
        for ax in fig.get_axes()
        for p in ax.patches
        if (p.get_gid() or "").startswith("block:")
    ]


def _task_labels(fig: Figure) -> list[str]:
    return [
        t.get_text()
        for ax in fig.get_axes()
        for t in ax.texts
        if (t.get_gid() or "").startswith("task:")
    ]


def _assert_files(stem) -> None:
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:3000]


# --------------------------------------------------------------------------- architecture
@pytest.mark.parametrize(
    "make",
    [lambda: SharingGraph.hard_sharing(TASKS6, 4, space=SPACE), _tree6],
    ids=["hard", "tree"],
)
def test_architecture_has_one_box_per_block_node(tmp_path, make):
    graph = make()
    fig = draw_architecture(graph, tmp_path / "arch.png")
    _assert_files(tmp_path / "arch")
    assert sorted(_block_boxes(fig)) == graph.block_nodes()
    assert sorted(_task_labels(fig)) == sorted(TASKS6)
    assert len(fig.get_axes()) == 1  # no mask or skip panel
    edges = [p for p in fig.get_axes()[0].patches if (p.get_gid() or "").startswith("edge:")]
    assert len(edges) == graph.nx.number_of_edges()


def test_tree_colours_branches_by_leaf_group():
    fig = draw_architecture(_tree6())
    ax = fig.get_axes()[0]
    edge_of = {p.get_gid(): p.get_edgecolor() for p in ax.patches if p.get_gid()}
    # b3.0 serves one leaf group (left_*), b0.0 all of them: different colours.
    assert edge_of["block:b3.0"] != edge_of["block:b0.0"]
    assert edge_of["block:b3.0"] == edge_of["block:b2.0"]  # same group all the way down


def test_rows_keep_branches_together():
    graph = SharingGraph.from_partitions(["a", "b", "c", "d"], [[["a", "c"], ["b", "d"]]])
    assert task_order(graph) == ["a", "c", "b", "d"]


def test_forty_tasks_stay_readable(tmp_path):
    fig = draw_architecture(_tree40(), tmp_path / "tree40")
    _assert_files(tmp_path / "tree40")
    labels = [t for t in fig.get_axes()[0].texts if (t.get_gid() or "").startswith("task:")]
    assert len(labels) == 40 and min(t.get_fontsize() for t in labels) >= 6
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: -b.y1)
    for upper, lower in zip(boxes, boxes[1:]):
        assert lower.y1 <= upper.y0 + 0.5  # no two task names overlap
    assert len(_block_boxes(fig)) == len(_tree40().block_nodes())


def test_masks_add_a_heat_map_per_masked_block(tmp_path):
    graph = _masked()
    fig = draw_architecture(graph, tmp_path / "masked")
    _assert_files(tmp_path / "masked")
    heat = [ax for ax in fig.get_axes() if ax.images]
    assert len(heat) == len(CHANNELS)
    order = task_order(graph)
    for depth, ax in enumerate(heat):
        shown = np.ma.getdata(ax.images[0].get_array())
        assert shown.shape == (len(TASKS6), CHANNELS[depth])
        mask = graph.steps(order[2])[depth].mask
        np.testing.assert_array_equal(shown[2], mask.astype(float))
    assert [t.get_text() for t in heat[0].get_yticklabels()] == order


def test_skips_add_a_task_by_block_grid(tmp_path):
    graph = _skipping()
    fig = draw_architecture(graph)
    grids = [ax for ax in fig.get_axes() if ax.images]
    assert len(grids) == 1
    shown = np.asarray(grids[0].images[0].get_array())
    expected = np.ones((6, 4))
    expected[:3, 2] = 0
    expected[:, 3] = 0
    np.testing.assert_array_equal(shown, expected)
    # The block every task skips is drawn hatched; the partly skipped one dashed.
    patches = {p.get_gid(): p for p in fig.get_axes()[0].patches if p.get_gid()}
    assert patches["block:b3.0"].get_hatch() == "///"
    assert patches["block:b2.0"].get_hatch() is None
    assert patches["block:b2.0"].get_linestyle() != "solid"


def test_many_blocks_stack_the_panels():
    graph = _masked(TASKS6[:3])
    deep = SharingGraph.hard_sharing(TASKS6[:3], 17)
    for task in TASKS6[:3]:
        for node in deep.route(task):
            deep.set_mask(task, node, np.arange(8) % 2)
        deep.set_skip(task, "b16.0")
    fig = draw_architecture(deep)
    width, height = fig.get_size_inches()
    assert width < 25 and height > width / 3  # stacked, not one very long strip
    assert len([ax for ax in fig.get_axes() if ax.images]) == 16 + 1  # b16: skip, no mask
    assert len(_block_boxes(draw_architecture(graph))) == 4


def test_standalone_masks_and_skip_grid(tmp_path):
    fig = draw_masks(_masked(), tmp_path / "masks.svg")
    _assert_files(tmp_path / "masks")
    assert len([ax for ax in fig.get_axes() if ax.images]) == len(CHANNELS)
    fig = draw_skip_grid(_skipping(), tmp_path / "skips")
    _assert_files(tmp_path / "skips")
    assert [t.get_text() for t in fig.get_axes()[0].get_yticklabels()] == TASKS6


def test_accepts_a_model_or_a_dict():
    space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    model = materialize(
        SharingGraph.hard_sharing(["a", "b"], 2), space, [TaskSpec("a"), TaskSpec("b")]
    )
    assert _block_boxes(draw_architecture(model)) == ["b0.0", "b1.0"]
    assert _block_boxes(draw_architecture(model.graph.to_dict())) == ["b0.0", "b1.0"]


# ------------------------------------------------------------------------------- results
def _front_line(fig: Figure):
    ax = fig.get_axes()[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata())


def test_pareto_front_is_computed_and_connected(tmp_path):
    points = [
        {"delta_mtl": 1.0, "params": 1000, "label": "hard_sharing"},
        {"delta_mtl": 3.0, "params": 5000, "label": "random_tree"},
        {"delta_mtl": 2.0, "params": 8000, "label": "random_tree"},  # dominated
        {"delta_mtl": 4.0, "params": 90000, "label": "single_task"},
        {"delta_mtl": float("nan"), "params": 10, "label": "broken"},  # ignored
    ]
    fig = plot_pareto(points, tmp_path / "pareto", title="test")
    _assert_files(tmp_path / "pareto")
    xs, ys = _front_line(fig)
    assert xs.tolist() == [1000, 5000, 90000] and ys.tolist() == [1.0, 3.0, 4.0]
    ax = fig.get_axes()[0]
    assert ax.get_xscale() == "log"
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {
        "hard_sharing",
        "random_tree",
        "single_task",
        "Pareto front",
    }


def test_pareto_flags_given_are_used():
    points = [
        {"delta_mtl": 1.0, "params": 1000, "label": "a", "pareto": False},
        {"delta_mtl": 0.5, "params": 2000, "label": "a", "pareto": True},
    ]
    xs, _ = _front_line(plot_pareto(points))
    assert xs.tolist() == [2000]
    assert plot_pareto([]).get_axes()[0].texts  # "no finite points" message, no crash


def test_task_metrics_grouped_bars(tmp_path):
    table = {
        "hard_sharing": {"a": 0.8, "b": 0.7, "c": 0.9},
        "random_tree": {"a": (0.85, 0.02), "b": (0.75, 0.03), "c": (0.88, 0.01)},
        "single_task": {"a": 0.82, "b": 0.71},  # c missing: a gap
    }
    fig = plot_task_metrics(table, tmp_path / "metrics", metric="accuracy")
    _assert_files(tmp_path / "metrics")
    ax = fig.get_axes()[0]
    assert len(ax.containers) >= 3
    bars = [c for c in ax.containers if hasattr(c, "patches") and c.get_label() in table]
    assert [c.get_label() for c in bars] == list(table)
    assert all(len(c.patches) == 3 for c in bars)
    assert bars[1].errorbar is not None and bars[0].errorbar is None
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "accuracy"


def test_task_metrics_with_many_tasks_lie_down():
    table = {s: {t: 0.5 for t in TASKS40} for s in ("hard", "tree")}
    ax = plot_task_metrics(table, metric="auc").get_axes()[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == TASKS40
    assert ax.get_xlabel() == "auc"


def test_names_are_drawn_literally_not_as_mathtext(tmp_path):
    # valid task names ("a$^$b") are data: every picture must draw them as they are
    names = ["a$^$b", "x_$1", "plain"]
    graph = SharingGraph.from_partitions(names, [[names], [["a$^$b", "x_$1"], ["plain"]]])
    fig = draw_architecture(graph, tmp_path / "tree")
    assert (tmp_path / "tree.png").exists()
    shown = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert "a$^$b" in shown or any("a$^$b" in s for s in shown)
    plot_task_metrics({"s": {n: 0.5 for n in names}}, tmp_path / "metrics")
    assert (tmp_path / "metrics.png").exists()
