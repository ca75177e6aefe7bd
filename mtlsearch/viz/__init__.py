"""Pictures: of sharing graphs, of search results and of dense predictions (matplotlib).

``architecture`` draws a graph (its tree of blocks, per-task masks, skip grids), ``results``
plots what a search or comparison found (Δ_MTL against size, per-task metrics), ``dense``
draws dense predictions beside their ground truth, and ``figures`` holds what they share
(saving as PNG and SVG, the palette). Every function returns a
:class:`matplotlib.figure.Figure` and, given a path, saves ``<stem>.png`` and ``<stem>.svg``.
This subpackage may import ``tasks``, ``data``, ``graph``, ``engine`` and the base modules;
``export``, ``study`` and the CLI import it, and only when they draw (matplotlib is heavy).

Example:
    >>> from mtlsearch import SharingGraph
    >>> from mtlsearch.viz import draw_architecture
    >>> fig = draw_architecture(SharingGraph.hard_sharing(["a", "b"], 2))
"""

from __future__ import annotations

from mtlsearch.viz.architecture import draw_architecture, draw_masks, draw_skip_grid, task_order
from mtlsearch.viz.dense import dense_task_image, draw_dense_maps, draw_dense_predictions
from mtlsearch.viz.figures import palette, plain_text, save_figure
from mtlsearch.viz.results import plot_pareto, plot_task_metrics

__all__ = [
    "dense_task_image",
    "draw_architecture",
    "draw_dense_maps",
    "draw_dense_predictions",
    "draw_masks",
    "draw_skip_grid",
    "palette",
    "plain_text",
    "plot_pareto",
    "plot_task_metrics",
    "save_figure",
    "task_order",
]
