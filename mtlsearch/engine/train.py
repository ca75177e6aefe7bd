"""The one trainer every strategy uses.

Settings live in :class:`TrainConfig` (optimizer, learning rate, epoch or step budget, early
stopping on validation loss, task weights, and the task-sampling mode: every task in every
batch, or one random active task per batch as in Task Routing's Algorithm 1). Training is seeded
and deterministic on the CPU. Dynamic strategies change the graph between epochs through
``on_epoch_end``; the trainer re-materializes the model, keeps the weights (and optimizer state)
of every block and head that remains.

Example:
    >>> cfg = TrainConfig(epochs=2, lr=1e-3)
    >>> cfg.replace(task_sampling="one").task_sampling
    'one'
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.acceleration import device_dataset, prepare_model, resolve, to_device_batch
from mtlsearch.engine.compute import charge, charge_forward
from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.scoring import evaluate
from mtlsearch.errors import MTLSearchError, TrainingError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = [
    "TrainConfig",
    "TrainResult",
    "EpochState",
    "StepState",
    "Trainer",
    "select_device",
    "seed_everything",
    "task_losses",
    "make_optimizer",
    "frozen_gc",
]

log = logging.getLogger(__name__)

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULERS = ("none", "cosine", "step")
_SAMPLING = ("all", "one")


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate is trained. Every field is JSON-ready (it keys cached results).

    Args:
        epochs: Passes over the training split.
        max_steps: Optional cap on optimizer steps (stops mid-epoch).
        batch_size: Training batch size.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        scheduler: ``none``, ``cosine`` (over all epochs) or ``step`` (x0.1 every third of them).
        patience: Early stopping: epochs without validation improvement before stopping; the
            best epoch's weights are restored. ``None`` trains all epochs.
        task_sampling: ``all`` (every task in every batch) or ``one`` (a random active task).
        update_parity: With ``task_sampling="one"``, every epoch makes T passes over the
            training split (T = number of tasks), so each task gets as many updates as under
            ``all`` for the same ``epochs`` (at T times the trunk's compute, which the compute
            meter records). ``False`` keeps one pass per epoch (Task Routing's code: each head
            then gets about 1/T of the updates).
        task_weights: Loss weight per task (default: each spec's ``weight``, i.e. uniform).
        device: ``cuda``, ``mps``, ``cpu`` or ``None`` to pick the first available.
        seed: Seeds weights, shuffling and task sampling.
        eval_batch_size: Batch size for evaluation.
        amp: bf16 autocast; ``None`` turns it on where the GPU supports bf16 (never on the
            CPU).
        channels_last: Channels-last memory format for image inputs; ``None`` = on CUDA
            (on the CPU it is faster too, but opt-in: see docs/gpu.md).
        compile: Run the forward pass through ``torch.compile`` (every materialized model
            compiles, routed masks and skips included; worth it for long runs).
        data_on_device: Keep the whole dataset on the GPU; ``None`` = when it takes at most a
            quarter of the free GPU memory (else batches go through pinned memory).
    """

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    patience: int | None = None
    task_sampling: str = "all"
    update_parity: bool = True
    task_weights: dict[str, float] | None = None
    device: str | None = None
    seed: int = 0
    eval_batch_size: int = 512
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    data_on_device: bool | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("optimizer", self.optimizer, _OPTIMIZERS),
            ("scheduler", self.scheduler, _SCHEDULERS),
            ("task_sampling", self.task_sampling, _SAMPLING),
        ):
            if value not in allowed:
                raise MTLSearchError(f"unknown {name} {value!r}; choose one of {list(allowed)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise MTLSearchError("epochs and batch_size must be at least 1")
        if self.lr <= 0:
            raise MTLSearchError(f"lr must be positive, got {self.lr}")

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed; unknown field names are listed."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MTLSearchError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepState:
    """Passed to ``on_backward`` after the backward pass, before the optimizer step."""

    epoch: int
    step: int
    model: MultiTaskModel
    losses: dict[str, Tensor]
    active_tasks: list[str]


@dataclass
class EpochState:
    """Passed to ``on_epoch_end``; ``logs`` holds train and validation figures."""

    epoch: int
    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    logs: dict[str, float]
    val_metrics: dict[str, dict[str, float]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What training produced: the model (best epoch restored if early stopping), history."""

    model: MultiTaskModel
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    steps: int
    seconds: float
    stopped_early: bool
    graphs: list[SharingGraph] = field(default_factory=list)


def select_device(preferred: str | None = None) -> torch.device:
    """``preferred`` if given, else CUDA, then MPS, then the CPU."""
    if preferred:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise MTLSearchError("device 'cuda' was asked for but no CUDA GPU is available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_losses(
    model: MultiTaskModel,
    outputs: dict[str, Tensor],
    targets: dict[str, Tensor],
) -> dict[str, Tensor]:
    """Each task's loss (missing labels masked out)."""
    specs = getattr(model, "spec_of", None) or {s.name: s for s in model.task_specs}
    return {
        t: get_task_kind(specs[t].kind).loss(specs[t], out, targets[t]) for t, out in outputs.items()
    }


@contextlib.contextmanager
def frozen_gc() -> Any:
    """Keep the garbage collector off the objects that exist now (model, graph, data).

    Every training step creates many short-lived autograd objects, which trigger collections
    that scan every tracked object. With hundreds of tasks (two modules per head, graph
    attributes, plans) those scans made a one-active-task step grow with the number of tasks
    (3-5x at 312 tasks); frozen, the long-lived objects are skipped and the step stays flat.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _param_groups(model: MultiTaskModel) -> list[dict[str, Any]]:
    """The trunk's parameters, then one group per task head (in task order)."""
    head_ids = {id(p) for p in model.heads.parameters()}
    trunk = [p for p in model.parameters() if id(p) not in head_ids]
    heads = [list(model.heads[model._head_keys[t]].parameters()) for t in model.tasks]
    return [{"params": trunk}, *({"params": h} for h in heads)]


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The optimizer ``config`` names (``adam``, ``adamw`` or ``sgd``) over ``params``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, opt: torch.optim.Optimizer) -> Any:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, config.epochs // 3), gamma=0.1)
    return None


def _resume_scheduler(config: TrainConfig, opt: torch.optim.Optimizer, old: Any) -> Any:
    """A schedule for a rewired model's optimizer that goes on where ``old`` was.

    A merge changes the architecture mid-run; it is not a new training run, so the learning
    rate keeps its place in the schedule instead of jumping back to its start.
    """
    lrs = [g["lr"] for g in opt.param_groups]  # _rewire copied the current rates
    new = _scheduler(config, opt)
    if new is None or old is None:
        return new
    state = old.state_dict()
    state["base_lrs"] = [config.lr] * len(opt.param_groups)
    state["_last_lr"] = lrs
    new.load_state_dict(state)
    for group, lr in zip(opt.param_groups, lrs):
        group["lr"] = lr
    return new


def _epoch_batches(
    train: MultiTaskDataset, cfg: TrainConfig, n_tasks: int, gen: torch.Generator
) -> Iterator[Any]:
    """One epoch's batches: T passes under one-task sampling with update parity, else one."""
    passes = n_tasks if cfg.task_sampling == "one" and cfg.update_parity else 1
    for _ in range(passes):
        yield from train.batches(cfg.batch_size, shuffle=True, generator=gen)


def _rows(batch: Any) -> int:
    """The number of samples in a batch ``(x, targets)``."""
    return int(batch[0].shape[0])


class Trainer:
    """Trains a :class:`MultiTaskModel` under a :class:`TrainConfig`.

    Args:
        config: The training settings.
        on_epoch_end: Callbacks receiving an :class:`EpochState`; one may return a new
            :class:`SharingGraph` (dynamic strategies), or raise ``optuna.TrialPruned``.
        on_backward: Callbacks receiving a :class:`StepState` after each backward pass.
        distributed: Trains under DistributedDataParallel (set by
            :mod:`mtlsearch.engine.distributed` on every rank of a ``torchrun`` search): wraps the
            model, gives each rank its shard of every batch and keeps the ranks in step.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        on_epoch_end: Sequence[Callable[[EpochState], SharingGraph | None]] = (),
        on_backward: Sequence[Callable[[StepState], None]] = (),
        distributed: Any | None = None,
    ):
        self.config = config
        self.on_epoch_end = list(on_epoch_end)
        self.on_backward = list(on_backward)
        self.distributed = distributed
        self.split_heads = True

    def fit(
        self, model: MultiTaskModel, train: MultiTaskDataset, val: MultiTaskDataset | None = None
    ) -> TrainResult:
        """Train ``model`` on ``train``, validating on ``val`` after every epoch."""
        with frozen_gc():
            return self._fit(model, train, val)

    def _fit(
        self, model: MultiTaskModel, train: MultiTaskDataset, val: MultiTaskDataset | None
    ) -> TrainResult:
        cfg = self.config
        charge(macs=0.0, networks=1)
        device = select_device(cfg.device)
        model.to(device)
        accel = resolve(cfg, device, input_ndim=train.inputs.dim(), datasets=(train, val))
        if accel.data_on_device:
            train = device_dataset(train, device)
            val = device_dataset(val, device) if val is not None else None
        ddp = self.distributed  # None: one process; else this rank's DDP hooks
        forward = prepare_model(model, accel) if ddp is None else ddp.wrap(model, accel)
        gen = torch.Generator().manual_seed(cfg.seed)
        task_gen = torch.Generator().manual_seed(cfg.seed + 1)
        weights = {s.name: s.weight for s in model.task_specs}
        weights.update(cfg.task_weights or {})
        # With one active task per batch, each head gets its own parameter group and a step
        # visits only the trunk's and the active head's: per-step work stays flat in T.
        split_heads = cfg.task_sampling == "one" and self.split_heads
        opt = make_optimizer(cfg, _param_groups(model) if split_heads else model.parameters())
        head_group = {t: i + 1 for i, t in enumerate(model.tasks)} if split_heads else {}
        sched = _scheduler(cfg, opt)
        history: list[dict[str, float]] = []
        graphs = [model.graph]
        best = (math.inf, -1, None)
        steps, bad_epochs, stopped_early = 0, 0, False
        start = time.perf_counter()
        tasks = model.tasks
        for epoch in range(cfg.epochs):
            model.train()
            total, batches = torch.zeros((), device=device), 0
            for batch in _epoch_batches(train, cfg, len(tasks), gen):
                if cfg.task_sampling == "one":
                    active = [tasks[int(torch.randint(len(tasks), (1,), generator=task_gen))]]
                else:
                    active = tasks
                charge_forward(model, _rows(batch), None if cfg.task_sampling == "all" else active)
                if ddp is not None:
                    batch = ddp.shard(batch, active)
                x, y = to_device_batch(batch, device, active, channels_last=accel.channels_last)
                with accel.autocast(device):
                    outputs = forward(x, active if cfg.task_sampling == "one" else None)
                losses = task_losses(model, outputs, y)
                loss = sum(weights[t] * v for t, v in losses.items())
                if ddp is not None:
                    loss, losses = ddp.scale_loss(loss, losses)
                all_groups = opt.param_groups
                if split_heads:
                    opt.param_groups = [all_groups[0], all_groups[head_group[active[0]]]]
                try:
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for cb in self.on_backward:
                        cb(StepState(epoch, steps, model, losses, active))
                    if ddp is not None:
                        ddp.after_backward(model)
                    opt.step()
                finally:
                    opt.param_groups = all_groups
                total += loss.detach()
                batches += 1
                steps += 1
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    break
            if sched is not None:
                sched.step()
            if ddp is not None:
                total = ddp.end_epoch(model, total)
            train_loss = float(total) / max(batches, 1)  # one host sync per epoch
            if not math.isfinite(train_loss):
                raise TrainingError(
                    f"the training loss became {train_loss} in epoch {epoch}; lower the learning "
                    "rate or check the labels"
                )
            logs: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
            val_metrics: dict[str, dict[str, float]] = {}
            if val is not None:
                val_metrics = evaluate(
                    model, val, batch_size=cfg.eval_batch_size, device=device, amp=accel.amp
                )
                logs["val_loss"] = sum(weights[t] * m["loss"] for t, m in val_metrics.items())
            history.append(logs)
            log.debug("epoch %d: %s", epoch, logs)
            monitored = logs.get("val_loss", train_loss)
            if monitored < best[0] - 1e-12:
                keep = copy.deepcopy(model.state_dict()) if cfg.patience is not None else None
                best, bad_epochs = (monitored, epoch, keep), 0
            else:
                bad_epochs += 1
            state = EpochState(epoch, model, opt, logs, val_metrics)
            for cb in self.on_epoch_end:
                new_graph = cb(state)
                if new_graph is not None:
                    model, opt = _rewire(model, opt, new_graph, cfg)
                    forward = prepare_model(model, accel) if ddp is None else ddp.wrap(model, accel)
                    # the schedule goes on where it was: a merge is no new training run
                    sched = _resume_scheduler(cfg, opt, sched)
                    graphs.append(new_graph)
                    best, bad_epochs = (math.inf, -1, None), 0  # old weights no longer fit
            done = cfg.max_steps is not None and steps >= cfg.max_steps
            if cfg.patience is not None and bad_epochs > cfg.patience:
                stopped_early = True
                done = True
            if ddp is not None:  # rank 0 decides for every rank
                done = ddp.agree(done or epoch == cfg.epochs - 1)
            if done:
                break
        if cfg.patience is not None and best[2] is not None:
            model.load_state_dict(best[2])
        return TrainResult(
            model=model,
            history=history,
            best_epoch=best[1] if best[1] >= 0 else len(history) - 1,
            epochs_run=len(history),
            steps=steps,
            seconds=time.perf_counter() - start,
            stopped_early=stopped_early,
            graphs=graphs,
        )


def _rewire(
    model: MultiTaskModel, opt: torch.optim.Optimizer, graph: SharingGraph, cfg: TrainConfig
) -> tuple[MultiTaskModel, torch.optim.Optimizer]:
    """Re-materialize ``graph`` keeping the weights and optimizer state of what remains."""
    device = next(model.parameters()).device
    new = materialize(graph, model.space, model.task_specs).to(device)
    old_state = model.state_dict()
    new_state = new.state_dict()
    kept = {k: v for k, v in old_state.items() if k in new_state and new_state[k].shape == v.shape}
    new.load_state_dict(kept, strict=False)
    new_opt = make_optimizer(cfg, new.parameters())
    old_names = {id(p): n for n, p in model.named_parameters()}
    new_params = dict(new.named_parameters())
    for group in opt.param_groups:
        for p in group["params"]:
            name = old_names.get(id(p))
            if name in kept and p in opt.state and name in new_params:
                new_opt.state[new_params[name]] = copy.deepcopy(opt.state[p])
    for g_new, g_old in zip(new_opt.param_groups, opt.param_groups):
        g_new["lr"] = g_old["lr"]
    return new, new_opt


def build_and_train(
    graph: SharingGraph,
    space: Any,
    tasks: Sequence[TaskSpec],
    train: MultiTaskDataset,
    val: MultiTaskDataset | None,
    config: TrainConfig,
    **trainer_kwargs: Any,
) -> TrainResult:
    """Materialize ``graph`` with weights seeded by ``config.seed`` and train it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = materialize(graph, space, tasks)
    return Trainer(config, **trainer_kwargs).fit(model, train, val)
