"""Pictures of sharing graphs: the tree of blocks, per-task channel masks, skip grids.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path``, saves it as
both ``<stem>.png`` and ``<stem>.svg`` (a ``.png``/``.svg``/``.pdf`` suffix on ``path`` is
replaced). Figures are built without :mod:`matplotlib.pyplot`, so nothing touches a display or
the global figure list, and they are freed as soon as you drop them.

Example:
    >>> from mtlsearch import SharingGraph
    >>> g = SharingGraph.from_partitions(["a", "b", "c"], [[["a", "b", "c"]], [["a", "b"], ["c"]]])
    >>> fig = draw_architecture(g)
    >>> draw_architecture(g, "tree")  # writes tree.png and tree.svg  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import FancyBboxPatch, Patch, PathPatch
from matplotlib.path import Path as MplPath

from mtlsearch.graph.sharing import INPUT, SharingGraph
from mtlsearch.viz.figures import palette as _palette
from mtlsearch.viz.figures import plain_text, save_figure

__all__ = ["draw_architecture", "draw_masks", "draw_skip_grid", "task_order"]

SHARED_COLOR = "#6b6b6b"  # nodes and edges used by several leaf groups
ON_COLOR = "#1f4e8c"  # a channel that is on / a block that runs
OFF_COLOR = "#ffffff"
SKIP_COLOR = "#f4a259"
MISSING_COLOR = "#d9d9d9"
BOX_WIDTH = 0.52  # in depth columns
ROW_GAP = 0.3  # vertical space between boxes of neighbouring rows, in task rows


# ---------------------------------------------------------------------------------- helpers
def _as_graph(graph: Any) -> SharingGraph:
    """Accept a graph, its ``to_dict()`` output or anything with a ``.graph`` (a model)."""
    if isinstance(graph, SharingGraph):
        return graph
    if isinstance(graph, Mapping):
        return SharingGraph.from_dict(dict(graph))
    inner = getattr(graph, "graph", None)
    if isinstance(inner, SharingGraph):
        return inner
    raise TypeError(f"expected a SharingGraph (or a model with .graph), got {type(graph).__name__}")


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lighten(color: Any, amount: float = 0.7) -> tuple[float, float, float, float]:
    r, g, b, _ = to_rgba(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


def _row_inches(n_rows: int) -> float:
    """Height of one task row: roomy for a few tasks, compact (still legible) for many."""
    if n_rows <= 6:
        return 0.45
    if n_rows <= 15:
        return 0.34
    return 0.24


def _font(row_in: float, cap: float = 10.0) -> float:
    """A font size (points) that fits in a row of ``row_in`` inches."""
    return max(5.0, min(cap, row_in * 72 * 0.55))


def task_order(graph: SharingGraph) -> list[str]:
    """Tasks ordered so that every branch's tasks are neighbours (rows of the pictures).

    Example:
        >>> g = SharingGraph.from_partitions(["a", "b", "c"], [[["a", "c"], ["b"]]])
        >>> task_order(g)
        ['a', 'c', 'b']
    """
    routes = {t: graph.route(t) for t in graph.tasks}

    def order(tasks: list[str], depth: int) -> list[str]:
        if depth >= graph.num_blocks or len(tasks) <= 1:
            return tasks
        groups: dict[str, list[str]] = {}
        for t in tasks:  # groups keep the order of their first task
            groups.setdefault(routes[t][depth], []).append(t)
        return [t for g in groups.values() for t in order(g, depth + 1)]

    return order(list(graph.tasks), 0)


# ------------------------------------------------------------------------ architecture layout
@dataclass
class _Box:
    node: str
    x: float
    top: float
    bottom: float
    tasks: list[str]

    @property
    def y(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass
class _Layout:
    order: list[str]
    row: dict[str, int]
    boxes: dict[str, _Box]
    group_of: dict[str, int]
    colors: list[tuple[float, float, float, float]]


def _layout(graph: SharingGraph) -> _Layout:
    order = task_order(graph)
    row = {t: i for i, t in enumerate(order)}
    n = len(order)
    boxes = {INPUT: _Box(INPUT, 0.0, -0.5 + ROW_GAP / 2, n - 0.5 - ROW_GAP / 2, list(order))}
    for depth in range(graph.num_blocks):
        placed: list[_Box] = []
        for node in graph.block_nodes(depth):
            tasks = sorted(graph.tasks_through(node), key=row.__getitem__)
            rows = [row[t] for t in tasks]
            if rows and rows[-1] - rows[0] + 1 == len(rows):  # a contiguous branch: span it
                top, bottom = rows[0] - 0.5 + ROW_GAP / 2, rows[-1] + 0.5 - ROW_GAP / 2
            else:  # routes that merge again (rare): a one-row box at the tasks' mean
                mid = float(np.mean(rows)) if rows else 0.0
                top, bottom = mid - 0.5 + ROW_GAP / 2, mid + 0.5 - ROW_GAP / 2
            placed.append(_Box(node, depth + 1.0, top, bottom, tasks))
        placed.sort(key=lambda b: b.y)
        for prev, box in zip(placed, placed[1:]):  # push overlapping boxes apart
            shift = prev.bottom + ROW_GAP - box.top
            if shift > 0:
                box.top, box.bottom = box.top + shift, box.bottom + shift
        boxes.update({b.node: b for b in placed})
    leaves = graph.partitions()[-1] if graph.num_blocks else [list(order)]
    leaves.sort(key=lambda g: min(row[t] for t in g))
    group_of = {t: i for i, g in enumerate(leaves) for t in g}
    return _Layout(order, row, boxes, group_of, _palette(len(leaves)))


def _color_for(tasks: Sequence[str], layout: _Layout) -> Any:
    groups = {layout.group_of[t] for t in tasks}
    return layout.colors[groups.pop()] if len(groups) == 1 else SHARED_COLOR


def _curve(x0: float, y0: float, x1: float, y1: float) -> MplPath:
    """A horizontal S-curve from (x0, y0) to (x1, y1)."""
    mid = (x0 + x1) / 2
    return MplPath(
        [(x0, y0), (mid, y0), (mid, y1), (x1, y1)],
        [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4],
    )


def _draw_edges(ax: Any, graph: SharingGraph, layout: _Layout) -> None:
    n = len(graph.tasks)
    head_x = graph.num_blocks + 1.0
    for u, v, data in graph.nx.edges(data=True):
        tasks = sorted(data["tasks"], key=layout.row.__getitem__)
        if not tasks:
            continue
        src = layout.boxes[u]
        if v in layout.boxes:
            dst_x, dst_y = layout.boxes[v].x - BOX_WIDTH / 2, layout.boxes[v].y
            skipped = tasks and all(t in graph.nx.nodes[v]["skips"] for t in tasks)
        else:  # an edge into a head
            dst_x, dst_y, skipped = head_x - 0.08, float(layout.row[tasks[0]]), False
        width = 0.8 + 3.2 * math.sqrt(len(tasks) / n)  # shared edges read as thicker
        patch = PathPatch(
            _curve(src.x + BOX_WIDTH / 2, src.y, dst_x, dst_y),
            facecolor="none",
            edgecolor=_color_for(tasks, layout),
            lw=width,
            alpha=0.85,
            linestyle=(0, (3, 2)) if skipped else "-",
            capstyle="round",
            zorder=1,
            gid=f"edge:{u}->{v}",
        )
        ax.add_patch(patch)


_LABEL_BACKGROUND = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5}


def _draw_boxes(
    ax: Any, graph: SharingGraph, layout: _Layout, fs: float, row_in: float, col_in: float
) -> None:
    for node, box in layout.boxes.items():
        if node == INPUT:
            face, edge, hatch, style = "#f2f2f2", "#333333", None, "-"
            label = "input"
            if graph.space and graph.space.get("kwargs", {}).get("input_shape"):
                label += "\n" + "×".join(str(s) for s in graph.space["kwargs"]["input_shape"])
            gid = "input"
        else:
            color = _color_for(box.tasks, layout)
            skips = graph.nx.nodes[node]["skips"]
            all_skip = bool(box.tasks) and set(box.tasks) <= skips
            face = "white" if all_skip else _lighten(color, 0.65)
            edge, hatch = color, ("///" if all_skip else None)
            style = "--" if skips else "-"
            label = _short(node, 10)
            if len(box.tasks) > 1:
                label += f"\n{len(box.tasks)} tasks"
            if all_skip:
                label += "\nskipped"
            gid = f"block:{node}"
        ax.add_patch(
            FancyBboxPatch(
                (box.x - BOX_WIDTH / 2, box.top),
                BOX_WIDTH,
                box.bottom - box.top,
                boxstyle="round,pad=0,rounding_size=0.06",
                facecolor=face,
                edgecolor=edge,
                hatch=hatch,
                linestyle=style,
                lw=1.3,
                zorder=2,
                gid=gid,
            )
        )
        height_pt = (box.bottom - box.top) * row_in * 72
        text, size = _fit_label(label, height_pt, BOX_WIDTH * col_in * 72, fs)
        ax.text(
            box.x,
            box.y,
            text,
            ha="center",
            va="center",
            zorder=3,
            clip_on=True,
            fontsize=size,
            bbox=_LABEL_BACKGROUND if hatch else None,
        )


def _fit_label(label: str, height_pt: float, width_pt: float, fs: float) -> tuple[str, float]:
    """The label and font size that fit a box; the task count goes first when space is short."""
    lines = label.split("\n")
    while True:
        high = height_pt / (1.3 * len(lines))
        wide = 0.9 * width_pt / (0.62 * max(len(line) for line in lines))
        size = min(fs, high, wide)
        if size >= 6 or len(lines) == 1:
            return "\n".join(lines), max(4.5, size)
        lines.pop(1 if len(lines) > 1 and lines[1].endswith("tasks") else -1)


def _draw_heads(ax: Any, graph: SharingGraph, layout: _Layout, fs: float) -> list[Any]:
    x = graph.num_blocks + 1.0
    texts = []
    for task in layout.order:
        y = layout.row[task]
        color = layout.colors[layout.group_of[task]]
        ax.plot(
            [x], [y], marker="o", ms=max(3.0, fs * 0.6), color=color, zorder=3, gid=f"head:{task}"
        )
        texts.append(
            ax.text(
                x + 0.12,
                y,
                task,
                ha="left",
                va="center",
                fontsize=fs,
                color="#111111",
                gid=f"task:{task}",
            )
        )
    return texts


def _architecture_axes(
    target: Figure | SubFigure, graph: SharingGraph, row_in: float, col_in: float, names_in: float
) -> Any:
    """Draw the sharing structure into ``target``; returns the axes."""
    layout = _layout(graph)
    n, depth = len(graph.tasks), graph.num_blocks
    fs = _font(row_in)
    ax = target.add_subplot(1, 1, 1)
    _draw_edges(ax, graph, layout)
    _draw_boxes(ax, graph, layout, fs, row_in, col_in)
    _draw_heads(ax, graph, layout, fs)
    lowest = max(b.bottom for b in layout.boxes.values())
    ax.set_xlim(-BOX_WIDTH / 2 - 0.1, depth + 1.15 + names_in / col_in)
    ax.set_ylim(max(lowest, n - 0.5) + 0.1, -0.6)  # first task at the top
    ax.set_xticks(range(depth + 2))
    ax.set_xticklabels(
        ["input", *[f"block {d}" for d in range(depth)], "heads"], fontsize=_font(0.3)
    )
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", length=0, pad=2)
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = _legend_handles(graph, layout)
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(handles)),
            fontsize=_font(0.3, 8),
            frameon=False,
        )
    return ax


def _legend_handles(graph: SharingGraph, layout: _Layout) -> list[Any]:
    handles: list[Any] = []
    if len(layout.colors) > 1 and any(
        _color_for(b.tasks, layout) == SHARED_COLOR
        for node, b in layout.boxes.items()
        if node != INPUT and b.tasks
    ):
        handles.append(
            Patch(
                facecolor=_lighten(SHARED_COLOR),
                edgecolor=SHARED_COLOR,
                label="shared by several branches",
            )
        )
    if any(graph.skips().values()):
        handles.append(
            Patch(
                facecolor="white", edgecolor="black", linestyle="--", label="skipped by some tasks"
            )
        )
        handles.append(
            Patch(
                facecolor="white", edgecolor="black", hatch="///", label="skipped by all its tasks"
            )
        )
    return handles


# ------------------------------------------------------------------------ masks and skips
def _mask_matrix(graph: SharingGraph, depth: int, order: Sequence[str]) -> np.ndarray:
    """Rows: tasks; columns: channels. 1 on, 0 off, NaN where the task skips the block."""
    rows = []
    width = None
    for task in order:
        step = graph.steps(task)[depth]
        rows.append(step)
        if step.mask is not None:
            width = len(step.mask)
    matrix = np.full((len(order), width or 1), np.nan)
    for i, step in enumerate(rows):
        if step.skip:
            continue
        matrix[i] = 1.0 if step.mask is None else step.mask.astype(float)
    return matrix


def _masked_depths(graph: SharingGraph) -> list[int]:
    return sorted({graph.node_index(node) for node in graph.masks()})


def _mask_panels(target: Figure | SubFigure, graph: SharingGraph, row_in: float) -> list[Any]:
    order = task_order(graph)
    depths = _masked_depths(graph)
    if not depths:
        ax = target.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no channel masks", ha="center", va="center")
        ax.set_axis_off()
        return [ax]
    ncols = min(len(depths), 8)
    nrows = math.ceil(len(depths) / ncols)
    cmap = ListedColormap([OFF_COLOR, ON_COLOR]).with_extremes(bad=MISSING_COLOR)
    fs = _font(row_in, 9)
    axes = []
    for k, depth in enumerate(depths):
        ax = target.add_subplot(nrows, ncols, k + 1)
        matrix = _mask_matrix(graph, depth, order)
        ax.imshow(
            np.ma.masked_invalid(matrix),
            cmap=cmap,
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        on = np.nanmean(matrix) if np.isfinite(matrix).any() else float("nan")
        ax.set_title(f"block {depth}\n{matrix.shape[1]} ch, {on:.0%} on", fontsize=_font(0.3, 9))
        ax.set_xticks([0, matrix.shape[1] - 1])
        ax.tick_params(axis="x", labelsize=_font(0.22, 7), length=2)
        # White lines between tasks keep rows apart in dense masks.
        ax.set_yticks(np.arange(-0.5, len(order), 1), minor=True)
        ax.grid(which="minor", axis="y", color="white", lw=1.0)
        ax.tick_params(which="minor", length=0)
        if k % ncols == 0:
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels([_short(t) for t in order], fontsize=fs)
        else:
            ax.set_yticks([])
        axes.append(ax)
    handles = [
        Patch(facecolor=ON_COLOR, label="channel on"),
        Patch(facecolor=OFF_COLOR, edgecolor="#999999", label="off"),
    ]
    if any(graph.skips().values()):
        handles.append(Patch(facecolor=MISSING_COLOR, label="block skipped"))
    target.legend(
        handles=handles,
        loc="outside lower center",
        ncol=len(handles),
        fontsize=_font(0.3, 8),
        frameon=False,
    )
    return axes


def _skip_panel(target: Figure | SubFigure, graph: SharingGraph, row_in: float) -> Any:
    order = task_order(graph)
    depth = graph.num_blocks
    runs = np.ones((len(order), depth))
    for i, task in enumerate(order):
        for step in graph.steps(task):
            if step.skip:
                runs[i, step.index] = 0.0
    ax = target.add_subplot(1, 1, 1)
    ax.imshow(
        runs,
        cmap=ListedColormap([SKIP_COLOR, ON_COLOR]),
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(depth))
    ax.set_xticklabels([str(d) for d in range(depth)], fontsize=_font(0.22, 8))
    ax.set_xlabel("block", fontsize=_font(0.3, 9))
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([_short(t) for t in order], fontsize=_font(row_in))
    # Thin white lines between cells keep a 40 x 16 grid readable.
    ax.set_xticks(np.arange(-0.5, depth, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, len(order), 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_title(
        f"executed vs skipped\n{int((runs == 0).sum())} skipped steps", fontsize=_font(0.3, 9)
    )
    target.legend(
        handles=[
            Patch(facecolor=ON_COLOR, label="runs"),
            Patch(facecolor=SKIP_COLOR, label="skipped"),
        ],
        loc="outside lower center",
        ncol=2,
        fontsize=_font(0.3, 8),
        frameon=False,
    )
    return ax


def _names_inches(names: Sequence[str], fs: float) -> float:
    return 0.2 + max(len(_short(n)) for n in names) * fs * 0.6 / 72


# -------------------------------------------------------------------------------- public API
@plain_text
def draw_architecture(
    graph: SharingGraph, path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Draw the sharing structure: one box per block node, task routes, heads.

    Columns are block depths (input on the left, heads on the right); rows are tasks, ordered
    so that each branch's tasks are neighbours, and a box spans the rows of the tasks that
    share it. Branches are coloured by leaf group (the tasks that share the last block);
    grey boxes and edges are shared by several groups. A graph with channel masks gets a
    heat-map panel per masked block, one with skips a task x block grid.

    Args:
        graph: The sharing graph (or its ``to_dict()``, or a model with ``.graph``).
        path: Where to save (``<stem>.png`` and ``<stem>.svg``); ``None`` saves nothing.
        title: Figure title (default: tasks, blocks and branches per depth).

    Returns:
        The figure; block boxes carry ``gid="block:<node>"``, task labels ``gid="task:<name>"``.

    Example:
        >>> fig = draw_architecture(SharingGraph.hard_sharing(["a", "b"], 3))
        >>> len(fig.axes)
        1
    """
    graph = _as_graph(graph)
    n = len(graph.tasks)
    row_in = _row_inches(n)
    col_in = 1.15 if graph.num_blocks <= 8 else 0.85
    names_in = _names_inches(graph.tasks, _font(row_in))
    panels = [("main", (graph.num_blocks + 2) * col_in + names_in + 0.4, n * row_in + 1.6)]
    if _masked_depths(graph):
        panels.append(("masks", *_masks_size(graph)))
    if any(graph.skips().values()):
        panels.append(("skips", *_skips_size(graph)))
    widths, heights = [p[1] for p in panels], [p[2] for p in panels]
    side_by_side = sum(widths) <= 20  # else stack the panels: deep spaces make wide panels
    if side_by_side:
        fig = Figure(figsize=(sum(widths), max(3.2, *heights)), layout="constrained")
        subfigs = fig.subfigures(1, len(panels), width_ratios=widths, squeeze=False)[0]
    else:
        fig = Figure(figsize=(max(widths), max(3.2, sum(heights))), layout="constrained")
        subfigs = fig.subfigures(len(panels), 1, height_ratios=heights, squeeze=False)[:, 0]
    for (kind, _, _), sub in zip(panels, subfigs):
        if kind == "main":
            _architecture_axes(sub, graph, row_in, col_in, names_in)
        elif kind == "masks":
            sub.suptitle("task routing masks", fontsize=_font(0.34, 10))
            _mask_panels(sub, graph, _mask_row_inches(graph))
        else:
            _skip_panel(sub, graph, row_in)
    branches = graph.branches_per_depth()
    fig.suptitle(
        title
        or f"Sharing graph: {n} tasks, {graph.num_blocks} blocks, branches per block {branches}",
        fontsize=_font(0.4, 12),
    )
    save_figure(fig, path)
    return fig


def _mask_grid(graph: SharingGraph) -> tuple[int, int]:
    """Columns and rows of the grid of per-block mask heat maps."""
    count = max(1, len(_masked_depths(graph)))
    ncols = min(count, 8)
    return ncols, math.ceil(count / ncols)


def _mask_row_inches(graph: SharingGraph) -> float:
    row_in = _row_inches(len(graph.tasks))
    return row_in if _mask_grid(graph)[1] == 1 else max(0.1, row_in * 0.6)


def _masks_size(graph: SharingGraph) -> tuple[float, float]:
    ncols, nrows = _mask_grid(graph)
    mrow = _mask_row_inches(graph)
    width = _names_inches(graph.tasks, _font(mrow, 9)) + 0.5 + ncols * 1.4
    return max(4.0, width), nrows * (len(graph.tasks) * mrow + 0.9) + 0.9


def _skips_size(graph: SharingGraph) -> tuple[float, float]:
    row_in = _row_inches(len(graph.tasks))
    width = _names_inches(graph.tasks, _font(row_in)) + 1.2 + 0.35 * graph.num_blocks
    return max(3.5, width), max(3.0, len(graph.tasks) * row_in + 1.8)


@plain_text
def draw_masks(graph: SharingGraph, path: str | Path | None = None) -> Figure:
    """Task-routing masks: per masked block, a tasks x channels heat map (dark = on).

    Rows are tasks (grouped by branch), columns the block's channels; grey rows are tasks
    that skip the block. The title of each map gives the channel count and the share on.

    Example:
        >>> fig = draw_masks(graph, "masks")  # masks.png, masks.svg  # doctest: +SKIP
    """
    graph = _as_graph(graph)
    fig = Figure(figsize=_masks_size(graph), layout="constrained")
    fig.suptitle("Task routing masks (tasks x channels)", fontsize=_font(0.4, 12))
    _mask_panels(fig, graph, _mask_row_inches(graph))
    save_figure(fig, path)
    return fig


@plain_text
def draw_skip_grid(graph: SharingGraph, path: str | Path | None = None) -> Figure:
    """Which task runs (dark) or skips (orange) each block: a tasks x blocks grid.

    Example:
        >>> fig = draw_skip_grid(graph, "skips")  # doctest: +SKIP
    """
    graph = _as_graph(graph)
    fig = Figure(figsize=_skips_size(graph), layout="constrained")
    _skip_panel(fig, graph, _row_inches(len(graph.tasks)))
    save_figure(fig, path)
    return fig


