"""Evaluation per task and the multi-task score Δ_MTL.

Δ_MTL is AdaShare's eq. 6: for each task, the mean over its metrics of the signed relative
change against the single-task baseline, ``(-1)^l (M - M_STL) / |M_STL| * 100`` with ``l = 1``
when lower is better; then the mean over tasks. Positive means the multi-task model beats
single-task learning.

Example:
    >>> from mtlsearch.tasks.kinds import TaskSpec
    >>> round(delta_mtl({"a": {"accuracy": 0.9}}, {"a": {"accuracy": 0.8}}, [TaskSpec("a")]).overall, 6)
    12.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtlsearch.engine.acceleration import uses_channels_last
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = ["evaluate", "delta_mtl", "DeltaMTL", "metric_directions", "task_chunks"]

#: Activation memory one evaluation pass may use before tasks are split into chunks.
EVAL_MEMORY_BYTES = 512 * 2**20

Metrics = dict[str, dict[str, float]]


def task_chunks(
    model: Any, tasks: Sequence[str], batch_size: int, max_bytes: int = EVAL_MEMORY_BYTES
) -> list[list[str]]:
    """Split ``tasks`` so one pass stays under ``max_bytes`` of activations.

    Routes that diverge early (task routing) run as one stacked pass of (distinct routes x
    batch) rows: fast, but its memory grows with the number of tasks. The estimate is
    distinct routes x batch x the largest block output x 4 bytes.
    """
    largest = max(math.prod(b.out_shape) for b in model.space.blocks)
    distinct = len(set(model.plan(tasks).head_slots.values()))
    per_route = batch_size * largest * 4
    if distinct * per_route <= max_bytes:
        return [list(tasks)]
    size = max(1, max_bytes // per_route)
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


@torch.no_grad()
def evaluate(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    tasks: Sequence[str] | None = None,
    max_memory: int = EVAL_MEMORY_BYTES,
    amp: bool = False,
) -> Metrics:
    """Each task's metrics (and mean ``loss``) on ``dataset``, in eval mode.

    Tasks run together in one pass unless their stacked activations would exceed
    ``max_memory`` bytes; then in chunks of tasks (see :func:`task_chunks`). ``amp`` runs the
    forward pass under bf16 autocast; image inputs follow the model's memory format.

    Returns:
        ``{task: {metric: value, ..., "loss": value}}``.
    """
    was_training = model.training
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    specs = {s.name: s for s in model.task_specs}
    names = list(tasks) if tasks is not None else model.tasks
    accs = {t: get_task_kind(specs[t].kind).new_accumulator(specs[t]) for t in names}
    device = torch.device(device)
    loss_sum = {t: torch.zeros((), device=device) for t in names}
    count = {t: torch.zeros((), device=device) for t in names}
    chunks = task_chunks(model, names, batch_size, max_memory)
    channels_last = uses_channels_last(model)
    for x, y in dataset.batches(batch_size):
        x = x.to(device)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs: dict[str, torch.Tensor] = {}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for chunk in chunks:
                outputs.update(model(x, chunk if len(chunks) > 1 or tasks is not None else None))
        for t, out in outputs.items():
            out = out.float()
            target = y[t].to(device)
            kind = get_task_kind(specs[t].kind)
            # Counted on the device: no host synchronisation per task and batch. A batch
            # without valid labels adds 0, whatever its (undefined) mean loss is.
            n_valid = kind.valid(target).sum()
            loss = kind.loss(specs[t], out, target).float()
            loss_sum[t] += torch.where(n_valid > 0, loss * n_valid, torch.zeros_like(loss))
            count[t] += n_valid
            accs[t].update(out, target)
    model.train(was_training)
    result: Metrics = {}
    for t in names:
        metrics = accs[t].compute()
        n = float(count[t])
        metrics["loss"] = float(loss_sum[t]) / n if n else math.nan
        result[t] = metrics
    return result


def metric_directions(spec: TaskSpec) -> dict[str, bool]:
    """``{metric: higher is better}`` of the metrics that count in Δ_MTL for ``spec``.

    The kind decides (:meth:`~mtlsearch.tasks.kinds.TaskKind.delta_metrics`): a binary task
    counts its primary metric only (``options["metric"]``, accuracy by default), regression
    both MAE and RMSE; every metric is still reported.

    Example:
        >>> metric_directions(TaskSpec("rare", options={"metric": "balanced_accuracy"}))
        {'balanced_accuracy': True}
    """
    kind = get_task_kind(spec.kind)
    chosen = getattr(kind, "delta_metrics", None)  # kinds written before delta_metrics existed
    return dict(chosen(spec)) if callable(chosen) else dict(kind.metrics)


@dataclass(frozen=True)
class DeltaMTL:
    """Δ_MTL overall and per task, in percent."""

    overall: float
    per_task: dict[str, float]


def delta_mtl(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    tasks: Sequence[TaskSpec],
) -> DeltaMTL:
    """Δ_MTL of ``metrics`` against the single-task ``reference`` (AdaShare eq. 6).

    Each task counts the metrics :func:`metric_directions` names (a binary task its primary
    metric, ``options["metric"]``). A metric whose reference is zero is compared in absolute
    terms (x100) rather than dividing by zero; a NaN metric (AUROC of a split with one class)
    makes its task's and the overall Δ_MTL NaN.
    """
    per_task: dict[str, float] = {}
    for spec in tasks:
        changes = []
        for metric, higher in metric_directions(spec).items():
            m, ref = metrics[spec.name][metric], reference[spec.name][metric]
            sign = 1.0 if higher else -1.0
            denom = abs(ref) if ref != 0 else 1.0
            changes.append(sign * (m - ref) / denom * 100.0)
        per_task[spec.name] = sum(changes) / len(changes)
    overall = sum(per_task.values()) / len(per_task) if per_task else math.nan
    return DeltaMTL(overall, per_task)
