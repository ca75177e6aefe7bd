"""Task routing masks: which units of a layer each task may use, from the sharing ratio σ.

Two schemes, both seeded and both with σ = 1 meaning hard sharing:

* ``"paper"`` (the paper's definition of σ): in a layer of ``C`` units,
  ``s = floor(σ·C + 0.5)`` units are shared by every task; the other ``C - s`` units are dealt
  out, one task each, round-robin over a random task order, so every task gets
  ``floor((C-s)/T)`` or ``ceil((C-s)/T)`` specific units. σ = 0 gives disjoint unit sets.
* ``"official"`` (github gstrezoski/TaskRouting, which the paper's Figure 1 appears to show):
  each task independently zeroes ``floor(C·(1-σ))`` random units, i.e. keeps
  ``k = C - floor(C·(1-σ))`` units (at least one, so σ = 0 does not kill a task). Units are not
  split into shared and specific: a unit is used by a Binomial(T, k/C) number of tasks.

Example:
    >>> m = routing_masks(["a", "b", "c", "d"], 8, sigma=0.5, seed=0)
    >>> m.shape, int(m.all(axis=0).sum()), m.sum(axis=1).tolist()
    ((4, 8), 4, [5, 5, 5, 5])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtlsearch.errors import MTLSearchError

__all__ = ["SCHEMES", "MaskStats", "check_sigma", "mask_stats", "routing_masks", "shared_units"]

SCHEMES = ("paper", "official")


def check_sigma(sigma: float) -> float:
    """``sigma`` as a float in [0, 1], else an :class:`MTLSearchError` naming the fix."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise MTLSearchError(f"the sharing ratio sigma must be a number in [0, 1], got {sigma!r}")
    if not 0.0 <= float(sigma) <= 1.0:
        raise MTLSearchError(
            f"the sharing ratio sigma must lie in [0, 1] (1 = hard sharing, 0 = no unit shared), "
            f"got {sigma}"
        )
    return float(sigma)


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise MTLSearchError(f"unknown mask scheme {scheme!r}; choose one of {list(SCHEMES)}")
    return scheme


def shared_units(channels: int, sigma: float) -> int:
    """Units shared by all tasks in a ``channels``-unit layer under the paper's scheme."""
    # round half up (not Python's half-to-even) so 0.5 of 5 units is 3 on every platform
    return min(channels, int(math.floor(check_sigma(sigma) * channels + 0.5)))


def kept_units(channels: int, sigma: float) -> int:
    """Units each task keeps under the official code's scheme (at least one)."""
    # the small epsilon keeps C*(1-σ) = 2.9999999 (float error) from dropping a unit
    dropped = int(math.floor(channels * (1.0 - check_sigma(sigma)) + 1e-9))
    return max(1, channels - dropped)


def routing_masks(
    tasks: Sequence[str],
    channels: int,
    *,
    sigma: float,
    seed: int | Sequence[int],
    scheme: str = "paper",
) -> np.ndarray:
    """A ``(len(tasks), channels)`` boolean mask matrix for one routed layer.

    Args:
        tasks: Task names (only their number and order matter).
        channels: Units of the layer.
        sigma: Sharing ratio in [0, 1]; 1 is hard sharing.
        seed: Seed of the random choice (same seed, same masks); a list of integers
            (e.g. ``[mask_seed, layer]``) seeds one independent stream per layer.
        scheme: ``"paper"`` or ``"official"`` (see the module docstring).

    Returns:
        Row ``i`` is task ``tasks[i]``'s mask (``True`` = unit used).

    Raises:
        MTLSearchError: sigma outside [0, 1], an unknown scheme, or no task or channel.

    Example:
        >>> routing_masks(["a", "b"], 4, sigma=0.0, seed=1).sum(axis=0).tolist()
        [1, 1, 1, 1]
    """
    sigma, scheme = check_sigma(sigma), _check_scheme(scheme)
    n_tasks = len(tasks)
    if n_tasks < 1 or not isinstance(channels, int) or channels < 1:
        raise MTLSearchError(
            f"routing masks need at least one task and one channel, got {n_tasks} tasks and "
            f"{channels!r} channels"
        )
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_tasks, channels), dtype=bool)
    if scheme == "official":
        keep = kept_units(channels, sigma)
        for row in masks:
            row[rng.choice(channels, size=keep, replace=False)] = True
        return masks
    units = rng.permutation(channels)
    n_shared = shared_units(channels, sigma)
    masks[:, units[:n_shared]] = True
    order = rng.permutation(n_tasks)
    for k, unit in enumerate(units[n_shared:]):
        masks[order[k % n_tasks], unit] = True
    return masks


@dataclass(frozen=True)
class MaskStats:
    """Statistics of one layer's mask matrix.

    Attributes:
        shared: Units used by every task.
        specific: Units used by exactly one task.
        unused: Units used by no task.
        per_task: Units each task uses (in row order).
        pair_overlap: Mean over task pairs of the units both use, as a fraction of the layer.
    """

    shared: int
    specific: int
    unused: int
    per_task: list[int]
    pair_overlap: float


def mask_stats(masks: np.ndarray) -> MaskStats:
    """Statistics of a ``(tasks, channels)`` mask matrix (see :class:`MaskStats`).

    Example:
        >>> mask_stats(routing_masks(["a", "b"], 10, sigma=0.4, seed=0)).shared
        4
    """
    masks = np.asarray(masks, dtype=bool)
    users = masks.sum(axis=0)
    n_tasks, channels = masks.shape
    if n_tasks > 1:
        inter = masks.astype(np.int64) @ masks.T.astype(np.int64)
        pairs = inter[np.triu_indices(n_tasks, k=1)]
        overlap = float(pairs.mean()) / channels
    else:
        overlap = 1.0
    return MaskStats(
        shared=int((users == n_tasks).sum()),
        specific=int((users == 1).sum()) if n_tasks > 1 else 0,
        unused=int((users == 0).sum()),
        per_task=masks.sum(axis=1).astype(int).tolist(),
        pair_overlap=overlap,
    )
