"""The sharing graph: one representation for every way tasks can share a network.

A :class:`SharingGraph` wraps a :class:`networkx.DiGraph` with one ``input`` node, one
``head:<task>`` node per task and ``block`` nodes, each an instance of block *i* of the search
space with its own weights. Edges carry the tasks that travel them (``tasks`` attribute), so a
task's route is the path of edges labelled with it. Every route visits one node per block index,
in increasing order. A route step can be *skipped* (the block's shortcut runs instead; the node's
``skips`` lists those tasks) or *masked* (a fixed binary channel mask, task routing; the node's
``masks`` maps task -> mask). Two tasks through the same node share its weights.

Example:
    >>> g = SharingGraph.from_partitions(
    ...     ["a", "b", "c"], [[["a", "b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]]
    ... )
    >>> g.branches_per_depth()
    [1, 2, 3]
    >>> SharingGraph.from_json(g.to_json()) == g
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from mtlsearch.errors import GraphError, TaskError
from mtlsearch.safety import is_json_int
from mtlsearch.tasks.names import check_task_names, display_name, name_key, name_problem

__all__ = ["SharingGraph", "RouteStep", "SCHEMA_VERSION", "INPUT", "TASK_NORMS", "MAX_BLOCKS",
           "MAX_BLOCK_NODES", "MAX_TASKS"]

#: Newest schema this version reads. Graphs are written as version 1 unless they need a
#: version-2 feature (``task_norm="task"``), so older readers keep reading everything else.
SCHEMA_VERSION = 2
#: How batch-norm statistics are kept where tasks reach a block with different inputs.
TASK_NORMS = ("shared", "task")
INPUT = "input"
_FORMAT = "mtlsearch.sharing_graph"
# Limits on what a graph file may ask for: loading costs about a millisecond per block node
# and per task (a module each), so these keep load() of a hostile file to seconds
# (docs/reliability.md, "Round II"). Real networks have tens of blocks and a few thousand nodes.
MAX_BLOCKS = 256  # block indices (the depth of the search space: real ones have 5 to 50)
MAX_BLOCK_NODES = 8_192  # block instances, all depths together (CUB: 312 tasks x 17 = 5 304)
MAX_TASKS = 2_000
MAX_GRAPH_BYTES = 50 * 1024 * 1024  # a graph is kilobytes; refuse to read a huge file


def head_id(task: str) -> str:
    return f"head:{task}"


@dataclass(frozen=True)
class RouteStep:
    """One step of a task's route: the block node, its block index, and how it is used."""

    node: str
    index: int
    skip: bool = False
    mask: np.ndarray | None = None

    def key(self) -> tuple[str, bool, bytes | None]:
        """Identity of the computation: equal keys from equal inputs give equal outputs."""
        return (self.node, self.skip, None if self.mask is None else np.packbits(self.mask).tobytes() + bytes([len(self.mask) % 8]))


def _as_mask(mask: Any, where: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 1 or arr.size == 0:
        raise GraphError(f"{where}: a channel mask must be a non-empty 1-D vector, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise GraphError(f"{where}: a channel mask must hold only 0 and 1")
    return arr.astype(bool)


def _mask_to_str(mask: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in mask)


def _mask_from_str(text: Any, where: str) -> np.ndarray:
    if not isinstance(text, str) or not text or set(text) - {"0", "1"}:
        raise GraphError(f"{where}: a serialised mask must be a string of 0s and 1s")
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")


class SharingGraph:
    """Which block instances each task's route passes through, skips or masks.

    Args:
        tasks: Task names, in order.
        num_blocks: Number of blocks in the search space (route length).
        space: Optional ``{"name", "kwargs"}`` of the search space (exported with the graph).
        task_specs: Optional task specs as dictionaries (exported with the graph).
        info: Free-form JSON-ready facts (e.g. the strategy's hyper-parameters).
        task_norm: ``"shared"`` (default): a block's batch norms keep one set of running
            statistics for every task through it; ``"task"``: one set per distinct input
            where the tasks' inputs differ (after a mask or a split), so each task is
            normalised with statistics of its own activations (see
            :class:`~mtlsearch.engine.model.GroupedBatchNorm`).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        num_blocks: int,
        *,
        space: Mapping[str, Any] | None = None,
        task_specs: Sequence[Mapping[str, Any]] | None = None,
        info: Mapping[str, Any] | None = None,
        task_norm: str = "shared",
    ):
        tasks = list(tasks)
        if not tasks:
            raise GraphError("a sharing graph needs at least one task")
        if len(set(tasks)) != len(tasks):
            dupes = sorted({t for t in tasks if tasks.count(t) > 1}, key=str)
            raise GraphError(f"task names must be unique; repeated: {dupes}")
        try:
            check_task_names(tasks)
        except TaskError as exc:
            raise GraphError(str(exc)) from None
        if not isinstance(num_blocks, int) or isinstance(num_blocks, bool) or num_blocks < 1:
            raise GraphError(f"num_blocks must be a positive integer, got {num_blocks!r}")
        self.tasks = tasks
        self._task_pos = {t: i for i, t in enumerate(tasks)}
        self.num_blocks = num_blocks
        self.space = dict(space) if space else None
        self.task_specs = [dict(s) for s in task_specs] if task_specs else None
        self.info = dict(info or {})
        self.task_norm = _check_task_norm(task_norm)
        self.nx = nx.DiGraph()
        self.nx.add_node(INPUT, kind="input")
        for t in tasks:
            self.nx.add_node(head_id(t), kind="head", task=t)
        self._counts: dict[int, int] = {}

    @property
    def task_norm(self) -> str:
        """``"shared"`` or ``"task"``: how block normalisation statistics are kept."""
        return self._task_norm

    @task_norm.setter
    def task_norm(self, value: str) -> None:
        self._task_norm = _check_task_norm(value)

    # ------------------------------------------------------------------ building
    def add_block(self, index: int, node: str | None = None) -> str:
        """Add a new instance of block ``index`` (its own weights); returns its node id."""
        if not isinstance(index, int) or not 0 <= index < self.num_blocks:
            raise GraphError(f"block index {index!r} is outside 0..{self.num_blocks - 1}")
        if node is None:
            k = self._counts.get(index, 0)
            while f"b{index}.{k}" in self.nx:
                k += 1
            node = f"b{index}.{k}"
            self._counts[index] = k + 1
        problem = name_problem(node)
        if problem is not None:
            raise GraphError(
                f"block node id '{display_name(node, 60)}' is not allowed: {problem}; node ids "
                "follow the rule of task names (e.g. 'b0.1')"
            )
        if node in self.nx:
            raise GraphError(f"node {node!r} already exists")
        self.nx.add_node(node, kind="block", index=index, masks={}, skips=set())
        return node

    def set_route(self, task: str, nodes: Sequence[str]) -> None:
        """Route ``task`` through ``nodes`` (one block node per index, in order)."""
        self._check_task(task)
        for node in nodes:
            self._block(node)
        self.clear_route(task)
        path = [INPUT, *nodes, head_id(task)]
        for u, v in zip(path, path[1:]):
            if self.nx.has_edge(u, v):
                self.nx.edges[u, v]["tasks"].add(task)
            else:
                self.nx.add_edge(u, v, tasks={task})

    def clear_route(self, task: str) -> None:
        """Remove ``task`` from every edge, mask and skip."""
        for u, v, data in list(self.nx.edges(data=True)):
            data["tasks"].discard(task)
            if not data["tasks"]:
                self.nx.remove_edge(u, v)
        for _, data in self._block_items():
            data["masks"].pop(task, None)
            data["skips"].discard(task)

    def set_mask(self, task: str, node: str, mask: Any) -> None:
        """Give ``task`` a fixed binary channel mask at ``node`` (task routing)."""
        self._check_task(task)
        data = self._block(node)
        data["masks"][task] = _as_mask(mask, f"mask of task {task!r} at node {node!r}")
        data["skips"].discard(task)  # a masked step runs the block

    def set_skip(self, task: str, node: str, skip: bool = True) -> None:
        """Make ``task`` skip ``node`` (its shortcut runs instead of the block)."""
        self._check_task(task)
        data = self._block(node)
        if skip:
            data["skips"].add(task)
            data["masks"].pop(task, None)  # a skipped step has nothing to mask
        else:
            data["skips"].discard(task)

    def remove_unused_blocks(self) -> None:
        """Drop block nodes that no route passes through."""
        for node in [n for n, _ in self._block_items() if self.nx.degree(n) == 0]:
            self.nx.remove_node(node)

    # ------------------------------------------------------------ constructors
    @classmethod
    def hard_sharing(cls, tasks: Sequence[str], num_blocks: int, **kwargs: Any) -> SharingGraph:
        """One chain of blocks used by every task."""
        return cls.from_partitions(tasks, [[list(tasks)]] * num_blocks, **kwargs)

    @classmethod
    def single_task(cls, tasks: Sequence[str], num_blocks: int, **kwargs: Any) -> SharingGraph:
        """One chain per task: no weights shared."""
        return cls.from_partitions(tasks, [[[t] for t in tasks]] * num_blocks, **kwargs)

    @classmethod
    def from_partitions(
        cls, tasks: Sequence[str], partitions: Sequence[Sequence[Sequence[str]]], **kwargs: Any
    ) -> SharingGraph:
        """A branched tree from one task partition per block depth.

        Each deeper partition must refine the one above (a group never takes tasks from two
        parent groups). Node ``b{d}.{k}`` is group ``k`` at depth ``d``.
        """
        graph = cls(tasks, len(partitions), **kwargs)
        previous: list[frozenset[str]] | None = None
        routes: dict[str, list[str]] = {t: [] for t in graph.tasks}
        for depth, partition in enumerate(partitions):
            groups = [frozenset(g) for g in partition]
            _check_partition(graph.tasks, groups, depth)
            if previous is not None:
                for group in groups:
                    if not any(group <= parent for parent in previous):
                        raise GraphError(
                            f"partition at depth {depth} does not refine depth {depth - 1}: "
                            f"group {sorted(group)} takes tasks from several groups of "
                            f"{[sorted(p) for p in previous]}"
                        )
            for k, listed in enumerate(partition):
                node = graph.add_block(depth, f"b{depth}.{k}")
                for t in listed:
                    routes[t].append(node)
            previous = groups
        for t, nodes in routes.items():
            graph.set_route(t, nodes)
        return graph

    # ----------------------------------------------------------------- queries
    def route(self, task: str) -> list[str]:
        """Block nodes on ``task``'s route, from the input to its head."""
        self._check_task(task)
        nodes, current, seen = [], INPUT, {INPUT}
        while True:
            # the adjacency dict itself: networkx's views cost ~5x per edge, and this scan
            # runs for every task through a node (quadratic where tasks branch: see all_steps)
            nxt = [v for v, d in self.nx._succ[current].items() if task in d["tasks"]]
            if not nxt:
                where = "the input" if current == INPUT else f"node {current!r}"
                raise GraphError(f"task {task!r} has no route out of {where}")
            if len(nxt) > 1:
                raise GraphError(
                    f"task {task!r} has two routes out of node {current!r}: to {sorted(nxt)}"
                )
            current = nxt[0]
            if current in seen:
                raise GraphError(f"route of task {task!r} runs in a cycle through {current!r}")
            seen.add(current)
            kind = self.nx.nodes[current].get("kind")
            if kind == "head":
                if current != head_id(task):
                    raise GraphError(f"route of task {task!r} ends at {current!r}, another task's head")
                return nodes
            nodes.append(current)

    def routes(self) -> dict[str, list[str]]:
        """Every task's route (as :meth:`route`), in one pass over the edges.

        ``route`` scans a node's out-edges at each step, so calling it for every task costs
        O(tasks x edges) on a graph that branches per task; this indexes the edges by (node,
        task) once. Gradient merging asks for all routes on every training step.
        """
        successors: dict[tuple[str, str], list[str]] = {}
        for u, v, d in self.nx.edges(data=True):
            for task in d["tasks"]:
                successors.setdefault((u, task), []).append(v)
        out = {}
        for task in self.tasks:
            nodes, current, seen = [], INPUT, {INPUT}
            while True:
                nxt = successors.get((current, task), [])
                if len(nxt) != 1 or nxt[0] in seen:
                    return {t: self.route(t) for t in self.tasks}  # route() names the error
                current = nxt[0]
                seen.add(current)
                if self.nx.nodes[current].get("kind") == "head":
                    if current != head_id(task):
                        self.route(task)
                    break
                nodes.append(current)
            out[task] = nodes
        return out

    def steps(self, task: str) -> list[RouteStep]:
        """``task``'s route as steps with their skip flag and mask."""
        return self._steps_of(task, self.route(task))

    def all_steps(self) -> dict[str, list[RouteStep]]:
        """Every task's :meth:`steps`, from one pass over the edges (:meth:`routes`).

        Asking :meth:`steps` task by task scans each node's out-edges again for every task
        through it, which is quadratic where many tasks branch (one node per task).
        """
        return {task: self._steps_of(task, nodes) for task, nodes in self.routes().items()}

    def _steps_of(self, task: str, nodes: Sequence[str]) -> list[RouteStep]:
        out = []
        for node in nodes:
            data = self.nx.nodes[node]
            out.append(
                RouteStep(node, data["index"], task in data["skips"], data["masks"].get(task))
            )
        return out

    def block_nodes(self, index: int | None = None) -> list[str]:
        """Block node ids (of one block index, if given), sorted."""
        return sorted(n for n, d in self._block_items() if index is None or d["index"] == index)

    def _nodes_by_index(self) -> list[list[str]]:
        """Sorted block node ids per block index, in one pass (``block_nodes(i)`` for all i)."""
        by_index: list[list[str]] = [[] for _ in range(self.num_blocks)]
        for node, data in self._block_items():
            index = data.get("index")
            if isinstance(index, int) and 0 <= index < self.num_blocks:
                by_index[index].append(node)
        return [sorted(nodes) for nodes in by_index]

    def node_index(self, node: str) -> int:
        return int(self._block(node)["index"])

    def tasks_through(self, node: str) -> set[str]:
        """Tasks whose route passes ``node``."""
        return set().union(*(d["tasks"] for _, _, d in self.nx.in_edges(node, data=True)))

    def partitions(self) -> list[list[list[str]]]:
        """Per depth, the tasks grouped by the node they pass (each group in task order)."""
        result = []
        pos = self._task_pos
        for nodes in self._nodes_by_index():
            groups = [self.tasks_through(n) for n in nodes]
            ordered = [sorted(g, key=pos.__getitem__) for g in groups if g]
            result.append(sorted(ordered, key=lambda g: pos[g[0]]))
        return result

    def branches_per_depth(self) -> list[int]:
        """Number of distinct block nodes at each depth."""
        return [len(nodes) for nodes in self._nodes_by_index()]

    def masks(self) -> dict[str, dict[str, np.ndarray]]:
        """``{node: {task: mask}}`` for every masked step."""
        return {n: dict(d["masks"]) for n, d in self._block_items() if d["masks"]}

    def skips(self) -> dict[str, list[str]]:
        """``{task: [nodes it skips]}``."""
        out: dict[str, list[str]] = {t: [] for t in self.tasks}
        for n, d in self._block_items():
            for t in d["skips"]:
                out[t].append(n)
        return {t: sorted(v, key=self.node_index) for t, v in out.items()}

    # -------------------------------------------------------------- validation
    def validate(self, space: Any | None = None) -> SharingGraph:
        """Check the graph (and, if given, its fit to ``space``); returns ``self``.

        Raises:
            GraphError: naming the node, task or field at fault.
        """
        if not nx.is_directed_acyclic_graph(self.nx):
            cycle = nx.find_cycle(self.nx)
            raise GraphError(f"the graph has a cycle: {' -> '.join(u for u, _ in cycle)}")
        for node, data in self.nx.nodes(data=True):
            kind = data.get("kind")
            if kind not in ("input", "head", "block"):
                raise GraphError(f"node {node!r} has unknown kind {kind!r}; use input, head or block")
            if kind == "head" and data.get("task") not in self.tasks:
                raise GraphError(f"head node {node!r} belongs to no task of {self.tasks}")
            if kind == "block":
                index = data.get("index")
                if not isinstance(index, int) or not 0 <= index < self.num_blocks:
                    raise GraphError(
                        f"node {node!r} has block index {index!r}; the space has blocks "
                        f"0..{self.num_blocks - 1}"
                    )
        known = self._task_pos
        for u, v, data in self.nx.edges(data=True):
            unknown = [t for t in data.get("tasks", ()) if t not in known]
            if unknown:
                raise GraphError(
                    f"edge {u!r} -> {v!r} carries unknown tasks {sorted(unknown, key=str)}"
                )
        for task in self.tasks:
            if head_id(task) not in self.nx:
                raise GraphError(f"task {task!r} has no head node {head_id(task)!r}")
        self._check_node_keys()
        routes = self.routes()
        every_index = set(range(self.num_blocks))
        for task in self.tasks:
            indices = [self.node_index(n) for n in routes[task]]
            for a, b, node in zip(indices, indices[1:], routes[task][1:]):
                if b <= a:
                    raise GraphError(
                        f"route of task {task!r} visits block {b} (node {node!r}) after block {a}; "
                        "routes visit block indices in increasing order"
                    )
            missing = sorted(every_index.difference(indices)) if len(indices) < self.num_blocks \
                else []
            if missing:
                raise GraphError(
                    f"route of task {task!r} leaves out blocks {missing}; every route passes one "
                    "node per block index (to skip a block, pass a node and call set_skip)"
                )
        for node, data in self._block_items():
            through = self.tasks_through(node)
            if not through:
                raise GraphError(f"node {node!r} is on no task's route; remove it")
            for task in set(data["masks"]) | data["skips"]:
                if task not in through:
                    raise GraphError(
                        f"node {node!r} has a mask or skip for task {task!r}, whose route does "
                        "not pass it"
                    )
            both = set(data["masks"]) & data["skips"]
            if both:
                raise GraphError(f"node {node!r} both masks and skips tasks {sorted(both)}")
        if space is not None:
            self._validate_space(space)
        return self

    def _check_node_keys(self) -> None:
        """Two block nodes must not share a module key (their weights would be one)."""
        keys: dict[str, str] = {}
        for node, _ in self._block_items():
            other = keys.setdefault(name_key(node), node)
            if other != node:
                raise GraphError(
                    f"block nodes {other!r} and {node!r} both become the module key "
                    f"{name_key(node)!r} (characters other than letters, digits and '_' become "
                    "'_'); rename one"
                )

    def _validate_space(self, space: Any) -> None:
        if space.num_blocks != self.num_blocks:
            raise GraphError(
                f"the graph has {self.num_blocks} block depths but search space "
                f"{space.name!r} has {space.num_blocks} blocks"
            )
        for node, data in self._block_items():
            spec = space.blocks[data["index"]]
            for task, mask in data["masks"].items():
                if len(mask) != spec.channels:
                    raise GraphError(
                        f"mask of task {task!r} at node {node!r} has {len(mask)} entries but "
                        f"block {spec.index} has {spec.channels} channels"
                    )
            if data["skips"] and spec.skip == "none":
                raise GraphError(
                    f"node {node!r} is skipped by {sorted(data['skips'])} but block {spec.index} "
                    f"of space {space.name!r} cannot be skipped (shapes {spec.in_shape} -> "
                    f"{spec.out_shape} and no projection shortcut)"
                )

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready node-link data plus schema version, space and task specs."""
        g = nx.DiGraph()
        for node, data in self.nx.nodes(data=True):
            attrs = dict(data)
            if attrs.get("kind") == "block":
                attrs["masks"] = {t: _mask_to_str(m) for t, m in sorted(attrs["masks"].items())}
                attrs["skips"] = sorted(attrs["skips"])
            g.add_node(node, **attrs)
        for u, v, data in self.nx.edges(data=True):
            g.add_edge(u, v, tasks=sorted(data["tasks"], key=self._task_pos.__getitem__))
        link = nx.node_link_data(
            g, source="source", target="target", name="id", key="key", edges="edges"
        )
        data = {
            "format": _FORMAT,
            "schema_version": 1,
            "tasks": list(self.tasks),
            "num_blocks": self.num_blocks,
            "space": self.space,
            "task_specs": self.task_specs,
            "info": self.info,
            "graph": link,
        }
        if self.task_norm != "shared":
            # a version-1 reader would silently build shared statistics: make it refuse
            data["schema_version"] = 2
            data["task_norm"] = self.task_norm
        return data

    @classmethod
    def from_dict(cls, data: Any, *, limits: bool = True) -> SharingGraph:
        """Rebuild a graph from :meth:`to_dict`'s output, checking every field.

        Anything the writer never produces is refused rather than given a meaning: unknown
        fields, booleans or floats where integers belong, repeated edges, tasks or skips, a
        head node recorded for another task, and sizes beyond :data:`MAX_TASKS`,
        :data:`MAX_BLOCKS` and :data:`MAX_BLOCK_NODES` (which bound the time a hostile file
        can cost). ``limits=False`` lifts those three for graphs this process or its own
        study wrote (:meth:`copy` does), never for a file from elsewhere.
        """
        return cls._from_dict(data, limits=limits)

    @classmethod
    def _from_dict(cls, data: Any, *, limits: bool) -> SharingGraph:
        if not isinstance(data, dict):
            raise GraphError(f"a sharing graph must be a JSON object, got {type(data).__name__}")
        if data.get("format") != _FORMAT:
            raise GraphError(f"field 'format' must be {_FORMAT!r}, got {data.get('format')!r}")
        version = data.get("schema_version")
        if not is_json_int(version) or version < 1:
            raise GraphError(f"field 'schema_version' must be a positive integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise GraphError(
                f"this graph has schema version {version}, newer than this mtlsearch "
                f"understands ({SCHEMA_VERSION}); upgrade mtlsearch"
            )
        _no_unknown_fields(data, _TOP_FIELDS, "the graph")
        if "task_norm" in data and version < 2:
            raise GraphError("field 'task_norm' needs schema_version 2 (version 1 graphs share "
                             "batch-norm statistics); the file was edited")
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise GraphError("field 'tasks' must be a list of task names")
        if limits and len(tasks) > MAX_TASKS:
            raise GraphError(f"field 'tasks' lists {len(tasks)} tasks, above the limit of "
                             f"{MAX_TASKS}")
        for name, typ in (("space", dict), ("task_specs", list), ("info", dict)):
            if data.get(name) is not None and not isinstance(data[name], typ):
                raise GraphError(f"field {name!r} must be a {typ.__name__} or null")
        _check_space_record(data.get("space"))
        if data.get("task_specs") is not None and not all(
            isinstance(spec, dict) for spec in data["task_specs"]
        ):
            raise GraphError("every entry of field 'task_specs' must be an object")
        blocks = data.get("num_blocks")
        if not is_json_int(blocks) or not 0 < blocks <= (MAX_BLOCKS if limits else blocks):
            raise GraphError(f"field 'num_blocks' must be an integer in 1..{MAX_BLOCKS}, got "
                             f"{blocks!r}")
        task_norm = data.get("task_norm", "shared")
        if task_norm not in TASK_NORMS:
            raise GraphError(f"field 'task_norm' must be one of {list(TASK_NORMS)}, got {task_norm!r}")
        graph = cls(
            tasks,
            blocks,
            space=data.get("space"),
            task_specs=data.get("task_specs"),
            info=data.get("info"),
            task_norm=task_norm,
        )
        link = data.get("graph")
        if not isinstance(link, dict) or not isinstance(link.get("nodes"), list) or not isinstance(
            link.get("edges"), list
        ):
            raise GraphError("field 'graph' must hold node-link data with 'nodes' and 'edges' lists")
        _no_unknown_fields(link, _LINK_FIELDS, "field 'graph'")
        if link.get("directed", True) is not True or link.get("multigraph", False) is not False:
            raise GraphError("field 'graph' must be a directed graph without parallel edges "
                             "('directed': true, 'multigraph': false)")
        nodes, edges = link["nodes"], link["edges"]
        if limits and len(nodes) > MAX_BLOCK_NODES + len(tasks) + 1:
            raise GraphError(f"field 'graph' has {len(nodes)} nodes, above the limit of "
                             f"{MAX_BLOCK_NODES} block nodes")
        # every edge lies on some task's route, and a route has num_blocks + 1 edges
        if len(edges) > len(tasks) * (blocks + 1):
            raise GraphError(f"field 'graph' has {len(edges)} edges, more than the routes of "
                             f"{len(tasks)} tasks through {blocks} blocks can use")
        for item in nodes:
            graph._load_node(item)
        for item in edges:
            graph._load_edge(item)
        return graph.validate()

    def _load_node(self, item: Any) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise GraphError("every entry of graph.nodes must be an object with a string 'id'")
        node, kind = item["id"], item.get("kind")
        if not isinstance(kind, str) or kind not in _NODE_FIELDS:
            raise GraphError(f"node {node!r} has unknown kind {kind!r}; use input, head or block")
        _no_unknown_fields(item, _NODE_FIELDS[kind], f"node {node!r}")
        if kind in ("input", "head"):
            expected = self.nx.nodes.get(node)
            if expected is None or expected.get("kind") != kind or (
                kind == "head" and item.get("task") != expected["task"]
            ):
                raise GraphError(f"node {node!r} of kind {kind!r} does not match the task list")
            return
        index = item.get("index")
        if not is_json_int(index):
            raise GraphError(f"node {node!r}: 'index' must be an integer, got {index!r}")
        self.add_block(index, node)
        masks, skips = item.get("masks", {}), item.get("skips", [])
        if not isinstance(masks, dict) or not isinstance(skips, list):
            raise GraphError(f"node {node!r}: 'masks' must be an object and 'skips' a list")
        for task, text in masks.items():
            self._check_task(task)
            self.nx.nodes[node]["masks"][task] = _mask_from_str(
                text, f"mask of task {task!r} at node {node!r}"
            )
        for task in skips:
            if not isinstance(task, str):
                raise GraphError(f"node {node!r}: 'skips' must list task names, got {task!r}")
            self._check_task(task)
            if task in self.nx.nodes[node]["skips"]:
                raise GraphError(f"node {node!r}: task {task!r} is listed twice in 'skips'")
            self.nx.nodes[node]["skips"].add(task)

    def _load_edge(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise GraphError("every entry of graph.edges must be an object")
        u, v, tasks_on = item.get("source"), item.get("target"), item.get("tasks")
        _no_unknown_fields(item, _EDGE_FIELDS, f"edge {u!r} -> {v!r}")
        if not isinstance(u, str) or not isinstance(v, str) or u not in self.nx or v not in self.nx:
            raise GraphError(f"edge {u!r} -> {v!r} names a node that does not exist")
        if not isinstance(tasks_on, list) or not all(isinstance(t, str) for t in tasks_on):
            raise GraphError(f"edge {u!r} -> {v!r}: 'tasks' must be a list of task names")
        if not tasks_on:
            raise GraphError(f"edge {u!r} -> {v!r} carries no task; remove it")
        if len(set(tasks_on)) != len(tasks_on):
            raise GraphError(f"edge {u!r} -> {v!r} lists a task twice")
        if self.nx.has_edge(u, v):
            raise GraphError(f"edge {u!r} -> {v!r} is listed twice; an edge lists all its tasks once")
        self.nx.add_edge(u, v, tasks=set(tasks_on))

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """Serialise to JSON (and write it to ``path`` if given)."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> SharingGraph:
        """Load from a JSON string or file path; never executes code."""
        text = source
        if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            path = Path(source)
            if not path.is_file():
                raise GraphError(f"no such graph file: {path}")
            if path.stat().st_size > MAX_GRAPH_BYTES:
                raise GraphError(f"{path} is above the {MAX_GRAPH_BYTES:,}-byte limit of a "
                                 "graph file")
            text = path.read_bytes()
        from mtlsearch.errors import UnsafeInputError
        from mtlsearch.safety import load_json_text

        try:  # size and nesting limits: a hostile file cannot exhaust memory or the stack
            data = load_json_text(text, what="the graph", max_bytes=MAX_GRAPH_BYTES)
        except UnsafeInputError as exc:
            raise GraphError(str(exc)) from None
        return cls.from_dict(data)

    def write_graphml(self, path: str | Path) -> None:
        """Write GraphML for external graph tools (attributes as strings or numbers)."""
        g = nx.DiGraph()
        for node, data in self.nx.nodes(data=True):
            attrs = {"kind": data["kind"]}
            if data["kind"] == "block":
                attrs["index"] = data["index"]
                attrs["skips"] = ",".join(sorted(data["skips"]))
                attrs["masks"] = json.dumps(
                    {t: _mask_to_str(m) for t, m in sorted(data["masks"].items())}
                )
            elif data["kind"] == "head":
                attrs["task"] = data["task"]
            g.add_node(node, **attrs)
        for u, v, data in self.nx.edges(data=True):
            g.add_edge(u, v, tasks=",".join(sorted(data["tasks"], key=self._task_pos.__getitem__)))
        nx.write_graphml(g, str(path))

    # ------------------------------------------------------------------ helpers
    def copy(self) -> SharingGraph:
        """An independent copy (through :meth:`to_dict`, so it is validated like a file)."""
        return SharingGraph._from_dict(self.to_dict(), limits=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SharingGraph):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"SharingGraph(tasks={len(self.tasks)}, blocks={self.num_blocks}, "
            f"branches={self.branches_per_depth()})"
        )

    def _check_task(self, task: str) -> None:
        if task not in self._task_pos:
            raise GraphError(f"unknown task {task!r}; the graph's tasks are {self.tasks}")

    def _block(self, node: str) -> dict[str, Any]:
        data = self.nx.nodes.get(node)
        if data is None or data.get("kind") != "block":
            raise GraphError(f"{node!r} is not a block node; block nodes: {self.block_nodes()}")
        return data

    def _block_items(self) -> Iterable[tuple[str, dict[str, Any]]]:
        return ((n, d) for n, d in self.nx.nodes(data=True) if d.get("kind") == "block")


def _check_task_norm(task_norm: Any) -> str:
    if task_norm not in TASK_NORMS:
        raise GraphError(f"task_norm must be one of {list(TASK_NORMS)}, got {task_norm!r}")
    return str(task_norm)


def _check_partition(tasks: Sequence[str], groups: Sequence[frozenset[str]], depth: int) -> None:
    seen: list[str] = [t for g in groups for t in g]
    unknown = sorted(set(seen) - set(tasks))
    if unknown:
        raise GraphError(f"partition at depth {depth} names unknown tasks {unknown}")
    missing = [t for t in tasks if t not in seen]
    if missing:
        raise GraphError(f"partition at depth {depth} leaves out tasks {missing}")
    repeated = sorted({t for t in seen if seen.count(t) > 1})
    if repeated:
        raise GraphError(f"partition at depth {depth} puts tasks {repeated} in several groups")
    if any(not g for g in groups):
        raise GraphError(f"partition at depth {depth} has an empty group")


_TOP_FIELDS = {"format", "schema_version", "tasks", "num_blocks", "space", "task_specs", "info",
               "graph", "task_norm"}
_LINK_FIELDS = {"directed", "multigraph", "graph", "nodes", "edges"}
_NODE_FIELDS = {"input": {"id", "kind"}, "head": {"id", "kind", "task"},
                "block": {"id", "kind", "index", "masks", "skips"}}
_EDGE_FIELDS = {"source", "target", "tasks"}



def _no_unknown_fields(item: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(item) - known)
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:5])
        raise GraphError(f"{where} has unknown fields {shown}; known: {sorted(known)} (the file "
                         "was edited or written by another program)")


def _check_space_record(space: Any) -> None:
    if space is None:
        return
    if set(space) - {"name", "kwargs"} or not isinstance(space.get("name"), str) or not (
        space.get("kwargs") is None or isinstance(space.get("kwargs"), dict)
    ):
        raise GraphError("field 'space' must be {'name': <registered space>, 'kwargs': {...}}")
