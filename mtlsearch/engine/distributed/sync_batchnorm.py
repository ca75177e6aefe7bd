"""Batch normalisation synchronised over the ranks (SyncBatchNorm semantics, on the CPU too)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mtlsearch.engine.train import (
    TrainingError,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- batch norm
class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch normalisation with the statistics of the whole batch, split over the ranks.

    Forward: every rank's ``(count, mean, sum of squared deviations)`` per channel are
    gathered and combined (Chan et al.'s parallel variance, in float64). Backward: the sums of
    ``dy`` and ``dy * x_hat`` are all-reduced, so each rank's input gradient is exact; the
    weight and bias gradients stay local and DistributedDataParallel averages them.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
        running_mean: Tensor | None, running_var: Tensor | None, eps: float, factor: float,
        world: int,
    ) -> Tensor:
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        n_local = xs.numel() // max(channels, 1)
        if n_local > 0:
            mean_local = xs.mean(dims)
            m2_local = (xs - mean_local.view(shape)).square().sum(dims)
        else:
            mean_local = m2_local = xs.new_zeros(channels)
        stats = torch.cat([
            torch.tensor([float(n_local)], dtype=torch.float64, device=x.device),
            mean_local.double(),
            m2_local.double(),
        ])
        gathered = [torch.empty_like(stats) for _ in range(world)]
        dist.all_gather(gathered, stats)
        table = torch.stack(gathered)
        counts, means, m2s = table[:, :1], table[:, 1 : channels + 1], table[:, channels + 1 :]
        total = float(counts.sum())
        if total <= 1:
            raise TrainingError(
                "a training batch of 1 sample cannot be batch-normalised (each channel needs "
                "more than one value); change batch_size so that no batch holds one sample"
            )
        mean = (counts * means).sum(0) / total
        m2 = m2s.sum(0) + (counts * (means - mean).square()).sum(0)
        var = m2 / total
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
                unbiased = (m2 / (total - 1)).to(running_var.dtype)
                running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        invstd = (var + eps).rsqrt().to(xs.dtype)
        x_hat = (xs - mean.to(xs.dtype).view(shape)) * invstd.view(shape)
        out = x_hat
        if weight is not None:
            out = out * weight.to(xs.dtype).view(shape)
        if bias is not None:
            out = out + bias.to(xs.dtype).view(shape)
        ctx.save_for_backward(x_hat, weight, invstd)
        ctx.total, ctx.shape, ctx.dims, ctx.has_bias = total, shape, dims, bias is not None
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x_hat, weight, invstd = ctx.saved_tensors
        shape, dims, total = ctx.shape, ctx.dims, ctx.total
        dy = grad.to(x_hat.dtype)
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * x_hat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(both)
        channels = sum_dy.numel()
        mean_dy = (both[:channels] / total).view(shape)
        mean_dy_xhat = (both[channels:] / total).view(shape)
        scale = invstd if weight is None else invstd * weight.to(x_hat.dtype)
        dx = scale.view(shape) * (dy - mean_dy - x_hat * mean_dy_xhat)
        d_weight = sum_dy_xhat.to(weight.dtype) if weight is not None else None
        d_bias = sum_dy.to(weight.dtype if weight is not None else dy.dtype) if ctx.has_bias else None
        return dx.to(grad.dtype), d_weight, d_bias, None, None, None, None, None


class _SyncBatchNormMixin:
    """Forward of a batch-norm module whose class was swapped while the ranks train."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - nn.Module's name
        bn: Any = self
        if not bn.training:  # evaluation: running statistics, nothing to synchronise
            return super().forward(input)  # type: ignore[misc]
        bn._check_input_dim(input)
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # cumulative moving average
                factor = 1.0 / float(bn.num_batches_tracked)
        return _SyncBatchNormFunction.apply(
            input, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, factor,
            dist.get_world_size(),
        )


_SYNC_CLASSES: dict[type, type] = {}


def _sync_class(base: type) -> type:
    if base not in _SYNC_CLASSES:
        _SYNC_CLASSES[base] = type(f"Sync{base.__name__}", (_SyncBatchNormMixin, base),
                                   {"_mtlsearch_base": base})
    return _SYNC_CLASSES[base]


def sync_batchnorm(model: nn.Module) -> int:
    """Make ``model``'s batch-norm layers use the whole batch's statistics over the ranks.

    The modules keep their parameters, buffers and hooks (their class is swapped for a
    subclass); :func:`unsync_batchnorm` swaps them back. Subclasses with their own
    ``forward`` are left alone (with a warning). Returns the number of layers changed.
    """
    changed = 0
    for module in model.modules():
        cls = type(module)
        if not isinstance(module, _BatchNorm) or hasattr(cls, "_mtlsearch_base"):
            continue
        if cls.forward is not _BatchNorm.forward:
            log.warning("%s has its own forward: its statistics stay per rank", cls.__name__)
            continue
        module.__class__ = _sync_class(cls)
        changed += 1
    return changed


def unsync_batchnorm(model: nn.Module) -> None:
    """Undo :func:`sync_batchnorm` (plain per-process batch norm again)."""
    for module in model.modules():
        base = getattr(type(module), "_mtlsearch_base", None)
        if base is not None:
            module.__class__ = base


