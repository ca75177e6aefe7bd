"""Evaluating many routed tasks: one batched pass (batch x tasks), in task chunks when the
pass would not fit in memory, never a Python loop of T full forwards.

With T routed tasks the core's execution plan runs block 0 once on the input, then every later
block once on the concatenation of the T distinct (masked) inputs, so a pass holds about
``batch x T`` rows per layer; but it still applies each task's mask, activation and head in a
Python loop over the T outputs. :class:`BatchedRouting` runs the same computation on a
routed hard-sharing chain with tensors of shape ``(T, batch, C, ...)``: one mask multiply, one
activation and (for equal-sized heads) one batched head product per level, whatever T.
:func:`routed_forward` splits the tasks into the largest chunks whose pass stays under
``max_bytes``.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> ctx = tiny_context()
    >>> task_chunk_size(ctx.space, n_tasks=300, batch=512, max_bytes=2**20)
    12
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.engine.scoring import Metrics
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.space import SearchSpace
from mtlsearch.tasks.kinds import VectorHead, get_task_kind

__all__ = [
    "BatchedRouting",
    "DEFAULT_MAX_BYTES",
    "routed_bytes_per_row",
    "task_chunk_size",
    "routed_forward",
    "evaluate_routed",
]

#: Default memory budget of one batched evaluation pass (1 GiB).
DEFAULT_MAX_BYTES = 1 << 30


def routed_bytes_per_row(space: SearchSpace, n_tasks: int, *, bytes_per_value: int = 4) -> int:
    """Peak bytes per input row of a no-grad pass over ``n_tasks`` routed tasks (estimate).

    At the widest level a pass holds the tasks' inputs, their concatenation, the block's
    output, the masked output and the activation: ``T x (2 in + 3 out)`` values per row.
    """
    widest = max(2 * math.prod(b.in_shape) + 3 * math.prod(b.out_shape) for b in space.blocks)
    return int(n_tasks * widest * bytes_per_value)


def task_chunk_size(space: SearchSpace, *, n_tasks: int, batch: int, max_bytes: int) -> int:
    """Most tasks one pass of ``batch`` rows may carry within ``max_bytes`` (at least 1)."""
    per_task = routed_bytes_per_row(space, 1) * max(1, batch)
    return max(1, min(n_tasks, int(max_bytes // per_task)))


class BatchedRouting:
    """All routed tasks of a hard-sharing chain in one tensor pass: ``(T, batch, C, ...)``.

    Equal (up to float rounding) to ``model(x, tasks)``: block 0 runs once on ``x``, every
    later block once on the ``T x batch`` rows; masks multiply between each block's
    ``pre_activation`` and ``activation``. Weights are the model's own (read at call time);
    only the mask matrices and the head layout are prepared here. Per-task batch-norm
    statistics (``task_norm="task"``) normalise each task's ``batch`` rows with its own.

    Args:
        model: A materialized model of a graph with one block node per depth and no skips.

    Raises:
        MTLSearchError: the graph branches or skips (use ``model(x, tasks)`` then).

    Example:
        >>> run = BatchedRouting(model)  # doctest: +SKIP
        >>> outputs = run(x)  # {task: output}, like model(x)  # doctest: +SKIP
    """

    def __init__(self, model: Any):
        graph = model.graph
        if graph.branches_per_depth() != [1] * graph.num_blocks or any(graph.skips().values()):
            raise MTLSearchError(
                "BatchedRouting runs a routed hard-sharing chain (one node per depth, no skips); "
                f"this graph has branches {graph.branches_per_depth()}; call model(x, tasks)"
            )
        self.model = model
        self.tasks = list(model.tasks)
        self._index = {t: i for i, t in enumerate(self.tasks)}
        self._nodes = [graph.block_nodes(i)[0] for i in range(graph.num_blocks)]
        device = next(model.parameters()).device
        self._masks: list[Tensor | None] = []
        for node in self._nodes:
            masks = graph.masks().get(node, {})
            if not masks:
                self._masks.append(None)
                continue
            channels = len(next(iter(masks.values())))
            rows = [masks.get(t, np.ones(channels, dtype=bool)) for t in self.tasks]
            self._masks.append(torch.as_tensor(np.stack(rows), dtype=torch.float32, device=device))
        heads = [model.heads[model._head_keys[t]] for t in self.tasks]
        sizes = {h.linear.out_features for h in heads if isinstance(h, VectorHead)}
        # stacked head weights need the default head and one output size for every task
        self._stack_heads = all(isinstance(h, VectorHead) for h in heads) and len(sizes) == 1

    def __call__(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        names = self.tasks if tasks is None else list(tasks)
        unknown = [t for t in names if t not in self._index]
        if unknown:
            raise MTLSearchError(f"unknown tasks {unknown}; the model's tasks are {self.tasks}")
        idx = torch.as_tensor([self._index[t] for t in names], device=x.device)
        n, batch = len(names), x.shape[0]
        model, h, spread = self.model, x, False
        for node, masks in zip(self._nodes, self._masks):
            block = model.blocks[model._block_keys[node]]
            # a node with per-task statistics comes after a mask, so the rows are spread
            with model.norm_layout(node, names if spread else []):
                z = block.pre_activation(h)
            if masks is None and not spread:
                h = block.activation(z)
                continue
            z = z.reshape(n if spread else 1, batch, *z.shape[1:])
            if masks is not None:
                m = masks.index_select(0, idx).to(z.dtype)
                z = z * m.reshape(n, 1, m.shape[1], *([1] * (z.ndim - 3)))
            else:
                z = z.expand(n, *z.shape[1:])
            h = block.activation(z.reshape(n * batch, *z.shape[2:]))
            spread = True
        if not spread:  # no block is masked: every task sees the same features
            h = h.unsqueeze(0).expand(n, *h.shape).reshape(n * batch, *h.shape[1:])
        return self._heads(h.reshape(n, batch, *h.shape[1:]), names, idx)

    def _heads(self, feats: Tensor, names: list[str], idx: Tensor) -> dict[str, Tensor]:
        model = self.model
        if not self._stack_heads:
            return {t: model.heads[model._head_keys[t]](feats[i]) for i, t in enumerate(names)}
        if feats.ndim > 3:  # VectorHead's global average pooling
            feats = feats.flatten(3).mean(dim=3)
        linears = [model.heads[model._head_keys[t]].linear for t in names]
        weight = torch.stack([lin.weight for lin in linears])  # (n, out, C)
        bias = torch.stack([lin.bias for lin in linears])  # (n, out)
        out = torch.baddbmm(bias.unsqueeze(1), feats, weight.transpose(1, 2))
        return {t: out[i] for i, t in enumerate(names)}


def routed_forward(
    model: Any,
    x: Tensor,
    *,
    tasks: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    runner: BatchedRouting | None = None,
) -> dict[str, Tensor]:
    """All tasks' outputs in one batched pass, or a few passes over task chunks.

    Uses :class:`BatchedRouting` on a routed hard-sharing chain (pass ``runner`` to reuse
    one), ``model(x, tasks)`` on any other graph.

    Args:
        model: A materialized (routed) :class:`~mtlsearch.engine.model.MultiTaskModel`.
        x: A batch of inputs.
        tasks: Tasks to run (default: all).
        max_bytes: Memory budget of one pass (see :func:`task_chunk_size`).
        runner: A :class:`BatchedRouting` of ``model`` built earlier.

    Returns:
        ``{task: output}`` for every task asked for, in order.

    Example:
        >>> out = routed_forward(model, x, max_bytes=64 * 2**20)  # doctest: +SKIP
    """
    names = list(model.tasks if tasks is None else tasks)
    if runner is None:
        try:
            runner = BatchedRouting(model)
        except MTLSearchError:
            runner = None
    run = runner if runner is not None else model
    size = task_chunk_size(model.space, n_tasks=len(names), batch=x.shape[0], max_bytes=max_bytes)
    out: dict[str, Tensor] = {}
    for start in range(0, len(names), size):
        out.update(run(x, names[start : start + size]))
    return out


@torch.no_grad()
def evaluate_routed(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 512,
    tasks: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: torch.device | str | None = None,
) -> Metrics:
    """Per-task metrics like :func:`mtlsearch.engine.scoring.evaluate`, through :func:`routed_forward`.

    Binary tasks also get ``precision`` and ``recall`` (the paper's metrics; 0 when a task
    predicts no positive or has none).

    Example:
        >>> metrics = evaluate_routed(model, splits.test)  # doctest: +SKIP
        >>> sorted(metrics["left_even"])  # doctest: +SKIP
        ['accuracy', 'loss', 'precision', 'recall']
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    specs = {s.name: s for s in model.task_specs}
    names = list(model.tasks if tasks is None else tasks)
    accs = {t: get_task_kind(specs[t].kind).new_accumulator(specs[t]) for t in names}
    loss_sum = {t: 0.0 for t in names}
    count = {t: 0 for t in names}
    confusion = {t: [0, 0, 0] for t in names if specs[t].kind == "binary"}  # tp, fp, fn
    try:
        runner: BatchedRouting | None = BatchedRouting(model)
    except MTLSearchError:  # a branched or skipping graph: the core's plan
        runner = None
    for x, y in dataset.batches(batch_size):
        outputs = routed_forward(model, x.to(device), tasks=names, max_bytes=max_bytes, runner=runner)
        for t, out in outputs.items():
            kind, target = get_task_kind(specs[t].kind), y[t].to(device)
            valid = kind.valid(target)
            n_valid = int(valid.sum())
            if n_valid:
                loss_sum[t] += float(kind.loss(specs[t], out, target)) * n_valid
                count[t] += n_valid
            accs[t].update(out, target)
            if t in confusion:
                pred, truth = out.reshape(-1)[valid] > 0, target[valid] > 0.5
                confusion[t][0] += int((pred & truth).sum())
                confusion[t][1] += int((pred & ~truth).sum())
                confusion[t][2] += int((~pred & truth).sum())
    model.train(was_training)
    result: Metrics = {}
    for t in names:
        metrics = accs[t].compute()
        metrics["loss"] = loss_sum[t] / count[t] if count[t] else math.nan
        if t in confusion:
            tp, fp, fn = confusion[t]
            metrics["precision"] = tp / (tp + fp) if tp + fp else 0.0
            metrics["recall"] = tp / (tp + fn) if tp + fn else 0.0
        result[t] = metrics
    return result
