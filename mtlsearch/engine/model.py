"""Materialize a sharing graph as a PyTorch multi-task model.

``materialize(graph, space, tasks)`` creates one block module per block node and one head per
task, and runs the execution plan (:mod:`mtlsearch.graph.plan`): every distinct computation once,
and only the routes of the tasks asked for.

With ``graph.task_norm == "task"``, a block that tasks reach with different inputs (after
different masks, or from different parents) gets its batch norms replaced by
:class:`GroupedBatchNorm`: shared affine weights, one set of running statistics per distinct
input, each row block of the stacked "batch x inputs" pass normalised with its own.

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

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mtlsearch.errors import GraphError, TaskError
from mtlsearch.graph.plan import ExecutionPlan, NodeRun, build_plan
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import Block, SearchSpace
from mtlsearch.tasks.kinds import TaskSpec
from mtlsearch.tasks.names import name_key

__all__ = ["GroupedBatchNorm", "MultiTaskModel", "materialize", "module_key"]

_NO_LAYOUT = contextlib.nullcontext()  # reusable: the ungrouped path pays no setup


def module_key(name: str) -> str:
    """A name usable as an ``nn.ModuleDict`` key (no dots), stable across runs.

    Letters (of any script), digits and ``_`` are kept and every other character becomes
    ``_`` (:func:`mtlsearch.tasks.names.name_key`). The names of a graph's tasks, and of its
    block nodes, never share a key (the graph and the datasets refuse such pairs), so
    ``model.heads[module_key(task)]`` is always that task's head.
    """
    return name_key(name)


class GroupedBatchNorm(nn.Module):
    """A batch norm keeping one set of running statistics per input group.

    It replaces a block's ``nn.BatchNorm1d/2d/3d`` where tasks reach the block with different
    inputs (``SharingGraph.task_norm == "task"``). The affine ``weight`` and ``bias`` stay
    shared (they are the block's weights); ``running_mean`` and ``running_var`` have shape
    ``(groups, C)``, ``num_batches_tracked`` ``(groups,)``; the state-dict keys are those of
    the batch norm it replaces.

    The input is a stack of equal-sized row blocks (the plan's "batch x inputs" pass); before
    each pass the owner sets :attr:`layout`, the group of each row block, in order. Training
    normalises every row block with its own batch statistics and updates its group's running
    statistics exactly as ``nn.BatchNorm`` would on that block alone; evaluation normalises it
    with its group's running statistics.

    Args:
        norm: The batch norm to replace (its parameters are taken over, its statistics copied
            into every group).
        groups: Number of groups.

    Example:
        >>> bn = GroupedBatchNorm(nn.BatchNorm1d(3), groups=2).eval()
        >>> bn.layout = [1, 0]
        >>> bn(torch.ones(4, 3)).shape
        torch.Size([4, 3])
    """

    def __init__(self, norm: _BatchNorm, groups: int):
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be at least 1, got {groups}")
        self.base = type(norm)
        self.num_features = norm.num_features
        self.groups = int(groups)
        self.eps = norm.eps
        self.momentum = norm.momentum
        self.affine = norm.affine
        self.track_running_stats = norm.track_running_stats
        self.weight = norm.weight
        self.bias = norm.bias
        if norm.track_running_stats:
            stats = (norm.running_mean, norm.running_var, norm.num_batches_tracked)
            for name, value in zip(("running_mean", "running_var", "num_batches_tracked"), stats):
                self.register_buffer(name, value.detach().unsqueeze(0).repeat(groups, *[1] * value.ndim))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.layout: list[int] | None = None

    def forward(self, x: Tensor) -> Tensor:
        layout = self.layout
        if layout is None:
            raise RuntimeError(
                "GroupedBatchNorm needs the group of each row block (its layout); run it "
                "through MultiTaskModel or inside model.norm_layout(node, groups)"
            )
        batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        if update and self.momentum is None:  # cumulative average: a factor per group
            parts = x.chunk(len(layout))
            return torch.cat([self._one(p, g, batch_stats, update) for p, g in zip(parts, layout)])
        if len(layout) == 1:
            return self._one(x, layout[0], batch_stats, update)
        return self._stacked(x, list(layout), batch_stats, update)

    def _one(self, x: Tensor, group: int, batch_stats: bool, update: bool) -> Tensor:
        """One row block: ``F.batch_norm`` on views of the group's statistics (updated in place)."""
        factor = 0.0
        if update:
            self.num_batches_tracked[group] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked[group])
            else:
                factor = self.momentum
        mean = self.running_mean[group] if self.track_running_stats else None
        var = self.running_var[group] if self.track_running_stats else None
        return F.batch_norm(x, mean, var, self.weight, self.bias, batch_stats, factor, self.eps)

    def _stacked(self, x: Tensor, layout: list[int], batch_stats: bool, update: bool) -> Tensor:
        n, c, shape = len(layout), self.num_features, x.shape
        if not batch_stats:  # running statistics: one broadcast scale and shift per row block
            scale = (self.running_var[layout] + self.eps).rsqrt()
            if self.affine:
                scale = scale * self.weight
            shift = -self.running_mean[layout] * scale
            if self.affine:
                shift = shift + self.bias
            view = (n, 1, c, *[1] * (x.ndim - 2))
            blocks = x.reshape(n, -1, *shape[1:])
            y = blocks * scale.reshape(view).to(x.dtype) + shift.reshape(view).to(x.dtype)
            return y.reshape(shape)
        # batch statistics: put the row blocks side by side as n*C channels, one batch-norm call
        wide = x.reshape(n, -1, *shape[1:]).transpose(0, 1).reshape(-1, n * c, *shape[2:])
        mean = var = None
        if self.track_running_stats:
            mean = self.running_mean[layout].reshape(-1)  # copies, written back below
            var = self.running_var[layout].reshape(-1)
        weight = self.weight.repeat(n) if self.affine else None
        bias = self.bias.repeat(n) if self.affine else None
        factor = self.momentum if update else 0.0
        y = F.batch_norm(wide, mean, var, weight, bias, True, factor, self.eps)
        if update:
            with torch.no_grad():
                self.running_mean[layout] = mean.reshape(n, c)
                self.running_var[layout] = var.reshape(n, c)
                self.num_batches_tracked[layout] += 1
        return y.reshape(-1, n, c, *shape[2:]).transpose(0, 1).reshape(shape)

    def as_batchnorm(self, group: int) -> _BatchNorm:
        """A plain batch norm of the original class holding ``group``'s statistics (copies)."""
        norm = self.base(self.num_features, eps=self.eps, momentum=self.momentum,
                         affine=self.affine, track_running_stats=self.track_running_stats)
        norm = norm.to(self.weight.device if self.affine else self.running_mean.device)
        with torch.no_grad():
            if self.affine:
                norm.weight.copy_(self.weight)
                norm.bias.copy_(self.bias)
            if self.track_running_stats:
                norm.running_mean.copy_(self.running_mean[group])
                norm.running_var.copy_(self.running_var[group])
                norm.num_batches_tracked.copy_(self.num_batches_tracked[group])
        return norm.train(self.training)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, momentum={self.momentum}"


def _group_norms(block: nn.Module, groups: int) -> list[GroupedBatchNorm]:
    """Replace every batch norm inside ``block`` by a :class:`GroupedBatchNorm` (in place)."""
    replaced: dict[int, GroupedBatchNorm] = {}
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                if id(child) not in replaced:
                    replaced[id(child)] = GroupedBatchNorm(child, groups)
                setattr(parent, name, replaced[id(child)])
    return list(replaced.values())


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
        runs_by_node: dict[str, list[NodeRun]] = {}  # one pass: looking each node up is quadratic
        for level in full_plan.levels:
            for run in level:
                runs_by_node.setdefault(run.node, []).append(run)
        self.blocks = nn.ModuleDict()
        # {node: {task: group}} where tasks reach a node with different inputs (task_norm)
        self._norm_groups: dict[str, dict[str, int]] = {}
        self._grouped: dict[str, list[GroupedBatchNorm]] = {}
        for node in graph.block_nodes():
            block = space.make_block(graph.node_index(node))
            runs = runs_by_node.get(node, [])
            if not any(r.run_inputs for r in runs):
                block = _ShortcutOnly(block)
            if graph.task_norm == "task":
                groups = _input_groups(runs)
                if len(set(groups.values())) > 1:
                    norms = _group_norms(block, len(set(groups.values())))
                    if norms:
                        self._norm_groups[node] = groups
                        self._grouped[node] = norms
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

    def norm_group(self, node: str, task: str) -> int | None:
        """The statistics group of ``task`` at ``node``, or ``None`` when the node's batch
        norms keep one set for all tasks (``task_norm="shared"`` or one distinct input)."""
        groups = self._norm_groups.get(node)
        return None if groups is None else groups[task]

    def grouped_norms(self, node: str) -> list[GroupedBatchNorm]:
        """The :class:`GroupedBatchNorm` modules of ``node`` (empty when it has none)."""
        return list(self._grouped.get(node, ()))

    @contextlib.contextmanager
    def norm_layout(self, node: str, tasks: Sequence[str]) -> Iterator[None]:
        """Inside the block, ``node``'s grouped batch norms take a stack of one equal-sized
        row block per entry of ``tasks`` (in order), each normalised with its task's group."""
        norms = self._grouped.get(node)
        if not norms:
            yield
            return
        groups = self._norm_groups[node]
        layout = [groups[t] for t in tasks]
        for norm in norms:
            norm.layout = layout
        try:
            yield
        finally:
            for norm in norms:
                norm.layout = None

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
        grouped = run.node in self._grouped
        if run.run_inputs:
            # one task per input names its statistics group (tasks sharing an input share one)
            layout = [run.input_tasks[s][0] for s in run.run_inputs] if grouped else []
            if len(run.run_inputs) == 1:
                with self.norm_layout(run.node, layout) if grouped else _NO_LAYOUT:
                    parts = [block.pre_activation(slots[run.run_inputs[0]])]
            else:  # one pass over the distinct inputs stacked along the batch
                stacked = torch.cat([slots[s] for s in run.run_inputs])
                # split by explicit sizes, not chunk(n): torch.export (ONNX) can prove these
                # sizes for a dynamic batch, while chunk's size arithmetic pins the batch.
                sizes = [slots[s].shape[0] for s in run.run_inputs]
                with self.norm_layout(run.node, layout) if grouped else _NO_LAYOUT:
                    parts = list(block.pre_activation(stacked).split(sizes))
            for pos, slot, mask_id in run.run_outputs:
                z = parts[pos]
                if mask_id is not None:
                    mask = self._mask(plan, mask_id).to(z.dtype)
                    z = z * mask.reshape(1, -1, *([1] * (z.ndim - 2)))
                out[slot] = block.activation(z)
        if run.skip_inputs:
            for pos, slot in run.skip_outputs:
                source = run.skip_inputs[pos]
                if grouped:
                    with self.norm_layout(run.node, [run.input_tasks[source][0]]):
                        out[slot] = block.shortcut(slots[source])
                else:
                    out[slot] = block.shortcut(slots[source])

    def extra_repr(self) -> str:
        return f"tasks={len(self.tasks)}, branches={self.graph.branches_per_depth()}"


def _input_groups(runs: Sequence[NodeRun]) -> dict[str, int]:
    """``{task: group}`` at a node: tasks entering from the same input slot share a group."""
    groups: dict[str, int] = {}
    slots: list[int] = []
    for run in runs:
        for slot in [*run.run_inputs, *run.skip_inputs]:
            if slot not in slots:
                slots.append(slot)
        for slot, tasks in run.input_tasks.items():
            for task in tasks:
                groups[task] = slots.index(slot)
    return groups


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
