"""Every hook a mtlsearch plugin can implement, in one module, with the types of its arguments.

Contribution hooks (``register_*``) receive a ``register`` callback so one plugin can
contribute several things; each callback has its own signature, given by a Protocol class
here (:class:`StrategyRegistrar`, :class:`SpaceRegistrar`, :class:`DatasetRegistrar`,
:class:`TaskKindRegistrar`, :class:`WeightingRegistrar`, :class:`CommandRegistrar`) for plugin
authors to annotate with.
Observer hooks (``on_*``) let loggers and dashboards follow a search without touching the
core; an observer that raises is logged as a warning naming the plugin and the hook, and the
search goes on. The core calls hooks only through :class:`mtlsearch.plugin_manager.Hooks`.

A plugin is any module or object with functions decorated by :data:`hookimpl`::

    from mtlsearch import hookimpl
    from mtlsearch.hookspecs import StrategyRegistrar

    @hookimpl
    def register_strategies(register: StrategyRegistrar) -> None:
        register(MyStrategy, tiny={"steps": 2})

Every ``register`` also takes ``"module:attribute"`` in place of the object, with what the
listings show declared beside it; the module is then imported only when the entry is used,
so ``mtlsearch strategies`` (and ``--help``) never import it::

    register("my_plugin.strategy:MyStrategy", name="mine", description="one line",
             dynamic=False, tiny={"steps": 2})

What a lazy registration declares is checked against the object when it is first loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # annotations only: the base modules import no layer
    import argparse

    from mtlsearch.data.dataset import DatasetSplits
    from mtlsearch.engine.weighting.base import Weighting
    from mtlsearch.graph.space import SearchSpace
    from mtlsearch.strategy.base import Strategy
    from mtlsearch.tasks.kinds import TaskKind

__all__ = [
    "hookspec",
    "hookimpl",
    "StrategyRegistrar",
    "SpaceRegistrar",
    "DatasetRegistrar",
    "TaskKindRegistrar",
    "WeightingRegistrar",
    "CommandRegistrar",
    "CONTRIBUTION_HOOKS",
    "OBSERVER_HOOKS",
]

hookspec = pluggy.HookspecMarker("mtlsearch")
hookimpl = pluggy.HookimplMarker("mtlsearch")

#: Hooks that contribute entries to a registry (called once per plugin set).
CONTRIBUTION_HOOKS = (
    "register_strategies",
    "register_search_spaces",
    "register_datasets",
    "register_task_kinds",
    "register_weightings",
    "register_commands",
)
#: Hooks that watch a search; one error policy for all (see :class:`~mtlsearch.plugin_manager.Hooks`).
OBSERVER_HOOKS = ("on_trial_start", "on_trial_end", "on_epoch_end")


# ------------------------------------------------------------------ the register callbacks
class StrategyRegistrar(Protocol):
    """``register`` of :func:`register_strategies`."""

    def __call__(
        self,
        cls: type[Strategy] | str,
        name: str | None = None,
        *,
        default: bool = False,
        baseline: int | None = None,
        tiny: Mapping[str, Any] | None = None,
        description: str | None = None,
        dynamic: bool | None = None,
        quick_settings: Mapping[str, Any] | None = None,
        module: str | None = None,
    ) -> None:
        """Register the Strategy subclass ``cls`` as ``name`` (default ``cls.name``).

        ``cls`` may be ``"module:Class"`` (imported on first use); ``name``, ``description``
        (the class's one line) and ``dynamic`` (its ``is_dynamic()``) are then required, and
        ``quick_settings`` (default ``{}``) and ``module`` (the class's ``__module__``, by
        default the path's module) must match the class too.

        Args:
            default: This strategy is what ``search()`` and ``mtlsearch search`` run when no
                strategy is named (exactly one registered strategy may say so).
            baseline: Rank as ``compare``'s paired baseline: every strategy is compared seed
                by seed with the compared strategy of the lowest rank (``None``: never).
            tiny: Constructor keyword arguments that make one trial cheap, for conformance
                tests (:func:`mtlsearch.testing.check_strategy`).
        """


class SpaceRegistrar(Protocol):
    """``register`` of :func:`register_search_spaces`."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., SearchSpace] | str,
        *,
        tiny: Mapping[str, Any] | None = None,
        description: str | None = None,
        module: str | None = None,
    ) -> None:
        """Register ``factory(**kwargs) -> SearchSpace`` as ``name``.

        ``factory`` may be ``"module:function"`` (imported on first use) with ``description``
        (the first line of its docstring) declared.

        Args:
            tiny: Factory keyword arguments that make the space tiny (a few channels, small
                inputs), for :func:`mtlsearch.testing.check_space`.
        """


class DatasetRegistrar(Protocol):
    """``register`` of :func:`register_datasets`."""

    def __call__(
        self,
        name: str,
        loader: Callable[..., DatasetSplits] | str,
        *,
        tiny: Mapping[str, Any] | None = None,
        description: str | None = None,
        module: str | None = None,
    ) -> None:
        """Register ``loader(*, seed=0, **kwargs) -> DatasetSplits`` as ``name``.

        ``loader`` may be ``"module:function"`` (imported on first use) with ``description``
        (the first line of its docstring) declared.

        Args:
            tiny: Loader keyword arguments that make the dataset tiny (a few dozen samples),
                for :func:`mtlsearch.testing.check_dataset`; ``None`` (the default) when it
                cannot be loaded without files the test machine may not have.
        """


class TaskKindRegistrar(Protocol):
    """``register`` of :func:`register_task_kinds`."""

    def __call__(self, kind: TaskKind, *, tiny: Mapping[str, Any] | None = None) -> None:
        """Register the TaskKind instance ``kind`` under ``kind.name``.

        Args:
            tiny: A tiny example for :func:`mtlsearch.testing.check_task_kind`: ``"example"``
                (required there), ``example(spec, n, generator) -> (labels, perfect_output)``;
                ``"spec"``, TaskSpec keyword arguments (e.g. ``num_classes``); ``"feature_shape"``
                of the head's input (default ``(8,)``); ``"best"``, metric values a perfect
                output scores when not 1 (higher is better) or 0 (lower is better);
                ``"atol"``, the tolerance of that comparison (default ``1e-4``).
        """


class WeightingRegistrar(Protocol):
    """``register`` of :func:`register_weightings`."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Weighting] | str,
        *,
        tiny: Mapping[str, Any] | None = None,
        description: str | None = None,
        gradient: bool | None = None,
        all_tasks: bool | None = None,
        distributed: bool | None = None,
        requires: Sequence[str] | None = None,
        module: str | None = None,
    ) -> None:
        """Register ``factory(**kwargs) -> Weighting`` (usually the Weighting subclass) as
        ``name``.

        ``factory`` may be ``"module:Class"`` (imported on first use) with ``description``
        declared and the class attributes ``gradient``, ``all_tasks``, ``distributed`` and
        ``requires`` when they differ from :class:`~mtlsearch.Weighting`'s defaults.

        Args:
            tiny: Keyword arguments that make one training step with it cheap, for
                :func:`mtlsearch.testing.check_weighting` (e.g. few solver iterations).
        """


class CommandRegistrar(Protocol):
    """``register`` of :func:`register_commands`."""

    def __call__(
        self,
        name: str,
        run: Callable[[Sequence[str]], int],
        *,
        help: str,
        parser: Callable[[], argparse.ArgumentParser] | None = None,
    ) -> None:
        """Add the subcommand ``mtlsearch NAME``.

        Args:
            run: Called with the arguments after ``NAME`` (unparsed: the command parses its
                own); returns the exit status.
            help: One line for ``mtlsearch --help``.
            parser: Builds the command's parser; ``mtlsearch NAME --help`` prints its help
                (with ``prog`` set to ``mtlsearch NAME``). Without one, ``run`` gets ``--help``.
        """


# --------------------------------------------------------------------- contribution hooks
@hookspec
def register_strategies(register: StrategyRegistrar) -> None:
    """Contribute strategies: call ``register(cls, name=None, *, default=False, baseline=None,
    tiny=None)`` once per Strategy subclass.

    ``name`` defaults to ``cls.name``. Called once, when the registry is first used.
    """


@hookspec
def register_search_spaces(register: SpaceRegistrar) -> None:
    """Contribute search spaces: call ``register(name, factory, *, tiny=None)``.

    ``factory(**kwargs)`` returns a :class:`mtlsearch.SearchSpace`; its keyword arguments
    are what ``create_space(name, **kwargs)`` and exported architectures pass back.
    """


@hookspec
def register_datasets(register: DatasetRegistrar) -> None:
    """Contribute datasets: call ``register(name, loader, *, tiny=None)``.

    ``loader(*, seed=0, **kwargs)`` returns a :class:`mtlsearch.DatasetSplits`.
    """


@hookspec
def register_task_kinds(register: TaskKindRegistrar) -> None:
    """Contribute task kinds (loss, metrics, head): call ``register(kind, *, tiny=None)`` with
    a TaskKind instance."""


@hookspec
def register_weightings(register: WeightingRegistrar) -> None:
    """Contribute loss weightings or gradient aggregators: call ``register(name, factory, *,
    tiny=None)``.

    ``factory(**kwargs)`` returns a :class:`mtlsearch.Weighting`; its keyword arguments are
    ``TrainConfig.weighting_kwargs`` (JSON-ready: a study records them).
    """


@hookspec
def register_commands(register: CommandRegistrar) -> None:
    """Contribute subcommands of ``mtlsearch``: call ``register(name, run, *, help, parser=None)``.

    A name of a built-in command, or one registered twice, is an error.
    """


# ------------------------------------------------------------------------- observer hooks
@hookspec
def on_trial_start(trial: Any, strategy: str, params: dict[str, Any]) -> None:
    """Observe a trial that is about to train. ``trial`` is the Optuna trial.

    All implementations are called; return values are ignored; one that raises is logged.
    """


@hookspec
def on_trial_end(trial: Any, strategy: str, result: dict[str, Any]) -> None:
    """Observe a finished trial: ``result`` holds its objectives, metrics or failure reason.

    All implementations are called; return values are ignored; one that raises is logged.
    """


@hookspec
def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
    """Observe the end of a training epoch: ``logs`` has train loss and validation figures.

    All implementations are called; return values are ignored; one that raises is logged.
    """
