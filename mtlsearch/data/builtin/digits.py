"""``digits``: scikit-learn's 1,797 bundled 8x8 handwritten digits as ten one-vs-rest tasks.

This is the homogeneous "MNIST" setup: every task sees the same images and asks "is this a
k?". No task grouping is planted; see ``multi_digits`` for one that is.

Example:
    >>> from mtlsearch.data.builtin.digits import load_digits
    >>> splits = load_digits(seed=0)
    >>> splits.task_names[:3], splits.input_shape
    (['is_0', 'is_1', 'is_2'], (1, 8, 8))
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, split_indices
from mtlsearch.tasks.kinds import TaskSpec

from ._common import check_fractions, check_seed, select_tasks

__all__ = ["load_digits", "source_digits"]

TASKS = [f"is_{k}" for k in range(10)]


@functools.lru_cache(maxsize=1)
def _read_source() -> tuple[np.ndarray, np.ndarray]:
    # Reading scikit-learn's bundled CSV directly skips importing scikit-learn (~0.8 s), which
    # keeps the default dataset quick to build; the public loader is the fallback.
    spec = importlib.util.find_spec("sklearn")
    path = (
        Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if spec and spec.origin
        else None
    )
    if path is not None and path.is_file():
        raw = np.loadtxt(path, delimiter=",")
        images, labels = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1].astype(np.int64)
    else:  # pragma: no cover - only on an unusual scikit-learn layout
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        images, labels = bunch.images, bunch.target.astype(np.int64)
    # Pixel values are counts 0..16; scale to [0, 1] once, here.
    images = (images / 16.0).astype(np.float32)
    images.flags.writeable = labels.flags.writeable = False  # shared by every caller
    return images, labels


def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 source digits: images ``(1797, 8, 8)`` in [0, 1] and labels ``(1797,)``.

    The arrays are cached and read-only; copy them before changing them.

    Example:
        >>> images, labels = source_digits()
        >>> images.shape, int(labels[0])
        ((1797, 8, 8), 0)
    """
    return _read_source()


def load_digits(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    tasks: list[str] | None = None,
) -> DatasetSplits:
    """Ten binary tasks ``is_0`` .. ``is_9`` on the 8x8 digits, inputs ``(1, 8, 8)`` in [0, 1].

    Args:
        seed: Seeds the train/val/test split.
        val_fraction: Share of the 1,797 images held out for validation.
        test_fraction: Share held out for testing.
        tasks: Keep only these task names (default: all ten).

    Returns:
        The splits; ``info["source_indices"]`` maps each split to its rows of the source
        digits, and ``info["digit_labels"]`` gives each split's digit classes.

    Example:
        >>> load_digits(seed=1, tasks=["is_3", "is_8"]).task_names
        ['is_3', 'is_8']
    """
    seed = check_seed("digits", seed)
    val_fraction, test_fraction = check_fractions("digits", val_fraction, test_fraction)
    names = select_tasks("digits", TASKS, tasks)
    images, labels = source_digits()
    specs = [TaskSpec(name, kind="binary") for name in names]
    idx = dict(
        zip(
            ("train", "val", "test"),
            split_indices(
                len(labels), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
            ),
            strict=True,
        )
    )
    parts = {}
    for split, rows in idx.items():
        y = labels[rows]
        targets = {name: (y == int(name[3:])).astype(np.float32) for name in names}
        parts[split] = MultiTaskDataset(images[rows][:, None].copy(), targets, specs)
    return DatasetSplits(
        name="digits",
        **parts,
        tasks=specs,
        info={
            "source_indices": {k: v.tolist() for k, v in idx.items()},
            "digit_labels": {k: labels[v].tolist() for k, v in idx.items()},
        },
        kwargs={
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "tasks": None if tasks is None else names,
        },
    )
