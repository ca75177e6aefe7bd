"""Which tasks an architecture groups together, and how well that matches a known grouping.

A sharing graph groups tasks at every block depth. Two definitions are offered:

- ``by="features"`` (the default): tasks ``a`` and ``b`` are in one group at depth ``d`` when
  they compute the *same features* after block ``d``: their routes pass the same block nodes
  with the same skips and the same channel masks at every depth ``0..d`` (the prefix the
  executor runs once for both). For a branched tree this is the tree's branch at depth ``d``;
  task routing's per-task masks and AdaShare's per-task skips split tasks that pass the same
  nodes.
- ``by="nodes"``: tasks are grouped by the block node they pass at depth ``d`` (they share its
  weights), masks and skips ignored: :meth:`SharingGraph.partitions` at that depth.

The **discovered grouping** of an architecture is its partition at the *last shared depth*:
the deepest depth at which some group still holds more than one task, i.e. the finest
grouping the architecture still commits to. An architecture that groups no two tasks at any
depth (single-task networks; task routing, whose masks differ from the first block on) has
the partition into single tasks. Hard sharing puts every task in one group at every depth.
Both trivial partitions have an adjusted Rand index of 0 against any planted grouping with
more than one group and fewer groups than tasks: they carry no information about the groups.

The adjusted Rand index (ARI) is :func:`sklearn.metrics.adjusted_rand_score`: 1 for the
planted grouping exactly, about 0 for a grouping no better than chance (it can be negative).

Example:
    >>> from mtlsearch import SharingGraph
    >>> g = SharingGraph.from_partitions(["a", "b", "c", "d"],
    ...                                  [[["a", "b", "c", "d"]], [["a", "b"], ["c", "d"]]])
    >>> task_partition(g, 1)
    [['a', 'b'], ['c', 'd']]
    >>> grouping_ari(g, [["a", "b"], ["c", "d"]])
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtlsearch.errors import GraphError
from mtlsearch.graph.sharing import SharingGraph

__all__ = [
    "GROUPING_MODES",
    "task_partition",
    "last_shared_depth",
    "discovered_grouping",
    "grouping_ari",
    "ari_per_depth",
    "planted_labels",
]

#: The two ways :func:`task_partition` groups tasks (see the module docstring).
GROUPING_MODES = ("features", "nodes")


def _as_graph(graph: SharingGraph | Mapping[str, Any]) -> SharingGraph:
    """A graph, or its ``to_dict()`` output (as stored in a trial's user attributes)."""
    if isinstance(graph, SharingGraph):
        return graph
    if isinstance(graph, Mapping):
        return SharingGraph.from_dict(dict(graph))
    raise TypeError(
        f"expected a SharingGraph or its to_dict() output, got {type(graph).__name__}"
    )


def task_partition(
    graph: SharingGraph | Mapping[str, Any], depth: int, *, by: str = "features"
) -> list[list[str]]:
    """The tasks grouped at block depth ``depth`` (groups in task order, by first task).

    Args:
        graph: A sharing graph (or its ``to_dict()`` output).
        depth: Block index, ``0 .. graph.num_blocks - 1``.
        by: ``"features"`` (same nodes, skips and masks up to ``depth``) or ``"nodes"`` (same
            block node at ``depth``).

    Returns:
        A list of groups, each a list of task names in the graph's task order.

    Raises:
        GraphError: ``depth`` is not a block index of the graph.
        ValueError: ``by`` is not one of :data:`GROUPING_MODES`.

    Example:
        >>> from mtlsearch import SharingGraph
        >>> g = SharingGraph.hard_sharing(["a", "b", "c"], 2)
        >>> g.set_skip("c", "b1.0")
        >>> task_partition(g, 1), task_partition(g, 1, by="nodes")
        ([['a', 'b'], ['c']], [['a', 'b', 'c']])
    """
    graph = _as_graph(graph)
    if by not in GROUPING_MODES:
        raise ValueError(f"by={by!r} is not a grouping mode; use one of {list(GROUPING_MODES)}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < graph.num_blocks:
        raise GraphError(
            f"depth={depth!r} is not a block depth of this graph; use 0..{graph.num_blocks - 1}"
        )
    if by == "nodes":
        return graph.partitions()[depth]
    groups: dict[tuple[Any, ...], list[str]] = {}
    for task in graph.tasks:  # insertion order = order of each group's first task
        key = tuple(step.key() for step in graph.steps(task)[: depth + 1])
        groups.setdefault(key, []).append(task)
    return list(groups.values())


def last_shared_depth(
    graph: SharingGraph | Mapping[str, Any], *, by: str = "features"
) -> int | None:
    """The deepest block depth where some group holds more than one task (``None``: none does).

    Example:
        >>> from mtlsearch import SharingGraph
        >>> last_shared_depth(SharingGraph.single_task(["a", "b"], 3)) is None
        True
        >>> last_shared_depth(SharingGraph.hard_sharing(["a", "b"], 3))
        2
    """
    graph = _as_graph(graph)
    for depth in reversed(range(graph.num_blocks)):
        if any(len(g) > 1 for g in task_partition(graph, depth, by=by)):
            return depth
    return None


def discovered_grouping(
    graph: SharingGraph | Mapping[str, Any], *, by: str = "features"
) -> list[list[str]]:
    """The partition at :func:`last_shared_depth`; single tasks when no two tasks share.

    Example:
        >>> from mtlsearch import SharingGraph
        >>> g = SharingGraph.from_partitions(
        ...     ["a", "b", "c"], [[["a", "b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]])
        >>> discovered_grouping(g)
        [['a', 'b'], ['c']]
    """
    graph = _as_graph(graph)
    depth = last_shared_depth(graph, by=by)
    if depth is None:
        return [[t] for t in graph.tasks]
    return task_partition(graph, depth, by=by)


def planted_labels(
    planted: Sequence[Sequence[str]] | Mapping[str, Any], tasks: Sequence[str]
) -> list[int]:
    """One group label per task of ``tasks`` from groups of task names or ``{task: label}``.

    Labels are renumbered 0, 1, ... in the order their first task appears in ``tasks``.

    Raises:
        ValueError: a task is missing from ``planted``, named twice, or not one of ``tasks``.

    Example:
        >>> planted_labels([["b"], ["a", "c"]], ["a", "b", "c"])
        [0, 1, 0]
    """
    if isinstance(planted, Mapping):
        raw = dict(planted)
    else:
        raw = {}
        for k, group in enumerate(planted):
            if isinstance(group, str):
                raise ValueError(
                    f"planted grouping entry {group!r} is a string; give lists of task names, "
                    "e.g. [['t000', 't001'], ['t002']], or a {task: label} mapping"
                )
            for task in group:
                if task in raw:
                    raise ValueError(f"task {task!r} is in several planted groups")
                raw[task] = k
    unknown = sorted(set(raw) - set(tasks))
    if unknown:
        raise ValueError(f"the planted grouping names tasks {unknown} that the graph does not have")
    missing = [t for t in tasks if t not in raw]
    if missing:
        raise ValueError(f"the planted grouping leaves out tasks {missing}; give every task a group")
    codes: dict[Any, int] = {}
    return [codes.setdefault(raw[t], len(codes)) for t in tasks]


def grouping_ari(
    graph: SharingGraph | Mapping[str, Any],
    planted: Sequence[Sequence[str]] | Mapping[str, Any],
    *,
    depth: int | None = None,
    by: str = "features",
) -> float:
    """Adjusted Rand index of the graph's grouping against a planted one.

    Args:
        graph: A sharing graph (or its ``to_dict()`` output).
        planted: The known grouping: lists of task names (``data.info["groups"]``) or a
            ``{task: label}`` mapping. It must cover exactly the graph's tasks.
        depth: Compare the partition at this block depth; default: the
            :func:`discovered_grouping` (partition at the last shared depth).
        by: ``"features"`` or ``"nodes"`` (see :func:`task_partition`).

    Returns:
        The ARI, 1.0 for a perfect match; 0.0 for hard sharing or single-task networks
        against a planted grouping with 2..n-1 groups.

    Example:
        >>> from mtlsearch import SharingGraph
        >>> g = SharingGraph.single_task(["a", "b", "c", "d"], 2)
        >>> grouping_ari(g, [["a", "b"], ["c", "d"]])
        0.0
    """
    from sklearn.metrics import adjusted_rand_score

    graph = _as_graph(graph)
    truth = planted_labels(planted, graph.tasks)
    found = discovered_grouping(graph, by=by) if depth is None else task_partition(
        graph, depth, by=by)
    return float(adjusted_rand_score(truth, planted_labels(found, graph.tasks)))


def ari_per_depth(
    graph: SharingGraph | Mapping[str, Any],
    planted: Sequence[Sequence[str]] | Mapping[str, Any],
    *,
    by: str = "features",
) -> list[float]:
    """:func:`grouping_ari` at every block depth, from the input side.

    Example:
        >>> from mtlsearch import SharingGraph
        >>> g = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]])
        >>> ari_per_depth(g, [["a"], ["b"]])
        [0.0, 1.0]
    """
    graph = _as_graph(graph)
    return [grouping_ari(graph, planted, depth=d, by=by) for d in range(graph.num_blocks)]
