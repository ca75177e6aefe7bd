"""Batch-norm statistics of a routed model, per task: inspection and recalibration.

With ``task_norm="task"`` (the default of :func:`~.strategy.routed_graph`) every block that
tasks reach with different (masked) inputs keeps one set of running statistics per task
(:class:`~mtlsearch.engine.model.GroupedBatchNorm`), updated during training by exponential moving
averages, exactly like ``nn.BatchNorm``. :func:`recalibrate_norms` replaces them, after
training, by the exact statistics of the training split ("precise BN"): the mean and unbiased
variance of each norm's input over every training sample, per task group, with the layers
above normalising by batch statistics as in training. It reads only the split it is given:
pass the training split, never validation or test.

Example:
    >>> recalibrate_norms(model, ctx.data.train)  # doctest: +SKIP
    7
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mtlsearch.engine.compute import charge, forward_macs
from mtlsearch.engine.model import GroupedBatchNorm

__all__ = ["recalibrate_norms", "norm_statistics"]


class _Moments:
    """Sums of one norm's input per group and channel (float64), fed by a forward pre-hook."""

    def __init__(self, module: nn.Module):
        groups = module.groups if isinstance(module, GroupedBatchNorm) else 1
        channels = module.num_features
        device = module.running_mean.device
        self.module = module
        self.count = torch.zeros(groups, dtype=torch.float64, device=device)
        self.total = torch.zeros(groups, channels, dtype=torch.float64, device=device)
        self.squares = torch.zeros(groups, channels, dtype=torch.float64, device=device)

    def __call__(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0].detach().to(torch.float64)
        layout = module.layout if isinstance(module, GroupedBatchNorm) else [0]
        blocks = x.reshape(len(layout), -1, *x.shape[1:])  # (row blocks, rows, C, ...)
        dims = [1, *range(3, blocks.ndim)]  # all but the row block and the channel
        per_block = blocks[0, :, 0].numel()  # values of one channel in one row block
        total, squares = blocks.sum(dim=dims), (blocks**2).sum(dim=dims)  # (row blocks, C)
        for i, group in enumerate(layout):
            self.count[group] += per_block
            self.total[group] += total[i]
            self.squares[group] += squares[i]

    def write(self) -> None:
        """Set the module's running statistics of every group that saw at least two values."""
        module = self.module
        for group in range(self.count.shape[0]):
            n = float(self.count[group])
            if n < 2:
                continue
            mean = self.total[group] / n
            var = ((self.squares[group] - n * mean**2) / (n - 1)).clamp_min(0.0)
            if isinstance(module, GroupedBatchNorm):
                module.running_mean[group] = mean.to(module.running_mean.dtype)
                module.running_var[group] = var.to(module.running_var.dtype)
            else:
                module.running_mean.copy_(mean.to(module.running_mean.dtype))
                module.running_var.copy_(var.to(module.running_var.dtype))


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if isinstance(m, (_BatchNorm, GroupedBatchNorm)) and m.track_running_stats]


@torch.no_grad()
def recalibrate_norms(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> int:
    """Set every batch norm's running statistics to its input's statistics over ``dataset``.

    One pass over ``dataset`` (the training split) for all tasks: batch norms normalise by
    batch statistics (as in training; dropout and the like stay in eval mode, no weight
    changes), and each norm's running mean and unbiased running variance become the mean and
    unbiased variance of its input over the whole split — per group for a
    :class:`~mtlsearch.engine.model.GroupedBatchNorm` (each task's own masked activations), over all
    tasks' inputs for a shared one. Charges the pass to open compute meters (a third of a
    training step's MACs per row: no backward pass).

    Args:
        model: A materialized :class:`~mtlsearch.engine.model.MultiTaskModel`.
        dataset: The split to measure (pass the training split).
        batch_size: Rows per pass.
        device: Where to run (default: the model's device).

    Returns:
        The number of batch-norm modules recalibrated.
    """
    was_training = model.training
    device = device or next(model.parameters()).device
    norms = _norms(model)
    moments = [_Moments(m) for m in norms]
    handles = [m.register_forward_pre_hook(acc) for m, acc in zip(norms, moments)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    model.eval()
    for m in norms:
        m.train()  # batch statistics above each norm, as in training
    try:
        for x, _ in dataset.batches(batch_size):
            model(x.to(device))
            # meter units are a training step's forward MACs, standing for forward + backward
            # (about 3 forwards); a forward-only pass is a third of that
            rows = int(x.shape[0])
            charge(macs=rows * forward_macs(model) / 3.0, samples=rows)
    finally:
        for h in handles:
            h.remove()
        for m, (mean, var, count) in zip(norms, saved):  # undo the passes' moving averages
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
        model.train(was_training)
    for acc in moments:
        acc.write()
    return len(norms)


def norm_statistics(model: Any, node: str, task: str) -> list[tuple[Tensor, Tensor]]:
    """``(running_mean, running_var)`` that ``task`` is normalised with at ``node``: one pair
    per batch norm of the block, in module order (its group's for a grouped norm).

    Example:
        >>> [mean.shape for mean, _ in norm_statistics(model, "b1.0", "left_even")]  # doctest: +SKIP
        [torch.Size([32])]
    """
    block = model.blocks[model._block_keys[node]]
    group = model.norm_group(node, task)
    out = []
    for m in _norms(block):
        if isinstance(m, GroupedBatchNorm):
            out.append((m.running_mean[group], m.running_var[group]))
        else:
            out.append((m.running_mean, m.running_var))
    return out
