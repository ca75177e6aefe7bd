"""``synthetic``: tabular tasks with planted groups and a dial for how related they are.

Built in the spirit of the MMoE paper's synthetic data (Ma et al., KDD 2018). Inputs are
``x ~ N(0, I)`` in ``input_dim`` dimensions. Each group ``k`` gets a unit base direction
``b_k``, and each task ``t`` in it the unit weight vector::

    w_t = relatedness * b_k + sqrt(1 - relatedness**2) * e_t      (e_t unit, e_t ⟂ b_k)

so ``cos(w_t, b_k) = relatedness`` and two tasks of one group have cosine about
``relatedness**2``. The group bases themselves are ``between * g + sqrt(1 - between**2) * o_k``
for a global direction ``g`` and orthonormal ``o_k`` (orthonormal while there are fewer groups
than dimensions), so ``between`` makes different groups related too. Targets follow MMoE::

    y_t = w_t·x + nonlinearity / sqrt(10) * sum_{i=1..10} sin(alpha_i * w_t·x + beta_i)
          + noise * N(0, 1)

with ``alpha_i, beta_i ~ N(0, 1)`` shared by all tasks. MMoE adds unit-amplitude sines
(``nonlinearity=sqrt(10)`` here); the default ``1/sqrt(10)`` scale keeps the sum near the size
of the linear term, so ``relatedness`` stays the main control of how alike two tasks' labels
are. Binary tasks threshold ``y_t`` at its median; regression tasks standardise it to mean 0
and variance 1.

Example:
    >>> from mtlsearch.data.builtin.synthetic import load_synthetic
    >>> s = load_synthetic(n_tasks=6, n_groups=2, n_samples=500)
    >>> s.task_names, s.info["labels"]
    (['t000', 't001', 't002', 't003', 't004', 't005'], [0, 0, 0, 1, 1, 1])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, split_indices
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec

from ._common import check_fractions, check_int, check_seed

__all__ = ["load_synthetic", "group_sizes_for"]

N_SINES = 10  # as in MMoE
KINDS = ("binary", "regression")
DEFAULT_TASKS, DEFAULT_GROUPS = 12, 3


def group_sizes_for(n_tasks: int, n_groups: int) -> list[int]:
    """Sizes of ``n_groups`` groups sharing ``n_tasks`` tasks as evenly as possible.

    Example:
        >>> group_sizes_for(10, 3)
        [4, 3, 3]
    """
    base, extra = divmod(n_tasks, n_groups)
    return [base + (1 if k < extra else 0) for k in range(n_groups)]


def _resolve_groups(n_tasks: Any, n_groups: Any, group_sizes: Any) -> list[int]:
    name = "synthetic"
    if group_sizes is None:
        n_tasks = check_int(name, "n_tasks", DEFAULT_TASKS if n_tasks is None else n_tasks)
        n_groups = check_int(name, "n_groups", DEFAULT_GROUPS if n_groups is None else n_groups)
        if n_groups > n_tasks:
            raise DatasetError(
                f"{name}: n_groups={n_groups} is more than n_tasks={n_tasks}; every group needs "
                "a task, so lower n_groups or raise n_tasks"
            )
        return group_sizes_for(n_tasks, n_groups)
    if not isinstance(group_sizes, (list, tuple)) or not group_sizes:
        raise DatasetError(
            f"{name}: group_sizes={group_sizes!r} must be a non-empty list of positive "
            "integers, e.g. group_sizes=[4, 4, 2]"
        )
    sizes = [check_int(name, f"group_sizes[{i}]", s) for i, s in enumerate(group_sizes)]
    # n_tasks/n_groups may come along (e.g. when reloading recorded kwargs) but must agree.
    if n_tasks is not None and check_int(name, "n_tasks", n_tasks) != sum(sizes):
        raise DatasetError(
            f"{name}: n_tasks={n_tasks} disagrees with group_sizes={sizes} (sum {sum(sizes)}); "
            "pass only group_sizes"
        )
    if n_groups is not None and check_int(name, "n_groups", n_groups) != len(sizes):
        raise DatasetError(
            f"{name}: n_groups={n_groups} disagrees with group_sizes={sizes} ({len(sizes)} "
            "groups); pass only group_sizes"
        )
    return sizes


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _directions(
    sizes: list[int], dim: int, relatedness: float, between: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit task weight vectors ``(n_tasks, dim)``, task rows grouped in order."""
    n_groups = len(sizes)
    # Orthonormal global direction and group offsets where the dimension allows; beyond that
    # the offsets are random unit vectors, nearly orthogonal in high dimension.
    k = min(dim, n_groups + 1)
    q, _ = np.linalg.qr(rng.standard_normal((dim, k)))
    glob = q[:, 0]
    offsets = q[:, 1:].T
    if len(offsets) < n_groups:
        extra = rng.standard_normal((n_groups - len(offsets), dim))
        extra -= np.outer(extra @ glob, glob)  # keep them orthogonal to the global direction
        offsets = np.vstack([offsets, _unit(extra)]) if len(offsets) else _unit(extra)
    bases = _unit(between * glob + math.sqrt(1 - between**2) * offsets)

    group_of = np.repeat(np.arange(n_groups), sizes)
    b = bases[group_of]
    # Task-specific parts: random, with the component along the group base removed so that
    # cos(w_t, b_k) is exactly `relatedness`.
    e = rng.standard_normal((len(group_of), dim))
    e -= (e * b).sum(axis=1, keepdims=True) * b
    e = _unit(e)
    return _unit(relatedness * b + math.sqrt(1 - relatedness**2) * e)


def load_synthetic(
    *,
    seed: int = 0,
    n_tasks: int | None = None,
    n_groups: int | None = None,
    group_sizes: list[int] | None = None,
    relatedness: float = 0.9,
    between: float = 0.0,
    noise: float = 0.1,
    nonlinearity: float = 1.0,
    n_samples: int = 3000,
    input_dim: int = 32,
    kind: str = "binary",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> DatasetSplits:
    """Tasks ``t000``, ``t001``, ... in planted groups; inputs ``(input_dim,)``.

    Args:
        seed: Seeds directions, inputs, noise and the split.
        n_tasks: Number of tasks (default 12); with ``group_sizes`` it may be left out, and
            must agree if given.
        n_groups: Number of planted groups (default 3); tasks are spread over them evenly,
            in order.
        group_sizes: Explicit group sizes, e.g. ``[5, 5, 2]``, instead of the two above.
        relatedness: Cosine between each task's weight vector and its group's base, in
            ``[0, 1]``; 1 makes a group's tasks identical up to noise, 0 unrelated.
        between: Cosine between each group base and a direction shared by all groups, in
            ``[0, 1)``; 0 makes groups unrelated.
        noise: Standard deviation of the label noise.
        nonlinearity: Weight of the sum of sines; 0 makes every target linear in ``x``.
        n_samples: Total samples before splitting.
        input_dim: Input dimension.
        kind: ``"binary"`` (threshold at the median) or ``"regression"``.
        val_fraction: Share of samples held out for validation.
        test_fraction: Share held out for testing.

    Returns:
        The splits, with ``info["groups"]`` (lists of task names), ``info["labels"]`` (group
        index of each task, in task order) and ``info["group_names"]``.

    Example:
        >>> s = load_synthetic(group_sizes=[2, 1], relatedness=0.8, n_samples=300, kind="regression")
        >>> s.info["groups"], s.tasks[0].kind
        ([['t000', 't001'], ['t002']], 'regression')
    """
    name = "synthetic"
    seed = check_seed(name, seed)
    sizes = _resolve_groups(n_tasks, n_groups, group_sizes)
    if (
        isinstance(relatedness, bool)
        or not isinstance(relatedness, (int, float))
        or not 0 <= relatedness <= 1
    ):
        raise DatasetError(f"{name}: relatedness={relatedness!r} must be a number in [0, 1]")
    if isinstance(between, bool) or not isinstance(between, (int, float)) or not 0 <= between < 1:
        raise DatasetError(
            f"{name}: between={between!r} must be a number in [0, 1); 1 would make all groups one"
        )
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise DatasetError(f"{name}: noise={noise!r} must be a number >= 0")
    if (
        isinstance(nonlinearity, bool)
        or not isinstance(nonlinearity, (int, float))
        or not nonlinearity >= 0
    ):
        raise DatasetError(f"{name}: nonlinearity={nonlinearity!r} must be a number >= 0")
    n_samples = check_int(name, "n_samples", n_samples, minimum=10)
    input_dim = check_int(name, "input_dim", input_dim, minimum=2)
    if kind not in KINDS:
        raise DatasetError(f"{name}: kind={kind!r} is not supported; use one of {list(KINDS)}")
    val_fraction, test_fraction = check_fractions(name, val_fraction, test_fraction)

    rng = np.random.default_rng(seed)
    n_total = sum(sizes)
    w = _directions(sizes, input_dim, float(relatedness), float(between), rng)
    alpha, beta = rng.standard_normal(N_SINES), rng.standard_normal(N_SINES)
    x = rng.standard_normal((n_samples, input_dim)).astype(np.float32)
    z = x.astype(np.float64) @ w.T  # (n_samples, n_tasks)
    y = z.copy()
    # A loop, not one 3-D array: samples x tasks x sines gets big with many tasks.
    for a, b in zip(alpha, beta, strict=True):
        y += nonlinearity / math.sqrt(N_SINES) * np.sin(a * z + b)
    y += noise * rng.standard_normal(y.shape)
    if kind == "binary":
        y = (y > np.median(y, axis=0)).astype(np.float32)
    else:
        y = ((y - y.mean(axis=0)) / y.std(axis=0)).astype(np.float32)

    names = [f"t{i:03d}" for i in range(n_total)]
    labels = np.repeat(np.arange(len(sizes)), sizes).tolist()
    specs = [TaskSpec(t, kind=kind) for t in names]
    idx = split_indices(
        n_samples, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    parts = {
        split: MultiTaskDataset(x[rows], {t: y[rows, j] for j, t in enumerate(names)}, specs)
        for split, rows in zip(("train", "val", "test"), idx, strict=True)
    }
    groups = [[t for t, g in zip(names, labels, strict=True) if g == k] for k in range(len(sizes))]
    return DatasetSplits(
        name=name,
        **parts,
        tasks=specs,
        info={
            "groups": groups,
            "labels": labels,
            "group_names": [f"g{k}" for k in range(len(sizes))],
        },
        kwargs={
            "seed": seed,
            "n_tasks": n_total,
            "n_groups": len(sizes),
            "group_sizes": sizes,
            "relatedness": float(relatedness),
            "between": float(between),
            "noise": float(noise),
            "nonlinearity": float(nonlinearity),
            "n_samples": n_samples,
            "input_dim": input_dim,
            "kind": kind,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        },
    )
