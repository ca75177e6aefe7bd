"""From an affinity tensor to a branched tree (section 3.4 of the paper).

A tree is one task partition per block depth, each deeper partition refining the one above.
Its cost is ``sum_l C_clustering^l(g_l) + alpha * C_complexity^l(g_l)``. The complexity cost is
``(b_l - 1) * 2^{p_l}`` with ``b_l`` the number of groups and ``p_l`` the down-sampling steps a
block at depth ``l`` runs before (a branch at high resolution costs more). The clustering cost
of a grouping weighs the largest distance ``1 - A_l`` between two members of each group:

- ``size_weighted`` (default): by the group's share of the tasks, i.e. the mean over *tasks*
  of the worst distance within their group. A singleton costs 0 but counts for one task.
- ``paper``: the plain mean over groups. Every singleton adds a 0 to the mean, so splitting
  one task off also divides the cost of every other group: lopsided trees ("two groups plus
  singletons") beat an even planted grouping over most of the ``alpha`` range.

Both costs are linear in ``alpha`` for a fixed tree, so the cheapest tree is piecewise constant
in ``alpha``: :func:`enumerate_trees` lists the distinct trees an ``alpha`` range produces, each
with the ``alpha`` intervals that give it.

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
    "CLUSTERING_COSTS",
    "TreeResult",
    "TreeCandidate",
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
    "tree_cost_parts",
    "enumerate_trees",
    "is_single_task",
]

Partition = tuple[tuple[int, ...], ...]
CANDIDATES = ("spectral", "all")
CLUSTERING_COSTS = ("size_weighted", "paper")


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


def as_tensor(affinity: Any) -> np.ndarray:
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


def _check_clustering(clustering: str) -> None:
    if clustering not in CLUSTERING_COSTS:
        raise MTLSearchError(
            f"unknown clustering cost {clustering!r}; choose one of {list(CLUSTERING_COSTS)}"
        )


def clustering_cost(
    groups: Sequence[Sequence[int]], distance: np.ndarray, clustering: str = "size_weighted"
) -> float:
    """The largest distance between two members of each group (0 for a singleton), averaged.

    ``size_weighted``: ``sum_g |g| / N * max_{i, j in g} d_ij``, the mean over tasks of the
    worst distance in their group; splitting a task off only removes what its own group cost.
    ``paper``: the plain mean over groups (every extra singleton dilutes the mean).

    Example:
        >>> d = np.array([[0, .2, .8], [.2, 0, .8], [.8, .8, 0]])
        >>> clustering_cost([[0, 1], [2]], d), clustering_cost([[0, 1], [2]], d, "paper")
        (0.13333333333333333, 0.1)
    """
    _check_clustering(clustering)
    worst = [max((distance[i, j] for i in g for j in g), default=0.0) for g in groups]
    if not worst:
        return 0.0
    if clustering == "paper":
        return float(np.mean(worst))
    sizes = [len(g) for g in groups]
    return float(np.dot(sizes, worst) / sum(sizes))


def complexity_cost(branches: int, pooling: int) -> float:
    """``(b_l - 1) * 2^{p_l}`` (eq. 2)."""
    return float((branches - 1) * 2**pooling)


def grouping_cost(
    groups: Sequence[Sequence[int]],
    distance: np.ndarray,
    pooling: int,
    alpha: float,
    clustering: str = "size_weighted",
) -> float:
    """``C^l(g) = C_clustering + alpha * C_complexity`` (eq. 1)."""
    return clustering_cost(groups, distance, clustering) + alpha * complexity_cost(
        len(groups), pooling
    )


def tree_cost(
    partitions: Sequence[Sequence[Sequence[int]]],
    affinity: Any,
    pooling: Sequence[int],
    alpha: float,
    clustering: str = "size_weighted",
) -> float:
    """Sum over depths of :func:`grouping_cost` (the affinity at depth ``l`` for block ``l``)."""
    arr = as_tensor(affinity)
    return float(
        sum(
            grouping_cost(g, distance_matrix(arr[d]), pooling[d], alpha, clustering)
            for d, g in enumerate(partitions)
        )
    )


def tree_cost_parts(
    partitions: Sequence[Sequence[Sequence[int]]],
    affinity: Any,
    pooling: Sequence[int],
    clustering: str = "size_weighted",
) -> tuple[float, float]:
    """``(C, K)`` with ``tree_cost = C + alpha * K``: summed clustering and complexity costs.

    Example:
        >>> A = np.ones((2, 3, 3))
        >>> tree_cost_parts([[[0, 1, 2]], [[0, 1], [2]]], A, [1, 0])
        (0.0, 1.0)
    """
    arr = as_tensor(affinity)
    c = sum(clustering_cost(g, distance_matrix(arr[d]), clustering) for d, g in enumerate(partitions))
    k = sum(complexity_cost(len(g), pooling[d]) for d, g in enumerate(partitions))
    return float(c), float(k)


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


class _Memo:
    """What a search computes that does not depend on ``alpha``: candidate groupings and
    clustering costs per depth (shared by the many searches of :func:`enumerate_trees`)."""

    def __init__(self, arr: np.ndarray, clustering: str, candidates: str, seed: int):
        self.arr, self.clustering, self.candidates, self.seed = arr, clustering, candidates, seed
        self.distances = [distance_matrix(arr[d]) for d in range(arr.shape[0])]
        self._groupings: dict[tuple[int, Partition], list[Partition]] = {}
        self._costs: dict[tuple[int, Partition], float] = {}

    def groupings(self, depth: int, deeper: Partition) -> list[Partition]:
        key = (depth, deeper)
        if key not in self._groupings:
            self._groupings[key] = candidate_groupings(
                deeper, self.arr[depth], candidates=self.candidates, seed=self.seed
            )
        return self._groupings[key]

    def clustering_cost(self, depth: int, g: Partition) -> float:
        key = (depth, g)
        if key not in self._costs:
            self._costs[key] = clustering_cost(g, self.distances[depth], self.clustering)
        return self._costs[key]


def _beam(memo: _Memo, pooling: Sequence[int], alpha: float, beam_width: int) -> TreeResult:
    depths, n = memo.arr.shape[0], memo.arr.shape[1]
    beam: list[tuple[float, tuple[Partition, ...]]] = [(0.0, ())]
    for d in reversed(range(depths)):
        expanded: dict[tuple[Partition, ...], float] = {}
        for cost, chain in beam:
            deeper = chain[0] if chain else _singletons(n)
            for g in memo.groupings(d, deeper):
                c = cost + memo.clustering_cost(d, g) + alpha * complexity_cost(len(g), pooling[d])
                key = (g, *chain)
                expanded[key] = min(c, expanded.get(key, math.inf))
        ranked = sorted(expanded.items(), key=lambda kv: (round(kv[1], 12), kv[0]))
        beam = [(c, chain) for chain, c in ranked[:beam_width]]
    cost, chain = beam[0]
    return TreeResult([[list(g) for g in p] for p in chain], float(cost), f"beam(n={beam_width})")


def beam_search(
    affinity: Any,
    pooling: Sequence[int],
    *,
    alpha: float,
    beam_width: int = 1,
    candidates: str = "spectral",
    clustering: str = "size_weighted",
    seed: int = 0,
) -> TreeResult:
    """The paper's top-down beam search: deepest block first, keep the ``beam_width`` cheapest.

    Args:
        affinity: ``(depths, tasks, tasks)`` affinities; depth ``l`` is measured after block ``l``.
        pooling: ``p_l`` per depth (:func:`pooling_steps`).
        alpha: Weight of the complexity cost.
        beam_width: ``n``, the partial trees kept at each depth.
        candidates: ``spectral`` (the paper) or ``all`` (every merge of the deeper groups).
        clustering: ``size_weighted`` or ``paper`` (see :func:`clustering_cost`).
        seed: Seed of the spectral clustering.

    Example:
        >>> A = np.ones((2, 3, 3))
        >>> beam_search(A, [0, 0], alpha=1.0).partitions
        [[[0, 1, 2]], [[0, 1, 2]]]
    """
    arr = _check(affinity, pooling, alpha, clustering)
    if beam_width < 1:
        raise MTLSearchError(f"beam_width must be at least 1, got {beam_width}")
    if candidates not in CANDIDATES:
        raise MTLSearchError(f"unknown candidates {candidates!r}; choose one of {list(CANDIDATES)}")
    return _beam(_Memo(arr, clustering, candidates, seed), pooling, alpha, beam_width)


class _Tables:
    """The exhaustive search's ``alpha``-free tables: partitions, refinements, costs per depth."""

    def __init__(self, arr: np.ndarray, pooling: Sequence[int], clustering: str):
        depths, n = arr.shape[0], arr.shape[1]
        if n > 8:
            raise MTLSearchError(
                f"exhaustive search over {n} tasks is intractable; use the beam search"
            )
        self.partitions = [_canonical(p) for p in set_partitions(range(n))]
        self.refinements = {g: _refinements(g) for g in self.partitions}
        self.depths = depths
        self.clustering = [
            {g: clustering_cost(g, distance_matrix(arr[d]), clustering) for g in self.partitions}
            for d in range(depths)
        ]
        self.complexity = [
            {g: complexity_cost(len(g), pooling[d]) for g in self.partitions} for d in range(depths)
        ]


def _exhaustive(tables: _Tables, alpha: float) -> TreeResult:
    best: dict[Partition, tuple[float, tuple[Partition, ...]]] = {}
    for d in reversed(range(tables.depths)):
        new: dict[Partition, tuple[float, tuple[Partition, ...]]] = {}
        for g in tables.partitions:
            own = tables.clustering[d][g] + alpha * tables.complexity[d][g]
            if not best:
                new[g] = (own, (g,))
                continue
            tail = min(
                (best[h] for h in tables.refinements[g]), key=lambda v: (round(v[0], 12), v[1])
            )
            new[g] = (own + tail[0], (g, *tail[1]))
        best = new
    cost, chain = min(best.values(), key=lambda v: (round(v[0], 12), v[1]))
    return TreeResult([[list(g) for g in p] for p in chain], float(cost), "exhaustive")


def exhaustive_search(
    affinity: Any, pooling: Sequence[int], *, alpha: float, clustering: str = "size_weighted"
) -> TreeResult:
    """The cheapest tree over every chain of set partitions (exact; dynamic programming).

    ``best[l][g] = C^l(g) + min over refinements h of g of best[l+1][h]``, so the work is the
    number of (partition, refinement) pairs: tractable up to about 7 tasks.
    """
    arr = _check(affinity, pooling, alpha, clustering)
    return _exhaustive(_Tables(arr, pooling, clustering), alpha)


def _refinements(g: Partition) -> list[Partition]:
    per_group = [[_canonical(p) for p in set_partitions(group)] for group in g]
    return [_canonical(sum(combo, ())) for combo in itertools.product(*per_group)]


def _check(affinity: Any, pooling: Sequence[int], alpha: float, clustering: str) -> np.ndarray:
    arr = as_tensor(affinity)
    if len(pooling) != arr.shape[0]:
        raise MTLSearchError(
            f"pooling has {len(pooling)} entries but the affinity tensor has {arr.shape[0]} depths"
        )
    if not alpha >= 0:
        raise MTLSearchError(f"alpha must be non-negative, got {alpha}")
    _check_clustering(clustering)
    return arr


def _uses_exhaustive(search: str, n: int, exhaustive_max_tasks: int) -> bool:
    if search not in ("auto", "beam", "exhaustive"):
        raise MTLSearchError(f"unknown search {search!r}; choose auto, beam or exhaustive")
    return search == "exhaustive" or (search == "auto" and n <= exhaustive_max_tasks)


def build_tree(
    affinity: Any,
    pooling: Sequence[int],
    *,
    alpha: float,
    beam_width: int = 1,
    search: str = "auto",
    candidates: str = "spectral",
    clustering: str = "size_weighted",
    exhaustive_max_tasks: int = 6,
    seed: int = 0,
) -> TreeResult:
    """Exhaustive search when asked (or ``auto`` with few tasks), else the beam search."""
    n = as_tensor(affinity).shape[1]
    if _uses_exhaustive(search, n, exhaustive_max_tasks):
        return exhaustive_search(affinity, pooling, alpha=alpha, clustering=clustering)
    return beam_search(
        affinity,
        pooling,
        alpha=alpha,
        beam_width=beam_width,
        candidates=candidates,
        clustering=clustering,
        seed=seed,
    )


# ----------------------------------------------------------------------------- enumeration
TreeKey = tuple[Partition, ...]


def _key(result: TreeResult) -> TreeKey:
    return tuple(_canonical(p) for p in result.partitions)


def is_single_task(partitions: Sequence[Sequence[Sequence[int]]]) -> bool:
    """Whether no group of any depth holds two tasks (the single-task reference)."""
    return all(len(g) == 1 for depth in partitions for g in depth)


@dataclass(frozen=True)
class TreeCandidate:
    """A distinct tree of an ``alpha`` range and the ``alpha`` intervals that produce it.

    Attributes:
        partitions: Task indices per group per depth (as :class:`TreeResult`).
        intervals: ``(low, high)`` ``alpha`` intervals, ascending, in which the search returns
            this tree (the beam search can return one tree in several disjoint intervals).
        clustering: The tree's summed clustering cost ``C``.
        complexity: Its summed complexity cost ``K`` (its cost is ``C + alpha * K``).
    """

    partitions: list[list[list[int]]]
    intervals: list[tuple[float, float]]
    clustering: float
    complexity: float

    @property
    def log_width(self) -> float:
        """Total width of :attr:`intervals` in decades of ``alpha``."""
        return float(sum(math.log10(hi / lo) for lo, hi in self.intervals))

    @property
    def widest(self) -> tuple[float, float]:
        """The widest interval (by ratio)."""
        return max(self.intervals, key=lambda iv: iv[1] / iv[0])

    @property
    def alpha(self) -> float:
        """A representative ``alpha``: the geometric middle of :attr:`widest`."""
        lo, hi = self.widest
        return math.sqrt(lo * hi)

    def cost(self, alpha: float) -> float:
        """``C + alpha * K``."""
        return self.clustering + alpha * self.complexity

    def named(self, tasks: Sequence[str]) -> list[list[list[str]]]:
        """The partitions with task names instead of indices."""
        return [[[tasks[i] for i in group] for group in depth] for depth in self.partitions]


def enumerate_trees(
    affinity: Any,
    pooling: Sequence[int],
    *,
    alpha_range: tuple[float, float] = (1e-3, 1.0),
    beam_width: int = 1,
    search: str = "auto",
    candidates: str = "spectral",
    clustering: str = "size_weighted",
    exhaustive_max_tasks: int = 6,
    seed: int = 0,
    grid: int = 241,
    rtol: float = 1e-4,
) -> list[TreeCandidate]:
    """Every distinct tree :func:`build_tree` returns for ``alpha`` in ``alpha_range``.

    With the exhaustive search the answer is exact: every tree's cost is a line ``C + alpha*K``
    and the cheapest tree follows the lower envelope of those lines, whose breakpoints are
    found by intersecting the lines of the trees optimal at the two ends of an interval (a new
    tree optimal at the crossing splits the interval, else the crossing is a breakpoint). The
    beam search is not an exact minimum, so its trees are found by a log-spaced sweep of
    ``grid`` values, every change between neighbours being bisected down to a relative width
    ``rtol`` (a tree whose whole interval falls between two grid values is missed).

    Returns:
        The candidates in ascending order of their first ``alpha`` (most branched first).

    Example:
        >>> A = np.array([[[1, .9, .1], [.9, 1, .1], [.1, .1, 1]]])  # one depth, p = 0
        >>> for c in enumerate_trees(A, [0], alpha_range=(0.01, 1)):
        ...     print(c.partitions, [(round(lo, 4), round(hi, 4)) for lo, hi in c.intervals])
        [[[0], [1], [2]]] [(0.01, 0.0667)]
        [[[0, 1], [2]]] [(0.0667, 0.8333)]
        [[[0, 1, 2]]] [(0.8333, 1.0)]

        Singletons cost ``2 alpha``, ``{0, 1}, {2}`` costs ``2/3 * 0.1 + alpha`` and one group
        ``0.9``: the lines cross at ``alpha = 1/15`` and ``alpha = 5/6``.
    """
    low, high = (float(a) for a in alpha_range)
    if not 0 < low <= high:
        raise MTLSearchError(f"alpha_range must be 0 < low <= high, got {alpha_range}")
    arr = _check(affinity, pooling, low, clustering)
    if beam_width < 1:
        raise MTLSearchError(f"beam_width must be at least 1, got {beam_width}")
    if _uses_exhaustive(search, arr.shape[1], exhaustive_max_tasks):
        tables = _Tables(arr, pooling, clustering)
        segments = _envelope(lambda a: _exhaustive(tables, a), arr, pooling, clustering, low, high)
    else:
        memo = _Memo(arr, clustering, candidates, seed)
        segments = _sweep(lambda a: _beam(memo, pooling, a, beam_width), low, high, grid, rtol)
    found: dict[TreeKey, list[tuple[float, float]]] = {}
    results: dict[TreeKey, TreeResult] = {}
    for lo, hi, result in segments:
        key = _key(result)
        results.setdefault(key, result)
        spans = found.setdefault(key, [])
        if spans and math.isclose(spans[-1][1], lo, rel_tol=1e-12):
            spans[-1] = (spans[-1][0], hi)  # adjacent: one interval
        else:
            spans.append((lo, hi))
    out = []
    for key, spans in found.items():
        partitions = results[key].partitions
        c, k = tree_cost_parts(partitions, arr, pooling, clustering)
        out.append(TreeCandidate(partitions, spans, c, k))
    return sorted(out, key=lambda cand: cand.intervals[0][0])


def _envelope(
    solve: Any, arr: np.ndarray, pooling: Sequence[int], clustering: str, low: float, high: float
) -> list[tuple[float, float, TreeResult]]:
    """Breakpoints of the exact search's lower envelope on ``[low, high]``, as segments."""

    def parts(result: TreeResult) -> tuple[float, float]:
        return tree_cost_parts(result.partitions, arr, pooling, clustering)

    segments: list[tuple[float, float, TreeResult]] = []

    def split(a: float, ta: TreeResult, b: float, tb: TreeResult) -> None:
        if _key(ta) == _key(tb):
            segments.append((a, b, ta))
            return
        (ca, ka), (cb, kb) = parts(ta), parts(tb)
        if ka <= kb:  # cannot be: the optimum's complexity falls as alpha grows; round-off
            x = math.sqrt(a * b)
        else:
            x = min(max((cb - ca) / (ka - kb), a), b)
        tx = solve(x)
        cx, kx = parts(tx)
        if cx + x * kx < ca + x * ka - 1e-12 and _key(tx) not in (_key(ta), _key(tb)):
            split(a, ta, x, tx)  # a third tree is cheaper at the crossing: it has an interval
            split(x, tx, b, tb)
            return
        if x > a:
            segments.append((a, x, ta))
        if b > x:
            segments.append((x, b, tb))

    split(low, solve(low), high, solve(high))
    return segments


def _sweep(
    solve: Any, low: float, high: float, grid: int, rtol: float
) -> list[tuple[float, float, TreeResult]]:
    """Segments of a log-spaced sweep; changes between neighbours bisected to ``rtol``."""
    points = sorted({float(a) for a in np.geomspace(low, high, max(2, grid))} | {low, high})
    samples = [(a, solve(a)) for a in points]
    refined: list[tuple[float, TreeResult]] = [samples[0]]

    def bisect(a: float, ta: TreeResult, b: float, tb: TreeResult) -> None:
        if _key(ta) == _key(tb) or b <= a * (1 + rtol):
            refined.append((b, tb))
            return
        m = math.sqrt(a * b)
        tm = solve(m)
        bisect(a, ta, m, tm)
        bisect(m, tm, b, tb)

    for (a, ta), (b, tb) in zip(samples, samples[1:]):
        bisect(a, ta, b, tb)
    segments: list[tuple[float, float, TreeResult]] = []
    start = low
    for (a, ta), (b, tb) in zip(refined, refined[1:]):
        if _key(ta) != _key(tb):
            edge = math.sqrt(a * b)  # the change lies in [a, b], at most rtol wide
            segments.append((start, edge, ta))
            start = edge
    segments.append((start, high, refined[-1][1]))
    return segments
