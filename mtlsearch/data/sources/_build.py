"""Shared by every source: task options, task specs from inferred columns, and the splits.

Task options are carried into :attr:`TaskSpec.options` of binary tasks (what they do belongs to
the task kind): ``metric`` (``accuracy``, ``balanced_accuracy``, ``f1`` or ``auroc``; one name
for every binary task or ``{task: name}``) and ``pos_weight`` (``"balanced"`` = negatives /
positives in the TRAINING split, a number, or ``{task: value}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, split_indices
from mtlsearch.data.sources.infer import InferredTask
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec

__all__ = ["BINARY_METRICS", "name_list", "task_specs", "check_one_class", "make_splits"]

#: Primary metrics a binary task may be scored by.
BINARY_METRICS = ("accuracy", "balanced_accuracy", "f1", "auroc")


def name_list(source: str, option: str, value: Any) -> list[str] | None:
    """``"a,b"``, ``"a"`` or ``["a", "b"]`` as a list of names (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise DatasetError(f"{source}: {option}={value!r} must be a list of names, e.g. "
                           f"{option}=a,b")
    if not names:
        raise DatasetError(f"{source}: {option} is empty; name at least one")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{source}: {option} names {dup} more than once")
    return names


def _per_task(source: str, option: str, value: Any, binary: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        other = [t for t in value if t not in binary]
        if other:
            raise DatasetError(f"{source}: {option} names {other}, which are not binary tasks; "
                               f"the binary tasks are {list(binary)}")
        return dict(value)
    return {t: value for t in binary}


def task_specs(
    source: str,
    tasks: Sequence[InferredTask],
    train_rows: np.ndarray,
    *,
    metric: Any = None,
    pos_weight: Any = None,
) -> list[TaskSpec]:
    """Specs for the inferred tasks, with ``metric`` / ``pos_weight`` in binary tasks' options."""
    binary = [t.name for t in tasks if t.kind == "binary"]
    metrics = _per_task(source, "metric", metric, binary)
    for task, name in metrics.items():
        if name not in BINARY_METRICS:
            raise DatasetError(f"{source}: metric {name!r} for task {task!r} is unknown; "
                               f"choose one of {', '.join(BINARY_METRICS)}")
    weights = _per_task(source, "pos_weight", pos_weight, binary)
    specs = []
    for t in tasks:
        options: dict[str, Any] = {}
        if t.name in metrics:
            options["metric"] = metrics[t.name]
        if t.name in weights:
            options["pos_weight"] = _pos_weight(source, t, weights[t.name], train_rows)
        if t.classes is not None:  # the table's own values: predictions are written in them
            options["classes"] = [v.item() if hasattr(v, "item") else v for v in t.classes]
        if t.kind == "multiclass":
            specs.append(TaskSpec(t.name, kind="multiclass", num_classes=t.num_classes,
                                  options=options))
        elif t.kind == "regression":
            out_dim = int(np.prod(t.labels.shape[1:])) if t.labels.ndim > 1 else 1
            specs.append(TaskSpec(t.name, kind="regression", out_dim=out_dim, options=options))
        else:
            specs.append(TaskSpec(t.name, kind=t.kind, options=options))
    return specs


def _pos_weight(source: str, task: InferredTask, value: Any, train_rows: np.ndarray) -> float:
    if value == "balanced":
        y = task.labels[train_rows]
        pos, neg = int(np.sum(y == 1)), int(np.sum(y == 0))
        if pos == 0:
            raise DatasetError(f"{source}: pos_weight='balanced' for task {task.name!r}: its "
                               "training split has no positive label")
        return neg / pos
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DatasetError(f"{source}: pos_weight={value!r} for task {task.name!r} must be "
                           "'balanced' or a positive number")
    return float(value)


def check_one_class(source: str, tasks: Sequence[InferredTask], what: str = "column") -> None:
    """Refuse a class task whose labels (all rows) hold a single class."""
    for t in tasks:
        if t.kind not in ("binary", "multiclass"):
            continue
        present = t.labels[~np.isnan(t.labels)]
        values = np.unique(present)
        if values.size < 2:
            shown = t.classes[int(values[0])] if (t.classes and values.size) else (
                int(values[0]) if values.size else "none")
            raise DatasetError(
                f"{source.rstrip(': ')}: {what} {t.name!r} has one class ({shown!r}) in all "
                f"{present.size} labelled rows; a task needs two classes to be learned: drop it "
                "from the tasks"
            )


def make_splits(
    name: str,
    n: int,
    tasks: Sequence[InferredTask],
    make_part: Callable[[np.ndarray, dict[str, np.ndarray], list[TaskSpec]], Any] | None,
    X: Any = None,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    metric: Any = None,
    pos_weight: Any = None,
    info: dict[str, Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    preprocessing: Any = None,
    where: str | None = None,
) -> DatasetSplits:
    """Seeded splits of ``n`` rows: in memory from ``X``, or each part built by ``make_part``.

    ``make_part(rows, targets, specs)`` builds one split (a streaming dataset); without it,
    ``X`` rows go into :class:`MultiTaskDataset`. ``where`` names the file in messages.
    """
    check_one_class(where or name, tasks)
    idx = split_indices(n, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    specs = task_specs(name, tasks, idx[0], metric=metric, pos_weight=pos_weight)
    parts = {}
    for split, rows in zip(("train", "val", "test"), idx, strict=True):
        targets = {t.name: t.labels[rows] for t in tasks}
        if make_part is None:
            parts[split] = MultiTaskDataset(X[rows], targets, specs)
        else:
            parts[split] = make_part(rows, targets, specs)
    label_maps = {t.name: t.classes for t in tasks if t.classes is not None}
    full_info = dict(info or {})
    full_info["kinds"] = {t.name: t.kind for t in tasks}
    if label_maps:
        full_info["label_maps"] = label_maps
    return DatasetSplits(
        name=name, **parts, tasks=specs, info=full_info,
        kwargs={"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
                **(kwargs or {})},
        preprocessing=preprocessing,
    )
