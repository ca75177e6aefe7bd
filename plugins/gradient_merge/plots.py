"""Pictures of a ``gradient_merge`` trial: group formation over epochs, final groups.

Both take the trial's record (``result.info["gradient_merge"]``) and save ``<stem>.png`` and
``<stem>.svg`` when a path is given.

Example:
    >>> record = {"epochs": [{"epoch": 0, "groups_before": [["a"], ["b"], ["c"]],
    ...                       "groups": [["a", "b"], ["c"]], "params": 10}],
    ...           "final_groups": [["a", "b"], ["c"]], "initial_params": 12}
    >>> fig = plot_group_formation(record)
    >>> len(fig.axes) >= 1
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.viz import plain_text
from mtlsearch.viz import save_figure as _save

__all__ = ["plot_group_formation", "plot_final_groups"]




@plain_text
def plot_group_formation(
    record: Mapping[str, Any], path: str | Path | None = None, *, title: str | None = None
) -> Any:
    """Tasks (rows) by epoch (columns), coloured by the branch each task uses after that
    epoch's merge; the first column is the start (one branch per task). The parameter count
    after each epoch is written under its column (the paper's Table 3).

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = list(record["epochs"])
    if not epochs:
        raise ValueError("the record has no clustering epoch to draw")
    tasks = [t for g in epochs[0]["groups_before"] for t in g]
    columns = [epochs[0]["groups_before"]] + [e["groups"] for e in epochs]
    # order rows so the final groups are neighbours
    order = [t for g in record["final_groups"] for t in g]
    tasks = order + [t for t in tasks if t not in order]
    grid = np.zeros((len(tasks), len(columns)), dtype=int)
    for c, groups in enumerate(columns):
        # a group takes the colour of its first task (in row order): colours persist
        label = {t: min(tasks.index(u) for u in g) % 20 for g in groups for t in g}
        for r, t in enumerate(tasks):
            grid[r, c] = label[t]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(columns), 0.9 + 0.3 * len(tasks)))
    ax.imshow(grid, cmap="tab20", aspect="auto", interpolation="nearest", vmin=0, vmax=19)
    for c in range(len(columns)):  # draw group borders
        for r in range(1, len(tasks)):
            if grid[r, c] != grid[r - 1, c]:
                ax.plot([c - 0.5, c + 0.5], [r - 0.5, r - 0.5], color="white", lw=2)
    ax.set_yticks(range(len(tasks)), tasks)
    params = [record.get("initial_params")] + [e.get("params") for e in epochs]
    labels = ["start"] + [f"ep {e['epoch']}" for e in epochs]
    ax.set_xticks(
        range(len(columns)),
        [f"{lab}\n{len(g)} br.\n{p:,}" if p else lab for lab, g, p in zip(labels, columns, params)],
        fontsize=8,
    )
    ax.set_xlabel("after epoch: branches, parameters")
    ax.set_title(title or "group formation over epochs")
    fig.tight_layout()
    _save(fig, path)
    return fig


@plain_text
def plot_final_groups(
    groups_by_run: Mapping[str, Sequence[Sequence[str]]],
    path: str | Path | None = None,
    *,
    title: str | None = None,
) -> Any:
    """Final groups of several runs side by side (the paper's Figure 5): one row per run,
    each group a box listing its tasks.

    Args:
        groups_by_run: ``{run label: final groups}``.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    runs = list(groups_by_run.items())
    width = max(sum(max(1.0, 0.55 * len(g)) + 0.3 for g in groups) for _, groups in runs)
    fig, ax = plt.subplots(figsize=(2.2 + 1.1 * width, 0.4 + 0.75 * len(runs)))
    cmap = plt.get_cmap("tab20")
    for row, (label, groups) in enumerate(runs):
        y = len(runs) - 1 - row
        ax.text(-0.2, y, label, ha="right", va="center", fontsize=9)
        x = 0.0
        for k, group in enumerate(groups):
            w = max(1.0, 0.55 * len(group))
            box = FancyBboxPatch((x, y - 0.32), w, 0.64, boxstyle="round,pad=0.02",
                                 fc=cmap(k % 20), ec="black", lw=0.6, alpha=0.8)
            ax.add_patch(box)
            ax.text(x + w / 2, y, " ".join(group), ha="center", va="center", fontsize=8)
            x += w + 0.3
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-0.6, len(runs) - 0.4)
    ax.axis("off")
    ax.set_title(title or "final task groups")
    fig.tight_layout()
    _save(fig, path)
    return fig
