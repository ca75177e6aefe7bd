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

from .capture import GradientRecorder, branch_depth, branch_gradients, branch_layer, branches
from .clustering import DIRECTIVES, cluster_branches, groups_from_labels
from .factors import (
    factor_vector,
    normalise_rows,
    sketch_projections,
    tt_cores,
    tt_reconstruct,
    tt_sketch,
)
from .merge import MERGE_MODES, merge_branches, merge_weights
from .strategy import GradientMerge, cluster_size_range, min_samples_range

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
    register(GradientMerge)
