"""The strategy interface: how a search strategy plugs into mtlsearch.

A strategy enters at exactly one place: for each Optuna trial it samples its hyper-parameters
and proposes a :class:`Proposal` (a sharing graph, optionally with trained weights and training
overrides). Materializing, training, scoring and exporting are shared by every strategy. The
lifecycle is in :class:`Strategy`'s docstring.

Example:
    >>> from mtlsearch.graph.sharing import SharingGraph
    >>> class Chain(Strategy):
    ...     name = "chain"
    ...     def propose(self, trial, ctx):
    ...         return Proposal(SharingGraph.hard_sharing(ctx.task_names, ctx.space.num_blocks))
    >>> Chain().is_dynamic()
    False
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from mtlsearch.graph.sharing import SharingGraph

if TYPE_CHECKING:
    from mtlsearch.engine.train import EpochState, StepState
    from mtlsearch.strategy.context import SearchContext

__all__ = ["Strategy", "Proposal"]


@dataclass
class Proposal:
    """A strategy's answer for one trial.

    Attributes:
        graph: The proposed sharing graph.
        state_dict: Trained weights for the materialized graph, or ``None`` to train it.
        train_overrides: :class:`~mtlsearch.engine.train.TrainConfig` fields to change for this
            trial, e.g. ``{"task_sampling": "one"}``.
        info: JSON-ready facts recorded in the trial's user attributes.
    """

    graph: SharingGraph
    state_dict: dict[str, Tensor] | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class of search strategies: set :attr:`name`, implement :meth:`propose`.

    The abstract surface is one method; everything else has a default. Constructors take
    keyword-only arguments (``create_strategy(name, **kwargs)`` passes them).

    Lifecycle, for each study:

    0. Once per study, :meth:`initial_params` may list parameter sets to try first (they are
       enqueued in the study, so a search of a handful of trials covers distinct candidates).

    Then for each trial:

    1. :meth:`propose` samples hyper-parameters with ``trial.suggest_*`` and returns a
       :class:`Proposal`. Strategies that need their own training (a policy phase, an
       affinity stage) call ``ctx.train(...)`` and keep expensive results in ``ctx.cache``.
    2. If the proposal has no trained weights, the engine materializes and trains the graph
       with the study's budget and the proposal's ``train_overrides``. During that training
       :meth:`on_backward` runs after each backward pass (e.g. to capture gradients) and
       :meth:`on_epoch_end` after each epoch; returning a new graph from it changes the
       architecture (the trainer keeps the weights and optimizer state of what remains).
       Overriding either makes the strategy dynamic (:meth:`is_dynamic`).
    3. The engine evaluates the model, computes Δ_MTL against the single-task reference, and
       records everything in the trial.

    Class attributes:
        name: The registry key (``register(cls)`` uses it).
        description: One line for ``mtlsearch strategies``.
        quick_settings: Constructor arguments ``compare`` passes unless told otherwise, for a
            strategy whose full method trains many networks per trial (default: none).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    quick_settings: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def propose(self, trial: Any, ctx: SearchContext) -> Proposal:
        """Sample hyper-parameters from the Optuna ``trial`` and propose an architecture."""

    def initial_params(self, ctx: SearchContext) -> list[dict[str, Any]]:
        """Parameter sets the study tries first, in this order, before its sampler takes over.

        A handful of trials is below any sampler's random start-up; a strategy that knows its
        distinct candidates (the trees its α range produces, a few spread-out σ) lists them
        here so that the first trials cover them. Each dict maps the names the strategy
        passes to ``trial.suggest_*`` to values inside their ranges. Default: none.
        """
        return []

    def on_epoch_end(self, state: EpochState) -> SharingGraph | None:
        """Called after every training epoch; return a new graph to change the architecture."""
        return None

    def on_backward(self, state: StepState) -> None:  # noqa: B027 (optional, empty on purpose)
        """Called after every backward pass, before the optimizer step."""

    @classmethod
    def is_dynamic(cls) -> bool:
        """Whether this strategy changes the graph or watches training."""
        return (
            cls.on_epoch_end is not Strategy.on_epoch_end
            or cls.on_backward is not Strategy.on_backward
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
