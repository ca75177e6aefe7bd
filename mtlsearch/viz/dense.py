"""Pictures of dense predictions: the input, then the ground truth and prediction of each task.

One row per sample; columns: the input image, then for every dense task (segmentation,
depth, normals, edges) its ground truth (when known) and the model's prediction.
Segmentation is drawn in a fixed palette (class *k* has the same colour in every picture),
depth with the ``viridis`` colour map on one scale per row (the truth's range, so truth and
prediction compare), normals as RGB = (n + 1) / 2, edges in grey (1 black, 0 light grey).
Ignored labels, missing depth and missing normals or edges are white. Tasks of other kinds
(vectors) are left out. Figures are built without :mod:`matplotlib.pyplot` and saved as
``<stem>.png`` and ``<stem>.svg`` by :func:`mtlsearch.viz.figures.save_figure`.

Example:
    >>> from mtlsearch import load_dataset
    >>> data = load_dataset("dense_shapes", n_samples=30, size=16)
    >>> fig = draw_dense_predictions(model, data.test, [0, 1, 2], "preds")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from mtlsearch.tasks.kinds import TaskSpec
from mtlsearch.viz.figures import plain_text, save_figure

__all__ = [
    "DENSE_KINDS",
    "SEGMENT_PALETTE",
    "draw_dense_maps",
    "draw_dense_predictions",
    "dense_task_image",
]

DENSE_KINDS = ("segmentation", "depth", "normals", "edges")
# Class k -> SEGMENT_PALETTE[k % 20]: tab10, then the light half of tab20.
SEGMENT_PALETTE = np.array(
    [to_rgb(colormaps["tab10"](i)) for i in range(10)]
    + [to_rgb(colormaps["tab20"](2 * i + 1)) for i in range(10)]
)
MISSING_RGB = np.ones(3)  # white
EDGE_BACKGROUND = 0.9  # grey level of a pixel with edge value 0


def _input_image(x: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` input as an ``(H, W, 3)`` picture in [0, 1] (min-max scaled if outside)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    x = np.repeat(x[:1], 3, axis=0) if x.shape[0] < 3 else x[:3]
    finite = x[np.isfinite(x)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        lo, hi = finite.min(), finite.max()
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.nan_to_num(np.moveaxis(x, 0, -1), nan=1.0).clip(0, 1)


def dense_task_image(
    kind: str, values: np.ndarray, *, depth_range: tuple[float, float] | None = None
) -> np.ndarray:
    """One sample's map of a dense task as an ``(H, W, 3)`` RGB picture in [0, 1].

    Args:
        kind: ``segmentation``, ``depth``, ``normals`` or ``edges``.
        values: Class ids ``(H, W)`` (negative: ignored), depth ``(1, H, W)`` or ``(H, W)``,
            normals ``(3, H, W)``, edges ``(C, H, W)`` (the channels' maximum is drawn); NaN
            marks missing values.
        depth_range: ``(near, far)`` of the depth colour scale (default: the map's range).

    Example:
        >>> dense_task_image("segmentation", np.array([[0, 1], [-1, 0]])).shape
        (2, 2, 3)
    """
    v = np.asarray(values)
    if kind == "segmentation":
        labels = v.reshape(v.shape[-2:]).astype(np.int64)
        rgb = SEGMENT_PALETTE[np.abs(labels) % len(SEGMENT_PALETTE)]
        return np.where((labels < 0)[..., None], MISSING_RGB, rgb)
    v = v.astype(np.float64)
    if kind == "depth":
        d = v.reshape(v.shape[-2:])
        missing = ~np.isfinite(d) | (d <= 0)
        lo, hi = depth_range if depth_range is not None else _finite_range(d[~missing])
        scaled = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
        rgb = colormaps["viridis"](np.nan_to_num(scaled).clip(0, 1))[..., :3]
        return np.where(missing[..., None], MISSING_RGB, rgb)
    if kind == "normals":
        missing = ~np.isfinite(v).all(axis=0) | (np.nan_to_num(v) == 0).all(axis=0)
        rgb = (np.moveaxis(np.nan_to_num(v), 0, -1) * 0.5 + 0.5).clip(0, 1)
        return np.where(missing[..., None], MISSING_RGB, rgb)
    if kind == "edges":
        e = v.reshape(-1, *v.shape[-2:])
        missing = ~np.isfinite(e).any(axis=0)
        level = EDGE_BACKGROUND * (1.0 - np.nanmax(np.where(np.isfinite(e), e, -np.inf), axis=0).clip(0, 1))
        return np.where(missing[..., None], MISSING_RGB, np.repeat(level[..., None], 3, axis=-1))
    raise ValueError(f"no picture for task kind {kind!r}; dense kinds are {list(DENSE_KINDS)}")


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    return float(values.min()), float(values.max())


@plain_text
def draw_dense_maps(
    inputs: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    *,
    truth: Mapping[str, np.ndarray] | None = None,
    row_labels: Sequence[str] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Draw inputs, ground truth (if given) and predictions of the dense tasks, one row each.

    Args:
        inputs: ``(n, C, H, W)`` inputs.
        predictions: ``{task: array}`` with ``n`` rows, as :func:`mtlsearch.engine.predict.predict`
            returns them (class ids, depth, unit normals, edge values).
        tasks: The task specs; tasks of non-dense kinds are left out.
        truth: ``{task: array}`` in the kinds' canonical form (the targets of a
            :class:`~mtlsearch.data.dataset.MultiTaskDataset`: -1 ignored, NaN missing); tasks
            without an entry get no truth column.
        row_labels: One label per row (e.g. the sample indices).
        path: Save as ``<path>.png`` and ``<path>.svg``.

    Returns:
        The figure.

    Raises:
        ValueError: No dense task, or arrays with a different number of rows.
    """
    x = np.asarray(inputs)
    n = len(x)
    dense = [t for t in tasks if t.kind in DENSE_KINDS and t.name in predictions]
    if not dense:
        raise ValueError(
            "no dense task (segmentation, depth, normals, edges) among "
            f"{[t.name for t in tasks]}: a dense-map picture needs one"
        )
    truth = dict(truth or {})
    for name, arrays in (("predictions", predictions), ("truth", truth)):
        bad = [t.name for t in dense if t.name in arrays and len(arrays[t.name]) != n]
        if bad:
            raise ValueError(f"{name} of {bad} do not have one row per input ({n})")
    columns: list[tuple[str, TaskSpec | None, str]] = [("input", None, "input")]
    for t in dense:
        if t.name in truth:
            columns.append((f"{t.name}\ntruth", t, "truth"))
        columns.append((f"{t.name}\nprediction", t, "prediction"))

    fig = Figure(figsize=(1.45 * len(columns), 1.45 * n + 0.45), layout="constrained")
    axes = np.asarray(fig.subplots(n, len(columns), squeeze=False))
    for i in range(n):
        for j, (title, spec, which) in enumerate(columns):
            ax = axes[i, j]
            if spec is None:
                image = _input_image(x[i])
            else:
                source = truth if which == "truth" else predictions
                depth_range = None
                if spec.kind == "depth":
                    ref = truth.get(spec.name, predictions[spec.name])[i]
                    depth_range = _finite_range(np.where(np.asarray(ref) > 0, ref, np.nan))
                image = dense_task_image(spec.kind, source[spec.name][i], depth_range=depth_range)
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize=8)
    save_figure(fig, path)
    return fig


@plain_text
def draw_dense_predictions(
    model: Any,
    dataset: Any,
    indices: Sequence[int],
    path: str | Path | None = None,
    *,
    batch_size: int = 64,
) -> Figure:
    """Input, ground truth and prediction of every dense task for some samples of a dataset.

    Args:
        model: A :class:`~mtlsearch.engine.model.MultiTaskModel` (trained, or from
            :func:`mtlsearch.load`).
        dataset: A :class:`~mtlsearch.data.dataset.MultiTaskDataset` (``inputs`` and ``targets``),
            e.g. ``splits.test``.
        indices: The samples to draw, one row each.
        path: Save as ``<path>.png`` and ``<path>.svg``.
        batch_size: Samples per forward pass.

    Returns:
        The figure.

    Raises:
        IndexError: An index outside the dataset.
        ValueError: The model has no dense task.

    Example:
        >>> draw_dense_predictions(result.model, data.test, [0, 1, 2], "out/preds")  # doctest: +SKIP
    """
    from mtlsearch.engine.predict import predict

    rows = [int(i) for i in indices]
    if not rows:
        raise IndexError("indices is empty: give the samples to draw, e.g. [0, 1, 2]")
    bad = [i for i in rows if not -len(dataset) <= i < len(dataset)]
    if bad:
        raise IndexError(f"indices {bad} are outside the dataset of {len(dataset)} samples")
    x = dataset.inputs[rows]
    predictions = predict(model, x, batch_size=batch_size)
    targets = getattr(dataset, "targets", {})
    truth = {t: targets[t][rows].cpu().numpy() for t in model.tasks if t in targets}
    return draw_dense_maps(x.cpu().numpy(), predictions, model.task_specs, truth=truth,
                           row_labels=[f"#{i}" for i in rows], path=path)
