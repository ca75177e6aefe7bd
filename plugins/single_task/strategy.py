"""Strategy ``single_task``: one separate network per task (the Δ_MTL = 0 reference)."""

from __future__ import annotations

from typing import Any

from mtlsearch.strategy.base import Proposal, Strategy

__all__ = ["SingleTask"]


class SingleTask(Strategy):
    """Every task gets its own chain of blocks: no weights are shared.

    Its Δ_MTL is zero up to training noise, and its size is the upper bound every sharing
    strategy should undercut.
    """

    name = "single_task"
    description = "one separate network per task (the Δ_MTL reference)"

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        return Proposal(ctx.new_graph("single_task"))
