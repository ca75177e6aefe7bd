"""Task kinds inferred from a label column, with an explicit override.

The rules, applied to the labels that are present (missing: NaN, an empty cell, ``None``):

- booleans, or exactly two distinct values (``0/1``, ``-1/1``, ``"no"/"yes"``) → ``binary``;
  two values other than 0 and 1 are mapped in sorted order to 0 and 1, and the map is kept;
- whole numbers with at most :data:`MAX_CLASSES` distinct values → ``multiclass``; ids that are
  not already ``0..K-1`` are re-encoded in sorted order (the map is kept);
- text with at most :data:`MAX_CLASSES` distinct values → ``multiclass`` (codes in sorted order);
- any other numbers → ``regression``.

For binary labels, ``-1`` next to 0 and 1 means "missing" (as :mod:`mtlsearch.tasks.kinds`
defines it); for classes, ``-1`` is missing. ``kinds={"age": "regression"}`` overrides a guess.

Example:
    >>> import numpy as np
    >>> infer_task("smiling", np.array([-1, 1, 1, -1])).kind
    'binary'
    >>> infer_task("age", np.array([21.5, 30.0, 44.1])).kind
    'regression'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlsearch.errors import DatasetError

__all__ = ["MAX_CLASSES", "InferredTask", "infer_task", "infer_tasks", "KINDS"]

#: Most distinct whole-number (or text) values a column may have to be guessed as classes.
MAX_CLASSES = 50
#: Kinds a table or array column can be given explicitly.
KINDS = ("binary", "multiclass", "regression", "ranking")


@dataclass
class InferredTask:
    """One task's kind, its encoded labels (float, NaN missing) and the label map if any.

    Attributes:
        name: The task (column or array) name.
        kind: ``binary``, ``multiclass``, ``regression`` or ``ranking``.
        labels: The encoded labels: 0/1 (binary), class ids (multiclass), values; NaN missing.
        classes: The original value of each code (``classes[k]`` was encoded as ``k``), or
            ``None`` when the labels were kept as they are.
        inferred: Whether the kind was guessed (not given in ``kinds``).
    """

    name: str
    kind: str
    labels: np.ndarray
    classes: list[Any] | None = None
    inferred: bool = True

    @property
    def num_classes(self) -> int | None:
        """Classes of a multiclass task (largest id + 1, at least 2)."""
        if self.kind != "multiclass":
            return None
        present = self.labels[~np.isnan(self.labels)]
        largest = int(present.max()) if present.size else 1
        return max(largest + 1, len(self.classes or ()), 2)


def _missing_mask(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values],
                        dtype=bool)
    return np.zeros(values.shape[0], dtype=bool)


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value (JSON-ready label maps)."""
    return v.item() if isinstance(v, np.generic) else v


def _column_types(name: str, present: np.ndarray, where: str) -> str:
    """``"number"``, ``"text"`` or ``"bool"`` for an object column; mixed types are refused."""
    kinds = set()
    for v in present:
        if isinstance(v, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(v, (int, float, np.integer, np.floating)):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("text")
        else:
            kinds.add(type(v).__name__)
    if kinds == {"text"}:  # a CSV cell of text among numbers makes the whole column text
        numeric = [_is_number(v) for v in present]
        if any(numeric) and not all(numeric):
            num = next(v for v, k in zip(present, numeric) if k)
            txt = next(v for v, k in zip(present, numeric) if not k)
            raise DatasetError(
                f"{where}column {name!r} mixes numbers and text (number {num!r}, text {txt!r}; "
                f"{len(numeric) - sum(numeric)} of {len(numeric)} values are text); make every "
                "value of the column the same type: all numbers (missing: an empty cell) or all "
                "text labels"
            )
    if len(kinds) > 1:
        examples = {}
        for v in present:
            examples.setdefault(type(v).__name__, v)
        shown = ", ".join(f"{k} {v!r}" for k, v in list(examples.items())[:4])
        raise DatasetError(
            f"{where}column {name!r} mixes types ({shown}); make every value of the column the "
            "same type: all numbers (missing: an empty cell) or all text labels"
        )
    return kinds.pop() if kinds else "number"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encode(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    present = values[~missing]
    classes = sorted(set(present.tolist()))
    code = {c: i for i, c in enumerate(classes)}
    out = np.full(values.shape[0], np.nan)
    out[~missing] = [code[v] for v in present.tolist()]
    return out, [_plain(c) for c in classes]


def infer_task(
    name: str, values: Any, *, kind: str | None = None, where: str = ""
) -> InferredTask:
    """The kind and encoded labels of one task column (see the module docstring).

    Args:
        name: Task name, for messages.
        values: One label per sample (numbers, booleans or text; missing as NaN/None).
        kind: The kind to use instead of guessing.
        where: A prefix naming the file for messages (e.g. ``"attrs.csv: "``).

    Raises:
        DatasetError: mixed types, text for a regression task, an unknown kind, or labels
            that do not fit the kind given.
    """
    arr = np.asarray(values)
    if kind is not None and kind not in KINDS:
        # another registered kind (dense tasks, plugins): its labels go to it unchanged
        from mtlsearch.tasks.kinds import list_task_kinds

        known = list_task_kinds()
        if kind not in known:
            raise DatasetError(f"{where}kinds: task {name!r} has the unknown kind {kind!r}; "
                               f"known kinds: {', '.join(known)}")
        return InferredTask(name, kind, arr, None, False)
    if arr.ndim != 1:
        if kind in (None, "regression") and arr.dtype.kind in "biuf" and arr.ndim > 1:
            return InferredTask(name, "regression", arr.astype(np.float64), None, kind is None)
        raise DatasetError(f"{where}task {name!r} must have one label per sample, got shape "
                           f"{arr.shape}")
    missing = _missing_mask(arr)
    present = arr[~missing]
    if arr.dtype.kind == "O":
        typ = _column_types(name, present, where)
        if typ == "number":
            arr = np.array([np.nan if m else float(v) for v, m in zip(arr, missing)])
        elif typ == "bool":
            arr = np.array([np.nan if m else float(v) for v, m in zip(arr, missing)])
            typ = "number"
    elif arr.dtype.kind in "US":
        typ = "text"
    elif arr.dtype.kind in "biuf":
        typ = "number"
        arr = arr.astype(np.float64)
    else:
        raise DatasetError(f"{where}task {name!r} has labels of dtype {arr.dtype}; give numbers "
                           "or text labels")
    given = kind is not None
    if typ == "text":
        distinct = len(set(present.tolist()))
        if kind is None:
            if distinct > MAX_CLASSES:
                raise DatasetError(
                    f"{where}task {name!r} has {distinct} distinct text labels (more than "
                    f"{MAX_CLASSES} are never guessed as classes); pass "
                    f"kinds={{{name!r}: 'multiclass'}} if they are classes"
                )
            kind = "binary" if distinct == 2 else "multiclass"
        if kind in ("regression", "ranking"):
            raise DatasetError(f"{where}task {name!r} has text labels but kind {kind!r}; give "
                               "numbers for a regression or ranking task")
        if kind == "binary" and distinct > 2:
            raise DatasetError(f"{where}binary task {name!r} has {distinct} distinct labels; "
                               f"pass kinds={{{name!r}: 'multiclass'}}")
        labels, classes = _encode(arr.astype(object), missing)
        return InferredTask(name, kind, labels, classes, not given)
    present_f = arr[~np.isnan(arr)]
    if np.isinf(present_f).any():
        raise DatasetError(f"{where}task {name!r} contains infinite labels; use NaN (an empty "
                           "cell) for missing labels")
    distinct = np.unique(present_f)
    whole = bool(np.all(distinct % 1 == 0))
    if kind is None:
        if distinct.size <= 2 or (distinct.size == 3 and set(distinct.tolist()) == {-1, 0, 1}):
            kind = "binary"
        elif whole and distinct.size <= MAX_CLASSES:
            kind = "multiclass"
        else:
            kind = "regression"
    if kind in ("regression", "ranking"):
        return InferredTask(name, kind, arr, None, not given)
    if kind == "binary":
        values_set = set(distinct.tolist())
        if values_set <= {0.0, 1.0, -1.0} and values_set != {-1.0, 1.0}:
            return InferredTask(name, kind, np.where(arr == -1, np.nan, arr), None, not given)
        if distinct.size > 2:
            raise DatasetError(
                f"{where}binary task {name!r} has {distinct.size} distinct labels "
                f"{[_plain(v) for v in distinct[:5]]}; binary labels are two values (missing: "
                f"empty/NaN); pass kinds={{{name!r}: 'multiclass'}} or 'regression'"
            )
        labels, classes = _encode(arr, np.isnan(arr))
        return InferredTask(name, kind, labels, [_int_if_whole(c) for c in classes], not given)
    # multiclass
    if not whole:
        raise DatasetError(f"{where}multiclass task {name!r} has labels that are not whole "
                           f"numbers (e.g. {_plain(distinct[distinct % 1 != 0][0])}); pass "
                           f"kinds={{{name!r}: 'regression'}} or give class ids")
    arr = np.where(arr == -1, np.nan, arr)  # -1: a missing class
    ids = distinct[distinct != -1]
    if ids.size and ids.min() >= 0 and np.array_equal(ids, np.arange(ids.size)):
        return InferredTask(name, kind, arr, None, not given)
    labels, classes = _encode(arr, np.isnan(arr))
    return InferredTask(name, kind, labels, [_int_if_whole(c) for c in classes], not given)


def _int_if_whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def infer_tasks(
    columns: Mapping[str, Any], kinds: Mapping[str, str] | None = None, *, where: str = ""
) -> list[InferredTask]:
    """:func:`infer_task` for every column; ``kinds`` must name only columns that are tasks."""
    kinds = dict(kinds or {})
    unknown = [k for k in kinds if k not in columns]
    if unknown:
        raise DatasetError(f"{where}kinds names {unknown}, which are not tasks; the tasks are "
                           f"{list(columns)}")
    return [infer_task(n, v, kind=kinds.get(n), where=where) for n, v in columns.items()]
