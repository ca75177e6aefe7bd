"""Branch merging (section 3.4): one branch per task group, tasks differ only in their heads.

:func:`merge_branches` rewrites the graph so that every task of a group is routed through the
*kept* branch's nodes, whose ids are unchanged, and the other branches' nodes disappear. The
trainer re-materializes the model and keeps weights and optimizer state by node id, so the kept
branch keeps its weights and Adam moments, the heads keep theirs, and removed parameters leave
the optimizer. :func:`merge_weights` writes the element-wise mean, maximum or minimum of the
group's branch weights into the kept branch first (options of the paper).

Example:
    >>> from mtlsearch.graph.sharing import SharingGraph
    >>> g = SharingGraph.from_partitions(["a", "b", "c"], [[["a", "b", "c"]], [["a"], ["b"], ["c"]]])
    >>> merged = merge_branches(g, 1, [["b1.0", "b1.2"]], keep=["b1.2"])
    >>> merged.route("a"), merged.block_nodes(1)
    (['b0.0', 'b1.2'], ['b1.1', 'b1.2'])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlsearch.engine.model import MultiTaskModel, module_key
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

from .capture import branches

__all__ = ["MERGE_MODES", "merge_branches", "merge_weights", "branch_nodes"]

MERGE_MODES = ("best", "mean", "max", "min")


def branch_nodes(
    graph: SharingGraph, depth: int, branch: str, current: dict[str, list[str]] | None = None
) -> list[str]:
    """The block nodes of ``branch`` from the branch depth to the last block.

    ``current``: :func:`branches` of ``graph`` at ``depth``, when the caller has it already.
    """
    task = (current if current is not None else branches(graph, depth))[branch][0]
    return graph.route(task)[depth:]


def merge_branches(
    graph: SharingGraph, depth: int, groups: Sequence[Sequence[str]], *, keep: Sequence[str]
) -> SharingGraph:
    """A copy of ``graph`` where each group of branches becomes its kept branch.

    Args:
        graph: The current graph.
        depth: The branch depth.
        groups: Groups of branch ids (nodes at ``depth``), each with two or more branches.
        keep: For each group, the branch whose nodes remain.

    Raises:
        MTLSearchError: when a group names an unknown branch, overlaps another, or its kept
            branch is not a member.
    """
    current = branches(graph, depth)
    seen: set[str] = set()
    for group, kept in zip(groups, keep, strict=True):
        unknown = sorted(set(group) - set(current))
        if unknown:
            raise MTLSearchError(f"groups name unknown branches {unknown}; branches: {sorted(current)}")
        if seen & set(group):
            raise MTLSearchError(f"branches {sorted(seen & set(group))} are in several groups")
        if kept not in group:
            raise MTLSearchError(f"kept branch {kept!r} is not in its group {list(group)}")
        seen |= set(group)
    new = graph.copy()
    for group, kept in zip(groups, keep):
        route = graph.route(current[kept][0])
        for branch in group:
            if branch == kept:
                continue
            for task in current[branch]:
                new.set_route(task, route)
    new.remove_unused_blocks()
    return new.validate()


@torch.no_grad()
def merge_weights(
    model: MultiTaskModel, depth: int, group: Sequence[str], *, keep: str, mode: str
) -> None:
    """Write the ``mode`` (``mean``, ``max`` or ``min``) of the group's branch weights into
    the kept branch, node by node and element by element (floating tensors only; integer
    buffers such as BatchNorm's batch counter keep the kept branch's value). ``best`` does
    nothing."""
    if mode not in MERGE_MODES:
        raise MTLSearchError(f"unknown merge mode {mode!r}; choose one of {list(MERGE_MODES)}")
    if mode == "best":
        return
    graph = model.graph
    current = branches(graph, depth)
    kept_nodes = branch_nodes(graph, depth, keep, current)
    others = [branch_nodes(graph, depth, b, current) for b in group]
    for position, node in enumerate(kept_nodes):
        target = model.blocks[module_key(node)].state_dict(keep_vars=True)
        sources = [model.blocks[module_key(nodes[position])].state_dict() for nodes in others]
        for name, tensor in target.items():
            if not tensor.is_floating_point():
                continue
            stack = torch.stack([s[name].to(tensor.dtype) for s in sources])
            if mode == "mean":
                value = stack.mean(0)
            elif mode == "max":
                value = stack.amax(0)
            else:
                value = stack.amin(0)
            tensor.data.copy_(value)
