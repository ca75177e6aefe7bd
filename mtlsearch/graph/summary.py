"""Size and cost of a sharing graph, computed from the search space without training.

Example:
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space
    >>> space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    >>> s = summarize(SharingGraph.hard_sharing(["a", "b"], 2), space, [TaskSpec("a"), TaskSpec("b")])
    >>> s.branches_per_depth
    [1, 1]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mtlsearch.graph.plan import build_plan
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.tasks.kinds import TaskSpec

__all__ = ["GraphSummary", "summarize"]


@dataclass(frozen=True)
class GraphSummary:
    """What a materialized graph costs.

    Attributes:
        params: Trainable parameters of the materialized model (blocks and heads).
        macs: Multiply-accumulates per sample of a forward pass over all tasks.
        branches_per_depth: Distinct block nodes at each depth.
        block_passes: Block computations per sample (shared prefixes counted once).
    """

    params: int
    macs: int
    branches_per_depth: list[int]
    block_passes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(graph: SharingGraph, space: SearchSpace, tasks: Sequence[TaskSpec]) -> GraphSummary:
    """Parameters, MACs per sample and branching of ``graph`` materialized over ``space``."""
    graph.validate(space)
    plan = build_plan(graph)
    params = macs = 0
    for level in plan.levels:
        for run in level:
            run_cost, skip_cost = space.block_cost(run.index), space.skip_cost(run.index)
            macs += len(run.run_inputs) * run_cost.macs + len(run.skip_inputs) * skip_cost.macs
    for node in graph.block_nodes():
        index = graph.node_index(node)
        runs_somewhere = any(
            r.run_inputs for level in plan.levels for r in level if r.node == node
        )
        params += (space.block_cost(index) if runs_somewhere else space.skip_cost(index)).params
    specs = {t.name: t for t in tasks}
    head_costs: dict[tuple, Any] = {}
    for task in graph.tasks:
        spec = specs[task]
        key = (spec.kind, spec.num_classes, spec.out_dim, json.dumps(spec.options, sort_keys=True, default=str))
        if key not in head_costs:  # heads of one kind and size cost the same
            head_costs[key] = space.head_cost(spec)
        params += head_costs[key].params
        macs += head_costs[key].macs
    return GraphSummary(params, macs, graph.branches_per_depth(), plan.num_computations)
