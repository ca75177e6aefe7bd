"""Any map-style ``torch.utils.data.Dataset`` whose items are ``(x, labels)``.

``labels`` is ``{task: y}`` (the task names are its keys) or a vector ``y`` with one entry per
task (pass ``tasks=[names]``), or one scalar with one task name. The labels are read in one
pass when the dataset is wrapped (a split, kinds and class checks need them); the inputs are
kept in memory when they are small and read item by item, by DataLoader workers, when they
are large (``streaming="auto"``, the same threshold as image folders).

Example:
    >>> import torch
    >>> class Pairs(torch.utils.data.Dataset):
    ...     def __len__(self): return 40
    ...     def __getitem__(self, i): return torch.full((3,), float(i)), {"odd": i % 2}
    >>> from_torch_dataset(Pairs()).task_names
    ['odd']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mtlsearch.data.builtin._common import check_fractions, check_seed
from mtlsearch.data.checks import check_inputs
from mtlsearch.data.sources._build import make_splits, name_list
from mtlsearch.data.sources.infer import infer_tasks
from mtlsearch.data.streaming import (
    LoaderOptions,
    StreamingDataset,
    TorchDatasetSource,
    should_stream,
)
from mtlsearch.errors import DatasetError

__all__ = ["from_torch_dataset"]


def _labels_of(item: Any, i: int, names: list[str] | None) -> dict[str, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DatasetError(f"item {i} of the dataset is a {type(item).__name__}, not a pair "
                           "(x, labels); return (x, {task: y}) or (x, y_vector)")
    y = item[1]
    if isinstance(y, Mapping):
        return {str(k): (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v)
                for k, v in y.items()}
    values = torch.as_tensor(y).reshape(-1)
    if names is None:
        raise DatasetError(f"item {i} has its labels as a vector of {values.numel()} values; "
                           "pass tasks=[...] with one task name per entry (or return "
                           "{task: y} from __getitem__)")
    if values.numel() != len(names):
        raise DatasetError(f"item {i} has {values.numel()} label values but tasks names "
                           f"{len(names)}: {names}")
    return {n: float(v) for n, v in zip(names, values.tolist(), strict=True)}


def from_torch_dataset(
    dataset: Any,
    *,
    tasks: Sequence[str] | str | None = None,
    kinds: Mapping[str, str] | None = None,
    streaming: Any = "auto",
    num_workers: int | None = None,
    metric: Any = None,
    pos_weight: Any = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    name: str = "torch_dataset",
) -> Any:
    """Splits over a map-style torch dataset of ``(x, {task: y})`` or ``(x, y_vector)`` items.

    Args:
        dataset: Has ``len()`` and ``dataset[i] -> (x, labels)``; ``x`` a tensor or array.
        tasks: Task names: the vector entries' names, or the keys to keep from a dict.
        kinds: ``{task: kind}`` overriding the inferred kinds.
        streaming: ``True``, ``False`` or ``"auto"`` (see :mod:`mtlsearch.data.streaming`).
        num_workers: DataLoader workers when streaming.
        metric, pos_weight: Binary tasks' options (see :func:`mtlsearch.data.sources.load_npz`).
        seed, val_fraction, test_fraction: The seeded split.
        name: The dataset's name.

    Raises:
        DatasetError: items that are not pairs, a labels vector without task names, items
            whose tasks or input shapes differ, labels that do not fit their kind.
    """
    seed = check_seed(name, seed)
    val_fraction, test_fraction = check_fractions(name, val_fraction, test_fraction)
    try:
        n = len(dataset)
    except TypeError:
        raise DatasetError(f"{name}: the dataset has no len(); give a map-style Dataset "
                           "(an IterableDataset cannot be split)") from None
    if n == 0:
        raise DatasetError(f"{name}: the dataset is empty")
    names = name_list(name, "tasks", tasks)
    first = dataset[0]
    first_labels = _labels_of(first, 0, names)
    keys = names if (names and not isinstance(first[1], Mapping)) else (
        names or list(first_labels))
    missing = [k for k in keys if k not in first_labels]
    if missing:
        raise DatasetError(f"{name}: item 0 has no labels for {missing}; its tasks are "
                           f"{list(first_labels)}")
    shape = tuple(torch.as_tensor(first[0]).shape)
    est = n * int(np.prod(shape)) * 4
    stream = should_stream(streaming, est, source=name)
    labels: dict[str, list[Any]] = {k: [] for k in keys}
    inputs = []
    for i in range(n):
        item = first if i == 0 else dataset[i]
        got = _labels_of(item, i, names)
        for k in keys:
            if k not in got:
                raise DatasetError(f"{name}: item {i} has no label for task {k!r} (item 0 has "
                                   "one); return every task's label, NaN or -1 when missing")
            labels[k].append(np.nan if got[k] is None else got[k])
        if not stream:
            x = torch.as_tensor(item[0])
            if tuple(x.shape) != shape:
                raise DatasetError(f"{name}: item {i}'s input has shape {tuple(x.shape)}, item "
                                   f"0's {shape}; every input needs one shape")
            inputs.append(x)
    columns = {k: np.asarray(v, dtype=object if any(isinstance(e, str) for e in v) else None)
               for k, v in labels.items()}
    inferred = infer_tasks(columns, kinds, where=f"{name}: ")
    if stream:
        source = TorchDatasetSource(dataset)
        loader = LoaderOptions(num_workers=num_workers)

        def part(rows: np.ndarray, targets: dict[str, np.ndarray], specs: list[Any]) -> Any:
            # no rescaling: in memory, integer inputs become floats as they are, too
            return StreamingDataset(source, rows, targets, specs, loader=loader, scale=False)

        X = None
    else:
        part = None  # type: ignore[assignment]
        X = check_inputs(torch.stack(inputs), what=f"the inputs of {name}")
    return make_splits(
        name, n, inferred, part, X,
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        metric=metric, pos_weight=pos_weight, info={"streaming": stream},
        kwargs={"tasks": keys, "kinds": dict(kinds or {}), "metric": metric,
                "pos_weight": pos_weight},
    )
