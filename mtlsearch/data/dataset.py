"""Multi-task datasets: inputs with one target per task, and seeded train/val/test splits.

Datasets are held in memory as tensors; batches are tensor slices, which is much faster than a
per-sample ``DataLoader`` for the small inputs a search trains on many times.

Everything is checked when a dataset is built, before any training (:mod:`mtlsearch.data.checks`,
:mod:`mtlsearch.tasks.names`): task names follow the name rule and differ in their module keys;
inputs are numbers without NaN or infinity; labels are numbers; a multiclass task's classes are
inferred only up to 100 000; ``.npz`` files are read member by member with every header checked.

Example:
    >>> import numpy as np
    >>> X = np.random.rand(100, 4).astype("float32")
    >>> splits = from_arrays(X, {"a": (X[:, 0] > 0.5), "b": X[:, 1]}, kinds={"b": "regression"})
    >>> len(splits.train) + len(splits.val) + len(splits.test)
    100
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.data.checks import check_inputs, check_labels, infer_num_classes
from mtlsearch.errors import DatasetError, MTLSearchError, UnsafeInputError
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind
from mtlsearch.tasks.names import check_task_names, display_name

__all__ = [
    "BatchTargets",
    "MultiTaskDataset",
    "DatasetSplits",
    "from_arrays",
    "from_npz",
    "split_indices",
]

Batch = tuple[Tensor, Mapping[str, Tensor]]


class BatchTargets(Mapping):
    """A batch's ``{task: targets}``, sliced only for the tasks that are read.

    With one active task per batch and hundreds of tasks, slicing every task's labels for
    every batch would cost more than the training step itself.
    """

    def __init__(self, targets: Mapping[str, Tensor], index: Tensor | slice):
        self._targets, self._index = targets, index
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, task: str) -> Tensor:
        if task not in self._cache:
            self._cache[task] = self._targets[task][self._index]
        return self._cache[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


class MultiTaskDataset(torch.utils.data.Dataset):
    """Inputs ``X`` (N, ...) and a target tensor per task, checked against the task specs.

    Args:
        inputs: Tensor or array with one row per sample (numbers, no NaN or infinity).
        targets: ``{task name: labels}``, each with one entry per sample.
        tasks: The task specs; targets are validated and converted by each task's kind.

    Raises:
        TaskError: an invalid task name, or two names sharing a module key.
        DatasetError: inputs or labels that are not numbers, inputs with NaN or infinity,
            targets without a task or tasks without targets, wrong label counts.
    """

    def __init__(self, inputs: Any, targets: Mapping[str, Any], tasks: Sequence[TaskSpec]):
        self.tasks = list(tasks)
        names = check_task_names(t.name for t in self.tasks)
        self.inputs = check_inputs(inputs)
        missing = [n for n in names if n not in targets]
        extra = [n for n in targets if n not in names]
        if missing or extra:
            raise DatasetError(
                f"targets and tasks disagree: no targets for {missing}, targets without a task "
                f"spec for {extra}"
            )
        self.targets: dict[str, Tensor] = {}
        for spec in self.tasks:
            labels = check_labels(spec.name, targets[spec.name])
            t = get_task_kind(spec.kind).prepare_targets(spec, labels)
            if t.shape[0] != len(self.inputs):
                raise DatasetError(
                    f"task {spec.name!r} has {t.shape[0]} labels for {len(self.inputs)} inputs"
                )
            self.targets[spec.name] = t

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> Batch:
        return self.inputs[i], {k: v[i] for k, v in self.targets.items()}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample's input."""
        return tuple(self.inputs.shape[1:])

    def subset(self, index: Sequence[int] | Tensor) -> MultiTaskDataset:
        """A dataset of the given rows (shares no storage with this one)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        new = object.__new__(MultiTaskDataset)
        new.inputs = self.inputs[idx]
        new.tasks = self.tasks
        new.targets = {k: v[idx] for k, v in self.targets.items()}
        return new

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield ``(inputs, {task: targets})`` slices, shuffled with ``generator`` if asked.

        The targets are a :class:`BatchTargets` mapping: a task's labels are sliced when read.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
            yield self.inputs[idx], BatchTargets(self.targets, idx)

    def fingerprint(self) -> str:
        """A short hash of inputs and targets, used to key cached results."""
        h = hashlib.sha256()
        h.update(self.inputs.contiguous().numpy().tobytes())
        for name in sorted(self.targets):
            h.update(name.encode())
            h.update(self.targets[name].contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass
class DatasetSplits:
    """Train, validation and test splits over the same tasks.

    Attributes:
        name: Dataset name (as registered).
        train, val, test: The splits.
        tasks: Task specs, in a fixed order.
        info: Extra facts, e.g. ``{"groups": [[...], ...]}`` for planted task groups.
        kwargs: The arguments the dataset was loaded with (for reproducibility).
    """

    name: str
    train: MultiTaskDataset
    val: MultiTaskDataset
    test: MultiTaskDataset
    tasks: list[TaskSpec]
    info: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task_names(t.name for t in self.tasks)
        for split in ("train", "val", "test"):
            if len(getattr(self, split)) == 0:
                raise DatasetError(
                    f"dataset {self.name!r} has an empty {split} split; give it more samples or "
                    "change the split fractions"
                )
        self._check_classes()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def fingerprint(self) -> str:
        """Hash of all three splits (keys the single-task reference cache)."""
        parts = "".join(s.fingerprint() for s in (self.train, self.val, self.test))
        return hashlib.sha256(parts.encode()).hexdigest()[:16]

    def _check_classes(self) -> None:
        for spec in self.tasks:
            if spec.kind not in ("binary", "multiclass"):
                continue
            y = self.train.targets[spec.name]
            present = y[~torch.isnan(y)] if y.dtype.is_floating_point else y[y >= 0]
            classes = torch.unique(present).tolist()
            if len(classes) < 2:
                raise DatasetError(
                    f"task {spec.name!r} has a single class {classes} in its training split; "
                    "it cannot be learned: drop the task or re-split with another seed"
                )


def split_indices(
    n: int, *, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into train, validation and test indices."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
            "and sum to less than 1"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def _specs(
    targets: Mapping[str, Any],
    kinds: Mapping[str, str] | None,
    tasks: Sequence[TaskSpec] | None,
) -> list[TaskSpec]:
    if tasks is not None:
        return list(tasks)
    check_task_names(targets)  # before a name reaches a TaskSpec, a message or a key
    kinds = dict(kinds or {})
    unknown = set(kinds) - set(targets)
    if unknown:
        raise DatasetError(f"kinds given for tasks without targets: {sorted(unknown, key=str)}")
    specs = []
    for name, y in targets.items():
        kind = kinds.get(name, "binary")
        if kind == "multiclass":
            specs.append(TaskSpec(name, kind=kind, num_classes=infer_num_classes(name, y)))
        elif kind == "regression":
            arr = check_labels(name, y)
            specs.append(TaskSpec(name, kind=kind, out_dim=int(np.prod(arr.shape[1:])) or 1))
        else:
            specs.append(TaskSpec(name, kind=kind))
    return specs


def from_arrays(
    X: Any,
    targets: Mapping[str, Any],
    *,
    kinds: Mapping[str, str] | None = None,
    tasks: Sequence[TaskSpec] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    name: str = "arrays",
) -> DatasetSplits:
    """Bring your own data: inputs ``X`` and ``{task: labels}``, split with ``seed``.

    Task kinds default to ``binary``; pass ``kinds={"age": "regression"}`` or full ``tasks``.
    A multiclass task's ``num_classes`` is inferred from its labels (largest id + 1, at most
    100 000; give ``tasks`` for more).

    Raises:
        TaskError: an invalid task name (see :mod:`mtlsearch.tasks.names`).
        DatasetError: empty data, non-numeric inputs or labels, NaN or infinite inputs, an
            absurd number of classes, labels that do not match the inputs.
    """
    if not isinstance(targets, Mapping):
        raise DatasetError(f"targets must be a mapping {{task name: labels}}, got "
                           f"{type(targets).__name__}")
    if len(targets) == 0:
        raise DatasetError("no tasks: pass at least one target array")
    try:
        n = len(X)
    except TypeError:
        raise DatasetError(f"X must be an array with one row per sample, got "
                           f"{type(X).__name__}") from None
    if n == 0:
        raise DatasetError("the dataset is empty: X has no rows")
    specs = _specs(targets, kinds, tasks)
    try:
        full = MultiTaskDataset(X, targets, specs)
    except MTLSearchError:
        raise
    train, val, test = split_indices(
        n, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return DatasetSplits(
        name=name,
        train=full.subset(train),
        val=full.subset(val),
        test=full.subset(test),
        tasks=specs,
        kwargs={"seed": seed},
    )


def from_npz(
    path: str | Path,
    *,
    input_key: str = "X",
    kinds: Mapping[str, str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> DatasetSplits:
    """Load an ``.npz`` file: the array ``X`` is the input, every other array a task's labels.

    The file is read member by member (:class:`mtlsearch.safety.NpzReader`): pickled object
    arrays, non-zip files, a ``.npy`` instead of an ``.npz``, headers that disagree with the
    data and decompression bombs are refused before their data is read; every array name
    other than ``input_key`` must be a valid task name.
    """
    from mtlsearch.safety import NpzReader

    path = Path(path)
    if not path.exists():  # a FIFO or a folder exists: NpzReader names what it is
        raise DatasetError(f"no such .npz file: {path}")
    try:
        with NpzReader(path) as data:
            if input_key not in data.members:
                shown = ", ".join(f"'{display_name(k, 40)}'" for k in sorted(data.files)[:20])
                raise DatasetError(
                    f"{path} has no input array {input_key!r}; its arrays are [{shown}]. "
                    "Pass input_key= to name the input."
                )
            check_task_names(k for k in data.files if k != input_key)
            arrays = {k: data.read(k) for k in data.files}
    except UnsafeInputError as exc:
        raise DatasetError(str(exc)) from None  # it names the file, the problem and the fix
    X = arrays.pop(input_key)
    return from_arrays(
        X,
        arrays,
        kinds=kinds,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        name=path.stem,
    )
