"""Pictures of an affinity tensor: one heat map per depth.

Example:
    >>> import numpy as np
    >>> from .affinity import AffinityTensor
    >>> fig = draw_affinity(AffinityTensor(["a", "b"], np.eye(2)[None], "full"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mtlsearch.viz import plain_text
from mtlsearch.viz import save_figure as _save

__all__ = ["draw_affinity"]




@plain_text
def draw_affinity(tensor: Any, path: str | Path | None = None, *, title: str | None = None) -> Figure:
    """Heat maps of the affinity after each block, on one shared colour scale.

    Args:
        tensor: An :class:`~.affinity.AffinityTensor`.
        path: Where to save (``<stem>.png`` and ``<stem>.svg``); ``None`` saves nothing.
        title: Figure title (default: the estimator and the number of tasks).

    Returns:
        The figure (one axes per depth plus the colour bar).
    """
    values = np.asarray(tensor.values)
    depths, n = values.shape[0], values.shape[1]
    side = max(2.2, 0.42 * n + 1.0)
    fig = Figure(figsize=(side * depths + 0.8, side + 0.9), layout="constrained")
    axes = fig.subplots(1, depths, squeeze=False)[0]
    low, high = float(min(values.min(), 0.0)), float(max(values.max(), 1.0))
    labels = [t if len(t) <= 14 else t[:13] + "…" for t in tensor.tasks]
    image = None
    for d, ax in enumerate(axes):
        image = ax.imshow(values[d], vmin=low, vmax=high, cmap="viridis")
        ax.set_title(f"after block {tensor.depths[d]}", fontsize=10)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels if d == 0 else [""] * n, fontsize=8)
        if n <= 8:
            for i in range(n):
                for j in range(n):
                    v = values[d, i, j]
                    colour = "black" if v > low + 0.6 * (high - low) else "white"
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="affinity")
    fig.suptitle(title or f"Task affinity ({tensor.estimator} estimator, {n} tasks)", fontsize=11)
    _save(fig, path)
    return fig
