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
from mtlsearch.registry import lazy_exports

_LAZY = {
    "depth_weights": ".losses",
    "execute_probability": ".losses",
    "sharing_loss": ".losses",
    "soft_decisions": ".losses",
    "sparsity_loss": ".losses",
    "draw_policy": ".plots",
    "draw_task_correlation": ".plots",
    "task_correlation": ".plots",
    "MIN_POLICY_STEPS": ".policy",
    "PolicyResult": ".policy",
    "PolicySettings": ".policy",
    "learn_policy": ".policy",
    "split_training": ".policy",
    "train_stochastic_depth": ".policy",
    "decisions_to_graph": ".sampling",
    "most_likely": ".sampling",
    "random_like": ".sampling",
    "sample_decisions": ".sampling",
    "ABLATIONS": ".strategy",
    "INITIAL_PARAMS": ".strategy",
    "GumbelPolicy": ".strategy",
    "PolicySupernet": ".supernet",
}
# what `from this_plugin import X` finds, imported on first use: listing the strategies
# imports this module alone
__getattr__ = lazy_exports(__name__, _LAZY)

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
    register(f"{__name__}.strategy:GumbelPolicy", name="gumbel_policy",
             tiny={"min_policy_steps": 20, "num_samples": 1}, dynamic=False,
             description="AdaShare: per-task select-or-skip block policies learned with "
                         "Gumbel-softmax", quick_settings={"num_samples": 1})
