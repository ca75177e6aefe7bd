"""Strategy ``random_tree``: a random branched tree, the floor every search must beat.

The trial samples the depth where the network branches, the number of task groups and a seed;
tasks are shared up to that depth, then split into random non-empty groups that keep their
own blocks to the end.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from mtlsearch.strategy.base import Proposal, Strategy

__all__ = ["RandomTree", "random_partition"]


def random_partition(tasks: Sequence[str], groups: int, rng: random.Random) -> list[list[str]]:
    """Split ``tasks`` into ``groups`` random non-empty groups (each in task order)."""
    if not 1 <= groups <= len(tasks):
        raise ValueError(f"groups must be in 1..{len(tasks)}, got {groups}")
    shuffled = list(tasks)
    rng.shuffle(shuffled)
    labels = list(range(groups)) + [rng.randrange(groups) for _ in shuffled[groups:]]
    return [[t for t in tasks if labels[shuffled.index(t)] == g] for g in range(groups)]


class RandomTree(Strategy):
    """A random branched tree of a sampled branch depth and number of groups.

    Args:
        max_groups: Upper bound of the number of groups (default: the number of tasks).
    """

    name = "random_tree"
    description = "random branched tree: the floor every search strategy must beat"

    def __init__(self, *, max_groups: int | None = None):
        self.max_groups = max_groups

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        tasks, depth_count = ctx.task_names, ctx.space.num_blocks
        upper = min(len(tasks), self.max_groups or len(tasks))
        branch_depth = trial.suggest_int("branch_depth", 0, depth_count - 1)
        groups = trial.suggest_int("groups", min(2, upper), upper)
        tree_seed = trial.suggest_int("tree_seed", 0, 2**31 - 1)
        partition = random_partition(tasks, groups, random.Random(tree_seed))
        partitions = [[list(tasks)]] * branch_depth + [partition] * (depth_count - branch_depth)
        graph = ctx.new_graph("partitions", partitions=partitions)
        return Proposal(graph, info={"partition": partition, "branch_depth": branch_depth})
