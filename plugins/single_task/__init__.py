"""Strategy ``single_task``: one separate network per task (the Δ_MTL = 0 reference).

Registered lazily: listing strategies imports only this module, not torch.
"""

from __future__ import annotations

from mtlsearch.hookspecs import StrategyRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

__all__ = ["SingleTask", "register_strategies"]

__getattr__ = lazy_exports(__name__, {"SingleTask": ".strategy"})


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(f"{__name__}.strategy:SingleTask", name="single_task",
             description="one separate network per task (the Δ_MTL reference)", dynamic=False)
