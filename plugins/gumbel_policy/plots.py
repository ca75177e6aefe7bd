"""Pictures of a learned policy: the paper's Figure 3a (execute probabilities with the chosen
decisions) and Figure 3b (task correlation: cosine similarity of the tasks' policies).

Each function returns a :class:`matplotlib.figure.Figure` and, given ``path``, saves it as
``<stem>.png`` and ``<stem>.svg`` like :mod:`mtlsearch.viz.figures`.

Example:
    >>> import numpy as np
    >>> sim = task_correlation(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    >>> sim.round(2).tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> fig = draw_policy(np.full((2, 3), 0.5), ["a", "b"], [1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mtlsearch.viz import plain_text
from mtlsearch.viz import save_figure as _save

__all__ = ["task_correlation", "draw_policy", "draw_task_correlation"]




def task_correlation(probs: np.ndarray) -> np.ndarray:
    """Cosine similarity between the tasks' execute-probability vectors (rows of ``probs``)."""
    p = np.asarray(probs, dtype=float)
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    unit = p / np.where(norms == 0, 1.0, norms)
    return unit @ unit.T


@plain_text
def draw_policy(
    probs: np.ndarray,
    tasks: Sequence[str],
    blocks: Sequence[int],
    decisions: np.ndarray | None = None,
    path: str | Path | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Tasks x policy blocks grid of execute probabilities (darker = more likely executed);
    ``decisions``, if given, marks each cell ``●`` (execute) or ``×`` (skip)."""
    probs = np.asarray(probs, dtype=float)
    T, L = probs.shape
    fig = Figure(figsize=(1.2 + 0.55 * L, 0.9 + 0.42 * T), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(probs, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    if decisions is not None:
        for k in range(T):
            for j in range(L):
                run = bool(decisions[k, j])
                ax.text(j, k, "●" if run else "×", ha="center", va="center", fontsize=9,
                        color="white" if probs[k, j] > 0.6 else "#c0392b" if not run else "black")
    ax.set_xticks(range(L), [str(b) for b in blocks])
    ax.set_yticks(range(T), list(tasks))
    ax.set_xlabel("block index")
    ax.set_title(title or "execute probability α (● executed, × skipped)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="α")
    _save(fig, path)
    return fig


@plain_text
def draw_task_correlation(
    probs: np.ndarray, tasks: Sequence[str], path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Heat map of :func:`task_correlation` with the values written in the cells."""
    sim = task_correlation(probs)
    T = len(tasks)
    fig = Figure(figsize=(1.6 + 0.6 * T, 1.0 + 0.55 * T), layout="constrained")
    ax = fig.add_subplot()
    low = float(min(sim.min(), 0.5))
    image = ax.imshow(sim, cmap="viridis", vmin=low, vmax=1.0)
    for i in range(T):
        for j in range(T):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if sim[i, j] > (low + 1) / 2 else "white")
    ax.set_xticks(range(T), list(tasks), rotation=45, ha="right")
    ax.set_yticks(range(T), list(tasks))
    ax.set_title(title or "task correlation (cosine of policies)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    _save(fig, path)
    return fig
