"""What every tracker shares: the observer hooks, which trial an epoch belongs to, and
registration as a plugin for the length of a ``with`` block."""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any

from mtlsearch.errors import MTLSearchError
from mtlsearch.hookspecs import hookimpl

__all__ = ["TrackedTrial", "Tracker", "active_trackers", "flat_figures", "metric_key", "require"]

log = logging.getLogger(__name__)


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MTLSearchError(
            f"this tracker needs {module.split('.')[0]!r}, which is not installed ({exc}); "
            f"install it with: pip install 'mtlsearch[{extra}]'") from None


_UNSAFE = re.compile(r"[^\w\-./ ]")


def metric_key(*parts: str) -> str:
    """A metric name both MLflow and TensorBoard accept: ``val/task a/acc``."""
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts if str(p))


def flat_figures(result: Mapping[str, Any]) -> dict[str, float]:
    """A finished trial's figures, flat: Δ_MTL (val, test), size, time, per-task Δ and metrics."""
    figures: dict[str, float] = {}
    for key in ("delta_mtl", "delta_mtl_test", "params", "macs", "train_seconds", "epochs_run"):
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            figures[key] = float(value)
    for task, delta in (result.get("per_task_delta") or {}).items():
        figures[metric_key("delta", task)] = float(delta)
    for split, tasks in (result.get("metrics") or {}).items():
        for task, metrics in (tasks or {}).items():
            for name, value in (metrics or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    figures[metric_key(split, task, name)] = float(value)
    return figures


@dataclass
class TrackedTrial:
    """One trial a tracker is following: its study, number and what the tracker opened."""

    study: Any
    number: int
    strategy: str
    params: dict[str, Any]
    handle: Any = None  # the tracker's run, writer...
    epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def study_name(self) -> str:
        return str(getattr(self.study, "study_name", "study"))

    def settings(self) -> dict[str, Any]:
        """What the study searches (``search()``'s recorded settings), ``{}`` if unknown."""
        try:
            return dict(self.study.user_attrs.get("mtlsearch") or {})
        except Exception:  # a study object without storage (a test double)
            return {}


class Tracker:
    """An observer plugin that forwards a search to an experiment tracker.

    Subclasses implement :meth:`start`, :meth:`epoch` and :meth:`end`; this class follows
    which trial each thread runs (``on_epoch_end`` carries no trial) and registers the
    tracker with the plugin manager inside ``with tracker:``.

    Example:
        >>> with TensorBoardTracker("runs"):  # doctest: +SKIP
        ...     search(dataset="synthetic", space="mlp", trials=2)
    """

    #: The name under which ``with tracker:`` registers it (unique per instance).
    kind = "tracker"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._running: dict[int, TrackedTrial] = {}  # thread id -> its trial
        self._registered: str | None = None

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that make this tracker again (for a worker process)."""
        return {}

    def __getstate__(self) -> dict[str, Any]:
        # A worker process gets a fresh tracker with the same settings, not open runs or locks.
        return self.settings()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # --------------------------------------------------------------- for subclasses
    def start(self, trial: TrackedTrial) -> None:
        """A trial starts: open what it logs to (store it in ``trial.handle``)."""

    def epoch(self, trial: TrackedTrial, epoch: int, logs: dict[str, float]) -> None:
        """An epoch of ``trial`` ended with ``logs`` (train loss, validation loss...)."""

    def end(self, trial: TrackedTrial, result: dict[str, Any]) -> None:
        """``trial`` finished: ``result`` has ``state``, ``values`` and its figures."""

    def close(self) -> None:
        """The search is over: flush and release what is still open."""

    # --------------------------------------------------------------- the hooks
    @hookimpl
    def on_trial_start(self, trial: Any, strategy: str, params: dict[str, Any]) -> None:
        number = getattr(trial, "number", None)
        if number is None:  # not an Optuna trial: nothing to file it under
            return
        tracked = TrackedTrial(getattr(trial, "study", None), int(number), strategy, dict(params))
        with self._lock:
            self._running[threading.get_ident()] = tracked
            self.start(tracked)

    @hookimpl
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        with self._lock:
            tracked = self._running.get(threading.get_ident())
            if tracked is None:  # a reference or a strategy's own training: no trial run
                return
            tracked.epochs += 1
            self.epoch(tracked, int(epoch), {k: float(v) for k, v in logs.items()
                                             if k != "epoch" and _is_number(v)})

    @hookimpl
    def on_trial_end(self, trial: Any, strategy: str, result: dict[str, Any]) -> None:
        with self._lock:
            tracked = self._running.pop(threading.get_ident(), None)
            if tracked is None or tracked.number != getattr(trial, "number", None):
                return
            self.end(tracked, result)

    # --------------------------------------------------------------- registration
    def __enter__(self) -> Tracker:
        from mtlsearch.plugin_manager import register_plugin

        self._registered = register_plugin(self, f"{self.kind}-tracker-{id(self):x}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from mtlsearch.plugin_manager import unregister_plugin

        try:
            if self._registered is not None:
                unregister_plugin(self._registered)
        finally:
            self._registered = None
            with self._lock:
                try:
                    self.close()
                finally:
                    self._running.clear()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def iter_params(params: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``params`` with values a tracker can store (``None`` and lists become text)."""
    for key, value in params.items():
        if value is None or isinstance(value, (list, tuple, dict)):
            yield str(key), str(value)
        else:
            yield str(key), value


def active_trackers() -> list[Tracker]:
    """The trackers registered in this process (``with tracker:``), e.g. to hand them to
    worker processes, which register copies of their own (``with tracking(trackers):``)."""
    from mtlsearch.plugin_manager import get_plugin_manager

    return [p for p in get_plugin_manager().get_plugins() if isinstance(p, Tracker)]
