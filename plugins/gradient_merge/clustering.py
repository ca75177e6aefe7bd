"""HDBSCAN over the branches' gradient factors under one of the paper's three directives.

Every point is one branch's normalised factor vector (the flattened ``C_t``; unit norm, so the
Euclidean distance is ``sqrt(2 - 2 cos)``). HDBSCAN (the ``hdbscan`` package) builds its
hierarchy on the mutual reachability distance
``d_mr(a, b) = max(core_k(a), core_k(b), d(a, b))`` with ``k = min_samples`` (eq. 6). The
directive decides which distance goes in and which clusters come out:

``similarity``
    Euclidean distances; excess-of-mass cluster selection (HDBSCAN's default): tasks whose
    gradients point the same way are grouped, outliers stay alone.
``dissimilarity``
    The distances reversed, ``d'(a, b) = max(d) - d(a, b)`` (a precomputed metric), then the
    same selection: tasks whose gradients point *apart* become neighbours and are grouped.
``variance``
    Euclidean distances, and HDBSCAN merges every pair of clusters closer than the median
    pairwise distance (``cluster_selection_epsilon``): the groups grow larger and fewer, as
    the paper's variance directive "favors large task clusters". By default it may not return
    one cluster of every branch (that is hard sharing, and when allowed it was the answer at
    most settings on planted groups); ``allow_single_cluster=True`` permits it (the earlier
    variant).

Labels are HDBSCAN's: ``-1`` is noise (a branch that stays alone).

Example:
    >>> import numpy as np
    >>> pts = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0]], dtype=float)
    >>> labels = cluster_branches(pts, directive="similarity", min_cluster_size=2, min_samples=1)
    >>> bool(labels[0] == labels[1] != labels[2] == labels[3])
    True
"""

from __future__ import annotations

import warnings

import numpy as np

from mtlsearch.errors import MTLSearchError

__all__ = ["DIRECTIVES", "cluster_branches", "pairwise_distances", "groups_from_labels"]

DIRECTIVES = ("similarity", "dissimilarity", "variance")


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``points``."""
    points = np.asarray(points, dtype=np.float64)
    sq = (points**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * points @ points.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def cluster_branches(
    points: np.ndarray,
    *,
    directive: str = "similarity",
    min_cluster_size: int = 2,
    min_samples: int = 1,
    allow_single_cluster: bool = False,
    epsilon_quantile: float = 0.5,
) -> np.ndarray:
    """HDBSCAN labels of ``points`` (one row per branch) under ``directive``.

    Args:
        points: ``(branches, features)`` normalised factor vectors.
        directive: ``similarity``, ``dissimilarity`` or ``variance`` (see the module docstring).
        min_cluster_size: Smallest group HDBSCAN reports (>= 2).
        min_samples: ``k`` of the core distance (>= 1); capped at ``branches - 1``.
        allow_single_cluster: ``variance`` only: let HDBSCAN put every branch in one group.
        epsilon_quantile: ``variance`` only: quantile of the pairwise distances used as
            ``cluster_selection_epsilon`` (0.5: the median).

    Returns:
        One integer label per row; ``-1`` marks branches left alone.

    Raises:
        MTLSearchError: for an unknown directive or bad sizes.
    """
    import hdbscan

    if directive not in DIRECTIVES:
        raise MTLSearchError(f"unknown directive {directive!r}; choose one of {list(DIRECTIVES)}")
    if min_cluster_size < 2:
        raise MTLSearchError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if min_samples < 1:
        raise MTLSearchError(f"min_samples must be at least 1, got {min_samples}")
    if not 0.0 <= epsilon_quantile <= 1.0:
        raise MTLSearchError(f"epsilon_quantile must be in [0, 1], got {epsilon_quantile}")
    points = np.asarray(points, dtype=np.float64)
    n = points.shape[0]
    if n < min_cluster_size:
        return np.full(n, -1, dtype=int)
    dist = pairwise_distances(points)
    kwargs: dict = {
        "min_cluster_size": int(min_cluster_size),
        "min_samples": int(min(min_samples, n - 1)),
        "metric": "precomputed",
    }
    if directive == "dissimilarity":
        dist = dist.max() - dist
        np.fill_diagonal(dist, 0.0)
    elif directive == "variance":
        upper = dist[np.triu_indices(n, 1)]
        kwargs["allow_single_cluster"] = bool(allow_single_cluster)
        epsilon = float(np.quantile(upper, epsilon_quantile)) if upper.size else 0.0
        kwargs["cluster_selection_epsilon"] = epsilon
    if not np.any(dist > 0):  # all points equal: one group
        return np.zeros(n, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdbscan's numpy deprecation chatter
        labels = hdbscan.HDBSCAN(**kwargs).fit(dist).labels_
    return np.asarray(labels, dtype=int)


def groups_from_labels(labels: np.ndarray) -> list[list[int]]:
    """Indices of each cluster with at least two members, in label order (noise excluded)."""
    groups = []
    for label in sorted(set(int(v) for v in labels) - {-1}):
        members = [i for i, v in enumerate(labels) if int(v) == label]
        if len(members) >= 2:
            groups.append(members)
    return groups
