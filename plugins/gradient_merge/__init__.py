"""Strategy ``gradient_merge``: Selective Sharing (Strezoski, van Noord and Worring, 2019).

Per-task branches after a shared trunk; each epoch the branches' first-layer gradients are
factorised (tensor train), clustered (HDBSCAN) and each cluster merged into one branch while
training goes on. See ``docs/strategies/gradient_merge.md``.

Example:
    >>> from mtlsearch.registry import create_strategy
    >>> create_strategy("gradient_merge", directive="similarity").directive
    'similarity'
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

_LAZY = {
    "GradientRecorder": ".capture",
    "branch_depth": ".capture",
    "branch_gradients": ".capture",
    "branch_layer": ".capture",
    "branches": ".capture",
    "DIRECTIVES": ".clustering",
    "cluster_branches": ".clustering",
    "groups_from_labels": ".clustering",
    "factor_vector": ".factors",
    "factor_vectors": ".factors",
    "normalise_rows": ".factors",
    "sketch_projections": ".factors",
    "tt_cores": ".factors",
    "tt_reconstruct": ".factors",
    "tt_sketch": ".factors",
    "MERGE_MODES": ".merge",
    "merge_branches": ".merge",
    "merge_weights": ".merge",
    "GradientMerge": ".strategy",
    "cluster_size_range": ".strategy",
    "min_samples_range": ".strategy",
}
# what `from this_plugin import X` finds, imported on first use: listing the strategies
# imports this module alone
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DIRECTIVES",
    "MERGE_MODES",
    "GradientMerge",
    "GradientRecorder",
    "branch_depth",
    "branch_gradients",
    "branch_layer",
    "branches",
    "cluster_branches",
    "cluster_size_range",
    "factor_vector",
    "factor_vectors",
    "groups_from_labels",
    "merge_branches",
    "merge_weights",
    "min_samples_range",
    "normalise_rows",
    "sketch_projections",
    "tt_cores",
    "tt_reconstruct",
    "tt_sketch",
]


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(f"{__name__}.strategy:GradientMerge", name="gradient_merge", dynamic=True,
             description="Selective Sharing: per-task branches merged by HDBSCAN on TT gradient "
                         "factors")
