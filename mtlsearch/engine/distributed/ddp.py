"""One training on every rank: batch shards, DistributedDataParallel, rank 0's callbacks broadcast."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtlsearch.engine.distributed.messages import (
    LeaderStopped,
    broadcast_bool,
    broadcast_tensors,
)
from mtlsearch.engine.distributed.sync_batchnorm import sync_batchnorm, unsync_batchnorm
from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.train import (
    EpochState,
    TrainConfig,
)
from mtlsearch.errors import DistributedAbort
from mtlsearch.graph.sharing import SharingGraph

if TYPE_CHECKING:  # the session creates trainings; a training only reads its fields
    from mtlsearch.engine.distributed.session import Session

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- one training
def shard_bounds(batch_size: int, world: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a batch that ``rank`` trains on: contiguous shards whose sizes
    differ by at most one, the larger ones first (so rank 0's is never empty).

    Example:
        >>> [shard_bounds(5, 2, r) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    base, extra = divmod(batch_size, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class DDPTraining:
    """The hooks :class:`~mtlsearch.engine.train.Trainer` calls on every rank of one training.

    Args:
        session: The torchrun session (rank, world size, device).
        config: The training settings.
        step_sync: Rank 0 runs per-step callbacks: broadcast its weights after them, and give
            the callbacks the whole batch's per-task losses.
    """

    def __init__(self, session: Session, config: TrainConfig, *, step_sync: bool = False):
        self.session = session
        self.rank, self.world = session.rank, session.world_size
        self.step_sync = step_sync
        # One active task per batch leaves the other heads without gradients; DDP must look
        # for unused parameters then (an extra walk of the autograd graph per step).
        self.find_unused = (config.task_sampling == "one"
                            or os.environ.get("MTLSEARCH_DDP_FIND_UNUSED") == "1")
        self.finished = False  # rank 0 said training is over: the ranks are in step again
        self.stopped = False  # rank 0 broadcast a stop before raising: in step too
        self._models: list[nn.Module] = []
        self._rows = self._batch = 0
        self._ddp: Any = None

    # -- Trainer hooks, in the order it calls them
    def wrap(self, model: MultiTaskModel, accel: Any = None) -> nn.Module:
        """Synchronise batch norm, wrap ``model`` in DDP (which copies rank 0's weights to
        every rank); the returned module is what the trainer calls forward on."""
        from torch.nn.parallel import DistributedDataParallel

        if accel is not None and getattr(accel, "channels_last", False):
            model.to(memory_format=torch.channels_last)
        if accel is not None and getattr(accel, "compile", False):
            log.warning("torch.compile is not used under DistributedDataParallel here")
        sync_batchnorm(model)
        self._models.append(model)
        device = next(model.parameters()).device
        # Batch norm is synchronised and rank 0's buffers are re-sent each epoch: no buffer
        # broadcast before every forward (the wrapper still copies them once, at the start).
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        self._ddp = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=self.find_unused,
            **no_buffer_sync,
        )
        return self._ddp

    def shard(self, batch: tuple[Tensor, Mapping[str, Tensor]], tasks: Sequence[str]
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """This rank's rows of the global ``batch`` (inputs and the targets of ``tasks``)."""
        x, y = batch
        self._batch = len(x)
        start, stop = shard_bounds(self._batch, self.world, self.rank)
        self._rows = stop - start
        return x[start:stop], {t: y[t][start:stop] for t in tasks}

    def scale_loss(self, loss: Tensor, losses: dict[str, Tensor]
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """Scale this rank's mean loss so that DDP's gradient average is the whole batch's
        mean gradient; with ``step_sync``, the whole batch's per-task losses for callbacks."""
        share = self._rows / max(self._batch, 1)
        if self._rows == 0:  # fewer rows than ranks: take part in the collectives, add nothing
            loss = torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0) * 0.0
        else:
            loss = loss * (share * self.world)
        if self.step_sync and losses:
            names = list(losses)
            local = torch.stack([losses[t].detach().float() for t in names])
            local = torch.nan_to_num(local) * share
            dist.all_reduce(local)
            losses = {t: local[i].to(losses[t].dtype) for i, t in enumerate(names)}
        return loss, losses

    def after_backward(self, model: nn.Module) -> None:
        """With per-step callbacks (rank 0 only), rank 0's weights to every rank."""
        if self.step_sync:
            broadcast_tensors(list(model.parameters()))

    def end_epoch(self, model: nn.Module, total: Tensor) -> Tensor:
        """The epoch's summed training loss averaged over the ranks (the whole batches');
        rank 0's buffers to every rank."""
        total = total.detach().clone()
        dist.all_reduce(total)
        buffers = [b for b in model.buffers() if b.numel()]
        if buffers:
            broadcast_tensors(buffers)
        return total / self.world

    def agree(self, done: bool) -> bool:
        """Rank 0's decision whether training is over, on every rank."""
        done = broadcast_bool(done, self.session.device)
        self.finished = self.finished or done
        return done

    # -- epoch callbacks
    def leader_callback(
        self, callbacks: Sequence[Callable[[EpochState], SharingGraph | None]]
    ) -> Callable[[EpochState], SharingGraph | None]:
        """Rank 0's one epoch callback: run ``callbacks``, then tell the other ranks the new
        graph (the last one returned), or that training stops (a callback raised)."""

        def callback(state: EpochState) -> SharingGraph | None:
            graph = None
            try:
                for cb in callbacks:  # later callbacks see the old model: they only read logs
                    out = cb(state)
                    if out is not None:
                        graph = out
            except BaseException as exc:
                self.session.send({"op": "epoch", "stop": f"{type(exc).__name__}: {exc}"})
                self.stopped = True
                raise
            self.session.send({"op": "epoch", "graph": None if graph is None else graph.to_dict()})
            return graph

        return callback

    def follower_callback(self, state: EpochState) -> SharingGraph | None:
        """A follower's one epoch callback: rank 0's outcome."""
        message = self.session.receive()
        if message.get("op") != "epoch":
            raise DistributedAbort(f"expected rank 0's epoch outcome, got {message.get('op')!r}")
        if message.get("stop"):
            raise LeaderStopped(message["stop"])
        return None if message.get("graph") is None else SharingGraph.from_dict(message["graph"], limits=False)  # rank 0 built it

    def release(self) -> None:
        """Plain batch norm again on every model this training wrapped; drop the wrapper."""
        for model in self._models:
            unsync_batchnorm(model)
        self._models.clear()
        self._ddp = None


