"""The ``task_routing`` strategy: the hard-shared backbone with a fixed random channel mask per
task after every block's normalisation (Strezoski et al., ICCV 2019).

The masks live in the sharing graph (``set_mask``), so export and load reproduce them bit for
bit; they are never trained and never parameters. Training follows Algorithm 1 (one random
active task per mini-batch) unless ``task_sampling="all"``.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> ctx = tiny_context()
    >>> graph = routed_graph(ctx.new_graph("hard_sharing"), ctx.space, sigma=0.5, seed=3)
    >>> sorted(graph.masks())
    ['b0.0', 'b1.0']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlsearch.errors import GraphError, MTLSearchError
from mtlsearch.graph import SharingGraph
from mtlsearch.spaces import SearchSpace
from mtlsearch.strategy import Proposal, Strategy

from .evaluation import DEFAULT_MAX_BYTES, routed_bytes_per_row
from .masks import SCHEMES, check_sigma, mask_stats, routing_masks

__all__ = ["TaskRouting", "routed_graph"]


def _check_blocks(blocks: Sequence[int] | None, num_blocks: int) -> list[int]:
    if blocks is None:
        return list(range(num_blocks))
    chosen = sorted(set(int(b) for b in blocks))
    bad = [b for b in chosen if not 0 <= b < num_blocks]
    if bad or not chosen:
        raise MTLSearchError(
            f"routed blocks {list(blocks)} must be a non-empty subset of 0..{num_blocks - 1}"
        )
    return chosen


def routed_graph(
    graph: SharingGraph,
    space: SearchSpace,
    *,
    sigma: float,
    seed: int,
    scheme: str = "paper",
    blocks: Sequence[int] | None = None,
) -> SharingGraph:
    """Put task routing masks on a hard-sharing ``graph`` (in place; returns it).

    Block ``i`` gets its masks from the seed stream ``[seed, i]``, so routing fewer blocks
    does not change the masks of the others.

    Args:
        graph: A hard-sharing graph (one block node per depth, every task through it).
        space: The search space (gives each block's channel count).
        sigma: Sharing ratio in [0, 1] (1 = hard sharing, 0 = no unit shared).
        seed: Mask seed.
        scheme: ``"paper"`` or ``"official"`` (see :mod:`.masks`).
        blocks: Block indices to route (default: all).

    Raises:
        GraphError: ``graph`` is not hard sharing.
        MTLSearchError: bad sigma, scheme or blocks.

    Example:
        >>> from mtlsearch import create_space
        >>> space = create_space("mlp", input_shape=(4,), widths=(8,))
        >>> g = routed_graph(SharingGraph.hard_sharing(["a", "b"], 1), space, sigma=0, seed=0)
        >>> bool((g.masks()["b0.0"]["a"] & g.masks()["b0.0"]["b"]).any())
        False
    """
    check_sigma(sigma)
    if graph.branches_per_depth() != [1] * graph.num_blocks:
        raise GraphError(
            "task routing masks a hard-sharing graph (one block node per depth); got branches "
            f"{graph.branches_per_depth()}; build it with ctx.new_graph('hard_sharing')"
        )
    for index in _check_blocks(blocks, graph.num_blocks):
        node = graph.block_nodes(index)[0]
        channels = space.blocks[index].channels
        matrix = routing_masks(graph.tasks, channels, sigma=sigma, seed=[seed, index], scheme=scheme)
        for task, row in zip(graph.tasks, matrix):
            graph.set_mask(task, node, row)
    graph.info.update({"strategy": "task_routing", "sigma": sigma, "scheme": scheme, "mask_seed": seed})
    return graph


class TaskRouting(Strategy):
    """Task Routing: fixed random per-task channel masks on a shared backbone.

    Each trial samples the sharing ratio ``sigma`` (continuous in ``sigma_range``), the
    ``mask_seed`` and the ``scheme`` unless they are fixed here. The proposal trains with one
    random active task per batch (Algorithm 1) by default.

    Args:
        sigma: Fix the sharing ratio instead of sampling it.
        sigma_range: ``(low, high)`` of the sampled sharing ratio.
        schemes: Mask schemes the trial chooses from (``"paper"``, ``"official"``).
        mask_seed: Fix the mask seed instead of sampling it.
        task_sampling: ``"one"`` (Algorithm 1) or ``"all"`` tasks every batch.
        blocks: Block indices to route (default: every block).
        max_eval_bytes: Memory allowed for the one batched pass over all tasks during the
            trainer's validation; above it the proposal lowers ``eval_batch_size``.

    Example:
        >>> from mtlsearch.pipeline import run_strategy
        >>> result = run_strategy(TaskRouting(sigma=0.4), ctx)  # doctest: +SKIP
    """

    name = "task_routing"
    description = "hard-shared backbone with fixed random per-task channel masks (sharing ratio σ)"

    def __init__(
        self,
        *,
        sigma: float | None = None,
        sigma_range: tuple[float, float] = (0.0, 1.0),
        schemes: Sequence[str] = SCHEMES,
        mask_seed: int | None = None,
        task_sampling: str = "one",
        blocks: Sequence[int] | None = None,
        max_eval_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.sigma = None if sigma is None else check_sigma(sigma)
        low, high = (check_sigma(v) for v in sigma_range)
        if low > high:
            raise MTLSearchError(f"sigma_range {sigma_range} must be (low, high) with low <= high")
        self.sigma_range = (low, high)
        self.schemes = list(schemes)
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if not self.schemes or unknown:
            raise MTLSearchError(f"schemes {list(schemes)} must be a non-empty subset of {list(SCHEMES)}")
        if task_sampling not in ("one", "all"):
            raise MTLSearchError(f"task_sampling must be 'one' or 'all', got {task_sampling!r}")
        self.mask_seed = mask_seed
        self.task_sampling = task_sampling
        self.blocks = None if blocks is None else list(blocks)
        self.max_eval_bytes = int(max_eval_bytes)

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        sigma = self.sigma
        if sigma is None:
            sigma = trial.suggest_float("sigma", *self.sigma_range)
        seed = self.mask_seed
        if seed is None:
            seed = trial.suggest_int("mask_seed", 0, 2**31 - 1)
        scheme = self.schemes[0]
        if len(self.schemes) > 1:
            scheme = trial.suggest_categorical("scheme", self.schemes)
        graph = routed_graph(
            ctx.new_graph("hard_sharing"), ctx.space, sigma=sigma, seed=seed, scheme=scheme,
            blocks=self.blocks,
        )
        overrides: dict[str, Any] = {"task_sampling": self.task_sampling}
        per_row = routed_bytes_per_row(ctx.space, len(ctx.task_names))
        if per_row * ctx.budget.eval_batch_size > self.max_eval_bytes:
            # the trainer validates all tasks in one batched pass: fewer rows keep it in memory
            overrides["eval_batch_size"] = max(1, self.max_eval_bytes // per_row)
        layers = {
            str(i): mask_stats(_matrix(graph, i)).__dict__ for i in _check_blocks(self.blocks, graph.num_blocks)
        }
        info = {"sigma": sigma, "scheme": scheme, "mask_seed": seed, "mask_stats": layers}
        return Proposal(graph, train_overrides=overrides, info=info)


def _matrix(graph: SharingGraph, index: int) -> np.ndarray:
    node = graph.block_nodes(index)[0]
    masks = graph.masks()[node]
    return np.stack([masks[t] for t in graph.tasks])
