"""The architecture as data: a search space's blocks and the sharing graph over them.

``space`` defines what a search space offers (:class:`Block`, :class:`SearchSpace`,
:func:`from_modules`); ``sharing`` the :class:`SharingGraph` (which block nodes each task's
route runs, skips and masks; validation; JSON and GraphML); ``plan`` the trie of routes that
runs every distinct computation once; ``summary`` what a graph costs without training it
(parameters, MACs, branching); ``grouping`` the task grouping a graph implies and its
agreement with planted groups. Nothing here trains anything. This subpackage imports only
``tasks`` and the base modules; the engine, strategies, pictures, export and studies import
it.

Example:
    >>> from mtlsearch.graph import SharingGraph
    >>> SharingGraph.from_partitions(["a", "b", "c"], [[["a", "b", "c"]], [["a", "b"], ["c"]]]).tasks
    ['a', 'b', 'c']
"""

from __future__ import annotations

from mtlsearch.graph.plan import ExecutionPlan, build_plan
from mtlsearch.graph.sharing import INPUT, RouteStep, SharingGraph
from mtlsearch.graph.space import Block, SearchSpace, from_modules
from mtlsearch.graph.summary import GraphSummary, summarize

__all__ = [
    "INPUT",
    "Block",
    "ExecutionPlan",
    "GraphSummary",
    "RouteStep",
    "SearchSpace",
    "SharingGraph",
    "build_plan",
    "from_modules",
    "summarize",
]
