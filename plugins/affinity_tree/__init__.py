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
from mtlsearch.registry import lazy_exports

_LAZY = {
    "AffinityTensor": ".affinity",
    "affinity_from_losses": ".affinity",
    "affinity_matrix": ".affinity",
    "per_sample_losses": ".affinity",
    "performance_vector": ".affinity",
    "tournament_matrix": ".affinity",
    "pair_spearman": ".agreement",
    "tree_ari": ".agreement",
    "ESTIMATORS": ".estimators",
    "estimate_affinity": ".estimators",
    "train_single_task": ".estimators",
    "draw_affinity": ".plots",
    "AffinityTree": ".strategy",
    "CLUSTERING_COSTS": ".tree",
    "TreeCandidate": ".tree",
    "TreeResult": ".tree",
    "beam_search": ".tree",
    "build_tree": ".tree",
    "clustering_cost": ".tree",
    "complexity_cost": ".tree",
    "enumerate_trees": ".tree",
    "exhaustive_search": ".tree",
    "is_single_task": ".tree",
    "pooling_steps": ".tree",
    "tree_cost": ".tree",
    "tree_cost_parts": ".tree",
}
# what `from this_plugin import X` finds, imported on first use: listing the strategies
# imports this module alone
__getattr__ = lazy_exports(__name__, _LAZY)

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
    register(f"{__name__}.strategy:AffinityTree", name="affinity_tree",
             description="branched tree from task affinities at every depth (Vandenhende et al.)",
             dynamic=False, quick_settings={"estimator": "rsa"})
