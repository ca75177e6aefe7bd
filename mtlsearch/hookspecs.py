"""Every hook a mtlsearch plugin can implement, in one module.

Contribution hooks receive a ``register`` callback so one plugin can contribute several
things; observer hooks let loggers and dashboards follow a search without touching the core.
A plugin is any module or object with functions decorated by :data:`hookimpl`::

    from mtlsearch import hookimpl

    @hookimpl
    def register_strategies(register):
        register(MyStrategy)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl"]

hookspec = pluggy.HookspecMarker("mtlsearch")
hookimpl = pluggy.HookimplMarker("mtlsearch")


@hookspec
def register_strategies(register: Callable[..., None]) -> None:
    """Contribute strategies: call ``register(cls, name=None)`` once per Strategy subclass.

    ``name`` defaults to ``cls.name``. Called once, when the registry is first used.
    """


@hookspec
def register_search_spaces(register: Callable[..., None]) -> None:
    """Contribute search spaces: call ``register(name, factory)``.

    ``factory(**kwargs)`` returns a :class:`mtlsearch.SearchSpace`; its keyword arguments
    are what ``create_space(name, **kwargs)`` and exported architectures pass back.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Contribute datasets: call ``register(name, loader)``.

    ``loader(*, seed=0, **kwargs)`` returns a :class:`mtlsearch.DatasetSplits`.
    """


@hookspec
def register_task_kinds(register: Callable[..., None]) -> None:
    """Contribute task kinds (loss, metrics, head): call ``register(kind)`` with a TaskKind."""


@hookspec
def on_trial_start(trial: Any, strategy: str, params: dict[str, Any]) -> None:
    """Observe a trial that is about to train. ``trial`` is the Optuna trial.

    All implementations are called; return values are ignored.
    """


@hookspec
def on_trial_end(trial: Any, strategy: str, result: dict[str, Any]) -> None:
    """Observe a finished trial: ``result`` holds its objectives, metrics or failure reason.

    All implementations are called; return values are ignored.
    """


@hookspec
def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
    """Observe the end of a training epoch: ``logs`` has train loss and validation figures.

    All implementations are called; return values are ignored.
    """
