"""A model's raw outputs as a table: one row per input, one or more columns per task.

Per task kind: ``binary`` -> ``<task>`` (the predicted label, 0 or 1, at probability 0.5) and
``<task>_prob`` (the probability of 1); ``multiclass`` -> ``<task>`` (the predicted class) and
``<task>_prob_<class>`` per class; ``regression`` -> ``<task>`` (or ``<task>_<i>`` for several
values); ``ranking`` and other kinds with one value per sample -> ``<task>``. Multiclass classes
(and a binary task's two labels) are named by the task spec's ``options["classes"]`` when it
lists them (the label table's own values, e.g. ``-1``/``1`` or ``"no"``/``"yes"``), else
numbered. Dense tasks (per-pixel maps) do not fit a table: write an ``.npz``.

The table is written with pandas: CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``, needs
pyarrow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.errors import ExportError
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = ["TABLE_SUFFIXES", "prediction_columns", "write_table"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def prediction_columns(
    specs: Sequence[TaskSpec], raw: Mapping[str, Tensor]
) -> dict[str, np.ndarray]:
    """``{column: values}`` for the raw (head) outputs ``raw`` of the tasks ``specs``.

    Raises:
        ExportError: a dense task (per-pixel outputs), or two columns of one name.

    Example:
        >>> cols = prediction_columns([TaskSpec("smiling")], {"smiling": torch.zeros(2, 1)})
        >>> {k: v.tolist() for k, v in cols.items()}
        {'smiling': [1, 1], 'smiling_prob': [0.5, 0.5]}
    """
    columns: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray, task: str) -> None:
        if name in columns:
            raise ExportError(
                f"the prediction column {name!r} (of task {task!r}) clashes with another "
                "column; write an .npz instead (one array per task)"
            )
        columns[name] = values

    for spec in specs:
        out = raw[spec.name].detach().to("cpu", torch.float32)
        task = spec.name
        if out.dim() > 2:
            raise ExportError(
                f"task {task!r} ({spec.kind}) predicts a map per input {tuple(out.shape[1:])}, "
                "which does not fit a table; write an .npz (--output preds.npz)"
            )
        out = out.reshape(len(out), -1)
        if spec.kind == "binary":
            prob = torch.sigmoid(out[:, 0])
            label = (prob >= 0.5).to(torch.int64).numpy()
            names = _class_names(spec, 2)  # e.g. ["no", "yes"] or [-1, 1]: the table's values
            put(task, _named(names, label), task)
            put(f"{task}_prob", prob.numpy(), task)
        elif spec.kind == "multiclass":
            probs = torch.softmax(out, dim=1).numpy()
            names = _class_names(spec, probs.shape[1])
            best = probs.argmax(axis=1)
            put(task, _named(names, best), task)
            for c in range(probs.shape[1]):
                put(f"{task}_prob_{names[c] if names else c}", probs[:, c], task)
        else:
            values = get_task_kind(spec.kind).predict(spec, out.reshape(
                raw[spec.name].shape).float()).detach().cpu()
            values = values.reshape(len(values), -1).numpy()
            if values.shape[1] == 1:
                put(task, values[:, 0], task)
            else:
                for i in range(values.shape[1]):
                    put(f"{task}_{i}", values[:, i], task)
    return columns


def _class_names(spec: TaskSpec, n: int) -> list[str | int] | None:
    """The task's class names (``options["classes"]``, as the label table spelled them)."""
    names = (spec.options or {}).get("classes")
    if isinstance(names, (list, tuple)) and len(names) == n and all(
        isinstance(c, (str, int)) and not isinstance(c, bool) for c in names
    ):
        return list(names)
    return None


def _named(names: list[str | int] | None, ids: np.ndarray) -> np.ndarray:
    if names is None:
        return ids
    return np.asarray(names, dtype=object)[ids]


def write_table(path: str | Path, key: tuple[str, Sequence[Any]],
                columns: Mapping[str, np.ndarray]) -> Path:
    """Write the key column and ``columns`` to ``path`` (CSV/TSV or Parquet by its suffix).

    Raises:
        ExportError: another suffix (the ones known are listed), pandas or pyarrow missing,
            or a task column named like the key column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ExportError(f"cannot write predictions to {path}: give a file ending in "
                          f"{', '.join(TABLE_SUFFIXES)} or .npz")
    try:
        import pandas as pd
    except ImportError:
        raise ExportError("writing a prediction table needs pandas; pip install pandas, or write "
                          "an .npz") from None
    name, values = key
    if name in columns:
        raise ExportError(f"a task's prediction column is called {name!r}, like the row key; "
                          "write an .npz instead (one array per task)")
    frame = pd.DataFrame({name: list(values), **{k: v for k, v in columns.items()}})
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine)
        except ImportError:
            raise ExportError("writing Parquet needs pyarrow; pip install pyarrow, or write a "
                              ".csv") from None
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    return path
