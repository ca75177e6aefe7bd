"""How far two affinity estimates, or two trees, agree.

Example:
    >>> import numpy as np
    >>> a = np.array([[[1, .9, .2], [.9, 1, .5], [.2, .5, 1]]])
    >>> pair_spearman(a, a * 0.5)
    [1.0]
    >>> tree_ari([[[0, 1], [2]]], [[[2], [0, 1]]])
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlsearch.errors import MTLSearchError

__all__ = ["pair_spearman", "tree_ari", "partition_labels"]


def pair_spearman(a: Any, b: Any) -> list[float]:
    """Per depth, the Spearman correlation of two affinity tensors over task pairs ``i < j``.

    A depth where either tensor is constant over the pairs gives NaN (no ranking to compare).
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 3:
        raise MTLSearchError(f"affinity tensors must share a (depths, N, N) shape, got {x.shape} and {y.shape}")
    upper = np.triu_indices(x.shape[1], k=1)
    out = []
    for d in range(x.shape[0]):
        u, v = x[d][upper], y[d][upper]
        if len(u) < 2 or np.ptp(u) == 0 or np.ptp(v) == 0:
            out.append(float("nan"))
        else:
            out.append(float(spearmanr(u, v).statistic))
    return out


def partition_labels(groups: Sequence[Sequence[Any]], items: Sequence[Any] | None = None) -> list[int]:
    """Group index of each item (items default to the sorted union of the groups)."""
    owner = {t: k for k, g in enumerate(groups) for t in g}
    items = sorted(owner) if items is None else list(items)
    missing = [t for t in items if t not in owner]
    if missing:
        raise MTLSearchError(f"items {missing} are in no group of {list(groups)}")
    return [owner[t] for t in items]


def tree_ari(a: Sequence[Sequence[Sequence[Any]]], b: Sequence[Sequence[Sequence[Any]]]) -> float:
    """Mean over depths of the adjusted Rand index between two trees' partitions (1: same)."""
    from sklearn.metrics import adjusted_rand_score

    if len(a) != len(b):
        raise MTLSearchError(f"the trees have {len(a)} and {len(b)} depths; compare trees of one space")
    scores = []
    for pa, pb in zip(a, b):
        items = sorted({t for g in pa for t in g})
        scores.append(adjusted_rand_score(partition_labels(pa, items), partition_labels(pb, items)))
    return float(np.mean(scores))
