"""Materialize a sharing graph as a PyTorch multi-task model.

``materialize(graph, space, tasks)`` creates one block module per block node and one head per
task, and runs the execution plan (:mod:`mtlsearch.plan`): every distinct computation once,
and only the routes of the tasks asked for.

Example:
    >>> import torch
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
    >>> space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    >>> tasks = [TaskSpec("a"), TaskSpec("b")]
    >>> model = materialize(SharingGraph.hard_sharing(["a", "b"], 2), space, tasks)
    >>> sorted(model(torch.zeros(4, 8)))
    ['a', 'b']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .errors import GraphError, TaskError
from .graph import SharingGraph
from .plan import ExecutionPlan, NodeRun, build_plan
from .spaces import Block, SearchSpace
from .tasks import TaskSpec

__all__ = ["MultiTaskModel", "materialize", "module_key"]


def module_key(name: str) -> str:
    """A name usable as an ``nn.ModuleDict`` key (no dots), stable across runs."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class _ShortcutOnly(nn.Module):
    """A node every task skips: keep only its shortcut's weights (if any)."""

    def __init__(self, block: Block):
        super().__init__()
        self.projection = block.projection if block.skip == "projection" else None

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.projection is None else self.projection(x)


class MultiTaskModel(nn.Module):
    """A materialized sharing graph: ``forward(x, tasks=None) -> {task: output}``.

    Attributes:
        graph: The sharing graph (with the space and task specs recorded in it).
        space: The search space the blocks came from.
        task_specs: Task specs in graph order.
        blocks: ``{module_key(node): block}``.
        heads: ``{module_key(task): head}``.
    """

    def __init__(self, graph: SharingGraph, space: SearchSpace, tasks: Sequence[TaskSpec]):
        super().__init__()
        specs = {t.name: t for t in tasks}
        missing = [t for t in graph.tasks if t not in specs]
        if missing:
            raise TaskError(f"no task spec for graph tasks {missing}; given specs for {sorted(specs)}")
        graph.validate(space)
        self.graph = graph
        self.space = space
        self.task_specs = [specs[t] for t in graph.tasks]
        self.spec_of = {t.name: t for t in self.task_specs}
        self._head_keys = _unique_keys(graph.tasks)
        self._block_keys = _unique_keys(graph.block_nodes())
        full_plan = build_plan(graph)
        self.blocks = nn.ModuleDict()
        for node in graph.block_nodes():
            block = space.make_block(graph.node_index(node))
            runs = _runs_of(full_plan, node)
            if not any(r.run_inputs for r in runs):
                block = _ShortcutOnly(block)
            self.blocks[self._block_keys[node]] = block
        self.heads = nn.ModuleDict(
            {self._head_keys[t]: space.make_head(specs[t]) for t in graph.tasks}
        )
        # Masks are fixed data from the graph, not weights: non-persistent buffers follow
        # .to(device) but stay out of state_dict (export re-creates them from the graph).
        for i, mask in enumerate(full_plan.masks):
            self.register_buffer(f"_mask{i}", torch.as_tensor(mask, dtype=torch.float32), persistent=False)
        self._mask_bytes = {bytes(m.tobytes()): i for i, m in enumerate(full_plan.masks)}
        self._full_plan = full_plan
        self._plans: dict[tuple[str, ...], ExecutionPlan] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self.graph.tasks)

    def plan(self, tasks: Sequence[str] | None = None) -> ExecutionPlan:
        """The execution plan for ``tasks`` (cached; the full plan is built once)."""
        if tasks is None:
            return self._full_plan
        key = tuple(tasks)
        if key not in self._plans:
            unknown = [t for t in key if t not in self._head_keys]
            if unknown:
                raise TaskError(f"unknown tasks {unknown}; this model's tasks are {self.tasks}")
            self._plans[key] = build_plan(self.graph, key)
        return self._plans[key]

    def _mask(self, plan: ExecutionPlan, mask_id: int) -> Tensor:
        if plan is not self._full_plan:  # subset plans number their masks on their own
            mask_id = self._mask_bytes[bytes(plan.masks[mask_id].tobytes())]
        return getattr(self, f"_mask{mask_id}")

    def forward(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Outputs of all tasks, or only of ``tasks`` (only their routes run)."""
        plan = self.plan(tasks)
        slots: dict[int, Tensor] = {0: x}
        for level in plan.levels:
            new: dict[int, Tensor] = {}
            for run in level:
                self._run_node(plan, run, slots, new)
            slots = new
        return {t: self.heads[self._head_keys[t]](slots[s]) for t, s in plan.head_slots.items()}

    def _run_node(
        self, plan: ExecutionPlan, run: NodeRun, slots: dict[int, Tensor], out: dict[int, Tensor]
    ) -> None:
        block = self.blocks[self._block_keys[run.node]]
        if run.run_inputs:
            if len(run.run_inputs) == 1:
                parts = [block.pre_activation(slots[run.run_inputs[0]])]
            else:  # one pass over the distinct inputs stacked along the batch
                stacked = torch.cat([slots[s] for s in run.run_inputs])
                # split by explicit sizes, not chunk(n): torch.export (ONNX) can prove these
                # sizes for a dynamic batch, while chunk's size arithmetic pins the batch.
                sizes = [slots[s].shape[0] for s in run.run_inputs]
                parts = list(block.pre_activation(stacked).split(sizes))
            for pos, slot, mask_id in run.run_outputs:
                z = parts[pos]
                if mask_id is not None:
                    mask = self._mask(plan, mask_id).to(z.dtype)
                    z = z * mask.reshape(1, -1, *([1] * (z.ndim - 2)))
                out[slot] = block.activation(z)
        if run.skip_inputs:
            for pos, slot in run.skip_outputs:
                out[slot] = block.shortcut(slots[run.skip_inputs[pos]])

    def extra_repr(self) -> str:
        return f"tasks={len(self.tasks)}, branches={self.graph.branches_per_depth()}"


def _runs_of(plan: ExecutionPlan, node: str) -> list[NodeRun]:
    return [r for level in plan.levels for r in level if r.node == node]


def _unique_keys(names: Sequence[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        key = module_key(name) or "_"
        base, k = key, 1
        while key in used:
            key, k = f"{base}_{k}", k + 1
        used.add(key)
        keys[name] = key
    return keys


def materialize(
    graph: SharingGraph, space: SearchSpace, tasks: Sequence[TaskSpec]
) -> MultiTaskModel:
    """Build the model of ``graph`` over ``space`` for ``tasks`` (fresh weights).

    Raises:
        GraphError: when the graph is invalid or does not fit the space.
        TaskError: when a graph task has no spec.
    """
    if not isinstance(graph, SharingGraph):
        raise GraphError(f"materialize needs a SharingGraph, got {type(graph).__name__}")
    return MultiTaskModel(graph, space, tasks)
