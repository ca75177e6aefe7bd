"""Pictures of search results: Δ_MTL against model size, and per-task metrics per strategy.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path``, saves it as
``<stem>.png`` and ``<stem>.svg``.

Example:
    >>> fig = plot_pareto([{"delta_mtl": 1.5, "params": 12000, "label": "a"}])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mtlsearch.viz.figures import palette as _palette
from mtlsearch.viz.figures import plain_text, save_figure

__all__ = ["plot_pareto", "plot_task_metrics"]


def _pareto_mask(params: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Points no other point beats on both fewer parameters and a higher Δ_MTL."""
    keep = np.ones(len(params), dtype=bool)
    for i in range(len(params)):
        better = (
            (params <= params[i])
            & (delta >= delta[i])
            & ((params < params[i]) | (delta > delta[i]))
        )
        keep[i] = not better.any()
    return keep


@plain_text
def plot_pareto(
    points: Sequence[Mapping[str, Any]], path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Δ_MTL (higher is better) against parameters (fewer is better), one colour per strategy.

    Args:
        points: Dicts with ``delta_mtl``, ``params``, ``label`` (strategy) and optionally
            ``pareto`` (bool). Without any ``pareto`` key the front is computed here.
        path: Where to save (``<stem>.png`` and ``<stem>.svg``).
        title: Figure title.

    Returns:
        The figure (one scatter collection per strategy, the front as a step line).

    Example:
        >>> fig = plot_pareto([{"delta_mtl": 1.5, "params": 12000, "label": "random_tree"},
        ...                    {"delta_mtl": -0.4, "params": 8000, "label": "hard_sharing"}])
    """
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    good = [p for p in points if _finite(p.get("delta_mtl")) and _finite(p.get("params"))]
    if not good:
        ax.text(
            0.5, 0.5, "no finite points to plot", ha="center", va="center", transform=ax.transAxes
        )
    else:
        params = np.array([float(p["params"]) for p in good])
        delta = np.array([float(p["delta_mtl"]) for p in good])
        if any("pareto" in p for p in good):
            front = np.array([bool(p.get("pareto", False)) for p in good])
        else:
            front = _pareto_mask(params, delta)
        labels = list(dict.fromkeys(str(p.get("label", "?")) for p in good))
        colors = dict(zip(labels, _palette(len(labels))))
        markers = "osD^vP*Xh<>"
        for k, label in enumerate(labels):
            sel = np.array([str(p.get("label", "?")) == label for p in good])
            ax.scatter(
                params[sel & ~front],
                delta[sel & ~front],
                color=colors[label],
                s=28,
                alpha=0.55,
                marker=markers[k % len(markers)],
                label=label,
                zorder=2,
            )
            ax.scatter(
                params[sel & front],
                delta[sel & front],
                color=colors[label],
                s=70,
                marker=markers[k % len(markers)],
                edgecolor="black",
                lw=1.2,
                zorder=4,
                label=None if (sel & ~front).any() else label,
            )
        idx = np.argsort(params[front])
        ax.step(
            params[front][idx],
            delta[front][idx],
            where="post",
            color="black",
            lw=1.2,
            zorder=3,
            label="Pareto front",
        )
        if params.max() / max(params.min(), 1) > 20:
            ax.set_xscale("log")
        ax.axhline(0.0, color="#999999", lw=0.8, ls="--", zorder=1)
        ax.legend(fontsize=8, loc="best", frameon=False)
    ax.set_xlabel("parameters")
    ax.set_ylabel("Δ_MTL (%) vs single-task")
    ax.grid(alpha=0.3)
    ax.set_title(title or "Δ_MTL against model size")
    save_figure(fig, path)
    return fig


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _value_and_error(value: Any) -> tuple[float, float]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return float(value[0]), float(value[1])
    return (float(value) if value is not None else float("nan")), float("nan")


@plain_text
def plot_task_metrics(
    table: Mapping[str, Mapping[str, Any]],
    path: str | Path | None = None,
    *,
    metric: str = "accuracy",
    title: str | None = None,
) -> Figure:
    """Grouped bars: one group per task, one bar per strategy; ``(mean, std)`` adds error bars.

    Up to 16 tasks the bars stand (tasks along x); with more they lie (tasks down the y axis,
    one readable label per row).

    Args:
        table: ``{strategy: {task: value or (mean, std)}}``; missing tasks leave a gap.
        path: Where to save (``<stem>.png`` and ``<stem>.svg``).
        metric: The metric's name (value axis label).
        title: Figure title.

    Returns:
        The figure (one bar container per strategy).

    Example:
        >>> fig = plot_task_metrics({"hard": {"a": 0.9, "b": 0.8}, "tree": {"a": (0.92, 0.01)}})
    """
    strategies = list(table)
    tasks = list(dict.fromkeys(t for row in table.values() for t in row))
    n_bars = max(len(strategies), 1)
    lying = len(tasks) > 16
    if lying:
        size = (7.5, min(60.0, max(4.0, 1.6 + len(tasks) * (0.09 * n_bars + 0.1))))
    else:
        size = (max(6.0, 1.5 + len(tasks) * (0.22 * n_bars + 0.25)), 4.8)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    bar = 0.8 / n_bars
    pos = np.arange(len(tasks))
    colors = _palette(n_bars)
    for k, strategy in enumerate(strategies):
        values = [_value_and_error(table[strategy].get(t)) for t in tasks]
        means = np.array([v[0] for v in values])
        stds = np.array([v[1] for v in values])
        err = None if np.isnan(stds).all() else np.nan_to_num(stds)
        offset = pos - 0.4 + bar * (k + 0.5)
        draw = ax.barh if lying else ax.bar
        kwargs = {"xerr": err} if lying else {"yerr": err}
        draw(
            offset,
            means,
            bar,
            color=colors[k],
            label=strategy,
            capsize=2,
            error_kw={"lw": 0.8},
            **kwargs,
        )
    if lying:
        ax.set_yticks(pos)
        ax.set_yticklabels(tasks, fontsize=8)
        ax.set_ylim(len(tasks) - 0.5, -0.5)  # first task at the top
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
        fig.legend(fontsize=8, frameon=False, ncol=min(n_bars, 4), loc="outside upper center")
    else:
        ax.set_xticks(pos)
        long = max((len(t) for t in tasks), default=0) > 8
        ax.set_xticklabels(
            tasks, rotation=30 if long else 0, ha="right" if long else "center", fontsize=9
        )
        ax.set_ylabel(metric)
        ax.set_xlabel("task")
        ax.grid(axis="y", alpha=0.3)
        fig.legend(fontsize=8, frameon=False, ncol=min(n_bars, 4), loc="outside lower center")
    ax.set_title(title or f"{metric} per task")
    save_figure(fig, path)
    return fig
