"""The one trainer every strategy uses.

Settings live in :class:`TrainConfig` (optimizer, learning rate, epoch or step budget, early
stopping on validation loss, task weights, the loss weighting or gradient aggregator, and the
task-sampling mode: every task in every batch, or one random active task per batch as in Task
Routing's Algorithm 1). Training is seeded and deterministic on the CPU. Dynamic strategies
change the graph between epochs through ``on_epoch_end``; the trainer re-materializes the
model, keeps the weights (and optimizer state) of every block and head that remains. The
weighting (:mod:`mtlsearch.engine.weighting`) is called once per step with the task losses.

Example:
    >>> cfg = TrainConfig(epochs=2, lr=1e-3)
    >>> cfg.replace(task_sampling="one").task_sampling
    'one'
"""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.acceleration import device_dataset, prepare_model, resolve, to_device_batch
from mtlsearch.engine.compute import charge, charge_forward, current_meters
from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.scoring import evaluate
from mtlsearch.engine.weighting import Weighting, WeightingStep, make_weighting
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
    "train_info",
    "frozen_gc",
]

log = logging.getLogger(__name__)

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULERS = ("none", "cosine", "step")
_SAMPLING = ("all", "one")
# Fields left out of to_dict() while they hold their default: configs (and so cache keys and
# stored studies' settings) made before weightings existed read the same.
_QUIET_DEFAULTS = {"weighting": "equal", "weighting_kwargs": {}}


class FrozenKwargs(dict):
    """A read-only ``dict`` of JSON-ready keyword arguments (``TrainConfig.weighting_kwargs``)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("weighting_kwargs is read-only; use "
                        "TrainConfig.replace(weighting_kwargs=...)")

    __setitem__ = __delitem__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle build a new one
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))


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
        weighting: How the task losses of a step become one update: a registered loss
            weighting or gradient aggregator (``equal``, ``uw``, ``dwa``, ``gradnorm``,
            ``rlw``, ``upgrad``, ``pcgrad``, ...; ``mtlsearch weightings`` lists them; see
            docs/weighting.md). Gradient aggregators and GradNorm need every task in every
            batch (``task_sampling="all"``).
        weighting_kwargs: The weighting's hyper-parameters (JSON-ready; kept read-only).
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
    weighting: str = "equal"
    weighting_kwargs: Mapping[str, Any] = field(default_factory=FrozenKwargs)
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
        self._check_weighting()

    def _check_weighting(self) -> None:
        if not isinstance(self.weighting, str) or not self.weighting:
            raise MTLSearchError(f"weighting must be a registered name, got {self.weighting!r}")
        kwargs = self.weighting_kwargs if self.weighting_kwargs is not None else {}
        if not isinstance(kwargs, Mapping):
            raise MTLSearchError(f"weighting_kwargs must be a mapping, got {kwargs!r}")
        try:  # JSON-ready: it keys cached results and is recorded with every study
            frozen = FrozenKwargs(json.loads(json.dumps(dict(kwargs), allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise MTLSearchError(f"weighting_kwargs must be JSON-ready: {exc}") from None
        object.__setattr__(self, "weighting_kwargs", frozen)
        if self.weighting == "equal" and not frozen:
            return  # the default: no registry lookup (every TrainConfig() would load plugins)
        from mtlsearch.registry import get_weighting_class

        cls = get_weighting_class(self.weighting)  # an unknown name lists the known ones
        try:  # wrong argument names now, not when a trial starts training
            inspect.signature(cls).bind(**frozen)
        except TypeError as exc:
            raise MTLSearchError(f"weighting {self.weighting!r} cannot take {dict(frozen)}: "
                                 f"{exc}") from None
        except ValueError:  # no signature to read (a builtin): the trainer will tell
            pass
        if self.task_sampling == "one" and getattr(cls, "all_tasks", False):
            raise MTLSearchError(
                f"weighting {self.weighting!r} combines every task's loss or gradient in each "
                "step, and task_sampling='one' trains one task per batch: set "
                "task_sampling='all', or choose a weighting that weighs a single task "
                "(equal, uw, dwa, rlw)")

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields changed; unknown field names are listed."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MTLSearchError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values; ``weighting`` and ``weighting_kwargs`` only when
        not at their defaults (so earlier cache keys and stored settings stay valid)."""
        data = asdict(self)
        for name, default in _QUIET_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        if "weighting_kwargs" in data:
            data["weighting_kwargs"] = dict(data["weighting_kwargs"])
        return data


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
    """What training produced: the model (best epoch restored if early stopping), history.

    ``weighting`` records the loss weighting: ``name``, ``kwargs`` and its final per-task
    ``weights`` (``None`` where it has none). The model carries ``train_info`` (``weighting``
    and ``weighting_kwargs``), what an export records of how it was trained.
    """

    model: MultiTaskModel
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    steps: int
    seconds: float
    stopped_early: bool
    graphs: list[SharingGraph] = field(default_factory=list)
    weighting: dict[str, Any] = field(default_factory=dict)


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


def _with_extra(params: Any, extra: Sequence[torch.nn.Parameter]) -> Any:
    """``params`` plus a group of the weighting's learnable tensors (no weight decay: the
    log-variances of uncertainty weighting are not weights to shrink)."""
    if not extra:
        return params
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    return [*groups, {"params": list(extra), "weight_decay": 0.0}]


def _check_weighting_runs(weighting: Weighting, cfg: TrainConfig, ddp: Any) -> None:
    """Refuse what the weighting cannot do here: one-task sampling, DDP."""
    if cfg.task_sampling == "one" and weighting.all_tasks:
        raise MTLSearchError(
            f"weighting {cfg.weighting!r} combines every task's loss or gradient in each step, "
            "and task_sampling='one' trains one task per batch: set task_sampling='all', or "
            "choose a weighting that weighs a single task (equal, uw, dwa, rlw)")
    if ddp is not None and not weighting.distributed:
        raise MTLSearchError(
            f"weighting {cfg.weighting!r} does not run under DistributedDataParallel: its "
            "per-task gradients or loss statistics would be each rank's own. Train with one "
            "process, or choose equal, uw or rlw")


def _average_over_ranks(params: Sequence[torch.nn.Parameter], ddp: Any) -> None:
    """The weighting's gradients averaged over the ranks, as DDP does for the model's."""
    import torch.distributed as dist

    world = int(getattr(ddp, "world", 1))
    for p in params:
        if p.grad is not None:  # the same on every rank: every rank trains the same tasks
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def _plain_sum(losses: dict[str, Tensor]) -> Tensor:
    """``Σ_t w_t L_t`` without a graph: the training loss every weighting logs."""
    return torch.stack([v.detach() for v in losses.values()]).sum()


def train_info(config: TrainConfig) -> dict[str, Any]:
    """What a trained model records of how it was trained (its export's ``training``)."""
    return {"weighting": config.weighting, "weighting_kwargs": dict(config.weighting_kwargs)}


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
        # input_shape, not inputs: a streaming dataset's inputs are not one tensor
        accel = resolve(cfg, device, input_ndim=len(train.input_shape) + 1, datasets=(train, val))
        if accel.data_on_device:
            train = device_dataset(train, device)
            val = device_dataset(val, device) if val is not None else None
        ddp = self.distributed  # None: one process; else this rank's DDP hooks
        weighting = make_weighting(cfg.weighting, cfg.weighting_kwargs)
        _check_weighting_runs(weighting, cfg, ddp)  # before DDP wraps anything
        forward = prepare_model(model, accel) if ddp is None else ddp.wrap(model, accel)
        gen = torch.Generator().manual_seed(cfg.seed)
        task_gen = torch.Generator().manual_seed(cfg.seed + 1)
        weights = {s.name: s.weight for s in model.task_specs}
        weights.update(cfg.task_weights or {})
        weighting.setup(list(model.tasks), device=device, seed=cfg.seed)
        extra = list(weighting.parameters())
        # torchjd's vmap runs neither a compiled graph nor a bf16-autocast one (its batched
        # backward meets float32 and bf16 tensors): one backward pass per task instead.
        chunk = 1 if accel.compile or accel.amp else None
        # With one active task per batch, each head gets its own parameter group and a step
        # visits only the trunk's and the active head's: per-step work stays flat in T.
        split_heads = cfg.task_sampling == "one" and self.split_heads
        opt = make_optimizer(cfg, _with_extra(
            _param_groups(model) if split_heads else model.parameters(), extra))
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
                rows = _rows(batch)
                charge_forward(model, rows, None if cfg.task_sampling == "all" else active)
                if ddp is not None:
                    batch = ddp.shard(batch, active)
                x, y = to_device_batch(batch, device, active, channels_last=accel.channels_last)
                with accel.autocast(device):
                    outputs = forward(x, active if cfg.task_sampling == "one" else None)
                losses = task_losses(model, outputs, y)
                # float32 before weighting (bf16 autocast), the fixed task weights applied
                scaled = {t: weights[t] * v.float() for t, v in losses.items()}
                wstep = WeightingStep(epoch, steps, active, model, chunk)
                loss = None if weighting.gradient else weighting.combine(scaled, wstep)
                if ddp is not None and loss is not None:
                    loss, losses = ddp.scale_loss(loss, losses)
                if weighting.plain_sum:
                    logged = loss
                else:  # every weighting logs Σ w_t L_t: train losses compare across them
                    logged = _plain_sum(scaled)
                    if ddp is not None:
                        logged, _ = ddp.scale_loss(logged, {})
                all_groups = opt.param_groups
                if split_heads:
                    opt.param_groups = [all_groups[0], all_groups[head_group[active[0]]],
                                        *all_groups[len(tasks) + 1:]]
                try:
                    opt.zero_grad(set_to_none=True)
                    if loss is None:
                        weighting.backward(scaled, wstep)  # type: ignore[attr-defined]
                    else:
                        loss.backward()
                    if ddp is not None and extra:
                        _average_over_ranks(extra, ddp)
                    for cb in self.on_backward:
                        cb(StepState(epoch, steps, model, losses, active))
                    if ddp is not None:
                        ddp.after_backward(model)
                    opt.step()
                finally:
                    opt.param_groups = all_groups
                if current_meters():
                    more = weighting.extra_macs(wstep)
                    if more:  # extra backward passes (per-task gradients, gradient norms)
                        charge(macs=rows * more)
                total += logged.detach()
                batches += 1
                steps += 1
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    break
            weighting.end_epoch(epoch)
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
                    model, opt = _rewire(model, opt, new_graph, cfg, extra)
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
        model.train_info = train_info(cfg)
        return TrainResult(
            model=model,
            history=history,
            best_epoch=best[1] if best[1] >= 0 else len(history) - 1,
            epochs_run=len(history),
            steps=steps,
            seconds=time.perf_counter() - start,
            stopped_early=stopped_early,
            graphs=graphs,
            weighting={"name": cfg.weighting, "kwargs": dict(cfg.weighting_kwargs),
                       "weights": weighting.weights()},
        )


def _rewire(
    model: MultiTaskModel, opt: torch.optim.Optimizer, graph: SharingGraph, cfg: TrainConfig,
    extra: Sequence[torch.nn.Parameter] = (),
) -> tuple[MultiTaskModel, torch.optim.Optimizer]:
    """Re-materialize ``graph`` keeping the weights and optimizer state of what remains (and
    of the weighting's tensors ``extra``, which stay the same objects)."""
    device = next(model.parameters()).device
    new = materialize(graph, model.space, model.task_specs).to(device)
    old_state = model.state_dict()
    new_state = new.state_dict()
    kept = {k: v for k, v in old_state.items() if k in new_state and new_state[k].shape == v.shape}
    new.load_state_dict(kept, strict=False)
    new_opt = make_optimizer(cfg, _with_extra(new.parameters(), extra))
    for p in extra:
        if p in opt.state:
            new_opt.state[p] = copy.deepcopy(opt.state[p])
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
