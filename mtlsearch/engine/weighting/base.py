"""The weighting interface: how the task losses of one step become one update.

The architecture says *what is shared*; a :class:`Weighting` says *how the tasks are weighed*
where they share. The two are composed, not mixed in (as LibMTL splits architectures from
weighting methods): every graph trains with every weighting, through the one trainer.

Two kinds of weighting exist, told apart by :attr:`Weighting.gradient`:

* **loss weightings** (``gradient = False``) return one scalar from the per-task losses
  (:meth:`Weighting.combine`); the trainer backpropagates it. Equal weights, uncertainty
  weighting, DWA, GradNorm and random loss weighting are of this kind.
* **gradient weightings** (``gradient = True``, :class:`GradientWeighting`) do the backward
  pass themselves (:meth:`GradientWeighting.backward`): each task's gradient of the
  *shared* parameters, aggregated (torchjd's aggregators: UPGrad, MGDA, PCGrad, ...), and the
  plain gradient for every task-specific parameter.

What is shared is the engine's to say: :func:`split_parameters` reads the model's execution
plan for the step's active tasks. A parameter reached by two or more of them is shared (hard
sharing: the whole trunk; a tree: its shared prefix and every branch block with two tasks or
more); one reached by one task only (its head, its own branch) gets that task's gradient alone.

Example:
    >>> import torch
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
    >>> space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    >>> graph = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]])
    >>> split = split_parameters(materialize(graph, space, [TaskSpec("a"), TaskSpec("b")]))
    >>> len(split.shared), sorted(split.specific)  # block 0's weights; block 1's and heads
    (4, ['a', 'b'])
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtlsearch.engine.model import MultiTaskModel, module_key

__all__ = [
    "BACKWARD_SHARE",
    "GradientWeighting",
    "ParameterSplit",
    "Weighting",
    "WeightingStep",
    "split_parameters",
]

#: One backward pass costs about twice its forward pass, so a training step is about three
#: forwards. The compute meter counts a step as its forward MACs (standing for the whole
#: step): an extra backward pass through a part is charged as 2/3 of that part's forward MACs.
BACKWARD_SHARE = 2.0 / 3.0


@dataclass(frozen=True)
class ParameterSplit:
    """Which parameters the step's active tasks share, and which belong to one task.

    Attributes:
        tasks: The active tasks, in model order.
        shared: Parameters reached by two or more of ``tasks`` (model order, no repeats).
        specific: ``{task: parameters only that task reaches}`` (its head, its own blocks).
        last_shared: The parameters of the deepest block every task of ``tasks`` passes
            through (GradNorm's "last shared layer"); empty when no block is common to all.
        shared_groups: ``shared`` grouped by the tasks that reach them: ``((tasks, params),
            ...)`` in model order. Hard sharing has one group (every task); in a tree a block
            reached by some tasks only is aggregated over those tasks' gradients alone (the
            others' rows would be zeros, and the zero vector is the min-norm point MGDA-like
            methods pick: the block would never train).
        shared_macs: Forward MACs per sample of the shared blocks (every distinct input).
        last_shared_macs: Forward MACs per sample of the ``last_shared`` block.
        head_macs: ``{task: forward MACs per sample of its head}``.
    """

    tasks: tuple[str, ...]
    shared: tuple[nn.Parameter, ...]
    specific: Mapping[str, tuple[nn.Parameter, ...]]
    last_shared: tuple[nn.Parameter, ...] = ()
    shared_macs: float = 0.0
    last_shared_macs: float = 0.0
    head_macs: Mapping[str, float] = field(default_factory=dict)
    shared_groups: tuple[tuple[tuple[str, ...], tuple[nn.Parameter, ...]], ...] = ()


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def split_parameters(model: MultiTaskModel, tasks: Sequence[str] | None = None) -> ParameterSplit:
    """Split ``model``'s parameters into shared and task-specific ones for ``tasks``.

    Read from the execution plan of ``tasks`` (default: every task): a block node reached by
    two or more of them (run or skipped) has shared parameters; a node reached by one, and
    each task's head, have that task's. Parameters of routes no task of ``tasks`` takes are in
    neither. Cached on the model per task tuple (a rewired model is a new model).
    """
    cache: dict[tuple[str, ...], ParameterSplit] = model.__dict__.setdefault(
        "_parameter_splits", {})
    key = tuple(model.tasks if tasks is None else tasks)
    if key not in cache:
        cache[key] = _split(model, key)
    return cache[key]


def _split(model: MultiTaskModel, tasks: tuple[str, ...]) -> ParameterSplit:
    plan = model.plan(list(tasks))
    space = model.space
    seen: set[int] = set()
    shared: list[nn.Parameter] = []
    specific: dict[str, list[nn.Parameter]] = {t: [] for t in tasks}
    shared_macs = 0.0
    last: tuple[nn.Parameter, ...] = ()
    last_macs = 0.0
    everyone = set(tasks)
    groups: dict[tuple[str, ...], list[nn.Parameter]] = {}
    for level in plan.levels:
        for run in level:
            reached = {t for names in run.input_tasks.values() for t in names}
            if not reached:
                continue
            params = [p for p in _trainable(model.blocks[module_key(run.node)])
                      if id(p) not in seen]
            seen.update(id(p) for p in params)
            macs = (len(run.run_inputs) * space.block_cost(run.index).macs
                    + len(run.skip_inputs) * space.skip_cost(run.index).macs)
            if len(reached) >= 2:
                shared.extend(params)
                groups.setdefault(tuple(t for t in tasks if t in reached), []).extend(params)
                shared_macs += macs
                if reached == everyone:  # levels go deeper: the last one found is the deepest
                    last, last_macs = tuple(params), float(macs)
            else:
                specific[next(iter(reached))].extend(params)
    specs = model.spec_of
    head_macs: dict[str, float] = {}
    for task in tasks:
        head = [p for p in _trainable(model.heads[module_key(task)]) if id(p) not in seen]
        seen.update(id(p) for p in head)
        specific[task].extend(head)
        head_macs[task] = float(space.head_cost(specs[task]).macs)
    return ParameterSplit(
        tasks=tasks,
        shared=tuple(shared),
        specific={t: tuple(ps) for t, ps in specific.items()},
        last_shared=last if len(tasks) >= 2 else (),
        shared_macs=float(shared_macs),
        last_shared_macs=last_macs if len(tasks) >= 2 else 0.0,
        head_macs=head_macs,
        shared_groups=tuple((g, tuple(ps)) for g, ps in groups.items() if ps),
    )


@dataclass
class WeightingStep:
    """What a weighting may know about the step it weighs.

    Attributes:
        epoch: The epoch (from 0).
        step: Optimizer steps taken before this one.
        tasks: The step's active tasks (every task, or one under ``task_sampling="one"``).
        model: The model being trained.
        parallel_chunk_size: Passed to torchjd's Jacobian computation (``None``: all rows in
            one vectorised pass; ``1``: one backward pass per task, what a compiled forward
            and a bf16-autocast one need).
    """

    epoch: int
    step: int
    tasks: list[str]
    model: MultiTaskModel
    parallel_chunk_size: int | None = None

    @property
    def split(self) -> ParameterSplit:
        """The shared / task-specific parameters of :attr:`tasks` (cached on the model)."""
        return split_parameters(self.model, self.tasks)


class Weighting(ABC):
    """Base class of loss weightings and gradient aggregators: set :attr:`name`, implement
    :meth:`combine` (or subclass :class:`GradientWeighting` and implement ``backward``).

    Constructors take keyword arguments only: the hyper-parameters, JSON-ready (they are
    ``TrainConfig.weighting_kwargs`` and what a study records).

    Lifecycle, for each training (one :meth:`mtlsearch.engine.train.Trainer.fit`):

    0. the trainer builds the weighting from ``TrainConfig.weighting`` and
       ``weighting_kwargs`` (``create_weighting(name, **kwargs)``);
    1. ``setup(tasks, device=..., seed=...)`` once, with every task of the model in order:
       create learnable tensors and state here;
    2. ``parameters()``: learnable tensors (uncertainty weighting's log-variances) the trainer
       adds to the model's optimizer, in a group of their own without weight decay; they are
       not the model's (an export holds the model's weights only);
    3. each step, the per-task losses of the active tasks, float32 scalars already multiplied
       by the fixed ``task_weights``: a loss weighting's ``combine(losses, step)`` returns the
       scalar the trainer backpropagates; a gradient weighting's ``backward(losses, step)``
       fills the ``.grad`` of every parameter the tasks reach;
    4. ``end_epoch(epoch)`` after each epoch's last step (DWA rolls its loss history);
    5. ``weights()``, the current per-task weights, is read for the record after training.

    Class attributes say where a weighting can run: ``all_tasks`` (it needs every task's loss
    in every step: one-task sampling is refused), ``distributed`` (it may run under DDP: its
    result depends on nothing rank-local), ``requires`` (importable modules it needs, e.g.
    ``("cvxpy",)``). :meth:`suggest` declares its search space for a joint search.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    gradient: ClassVar[bool] = False
    all_tasks: ClassVar[bool] = False
    distributed: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    #: ``combine`` is the plain sum of the losses (the trainer then logs it as it is).
    plain_sum: ClassVar[bool] = False

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        """Prepare for a training of ``tasks`` on ``device`` (default: remember the tasks)."""
        self.tasks = list(tasks)
        self.device = device

    def parameters(self) -> list[nn.Parameter]:
        """Learnable tensors to train with the model's optimizer (default: none)."""
        return []

    @abstractmethod
    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep) -> Tensor:
        """The scalar to backpropagate for one step's ``{task: loss}``."""

    def end_epoch(self, epoch: int) -> None:
        """Called after the last step of each epoch (default: nothing)."""
        return None

    def weights(self) -> dict[str, float] | None:
        """The current per-task weights, for the record (``None``: not meaningful)."""
        return None

    def extra_macs(self, step: WeightingStep) -> float:
        """Training MACs per sample this weighting adds to a step (extra backward passes),
        in the compute meter's units (:data:`BACKWARD_SHARE`); default none."""
        return 0.0

    @classmethod
    def suggest(cls, trial: Any) -> dict[str, Any]:
        """Sample this weighting's hyper-parameters from an Optuna ``trial`` for a joint search
        (name each parameter ``<name>_<argument>``); default: none, ``{}``."""
        return {}

    @classmethod
    def missing(cls) -> list[str]:
        """The modules of :attr:`requires` that cannot be imported here."""
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class GradientWeighting(Weighting):
    """A weighting that performs the backward pass itself (``gradient = True``).

    :meth:`backward` receives the losses and the step (``step.split`` gives the shared and
    task-specific parameters) and must leave in ``.grad`` the update direction of every
    parameter the active tasks reach. A step has more than one task, always (``all_tasks``):
    one-task sampling has nothing to aggregate. Not run under DDP (the per-task gradients
    would be rank-local).
    """

    gradient: ClassVar[bool] = True
    all_tasks: ClassVar[bool] = True
    distributed: ClassVar[bool] = False

    @abstractmethod
    def backward(self, losses: Mapping[str, Tensor], step: WeightingStep) -> None:
        """Fill ``.grad`` from one step's ``{task: loss}``."""

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep) -> Tensor:
        """The plain sum of the losses (what a gradient weighting's step is logged as)."""
        return sum(losses.values())  # type: ignore[return-value]

    def extra_macs(self, step: WeightingStep) -> float:
        """One backward pass through the shared part per task instead of one in all."""
        return (len(step.tasks) - 1) * BACKWARD_SHARE * step.split.shared_macs
