"""One candidate on several GPUs: DistributedDataParallel under ``torchrun``.

``torchrun --nproc-per-node N -m mtlsearch search ...`` (or a script calling
:func:`mtlsearch.search` started by ``torchrun``) starts N processes, the *ranks*. This module
lets them train every candidate together:

* Rank 0 owns everything Optuna: the storage, the study, each trial, the strategy's proposal
  and the scoring. The other ranks never open the storage.
* Every training that goes through :meth:`SearchContext.train <mtlsearch.strategy.context.SearchContext.train>`
  on rank 0 (the single-task reference, the candidate of each trial, and the trainings a
  strategy runs through ``ctx.train`` inside its proposal) is announced to the other ranks as
  one JSON message, broadcast as bytes in a ``uint8`` tensor (never
  ``broadcast_object_list``, which pickles): the graph JSON, the training settings (seed
  included) and whether rank 0 has per-step callbacks. Every rank materializes the same
  model, wraps it in ``DistributedDataParallel`` and trains on its shard of every batch: the
  batches are the single-process run's (same seed, same order, same size), cut into N
  contiguous shards, and each rank's loss is scaled by ``N * shard / batch`` so that the
  averaged gradient is the whole batch's. Batch normalisation is synchronised over the ranks
  (:class:`SyncBatchNorm` semantics, on the CPU too), so the statistics are the whole batch's.
  The metrics therefore match a single-process run up to floating-point summation order.
* Rank 0 validates, runs the epoch callbacks (pruning, observers, a dynamic strategy's
  ``on_epoch_end``) and broadcasts the outcome: a new graph (every rank re-materializes it and
  wraps it again; the new wrapper copies rank 0's weights to every rank), or a stop (pruned,
  an error), or nothing. Rank 0 also decides when training ends (early stopping, step budget)
  and tells the others. With per-step callbacks (a strategy's ``on_backward``, which only
  rank 0 runs) rank 0's weights are broadcast after the callbacks, before each optimizer step,
  so a callback that edits weights cannot make the ranks drift apart.
* Stages that train with their own loop, not ``ctx.train`` (the recombined networks of
  ``affinity_tree``'s ``full``/``subset`` estimators, ``gumbel_policy``'s policy phase), run on
  rank 0 alone while the others wait.

This is our equivalent of Optuna's ``TorchDistributedTrial`` (in the separate
``optuna-integration`` package): rank 0 alone talks to Optuna, the others follow what it
broadcasts.

Example:
    >>> decode_json(encode_json({"op": "train", "lr": 0.001}))
    {'op': 'train', 'lr': 0.001}
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.train import (
    EpochState,
    StepState,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainResult,
    seed_everything,
)
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

__all__ = [
    "TorchrunEnv",
    "torchrun_env",
    "encode_json",
    "decode_json",
    "broadcast_json",
    "DistributedAbort",
    "DDPTraining",
    "Session",
    "torchrun_session",
    "shard_bounds",
]

log = logging.getLogger(__name__)

#: Seconds a rank may wait in one collective (rank 0 may compute alone for long: the
#: reference, an affinity stage, a policy phase). ``MTLSEARCH_DIST_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT_S = 6 * 3600


class DistributedAbort(MTLSearchError):
    """Rank 0 failed while the ranks trained together: the others cannot follow any more.

    The trial is recorded as failed and the search stops (``torchrun`` then ends the other
    ranks); running the same command again resumes the study.
    """


class _LeaderStopped(Exception):
    """Raised on a follower when rank 0 stopped the current training (pruned, an error)."""


# ----------------------------------------------------------------------------- environment
@dataclass(frozen=True)
class TorchrunEnv:
    """What ``torchrun`` tells each process through its environment."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
    """The rank, world size and local rank set by ``torchrun``; ``None`` outside it (or N=1).

    Example:
        >>> torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        TorchrunEnv(rank=1, world_size=2, local_rank=1)
        >>> torchrun_env({}) is None
        True
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MTLSearchError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers, got {env.get('WORLD_SIZE')!r}/"
            f"{env.get('RANK')!r}/{env.get('LOCAL_RANK')!r}; start the ranks with torchrun"
        ) from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise MTLSearchError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    return TorchrunEnv(rank, world, local)


# ----------------------------------------------------------------------------- JSON messages
def encode_json(obj: Any) -> Tensor:
    """``obj`` as UTF-8 JSON bytes in a 1-D ``uint8`` tensor (values JSON cannot hold are
    written as their ``str()``; NaN and infinities as JSON's usual extensions)."""
    data = json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_json(tensor: Tensor) -> Any:
    """The object :func:`encode_json` wrote into ``tensor``."""
    data = tensor.detach().to("cpu", torch.uint8).numpy().tobytes()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DistributedAbort(
            f"a message between the ranks is not valid JSON ({exc}); the ranks are out of "
            "step: restart torchrun"
        ) from None


def broadcast_json(
    obj: Any = None, *, src: int = 0, device: torch.device | str = "cpu", group: Any = None
) -> Any:
    """Send ``obj`` (on rank ``src``) to every rank; every rank returns the object.

    Two broadcasts: the length (``int64``), then the bytes. ``device`` must be CUDA with the
    ``nccl`` backend. No pickle: a message can only carry JSON.
    """
    device = torch.device(device)
    if dist.get_rank() == src:
        payload = encode_json(obj).to(device)
        size = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=device)
    dist.broadcast(size, src, group=group)
    if dist.get_rank() != src:
        payload = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(payload, src, group=group)
    return obj if dist.get_rank() == src else decode_json(payload)


def _broadcast_bool(value: bool, device: torch.device) -> bool:
    flag = torch.tensor([1 if value else 0], dtype=torch.int64, device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


def _broadcast_tensors(tensors: Sequence[Tensor]) -> None:
    """Copy rank 0's values of ``tensors`` into every rank's, one broadcast per dtype."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, 0)
        offset = 0
        with torch.no_grad():
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


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
            _broadcast_tensors(list(model.parameters()))

    def end_epoch(self, model: nn.Module, total: Tensor) -> Tensor:
        """The epoch's summed training loss averaged over the ranks (the whole batches');
        rank 0's buffers to every rank."""
        total = total.detach().clone()
        dist.all_reduce(total)
        buffers = [b for b in model.buffers() if b.numel()]
        if buffers:
            _broadcast_tensors(buffers)
        return total / self.world

    def agree(self, done: bool) -> bool:
        """Rank 0's decision whether training is over, on every rank."""
        done = _broadcast_bool(done, self.session.device)
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
            raise _LeaderStopped(message["stop"])
        return None if message.get("graph") is None else SharingGraph.from_dict(message["graph"])

    def release(self) -> None:
        """Plain batch norm again on every model this training wrapped; drop the wrapper."""
        for model in self._models:
            unsync_batchnorm(model)
        self._models.clear()
        self._ddp = None


# ----------------------------------------------------------------------------- the search
class Session:
    """One process of a ``torchrun`` search: rank 0 leads, the other ranks follow.

    Created by :func:`torchrun_session`. Rank 0's :class:`~mtlsearch.strategy.context.SearchContext`
    holds it (``ctx.distributed``), so that its ``train`` trains with every rank.
    """

    def __init__(self, env: TorchrunEnv, device: torch.device, backend: str, owns_group: bool):
        self.rank, self.world_size, self.local_rank = env.rank, env.world_size, env.local_rank
        self.device, self.backend, self.owns_group = device, backend, owns_group
        self.broken = False  # rank 0 failed mid-training: no more messages can be trusted
        self.closed = False
        self._data: Any = None
        self._space: Any = None

    @property
    def leader(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    # -- messages
    def send(self, message: dict[str, Any]) -> None:
        """Rank 0: broadcast ``message`` (JSON) to the other ranks."""
        broadcast_json(message, device=self.device)

    def receive(self) -> dict[str, Any]:
        """Other ranks: rank 0's next message."""
        message = broadcast_json(None, device=self.device)
        if not isinstance(message, dict):
            raise DistributedAbort(f"rank 0 sent {message!r}, not a message object")
        return message

    # -- start
    def join(self, settings: dict[str, Any], ctx: Any) -> bool:
        """Rank 0: announce the search's settings and return ``True`` (go on with the study).
        Other ranks: check they run the same search, train along until rank 0 ends it, and
        return ``False``."""
        if self.leader:
            self.send({"op": "hello", "settings": settings, "world_size": self.world_size})
            self._data, self._space = ctx.data, ctx.space
            ctx.distributed = self
            log.info("rank 0 of %d leads the search (%s)", self.world_size, self.backend)
            return True
        message = self.receive()
        if message.get("op") == "stop":
            return False
        if message.get("op") != "hello":
            raise DistributedAbort(f"expected rank 0's hello, got {message.get('op')!r}")
        _check_same_search(message.get("settings") or {}, settings, self.rank)
        self.follow(ctx)
        return False

    # -- rank 0
    def train(
        self,
        ctx: Any,
        graph: SharingGraph,
        config: TrainConfig,
        *,
        on_epoch_end: Sequence[Callable[[EpochState], SharingGraph | None]] = (),
        on_backward: Sequence[Callable[[StepState], None]] = (),
    ) -> TrainResult:
        """Rank 0: materialize and train ``graph`` with every rank (what ``ctx.train`` does)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = materialize(graph, ctx.space, ctx.tasks)
        if ctx.data is not self._data or ctx.space is not self._space or self.broken:
            # Another data set or space than the ranks were started with: rank 0 alone.
            return Trainer(config, on_epoch_end=on_epoch_end, on_backward=on_backward).fit(
                model, ctx.data.train, ctx.data.val)
        run = DDPTraining(self, config, step_sync=bool(on_backward))
        self.send({"op": "train", "graph": graph.to_dict(), "config": config.to_dict(),
                   "step_sync": run.step_sync})
        trainer = Trainer(config, on_epoch_end=[run.leader_callback(on_epoch_end)],
                          on_backward=on_backward, distributed=run)
        try:
            return trainer.fit(model, ctx.data.train, ctx.data.val)
        except BaseException as exc:
            in_step = run.finished or run.stopped or isinstance(exc, TrainingError)
            if in_step:
                raise
            self.broken = True
            if not isinstance(exc, Exception):
                raise
            raise DistributedAbort(
                f"rank 0 failed while the ranks trained together ({type(exc).__name__}: {exc}); "
                "the other ranks cannot follow any more. The trial is recorded as failed; run "
                "the same torchrun command again to resume the study"
            ) from exc
        finally:
            run.release()

    # -- other ranks
    def follow(self, ctx: Any) -> None:
        """Other ranks: train along with rank 0 until it says stop."""
        while True:
            message = self.receive()
            op = message.get("op")
            if op == "stop":
                return
            if op != "train":
                raise DistributedAbort(f"expected a training from rank 0, got {op!r}")
            graph = SharingGraph.from_dict(message["graph"])
            config = TrainConfig(**message["config"]).replace(device=ctx.budget.device)
            seed_everything(config.seed + self.rank)  # this rank's own dropout masks
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = materialize(graph, ctx.space, ctx.tasks)
            run = DDPTraining(self, config, step_sync=bool(message.get("step_sync")))
            trainer = Trainer(config, on_epoch_end=[run.follower_callback], distributed=run)
            try:
                trainer.fit(model, ctx.data.train, None)  # rank 0 validates
            except (_LeaderStopped, TrainingError) as exc:
                log.debug("rank %d: training stopped: %s", self.rank, exc)
            finally:
                run.release()

    # -- end
    def close(self, failed: bool = False) -> None:
        """Rank 0 tells the others to stop (unless the ranks are out of step); the process
        group is destroyed if this session created it."""
        if self.closed:
            return
        self.closed = True
        if self.broken or (failed and not self.leader):
            # Out of step, or a follower that failed: its exit makes torchrun end the others.
            return
        with contextlib.suppress(Exception):
            if self.leader:
                self.send({"op": "stop", "failed": failed})
            dist.barrier()
            if self.owns_group:
                dist.destroy_process_group()


def _check_same_search(leader: dict[str, Any], own: dict[str, Any], rank: int) -> None:
    """Every rank must run the same search (same data, space, budget, strategy, seed)."""
    keys = sorted(k for k in set(leader) | set(own) if k != "version")
    diffs = [f"{k}: {leader.get(k)!r} (rank 0) vs {own.get(k)!r} (rank {rank})"
             for k in keys if leader.get(k) != own.get(k)]
    if diffs:
        raise MTLSearchError(
            f"rank {rank} was started with other settings than rank 0: " + "; ".join(diffs)
            + ". Start every rank with the same command (torchrun does)."
        )


def _device_and_backend(device: str | None, env: TorchrunEnv) -> tuple[torch.device, str]:
    """This rank's device and the backend: ``nccl`` on CUDA (GPU ``LOCAL_RANK``), else gloo."""
    wanted = torch.device(device) if device else None
    if wanted is None:
        wanted = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if wanted.type == "cuda":
        if not torch.cuda.is_available():
            raise MTLSearchError("device 'cuda' was asked for but no CUDA GPU is available")
        if wanted.index is not None:
            raise MTLSearchError(
                f"under torchrun leave the GPU index out (--device cuda, not {wanted}): rank "
                "r uses GPU LOCAL_RANK"
            )
        torch.cuda.set_device(env.local_rank)
        backend = "nccl"
        wanted = torch.device("cuda", env.local_rank)
    elif wanted.type == "cpu":
        backend = "gloo"
    else:
        raise MTLSearchError(
            f"DistributedDataParallel needs CUDA GPUs (nccl) or the CPU (gloo), not "
            f"{wanted.type!r}; pass --device cuda or --device cpu"
        )
    return wanted, os.environ.get("MTLSEARCH_DIST_BACKEND", backend)


@contextlib.contextmanager
def torchrun_session(device: str | None = None) -> Iterator[Session | None]:
    """The :class:`Session` of this process under ``torchrun`` (``None`` outside it).

    Initialises the default process group (``nccl`` when training on CUDA, else ``gloo``;
    ``MTLSEARCH_DIST_BACKEND`` overrides) unless the caller already did, with a timeout of
    ``MTLSEARCH_DIST_TIMEOUT`` seconds (default 6 hours: rank 0 may compute alone for long).
    On exit rank 0 tells the other ranks to stop and the group is destroyed.
    """
    env = torchrun_env()
    if env is None:
        yield None
        return
    if not dist.is_available():
        raise MTLSearchError("this PyTorch build has no torch.distributed; it cannot run under torchrun")
    dev, backend = _device_and_backend(device, env)
    owns = not dist.is_initialized()
    if owns:
        seconds = float(os.environ.get("MTLSEARCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    elif dist.get_world_size() != env.world_size:
        raise MTLSearchError(
            f"the process group has {dist.get_world_size()} ranks but WORLD_SIZE is "
            f"{env.world_size}"
        )
    session = Session(env, dev, dist.get_backend(), owns)
    try:
        yield session
    except BaseException:
        session.close(failed=True)
        raise
    else:
        session.close()
