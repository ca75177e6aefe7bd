"""Strategy ``random_tree``: a random branched tree, the floor every search must beat.

The trial samples the depth where the network branches, the number of task groups and a seed;
tasks are shared up to that depth, then split into random non-empty groups that keep their
own blocks to the end. Registered lazily: listing strategies imports only this module.
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

__all__ = ["RandomTree", "random_partition", "register_strategies"]

__getattr__ = lazy_exports(__name__, {"RandomTree": ".strategy",
                                               "random_partition": ".strategy"})


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    # the floor every search must beat: what a search runs unnamed, and compare's baseline
    register(f"{__name__}.strategy:RandomTree", name="random_tree", default=True, baseline=0,
             description="random branched tree: the floor every search strategy must beat",
             dynamic=False)
