"""Checks of your own arrays, run when a dataset is built, before any training.

Each refusal is a :class:`~mtlsearch.errors.DatasetError` naming the array or task and the
fix: inputs or labels that are text, dates, Python objects, records or complex numbers;
inputs with NaN or infinity; multiclass labels that are all missing, not class ids, or so
large that the head inferred from them would be absurd.

Example:
    >>> import numpy as np
    >>> infer_num_classes("digit", np.array([0, 3, 9, -1]))
    10
    >>> check_inputs(np.array([[1.0, np.nan]]))
    Traceback (most recent call last):
    ...
    mtlsearch.errors.DatasetError: the inputs contain 1 NaN value (first in row 0); ...
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.errors import DatasetError

__all__ = ["MAX_INFERRED_CLASSES", "check_inputs", "check_labels", "infer_num_classes"]

#: Largest number of classes inferred from multiclass labels; more must be given explicitly.
MAX_INFERRED_CLASSES = 100_000
_CHUNK = 1 << 24  # elements checked at a time (bounded temporary memory on large image sets)
_KINDS = {
    "U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans",
    "V": "records (a structured array)", "c": "complex numbers",
}


def _as_array(value: Any, what: str, fix: str) -> np.ndarray | Tensor:
    """A tensor stays a tensor; anything else becomes a numpy array (ragged lists refused)."""
    if isinstance(value, Tensor):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise DatasetError(f"{what} cannot be read as one array ({exc}); {fix}") from None


def _kind_problem(arr: np.ndarray | Tensor) -> str | None:
    if isinstance(arr, Tensor):
        return "complex numbers" if arr.is_complex() else None
    if arr.dtype.names is not None:
        return _KINDS["V"]
    return _KINDS.get(arr.dtype.kind)


def check_inputs(inputs: Any, *, what: str = "the inputs") -> Tensor:
    """``inputs`` as a floating tensor, refusing non-numeric arrays and NaN or infinity.

    Booleans and integers become ``float32``; floating inputs keep their type.

    Raises:
        DatasetError: naming the dtype, or how many values are NaN/infinite and the first row.
    """
    arr = _as_array(inputs, what, "give one numeric array with a row per sample")
    problem = _kind_problem(arr)
    if problem is not None:
        raise DatasetError(
            f"{what} are {problem} (dtype {arr.dtype}), not numbers; convert them to numeric "
            "features first (e.g. one-hot or integer codes for categories)"
        )
    x = torch.as_tensor(arr)
    if x.ndim == 0:
        raise DatasetError(f"{what} must have one row per sample, got a scalar")
    x = x.float() if not x.dtype.is_floating_point else x
    _check_finite(x, what)
    return x


def _check_finite(x: Tensor, what: str) -> None:
    flat = x.reshape(len(x), -1) if len(x) else x.reshape(0, 1)
    rows = max(1, _CHUNK // max(flat.shape[1], 1))
    first, nan, inf = None, 0, 0
    for start in range(0, len(flat), rows):
        chunk = flat[start : start + rows]
        if first is None and bool(torch.isfinite(chunk).all()):
            continue
        if first is None:
            first = start + int((~torch.isfinite(chunk)).any(dim=1).nonzero()[0, 0])
        nan += int(torch.isnan(chunk).sum())
        inf += int(torch.isinf(chunk).sum())
    if first is None:
        return
    parts = [f"{n} {label}{'s' if n != 1 else ''}" for n, label in
             ((nan, "NaN value"), (inf, "infinite value")) if n]
    raise DatasetError(
        f"{what} contain {' and '.join(parts)} (first in row {first}); a network cannot learn "
        "from them: impute or drop those rows first (e.g. np.nan_to_num, or "
        "X[np.isfinite(X).all(axis=1)])"
    )


def check_labels(task: str, labels: Any) -> np.ndarray | Tensor:
    """``labels`` of ``task`` as an array or tensor of numbers (booleans, integers, floats).

    Raises:
        DatasetError: text, dates, objects, records or complex labels, naming the task.
    """
    arr = _as_array(labels, f"the labels of task {task!r}", "give one label per sample")
    problem = _kind_problem(arr)
    if problem is not None:
        fix = ("encode them as class ids, e.g. codes = np.unique(y, return_inverse=True)[1]"
               if problem in ("text", "bytes", "Python objects") else
               "convert them to numbers (missing labels: NaN, or -1 for classes)")
        raise DatasetError(
            f"the labels of task {task!r} are {problem} (dtype {arr.dtype}), not numbers; {fix}"
        )
    if arr.ndim == 0:
        raise DatasetError(f"the labels of task {task!r} must have one entry per sample, got a "
                           "scalar")
    return arr


def infer_num_classes(task: str, labels: Any) -> int:
    """The number of classes of a multiclass task from its labels (largest class id + 1).

    Missing labels (NaN or -1) are ignored. At least 2, at most :data:`MAX_INFERRED_CLASSES`:
    a label of 10⁹ is almost always a raw identifier, not a class id, and would build a head
    of a billion outputs.

    Raises:
        DatasetError: no label present, non-integer or infinite labels, or too many classes.
    """
    arr = check_labels(task, labels)
    values = arr.detach().cpu().numpy() if isinstance(arr, Tensor) else arr
    values = values.reshape(-1)
    if values.dtype.kind == "f":
        present = values[~np.isnan(values)]
        if not np.isfinite(present).all():
            raise DatasetError(f"the labels of multiclass task {task!r} contain infinity; class "
                               "ids are integers 0..K-1 (missing: NaN or -1)")
        if (present % 1 != 0).any():
            raise DatasetError(f"the labels of multiclass task {task!r} are not whole numbers; "
                               "class ids are integers 0..K-1 (missing: NaN or -1)")
    else:
        present = values
    present = present[present != -1]
    if present.size == 0:
        raise DatasetError(
            f"multiclass task {task!r} has no labels: all {values.size} are missing (NaN or -1); "
            "give it labels or drop the task"
        )
    largest = int(present.max())
    if int(present.min()) < 0:
        raise DatasetError(
            f"multiclass task {task!r} has the negative label {int(present.min())}; class ids "
            "are 0..K-1 (missing: -1 or NaN)"
        )
    if largest + 1 > MAX_INFERRED_CLASSES:
        raise DatasetError(
            f"multiclass task {task!r} has the label {largest}, so its head would need "
            f"{largest + 1:,} classes (more than {MAX_INFERRED_CLASSES:,} are never inferred); "
            "labels must be class ids 0..K-1: re-encode them with "
            "np.unique(y, return_inverse=True)[1], or pass "
            f"tasks=[TaskSpec({task!r}, kind='multiclass', num_classes=K)] to allow more"
        )
    return max(largest + 1, 2)
