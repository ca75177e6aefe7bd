"""From an affinity tensor to a branched tree (section 3.4 of the paper).

A tree is one task partition per block depth, each deeper partition refining the one above.
Its cost is ``sum_l C_clustering^l(g_l) + alpha * C_complexity^l(g_l)`` where the clustering
cost of a grouping is the mean over its groups of the largest distance ``1 - A_l`` between two
members, and the complexity cost is ``(b_l - 1) * 2^{p_l}`` with ``b_l`` the number of groups
and ``p_l`` the down-sampling steps a block at depth ``l`` runs before (a branch at high
resolution costs more).

Two searches find a cheap tree: the paper's top-down beam search (deepest block first; at each
depth the groups of the deeper partition are merged into ``m`` groups by spectral clustering,
for every ``m``; the ``n`` cheapest partial trees are kept) and an exact dynamic programme over
every set partition, for small task counts.

Example:
    >>> import numpy as np
    >>> A = np.array([[[1, .9, .1], [.9, 1, .1], [.1, .1, 1]]] * 2)
    >>> best = exhaustive_search(A, [0, 0], alpha=0.1)
    >>> best.partitions
    [[[0, 1], [2]], [[0, 1], [2]]]
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlsearch.errors import MTLSearchError

__all__ = [
    "TreeResult",
    "pooling_steps",
    "distance_matrix",
    "clustering_cost",
    "complexity_cost",
    "grouping_cost",
    "tree_cost",
    "set_partitions",
    "is_refinement",
    "candidate_groupings",
    "beam_search",
    "exhaustive_search",
    "build_tree",
]

Partition = tuple[tuple[int, ...], ...]
CANDIDATES = ("spectral", "all")


@dataclass(frozen=True)
class TreeResult:
    """A tree found by a search: partitions of task indices per depth, and its cost."""

    partitions: list[list[list[int]]]
    cost: float
    method: str

    def named(self, tasks: Sequence[str]) -> list[list[list[str]]]:
        """The partitions with task names instead of indices."""
        return [[[tasks[i] for i in group] for group in depth] for depth in self.partitions]


def _canonical(groups: Any) -> Partition:
    return tuple(sorted(tuple(sorted(int(i) for i in g)) for g in groups if len(g)))


def _as_tensor(affinity: Any) -> np.ndarray:
    arr = np.asarray(affinity, dtype=float)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise MTLSearchError(
            f"an affinity tensor must have shape (depths, tasks, tasks), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise MTLSearchError("the affinity tensor holds NaN or infinite values; recompute it")
    return arr


def pooling_steps(space: Any) -> list[int]:
    """``p_l`` per block: down-sampling steps from block ``l`` (included) to the output.

    ``BlockSpec.downsamples`` counts the steps *before* a block; the paper's cost grows for a
    branch that runs before down-sampling (at higher resolution), so we count what follows.
    """
    blocks = space.blocks
    last = blocks[-1]
    total = last.downsamples
    if len(last.out_shape) > 1 and len(last.in_shape) > 1 and last.out_shape[1] < last.in_shape[1]:
        total += max(1, round(math.log2(last.in_shape[1] / last.out_shape[1])))
    return [total - b.downsamples for b in blocks]


def distance_matrix(affinity: np.ndarray) -> np.ndarray:
    """``1 - A`` made symmetric with a zero diagonal."""
    a = np.asarray(affinity, dtype=float)
    d = 1.0 - (a + a.T) / 2.0
    np.fill_diagonal(d, 0.0)
    return d


def clustering_cost(groups: Sequence[Sequence[int]], distance: np.ndarray) -> float:
    """Mean over groups of the largest distance between two members (0 for a singleton)."""
    worst = [max((distance[i, j] for i in g for j in g), default=0.0) for g in groups]
    return float(np.mean(worst)) if worst else 0.0


def complexity_cost(branches: int, pooling: int) -> float:
    """``(b_l - 1) * 2^{p_l}`` (eq. 2)."""
    return float((branches - 1) * 2**pooling)


def grouping_cost(
    groups: Sequence[Sequence[int]], distance: np.ndarray, pooling: int, alpha: float
) -> float:
    """``C^l(g) = C_clustering + alpha * C_complexity`` (eq. 1)."""
    return clustering_cost(groups, distance) + alpha * complexity_cost(len(groups), pooling)


def tree_cost(
    partitions: Sequence[Sequence[Sequence[int]]],
    affinity: Any,
    pooling: Sequence[int],
    alpha: float,
) -> float:
    """Sum over depths of :func:`grouping_cost` (the affinity at depth ``l`` for block ``l``)."""
    arr = _as_tensor(affinity)
    return float(
        sum(
            grouping_cost(g, distance_matrix(arr[d]), pooling[d], alpha)
            for d, g in enumerate(partitions)
        )
    )


def set_partitions(items: Sequence[Any]) -> Iterator[list[list[Any]]]:
    """Every partition of ``items`` into non-empty groups (Bell(n) of them)."""
    items = list(items)
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in set_partitions(rest):
        yield [[first], *smaller]
        for k in range(len(smaller)):
            yield [*smaller[:k], [first, *smaller[k]], *smaller[k + 1 :]]


def is_refinement(fine: Sequence[Sequence[int]], coarse: Sequence[Sequence[int]]) -> bool:
    """Whether every group of ``fine`` lies inside one group of ``coarse``."""
    owner = {t: k for k, g in enumerate(coarse) for t in g}
    return all(len({owner.get(t) for t in g}) == 1 and owner.get(g[0]) is not None for g in fine)


def _merge(groups: Partition, labels: Sequence[int]) -> Partition:
    merged: dict[int, list[int]] = {}
    for g, label in zip(groups, labels):
        merged.setdefault(int(label), []).extend(g)
    return _canonical(merged.values())


def _spectral_labels(similarity: np.ndarray, m: int, seed: int) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    # Spectral clustering needs a non-negative affinity; a floor keeps the graph connected.
    s = np.clip(similarity, 1e-6, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SpectralClustering(
            n_clusters=m, affinity="precomputed", assign_labels="cluster_qr", random_state=seed
        )
        return model.fit_predict(s)


def candidate_groupings(
    deeper: Partition, affinity: np.ndarray, *, candidates: str = "spectral", seed: int = 0
) -> list[Partition]:
    """Groupings at one depth that the deeper partition refines.

    ``spectral`` (the paper): for each ``m`` in ``1..len(deeper)``, spectral clustering of the
    deeper groups on their mean affinity. ``all``: every way of merging the deeper groups.
    """
    if candidates not in CANDIDATES:
        raise MTLSearchError(f"unknown candidates {candidates!r}; choose one of {list(CANDIDATES)}")
    k = len(deeper)
    if candidates == "all":
        if k > 10:
            raise MTLSearchError(
                f"candidates='all' would enumerate Bell({k}) groupings; use candidates='spectral'"
            )
        return sorted({_merge(deeper, _labels_of(p, k)) for p in set_partitions(range(k))})
    similarity = np.array(
        [[float(np.mean(affinity[np.ix_(a, b)])) for b in deeper] for a in deeper]
    )
    found = {_canonical([sum(deeper, ())]), deeper}
    for m in range(2, k):
        found.add(_merge(deeper, _spectral_labels(similarity, m, seed)))
    return sorted(found)


def _labels_of(partition: Sequence[Sequence[int]], k: int) -> list[int]:
    labels = [0] * k
    for label, group in enumerate(partition):
        for i in group:
            labels[i] = label
    return labels


def _singletons(n: int) -> Partition:
    return tuple((i,) for i in range(n))


def beam_search(
    affinity: Any,
    pooling: Sequence[int],
    *,
    alpha: float,
    beam_width: int = 1,
    candidates: str = "spectral",
    seed: int = 0,
) -> TreeResult:
    """The paper's top-down beam search: deepest block first, keep the ``beam_width`` cheapest.

    Args:
        affinity: ``(depths, tasks, tasks)`` affinities; depth ``l`` is measured after block ``l``.
        pooling: ``p_l`` per depth (:func:`pooling_steps`).
        alpha: Weight of the complexity cost.
        beam_width: ``n``, the partial trees kept at each depth.
        candidates: ``spectral`` (the paper) or ``all`` (every merge of the deeper groups).
        seed: Seed of the spectral clustering.

    Example:
        >>> A = np.ones((2, 3, 3))
        >>> beam_search(A, [0, 0], alpha=1.0).partitions
        [[[0, 1, 2]], [[0, 1, 2]]]
    """
    arr = _check(affinity, pooling, alpha)
    if beam_width < 1:
        raise MTLSearchError(f"beam_width must be at least 1, got {beam_width}")
    depths, n = arr.shape[0], arr.shape[1]
    distances = [distance_matrix(arr[d]) for d in range(depths)]
    beam: list[tuple[float, tuple[Partition, ...]]] = [(0.0, ())]
    for d in reversed(range(depths)):
        expanded: dict[tuple[Partition, ...], float] = {}
        for cost, chain in beam:
            deeper = chain[0] if chain else _singletons(n)
            for g in candidate_groupings(deeper, arr[d], candidates=candidates, seed=seed):
                c = cost + grouping_cost(g, distances[d], pooling[d], alpha)
                key = (g, *chain)
                expanded[key] = min(c, expanded.get(key, math.inf))
        ranked = sorted(expanded.items(), key=lambda kv: (round(kv[1], 12), kv[0]))
        beam = [(c, chain) for chain, c in ranked[:beam_width]]
    cost, chain = beam[0]
    return TreeResult([[list(g) for g in p] for p in chain], float(cost), f"beam(n={beam_width})")


def exhaustive_search(affinity: Any, pooling: Sequence[int], *, alpha: float) -> TreeResult:
    """The cheapest tree over every chain of set partitions (exact; dynamic programming).

    ``best[l][g] = C^l(g) + min over refinements h of g of best[l+1][h]``, so the work is the
    number of (partition, refinement) pairs: tractable up to about 7 tasks.
    """
    arr = _check(affinity, pooling, alpha)
    depths, n = arr.shape[0], arr.shape[1]
    if n > 8:
        raise MTLSearchError(f"exhaustive search over {n} tasks is intractable; use the beam search")
    partitions = [_canonical(p) for p in set_partitions(range(n))]
    refinements = {g: _refinements(g) for g in partitions}
    best: dict[Partition, tuple[float, tuple[Partition, ...]]] = {}
    for d in reversed(range(depths)):
        dist = distance_matrix(arr[d])
        new: dict[Partition, tuple[float, tuple[Partition, ...]]] = {}
        for g in partitions:
            own = grouping_cost(g, dist, pooling[d], alpha)
            if not best:
                new[g] = (own, (g,))
                continue
            tail = min((best[h] for h in refinements[g]), key=lambda v: (round(v[0], 12), v[1]))
            new[g] = (own + tail[0], (g, *tail[1]))
        best = new
    cost, chain = min(best.values(), key=lambda v: (round(v[0], 12), v[1]))
    return TreeResult([[list(g) for g in p] for p in chain], float(cost), "exhaustive")


def _refinements(g: Partition) -> list[Partition]:
    per_group = [[_canonical(p) for p in set_partitions(group)] for group in g]
    return [_canonical(sum(combo, ())) for combo in itertools.product(*per_group)]


def _check(affinity: Any, pooling: Sequence[int], alpha: float) -> np.ndarray:
    arr = _as_tensor(affinity)
    if len(pooling) != arr.shape[0]:
        raise MTLSearchError(
            f"pooling has {len(pooling)} entries but the affinity tensor has {arr.shape[0]} depths"
        )
    if not alpha >= 0:
        raise MTLSearchError(f"alpha must be non-negative, got {alpha}")
    return arr


def build_tree(
    affinity: Any,
    pooling: Sequence[int],
    *,
    alpha: float,
    beam_width: int = 1,
    search: str = "auto",
    candidates: str = "spectral",
    exhaustive_max_tasks: int = 6,
    seed: int = 0,
) -> TreeResult:
    """Exhaustive search when asked (or ``auto`` with few tasks), else the beam search."""
    if search not in ("auto", "beam", "exhaustive"):
        raise MTLSearchError(f"unknown search {search!r}; choose auto, beam or exhaustive")
    n = _as_tensor(affinity).shape[1]
    if search == "exhaustive" or (search == "auto" and n <= exhaustive_max_tasks):
        return exhaustive_search(affinity, pooling, alpha=alpha)
    return beam_search(
        affinity, pooling, alpha=alpha, beam_width=beam_width, candidates=candidates, seed=seed
    )
