"""``multi_digits``: two handwritten digits side by side, six binary tasks in three known groups.

Each image is a ``(1, 12, 24)`` canvas holding one of scikit-learn's 8x8 digits in each 12x12
half, moved by a small random shift. The tasks ask about the left digit, the right digit or
both, so the grouping a search should find is known:

* ``left``:  ``left_even``, ``left_ge5``
* ``right``: ``right_even``, ``right_ge5``
* ``both``:  ``left_gt_right``, ``sum_ge10``

The 1,797 source digits are first split 60/20/20 into train, validation and test pools, and
pairs are drawn only within a pool, so no test image reuses a digit drawing seen in training.

Example:
    >>> from mtlsearch.data.builtin.multi_digits import load_multi_digits
    >>> splits = load_multi_digits(n_train=300, n_val=100, n_test=100)
    >>> splits.input_shape, splits.info["group_names"]
    ((1, 12, 24), ['left', 'right', 'both'])
"""

from __future__ import annotations

import numpy as np

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec

from ._common import check_int, check_seed, select_tasks
from .digits import source_digits

__all__ = ["load_multi_digits", "task_labels", "TASKS", "GROUPS"]

GROUPS: dict[str, list[str]] = {
    "left": ["left_even", "left_ge5"],
    "right": ["right_even", "right_ge5"],
    "both": ["left_gt_right", "sum_ge10"],
}
TASKS: list[str] = [t for members in GROUPS.values() for t in members]

# Share of the source digits in the train, validation and test pools.
POOL_FRACTIONS = (0.6, 0.2, 0.2)
DIGIT = 8  # side of a source digit in pixels


def task_labels(left: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    """The six tasks' 0/1 labels from the left and right digit classes.

    Example:
        >>> {k: int(v[0]) for k, v in task_labels(np.array([7]), np.array([3])).items()}
        {'left_even': 0, 'left_ge5': 1, 'right_even': 0, 'right_ge5': 0, 'left_gt_right': 1, 'sum_ge10': 1}
    """
    left, right = np.asarray(left), np.asarray(right)
    rules = {
        "left_even": left % 2 == 0,
        "left_ge5": left >= 5,
        "right_even": right % 2 == 0,
        "right_ge5": right >= 5,
        "left_gt_right": left > right,  # equal digits are label 0
        "sum_ge10": left + right >= 10,
    }
    return {name: rule.astype(np.float32) for name, rule in rules.items()}


def _pools(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    n_train = int(round(n * POOL_FRACTIONS[0]))
    n_val = int(round(n * POOL_FRACTIONS[1]))
    cuts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {k: np.sort(v) for k, v in cuts.items()}


def _compose(
    images: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    half: int,
    shift: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Canvases ``(n, 1, half, 2*half)`` and the top-left corner of each placed digit."""
    n = len(left)
    centre = (half - DIGIT) // 2
    # corners[:, 0] = left digit (row, col), corners[:, 1] = right digit (row, col)
    corners = centre + rng.integers(-shift, shift + 1, size=(n, 2, 2))
    corners[:, 1, 1] += half  # the right digit lives in the right half
    canvas = np.zeros((n, half, 2 * half), dtype=np.float32)
    grid = np.arange(DIGIT)
    samples = np.arange(n)[:, None, None]
    # One fancy-indexed write per side places all n digits at their own offsets at once.
    for side, src in enumerate((left, right)):
        rows = corners[:, side, 0, None, None] + grid[None, :, None]
        cols = corners[:, side, 1, None, None] + grid[None, None, :]
        canvas[samples, rows, cols] = images[src]
    return canvas[:, None], corners


def load_multi_digits(
    *,
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 1000,
    n_test: int = 1000,
    shift: int = 2,
    half_size: int = 12,
    tasks: list[str] | None = None,
) -> DatasetSplits:
    """Pairs of 8x8 digits on a ``(1, half_size, 2*half_size)`` canvas with six binary tasks.

    Args:
        seed: Seeds the source-digit pools, the pairing and the shifts.
        n_train: Number of composed training images.
        n_val: Number of validation images.
        n_test: Number of test images.
        shift: Largest random move of each digit from the centre of its half, in pixels
            (each axis, uniform in ``[-shift, shift]``).
        half_size: Side of each square half of the canvas; it must fit ``8 + 2*shift``.
        tasks: Keep only these task names, in this order (default: all six).

    Returns:
        The splits. ``info`` holds ``groups`` (lists of task names) and ``group_names``, the
        known grouping; ``pools`` (source-digit rows of each split's pool);
        ``source_indices`` (per split, the ``left`` and ``right`` source row of every
        image); ``digit_labels`` (per split, the ``left`` and ``right`` digit classes) and
        ``corners`` (per split, ``[[row, col], [row, col]]`` of each digit's top-left pixel).

    Example:
        >>> s = load_multi_digits(seed=3, n_train=200, n_val=50, n_test=50, tasks=["sum_ge10"])
        >>> s.task_names, len(s.train)
        (['sum_ge10'], 200)
    """
    name = "multi_digits"
    seed = check_seed(name, seed)
    sizes = {
        "train": check_int(name, "n_train", n_train),
        "val": check_int(name, "n_val", n_val),
        "test": check_int(name, "n_test", n_test),
    }
    shift = check_int(name, "shift", shift, minimum=0)
    half_size = check_int(name, "half_size", half_size, minimum=DIGIT)
    if DIGIT + 2 * shift > half_size:
        raise DatasetError(
            f"{name}: shift={shift} moves an 8-pixel digit out of a {half_size}-pixel half; "
            f"use shift <= {(half_size - DIGIT) // 2} or half_size >= {DIGIT + 2 * shift}"
        )
    names = select_tasks(name, TASKS, tasks)

    images, digits = source_digits()
    rng = np.random.default_rng(seed)
    pools = _pools(len(digits), rng)
    specs = [TaskSpec(t, kind="binary") for t in names]
    parts: dict[str, MultiTaskDataset] = {}
    sources: dict[str, dict[str, list[int]]] = {}
    digit_labels: dict[str, dict[str, list[int]]] = {}
    corners: dict[str, list] = {}
    for split, n in sizes.items():
        left = rng.choice(pools[split], size=n)
        right = rng.choice(pools[split], size=n)
        x, corner = _compose(images, left, right, half_size, shift, rng)
        labels = task_labels(digits[left], digits[right])
        parts[split] = MultiTaskDataset(x, {t: labels[t] for t in names}, specs)
        sources[split] = {"left": left.tolist(), "right": right.tolist()}
        digit_labels[split] = {"left": digits[left].tolist(), "right": digits[right].tolist()}
        corners[split] = corner.tolist()

    groups = [[t for t in members if t in names] for members in GROUPS.values()]
    group_names = [g for g, members in zip(GROUPS, groups, strict=True) if members]
    return DatasetSplits(
        name=name,
        **parts,
        tasks=specs,
        info={
            "groups": [g for g in groups if g],
            "group_names": group_names,
            "pools": {k: v.tolist() for k, v in pools.items()},
            "source_indices": sources,
            "digit_labels": digit_labels,
            "corners": corners,
        },
        kwargs={
            "seed": seed,
            "n_train": sizes["train"],
            "n_val": sizes["val"],
            "n_test": sizes["test"],
            "shift": shift,
            "half_size": half_size,
            "tasks": None if tasks is None else names,
        },
    )
