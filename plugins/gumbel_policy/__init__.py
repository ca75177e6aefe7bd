"""Strategy plugin ``gumbel_policy``: AdaShare's per-task select-or-skip policies learned with
Gumbel-softmax (Sun, Panda, Feris, Saenko, NeurIPS 2020).

Modules: :mod:`.losses` (regularisers, curriculum, temperature), :mod:`.supernet` (the soft
forward), :mod:`.policy` (policy learning, stochastic depth), :mod:`.sampling` (decisions to
sharing graphs, random ablations), :mod:`.plots` (Figure 3a/3b), :mod:`.strategy` (the plugin).

Example:
    >>> from mtlsearch import create_strategy
    >>> create_strategy("gumbel_policy", num_samples=4).num_samples
    4
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl

from .losses import depth_weights, execute_probability, sharing_loss, soft_decisions, sparsity_loss
from .plots import draw_policy, draw_task_correlation, task_correlation
from .policy import (
    MIN_POLICY_STEPS,
    PolicyResult,
    PolicySettings,
    learn_policy,
    split_training,
    train_stochastic_depth,
)
from .sampling import decisions_to_graph, most_likely, random_like, sample_decisions
from .strategy import ABLATIONS, INITIAL_PARAMS, GumbelPolicy
from .supernet import PolicySupernet

__all__ = [
    "ABLATIONS",
    "INITIAL_PARAMS",
    "MIN_POLICY_STEPS",
    "GumbelPolicy",
    "PolicyResult",
    "PolicySettings",
    "PolicySupernet",
    "decisions_to_graph",
    "depth_weights",
    "draw_policy",
    "draw_task_correlation",
    "execute_probability",
    "learn_policy",
    "most_likely",
    "random_like",
    "sample_decisions",
    "sharing_loss",
    "soft_decisions",
    "sparsity_loss",
    "split_training",
    "task_correlation",
    "train_stochastic_depth",
]


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(GumbelPolicy, tiny={"min_policy_steps": 20, "num_samples": 1})
