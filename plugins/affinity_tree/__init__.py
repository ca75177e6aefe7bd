"""Strategy plugin ``affinity_tree``: branched networks from task affinities at every depth.

Seed paper: Vandenhende, De Brabandere and Van Gool, "Branched Multi-Task Networks: Deciding
What Layers To Share". Modules: :mod:`.affinity` (tournaments, the affinity tensor, files),
:mod:`.estimators` (recombined networks, their cheaper subset variant, RSA), :mod:`.tree`
(costs, beam and exhaustive search, the distinct trees of an ``alpha`` range), :mod:`.plots`
(heat maps), :mod:`.agreement` (comparing estimators), :mod:`.strategy` (the search strategy).
Whether a search finds planted task groups is measured by
``benchmarks/bench_affinity_tree_recovery.py``.

Example:
    >>> from mtlsearch import create_strategy
    >>> create_strategy("affinity_tree", estimator="rsa").estimator
    'rsa'
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl

from .affinity import (
    AffinityTensor,
    affinity_from_losses,
    affinity_matrix,
    per_sample_losses,
    performance_vector,
    tournament_matrix,
)
from .agreement import pair_spearman, tree_ari
from .estimators import ESTIMATORS, estimate_affinity, train_single_task
from .plots import draw_affinity
from .strategy import AffinityTree
from .tree import (
    CLUSTERING_COSTS,
    TreeCandidate,
    TreeResult,
    beam_search,
    build_tree,
    clustering_cost,
    complexity_cost,
    enumerate_trees,
    exhaustive_search,
    is_single_task,
    pooling_steps,
    tree_cost,
    tree_cost_parts,
)

__all__ = [
    "AffinityTree",
    "AffinityTensor",
    "CLUSTERING_COSTS",
    "ESTIMATORS",
    "TreeCandidate",
    "TreeResult",
    "affinity_from_losses",
    "affinity_matrix",
    "beam_search",
    "build_tree",
    "clustering_cost",
    "complexity_cost",
    "draw_affinity",
    "enumerate_trees",
    "estimate_affinity",
    "exhaustive_search",
    "is_single_task",
    "pair_spearman",
    "per_sample_losses",
    "performance_vector",
    "pooling_steps",
    "tournament_matrix",
    "train_single_task",
    "tree_ari",
    "tree_cost",
    "tree_cost_parts",
]


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(AffinityTree)
