"""Strategy ``hard_sharing``: one backbone shared by every task, one head per task.

Registered lazily: listing strategies imports only this module, not torch.
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

__all__ = ["HardSharing", "register_strategies"]

__getattr__ = lazy_exports(__name__, {"HardSharing": ".strategy"})


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    # compare's baseline when random_tree is not compared
    register(f"{__name__}.strategy:HardSharing", name="hard_sharing", baseline=1,
             description="every block shared by all tasks, one head per task", dynamic=False)
