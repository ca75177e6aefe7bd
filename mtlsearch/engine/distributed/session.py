"""A ``torchrun`` search: rank 0 leads (Optuna, the strategy, scoring), the other ranks follow."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist

from mtlsearch.engine.distributed.ddp import DDPTraining
from mtlsearch.engine.distributed.messages import (
    DEFAULT_TIMEOUT_S,
    LeaderStopped,
    TorchrunEnv,
    broadcast_json,
    torchrun_env,
)
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import (
    EpochState,
    StepState,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainResult,
    seed_everything,
)
from mtlsearch.errors import DistributedAbort, MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

log = logging.getLogger(__name__)

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
        check_same_search(message.get("settings") or {}, settings, self.rank)
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
            graph = SharingGraph.from_dict(message["graph"], limits=False)  # rank 0 built it
            config = TrainConfig(**message["config"]).replace(device=ctx.budget.device)
            seed_everything(config.seed + self.rank)  # this rank's own dropout masks
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = materialize(graph, ctx.space, ctx.tasks)
            run = DDPTraining(self, config, step_sync=bool(message.get("step_sync")))
            trainer = Trainer(config, on_epoch_end=[run.follower_callback], distributed=run)
            try:
                trainer.fit(model, ctx.data.train, None)  # rank 0 validates
            except (LeaderStopped, TrainingError) as exc:
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


def check_same_search(leader: dict[str, Any], own: dict[str, Any], rank: int) -> None:
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
