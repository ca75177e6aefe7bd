"""An example mtlsearch plugin: the ``split_last`` strategy and the ``inverse_initial_loss``
weighting.

``split_last`` shares every block of the search space but the last ``k``; from block
``num_blocks - k`` on, each task has its own copy. ``k`` is sampled from the Optuna trial,
so a study searches how late the network should branch. It is the classic "shared trunk,
task-specific top layers" design, searched over the split point.

``inverse_initial_loss`` weighs each task by one over its first training loss, so every task
starts at loss 1 whatever its scale (a regression in metres next to a classification).

The module is the plugin: mtlsearch finds it through the ``mtlsearch`` entry point declared
in this package's ``pyproject.toml`` and calls its :func:`register_strategies` and
:func:`register_weightings` hooks.

Example (once the package is installed, ``mtlsearch.create_strategy("split_last")`` gives
the same):
    >>> SplitLast(max_split=2)
    SplitLast(name='split_last')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from mtlsearch import Proposal, Strategy, Weighting, hookimpl
from mtlsearch.hookspecs import StrategyRegistrar, WeightingRegistrar

__all__ = [
    "InverseInitialLoss",
    "SplitLast",
    "register_strategies",
    "register_weightings",
    "split_last_partitions",
]

__version__ = "0.1.0"


def split_last_partitions(
    tasks: list[str], num_blocks: int, split: int
) -> list[list[list[str]]]:
    """One task partition per block: all tasks together, then one group per task.

    Args:
        tasks: Task names.
        num_blocks: Blocks in the search space.
        split: How many of the last blocks are task-specific (``0..num_blocks``).

    Example:
        >>> split_last_partitions(["a", "b"], 3, 1)
        [[['a', 'b']], [['a', 'b']], [['a'], ['b']]]
    """
    if not 0 <= split <= num_blocks:
        raise ValueError(f"split must be in 0..{num_blocks}, got {split}")
    shared = [[list(tasks)]]
    separate = [[t] for t in tasks]
    return shared * (num_blocks - split) + [separate] * split


class SplitLast(Strategy):
    """Share all blocks but the last ``k``; ``k`` is sampled from the trial.

    The trial parameter ``split`` takes values ``1..max_split`` (at most ``num_blocks - 1``,
    so the first block is always shared: ``k = 0`` would be ``hard_sharing`` and
    ``k = num_blocks`` ``single_task``, both built in already).

    Args:
        max_split: Largest ``k`` to try (default: ``num_blocks - 1``).
    """

    name = "split_last"
    description = "shared trunk, task-specific last k blocks; k is searched"

    def __init__(self, *, max_split: int | None = None):
        if max_split is not None and max_split < 1:
            raise ValueError(f"max_split must be at least 1, got {max_split}")
        self.max_split = max_split

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        """Sample ``split`` and propose the graph that branches ``split`` blocks from the end."""
        num_blocks = ctx.space.num_blocks
        upper = max(1, num_blocks - 1)
        if self.max_split is not None:
            upper = min(upper, self.max_split)
        split = trial.suggest_int("split", 1, upper)
        partitions = split_last_partitions(ctx.task_names, num_blocks, split)
        graph = ctx.new_graph("partitions", partitions=partitions)
        return Proposal(graph, info={"split": split, "shared_blocks": num_blocks - split})


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    """Contribute :class:`SplitLast` (registered under its ``name``, ``split_last``).

    ``tiny`` is what mtlsearch's conformance checks build it with (``check_strategy(
    "split_last")``): one split to try keeps a test trial cheap.
    """
    register(SplitLast, tiny={"max_split": 1})


class InverseInitialLoss(Weighting):
    """Fixed weights ``1 / L_t(0)``: each task's first training loss fixes its weight.

    The loss is ``Σ_t L_t / L_t(0)``, so every task starts at 1. A task's weight is set the
    first time it is in a step (with one-task sampling, its first batch). The first losses
    are each rank's own, so it does not say ``distributed = True``.

    Args:
        floor: Smallest first loss to divide by (a task that starts solved is not blown up).

    Example:
        >>> import torch
        >>> w = InverseInitialLoss()
        >>> w.setup(["a", "b"], device=torch.device("cpu"))
        >>> float(w.combine({"a": torch.tensor(2.0), "b": torch.tensor(0.5)}, None))
        2.0
        >>> float(w.combine({"a": torch.tensor(1.0), "b": torch.tensor(0.5)}, None))
        1.5
    """

    name = "inverse_initial_loss"
    description = "fixed weights 1 / L_t(0): every task starts at loss 1"

    def __init__(self, *, floor: float = 1e-3):
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor}")
        self.floor = float(floor)

    def setup(self, tasks: Sequence[str], *, device: Any, seed: int = 0) -> None:
        """Forget the first losses of an earlier training."""
        super().setup(tasks, device=device, seed=seed)
        self.initial: dict[str, float] = {}

    def combine(self, losses: Mapping[str, Tensor], step: Any) -> Tensor:
        """``Σ_t L_t / L_t(0)`` over the step's tasks."""
        for task, loss in losses.items():
            if task not in self.initial:  # one host sync per task, on its first step only
                self.initial[task] = max(float(loss.detach()), self.floor)
        return sum(loss / self.initial[task] for task, loss in losses.items())

    def weights(self) -> dict[str, float]:
        """``1 / L_t(0)`` of the tasks seen so far."""
        return {t: 1.0 / v for t, v in self.initial.items()}


@hookimpl
def register_weightings(register: WeightingRegistrar) -> None:
    """Contribute :class:`InverseInitialLoss` as ``inverse_initial_loss``.

    ``tiny`` is what ``check_weighting("inverse_initial_loss")`` builds it with.
    """
    register("inverse_initial_loss", InverseInitialLoss, tiny={"floor": 0.01})
