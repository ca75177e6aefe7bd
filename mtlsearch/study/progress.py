"""Live progress of a search: trials done, the running trial's epochs, best Δ_MTL, times.

On a terminal a `rich` display refreshes in place; elsewhere (CI, a log file) one short line
is printed per finished trial. Nothing is drawn per batch: the display is fed once per epoch
and once per trial. Progress goes to stderr so stdout keeps only results.

Example:
    >>> with SearchProgress(3, enabled=False) as p:
    ...     p.trial_started(0, epochs=2)
    ...     p.epoch_end(0, 1.5)
    ...     p.trial_finished(0, "COMPLETE", delta=1.5, params=1000, seconds=0.1)
    >>> p.best
    1.5
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["SearchProgress", "configure_logging", "format_seconds", "quiet_optuna"]

log = logging.getLogger("mtlsearch.study.progress")


def format_seconds(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (notebooks and test runners
    replace it; a handler that kept the first one would write into a closed stream)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str | int = "WARNING") -> None:
    """Log to stderr at ``level``; Optuna's own messages only from DEBUG up (they repeat ours).

    Example:
        >>> configure_logging("INFO")
    """
    import optuna

    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            from mtlsearch.errors import MTLSearchError

            raise MTLSearchError(
                f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        level = numeric
    root = logging.getLogger("mtlsearch")
    root.setLevel(level)
    if not any(getattr(h, "_mtlsearch", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._mtlsearch = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    optuna.logging.set_verbosity(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


@contextlib.contextmanager
def quiet_optuna(enabled: bool = True) -> Iterator[None]:
    """Silence Optuna's INFO lines (they would tear through the live display) while inside."""
    import optuna

    before = optuna.logging.get_verbosity()
    if enabled and logging.NOTSET < before < logging.WARNING:
        optuna.logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class SearchProgress:
    """Progress of one study, fed by the search loop.

    Args:
        total: The study's trial budget.
        done: Trials already finished (a resumed study).
        enabled: ``False`` shows nothing (``--quiet``).
        best: Best validation Δ_MTL already in the study.
        title: Shown before the bars (the study name).
        console: Where to draw (default: stderr).
    """

    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        enabled: bool = True,
        best: float | None = None,
        title: str = "search",
        console: Console | None = None,
    ):
        self.total, self.done, self.best, self.title = total, done, best, title
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._trials_task: Any = None
        self._epochs_task: Any = None
        self._start = time.monotonic()
        self._ran = 0  # trials finished by this process, for the time estimate
        self._first_trial: float | None = None  # pace counts from here, not from setup

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SearchProgress:
        self._start = time.monotonic()
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self.console,
                refresh_per_second=4,
            )
            self._trials_task = self._progress.add_task(
                self.title, total=self.total, completed=self.done, info=self._info()
            )
            self._epochs_task = self._progress.add_task("  epochs", total=1, info="", visible=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextlib.contextmanager
    def held(self) -> Iterator[list[threading.Thread]]:
        """Hold the live display still while inside (its refresh thread waits, writing
        nothing), yielding that thread: what a fork of this process needs (no thread may be
        half-way through a write when the child is made)."""
        live = getattr(self._progress, "live", None)
        thread = getattr(live, "_refresh_thread", None)
        lock = getattr(live, "_lock", None)
        if thread is None or lock is None:
            yield []
            return
        with lock:
            yield [thread]

    # ------------------------------------------------------------------ events
    def status(self, text: str) -> None:
        """Say what is happening outside trials (e.g. training the single-task reference)."""
        log.info("%s: %s", self.title, text)
        if self._progress is not None:
            self._progress.update(self._epochs_task, description=f"  {text}", visible=True,
                                  total=None, completed=0, info="")

    def message(self, text: str) -> None:
        """A line about the whole search (why it stops early...), shown unless disabled."""
        log.info("%s: %s", self.title, text)
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        elif self.enabled:
            self.console.print(f"{self.title}: {text}", highlight=False, markup=False,
                               soft_wrap=True)

    def trial_started(self, number: int, epochs: int) -> None:
        """A trial starts training for ``epochs`` epochs."""
        log.debug("trial %d started (%d epochs)", number, epochs)
        if self._first_trial is None:
            self._first_trial = time.monotonic()
        if self._progress is not None:
            self._progress.update(self._epochs_task, description=f"  trial {number}",
                                  total=max(epochs, 1), completed=0, visible=True, info="")

    def epoch_end(self, epoch: int, delta: float | None = None) -> None:
        """An epoch of the running trial ended; ``delta`` is its validation Δ_MTL."""
        if self._progress is not None:
            info = f"Δ_MTL {delta:+.2f}%" if delta is not None else ""
            self._progress.update(self._epochs_task, completed=epoch + 1, info=info)

    def trial_finished(
        self,
        number: int,
        state: str,
        *,
        delta: float | None = None,
        delta_test: float | None = None,
        params: int | None = None,
        seconds: float | None = None,
        reason: str | None = None,
        counted: bool = True,
    ) -> None:
        """A trial finished (``COMPLETE``, ``PRUNED`` or ``FAIL``).

        ``counted=False``: it was interrupted and queued again, so it does not use up the
        budget (the line says so; trials done stay as they were).
        """
        self.done += counted
        self._ran += counted
        if delta is not None and state == "COMPLETE" and (self.best is None or delta > self.best):
            self.best = delta
        if state == "COMPLETE":
            what = f"Δ_MTL {delta:+.2f}%" + (f" (test {delta_test:+.2f}%)" if delta_test is not None else "")
            what += f", {params:,} params" if params is not None else ""
        else:
            what = f"{state.lower()}: {reason}" if reason else state.lower()
        if not counted:
            what += " (queued again: it does not count)"
        line = (f"trial {number} ({self.done}/{self.total}) {what}, {format_seconds(seconds)}; "
                f"{self._info()}")
        log.info("%s: %s", self.title, line)
        if self._progress is not None:
            self._progress.update(self._trials_task, completed=min(self.done, self.total),
                                  info=self._info())
            self._progress.update(self._epochs_task, visible=False)
            self._progress.console.print(line, highlight=False, markup=False)
        elif self.enabled:
            self.console.print(f"{self.title}: {line}", highlight=False, markup=False, soft_wrap=True)

    # ------------------------------------------------------------------ text
    def remaining_seconds(self) -> float | None:
        """Estimated time to the budget from this process's own pace."""
        if self._ran == 0 or self._first_trial is None:
            return None
        pace = (time.monotonic() - self._first_trial) / self._ran
        return pace * max(self.total - self.done, 0)

    def _info(self) -> str:
        best = f"best Δ_MTL {self.best:+.2f}%" if self.best is not None else "best Δ_MTL -"
        elapsed = format_seconds(time.monotonic() - self._start)
        return f"{best}, elapsed {elapsed}, left ~{format_seconds(self.remaining_seconds())}"
