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
    "read_npz",
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

    def with_targets(
        self, targets: Mapping[str, Any], tasks: Sequence[TaskSpec]
    ) -> MultiTaskDataset:
        """The same inputs (shared, not copied) with other targets and task specs."""
        new = MultiTaskDataset.__new__(MultiTaskDataset)
        MultiTaskDataset.__init__(new, self.inputs, targets, tasks)
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
        preprocessing: How raw inputs become the network's inputs
            (a :class:`mtlsearch.data.preprocess.Preprocessing`, e.g. for an image folder),
            recorded by the study and the export; ``None`` when inputs are used as given.
    """

    name: str
    train: MultiTaskDataset
    val: MultiTaskDataset
    test: MultiTaskDataset
    tasks: list[TaskSpec]
    info: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    preprocessing: Any = None

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


def read_npz(
    path: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    input_key: str = "X",
) -> tuple[Tensor, dict[str, np.ndarray], list[str]]:
    """The input array and the chosen task arrays of an ``.npz`` (only those are read).

    Returns:
        ``(inputs, {task: labels}, task names in order)``; the inputs checked
        (:func:`~mtlsearch.data.checks.check_inputs`), every task array one label per row.

    Raises:
        DatasetError: a missing file, input or named array (the arrays there are listed),
            an unsafe file (:class:`mtlsearch.safety.NpzReader`), row counts that differ.
    """
    from mtlsearch.safety import NpzReader

    path = Path(path)
    if not path.exists():  # a FIFO or a folder exists: NpzReader names what it is
        raise DatasetError(f"no such .npz file: {path}; check the path (relative paths start "
                           f"at {Path.cwd()})")
    try:
        with NpzReader(path) as data:
            shown = ", ".join(f"'{display_name(k, 40)}'" for k in sorted(data.files)[:20])
            if input_key not in data.members:
                raise DatasetError(
                    f"{path} has no input array {input_key!r}; its arrays are [{shown}]. "
                    "Pass input_key= to name the input."
                )
            missing = [k for k in [*(tasks or []), *(exclude or [])] if k not in data.files]
            if missing:
                raise DatasetError(f"{path} has no arrays {missing}; its arrays are [{shown}]")
            if input_key in (tasks or []):
                raise DatasetError(f"{path}: {input_key!r} is the input; it cannot be a task")
            names = list(tasks) if tasks else [
                k for k in data.files if k != input_key and k not in (exclude or [])]
            if not names:
                raise DatasetError(f"{path}: no task arrays left (arrays: [{shown}]); keep at "
                                   "least one")
            check_task_names(names)
            X = data.read(input_key)
            labels = {k: data.read(k) for k in names}
    except UnsafeInputError as exc:
        raise DatasetError(str(exc)) from None  # it names the file, the problem and the fix
    X = check_inputs(X, what=f"the inputs {input_key!r} of {path}")
    if len(X) == 0:
        raise DatasetError(f"{path}: the input {input_key!r} has no rows")
    for k, y in labels.items():
        if len(y) != len(X):
            raise DatasetError(f"{path}: array {k!r} has {len(y)} rows but the input "
                               f"{input_key!r} has {len(X)}; every task array needs one label "
                               "per input row (or exclude it)")
    return X, labels, names


def _names(option: str, value: Sequence[str] | str | None) -> list[str] | None:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if value is not None and not (isinstance(value, (list, tuple))
                                  and all(isinstance(v, str) for v in value)):
        raise DatasetError(f"{option}={value!r} must be a list of array names, e.g. "
                           f"{option}=['a', 'b']")
    return None if value is None else list(value)


def from_npz(
    path: str | Path,
    *,
    input_key: str = "X",
    kinds: Mapping[str, str] | None = None,
    tasks: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> DatasetSplits:
    """Load an ``.npz`` file: the array ``X`` is the input, the other arrays are tasks.

    ``tasks=["smile", "age"]`` picks the task arrays, ``exclude=["ids"]`` drops some (an id or
    weight array is not a task); kinds are inferred from the labels (0/1 or two values:
    binary, a few whole numbers: multiclass, other numbers: regression; see
    :mod:`mtlsearch.data.sources.infer`) unless ``kinds=`` names them. The registered ``npz``
    dataset, :func:`mtlsearch.data.sources.load_npz`, also takes binary tasks' ``metric`` and
    ``pos_weight``.

    The file is read member by member (:class:`mtlsearch.safety.NpzReader`): pickled object
    arrays, non-zip files, a ``.npy`` instead of an ``.npz``, headers that disagree with the
    data and decompression bombs are refused before their data is read; every task array's
    name must be a valid task name.
    """
    from mtlsearch.data.sources.infer import infer_tasks

    path = Path(path)
    X, labels, _ = read_npz(path, tasks=_names("tasks", tasks), exclude=_names("exclude", exclude),
                            input_key=input_key)
    inferred = infer_tasks(labels, kinds, where=f"{path}: ")
    specs = []
    for t in inferred:
        if t.kind == "multiclass":
            specs.append(TaskSpec(t.name, kind=t.kind, num_classes=t.num_classes))
        elif t.kind == "regression":
            out_dim = int(np.prod(t.labels.shape[1:])) if t.labels.ndim > 1 else 1
            specs.append(TaskSpec(t.name, kind=t.kind, out_dim=out_dim))
        else:
            specs.append(TaskSpec(t.name, kind=t.kind))
    splits = from_arrays(X, {t.name: t.labels for t in inferred}, tasks=specs, seed=seed,
                         val_fraction=val_fraction, test_fraction=test_fraction, name=path.stem)
    label_maps = {t.name: t.classes for t in inferred if t.classes is not None}
    splits.info.update({"kinds": {t.name: t.kind for t in inferred},
                        **({"label_maps": label_maps} if label_maps else {})})
    return splits
