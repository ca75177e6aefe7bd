"""Execution plans: every distinct computation of a sharing graph, once.

Tasks whose routes agree on a prefix (same nodes, same skips, same masks) share that prefix's
activations. The plan is a trie of the routes, laid out by depth and grouped by block node: at
each depth a node runs once on the concatenation of its distinct inputs (task routing's
"batch x tasks" pass), then each output applies its own mask and the activation.

Example:
    >>> from mtlsearch.graph.sharing import SharingGraph
    >>> g = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]])
    >>> plan = build_plan(g)
    >>> [len(level) for level in plan.levels], plan.num_computations
    ([1, 2], 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtlsearch.graph.sharing import SharingGraph

__all__ = ["NodeRun", "ExecutionPlan", "build_plan"]


@dataclass
class NodeRun:
    """What one block node computes at its depth.

    Attributes:
        node: Block node id.
        index: Block index.
        run_inputs: Distinct input slots the block runs on (concatenated into one pass).
        run_outputs: ``(position in run_inputs, output slot, mask id or None)`` per output.
        skip_inputs: Distinct input slots that take the node's shortcut.
        skip_outputs: ``(position in skip_inputs, output slot)`` per output.
        input_tasks: ``{input slot: tasks entering the node from it}`` (run or skip), in
            task order: which tasks' inputs a stacked pass carries (per-task normalisation).
    """

    node: str
    index: int
    run_inputs: list[int] = field(default_factory=list)
    run_outputs: list[tuple[int, int, int | None]] = field(default_factory=list)
    skip_inputs: list[int] = field(default_factory=list)
    skip_outputs: list[tuple[int, int]] = field(default_factory=list)
    input_tasks: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class ExecutionPlan:
    """The trie of routes for a set of tasks, by depth; slot 0 is the input."""

    tasks: list[str]
    levels: list[list[NodeRun]]
    head_slots: dict[str, int]
    masks: list[np.ndarray]

    @property
    def num_computations(self) -> int:
        """Block passes per input row (each distinct input of a running node counts once)."""
        return sum(len(r.run_inputs) + len(r.skip_inputs) for level in self.levels for r in level)


def build_plan(graph: SharingGraph, tasks: Sequence[str] | None = None) -> ExecutionPlan:
    """Plan the forward pass of ``tasks`` (default: all of the graph's tasks)."""
    tasks = list(graph.tasks if tasks is None else tasks)
    levels: list[dict[str, NodeRun]] = [{} for _ in range(graph.num_blocks)]
    slots: dict[tuple[int, tuple], int] = {}
    mask_ids: dict[bytes, int] = {}
    masks: list[np.ndarray] = []
    head_slots: dict[str, int] = {}
    all_steps = graph.all_steps()  # one pass over the edges, not one per task
    for task in tasks:
        parent = 0
        for step in all_steps[task] if task in all_steps else graph.steps(task):  # names it
            key = (parent, step.key())
            if key not in slots:
                slots[key] = len(slots) + 1
                run = levels[step.index].setdefault(step.node, NodeRun(step.node, step.index))
                if step.skip:
                    _attach(run.skip_inputs, run.skip_outputs, parent, (slots[key],))
                else:
                    mask_id = None
                    if step.mask is not None:
                        raw = step.key()[2]
                        if raw not in mask_ids:
                            mask_ids[raw] = len(masks)
                            masks.append(step.mask)
                        mask_id = mask_ids[raw]
                    _attach(run.run_inputs, run.run_outputs, parent, (slots[key], mask_id))
            levels[step.index][step.node].input_tasks.setdefault(parent, []).append(task)
            parent = slots[key]
        head_slots[task] = parent
    return ExecutionPlan(tasks, [list(level.values()) for level in levels], head_slots, masks)


def _attach(inputs: list[int], outputs: list, parent: int, rest: tuple) -> None:
    if parent not in inputs:
        inputs.append(parent)
    outputs.append((inputs.index(parent), *rest))
