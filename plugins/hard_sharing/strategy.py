"""Strategy ``hard_sharing``: one backbone shared by every task, one head per task."""

from __future__ import annotations

from typing import Any

from mtlsearch.strategy.base import Proposal, Strategy

__all__ = ["HardSharing"]


class HardSharing(Strategy):
    """All tasks share every block; only the heads are task-specific (the smallest model)."""

    name = "hard_sharing"
    description = "every block shared by all tasks, one head per task"

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        return Proposal(ctx.new_graph("hard_sharing"))
