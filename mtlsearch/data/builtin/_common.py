"""Option checks and small helpers shared by the built-in loaders.

Every check raises :class:`~mtlsearch.errors.DatasetError` whose message names the dataset, the
option, the bad value and what to pass instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlsearch.errors import DatasetError

__all__ = [
    "check_int",
    "check_fraction",
    "check_fractions",
    "check_seed",
    "select_tasks",
    "slug",
    "cap_indices",
    "carve_val",
]


def check_seed(dataset: str, seed: Any) -> int:
    """``seed`` as a non-negative int (numpy's generators refuse negative seeds)."""
    return check_int(dataset, "seed", seed, minimum=0)


def check_int(
    dataset: str, option: str, value: Any, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """``value`` as an int in ``[minimum, maximum]``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DatasetError(
            f"{dataset}: option {option}={value!r} must be an integer, e.g. {option}={max(minimum, 1)}"
        )
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise DatasetError(
            f"{dataset}: option {option}={value} is out of range; pass an integer of at least "
            f"{minimum}{upper}"
        )
    return value


def check_fraction(
    dataset: str, option: str, value: Any, *, low: float = 0.0, high: float = 1.0
) -> float:
    """``value`` as a float strictly inside ``(low, high)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise DatasetError(
            f"{dataset}: option {option}={value!r} must be a number in ({low}, {high})"
        )
    value = float(value)
    if not (low < value < high) or math.isnan(value):
        raise DatasetError(
            f"{dataset}: option {option}={value} must lie strictly between {low} and {high}"
        )
    return value


def check_fractions(dataset: str, val_fraction: Any, test_fraction: Any) -> tuple[float, float]:
    """Validation and test fractions that leave some training data."""
    val = check_fraction(dataset, "val_fraction", val_fraction)
    test = check_fraction(dataset, "test_fraction", test_fraction)
    if val + test >= 1:
        raise DatasetError(
            f"{dataset}: val_fraction={val} and test_fraction={test} leave no training data; "
            "make them sum to less than 1"
        )
    return val, test


def select_tasks(dataset: str, known: Sequence[str], tasks: Any) -> list[str]:
    """The task names to keep, in the order asked; ``None`` keeps all of ``known``.

    Example:
        >>> select_tasks("demo", ["a", "b", "c"], ["c", "a"])
        ['c', 'a']
    """
    if tasks is None:
        return list(known)
    if isinstance(tasks, str):
        tasks = [tasks]  # a single name is an easy slip; accept it
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise DatasetError(
            f"{dataset}: tasks={tasks!r} must be a non-empty list of task names from {list(known)}"
        )
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise DatasetError(
            f"{dataset}: unknown task names {unknown}; known tasks: {', '.join(known)}"
        )
    if len(set(tasks)) != len(tasks):
        dup = sorted({t for t in tasks if list(tasks).count(t) > 1})
        raise DatasetError(f"{dataset}: tasks lists {dup} more than once; name each task once")
    return list(tasks)


def slug(name: str) -> str:
    """A lower-case identifier for a class name: ``"T-shirt/top"`` -> ``"t_shirt_top"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def cap_indices(n: int, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_samples`` of ``range(n)``, drawn at random and returned in file order.

    File order keeps image reads sequential on disk.
    """
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def carve_val(
    n: int, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, val) index arrays, both sorted."""
    order = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise DatasetError(
            f"val_fraction={val_fraction} of {n} training samples leaves none for training; "
            "lower val_fraction or raise max_samples"
        )
    return np.sort(order[n_val:]), np.sort(order[:n_val])
