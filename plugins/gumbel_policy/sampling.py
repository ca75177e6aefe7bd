"""From a learned policy to architectures: sampled select-or-skip decisions as sharing graphs,
and the paper's random-policy ablations.

A decision matrix is a boolean ``(tasks, policy blocks)`` array, ``True`` = execute. Its graph
is the hard-sharing chain with ``set_skip(task, node)`` wherever a task skips a block, so tasks
with identical decisions up to a block share its computation in the core's trie executor.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.2], [0.6, 0.7]])
    >>> most_likely(probs).tolist()
    [[True, False], [True, True]]
    >>> d = random_like(most_likely(probs), "random2", np.random.default_rng(0))
    >>> (~d).sum(axis=1).tolist()  # the same number of skips per task
    [1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

__all__ = [
    "sample_decisions",
    "most_likely",
    "random_like",
    "decisions_to_graph",
    "graph_decisions",
    "RANDOM_KINDS",
]

RANDOM_KINDS = ("random1", "random2")


def most_likely(probs: np.ndarray) -> np.ndarray:
    """The most likely decisions: execute where ``α >= 0.5``."""
    return np.asarray(probs) >= 0.5


def sample_decisions(probs: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` independent samples ``u ~ Bernoulli(α)`` of the whole decision matrix."""
    probs = np.asarray(probs, dtype=float)
    return [rng.random(probs.shape) < probs for _ in range(count)]


def random_like(decisions: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A random policy matching ``decisions``' skip counts.

    ``random1`` (Random #1): the same total number of skipped (task, block) cells, anywhere.
    ``random2`` (Random #2): the same number of skipped blocks per task, at random blocks.
    """
    decisions = np.asarray(decisions, dtype=bool)
    skips = ~decisions
    if kind == "random1":
        flat = np.zeros(skips.size, dtype=bool)
        flat[rng.permutation(skips.size)[: int(skips.sum())]] = True
        return ~flat.reshape(skips.shape)
    if kind == "random2":
        out = np.ones_like(decisions)
        for k, row in enumerate(skips):
            out[k, rng.permutation(row.size)[: int(row.sum())]] = False
        return out
    raise MTLSearchError(f"unknown random policy {kind!r}; choose one of {list(RANDOM_KINDS)}")


def decisions_to_graph(
    base: SharingGraph, decisions: np.ndarray, policy_blocks: Sequence[int]
) -> SharingGraph:
    """The hard-sharing graph ``base`` with each task skipping the blocks it does not execute.

    Args:
        base: A hard-sharing graph (one node per block index).
        decisions: ``(tasks, len(policy_blocks))`` booleans, ``True`` = execute, tasks in
            ``base.tasks`` order.
        policy_blocks: The block index of each decision column.
    """
    decisions = np.asarray(decisions, dtype=bool)
    if decisions.shape != (len(base.tasks), len(policy_blocks)):
        raise MTLSearchError(
            f"decisions have shape {decisions.shape}, expected (tasks, policy blocks) = "
            f"({len(base.tasks)}, {len(policy_blocks)})"
        )
    graph = base.copy()
    for k, task in enumerate(graph.tasks):
        for j, index in enumerate(policy_blocks):
            if not decisions[k, j]:
                graph.set_skip(task, graph.block_nodes(index)[0])
    return graph


def graph_decisions(graph: SharingGraph, policy_blocks: Sequence[int]) -> np.ndarray:
    """The decision matrix of a graph made by :func:`decisions_to_graph`."""
    skips = graph.skips()
    out = np.ones((len(graph.tasks), len(policy_blocks)), dtype=bool)
    for k, task in enumerate(graph.tasks):
        skipped = {graph.node_index(n) for n in skips[task]}
        for j, index in enumerate(policy_blocks):
            out[k, j] = index not in skipped
    return out
