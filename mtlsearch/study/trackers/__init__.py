"""Experiment trackers: observer plugins that log a search to MLflow or TensorBoard.

A tracker implements the observer hooks (``on_trial_start``, ``on_epoch_end``,
``on_trial_end``) and is registered for the length of a ``with`` block, so any search run
inside it is logged; a tracker that fails is logged as a warning, never fails the search.
The trackers need their extra: ``pip install 'mtlsearch[mlflow]'`` or
``'mtlsearch[tensorboard]'``. This subpackage may import what ``study`` may.

Example:
    >>> from mtlsearch.study.trackers import MLflowTracker, tracking
    >>> with MLflowTracker("sqlite:///mlflow.db"):  # doctest: +SKIP
    ...     search(dataset="synthetic", space="mlp", trials=4)
    >>> with tracking(["mlflow:sqlite:///mlflow.db", "tensorboard:runs"]):  # doctest: +SKIP
    ...     search(dataset="synthetic", space="mlp", trials=4)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mtlsearch.errors import MTLSearchError
from mtlsearch.study.trackers.base import Tracker, active_trackers
from mtlsearch.study.trackers.mlflow_tracker import RUN_ID_ATTR, MLflowTracker
from mtlsearch.study.trackers.tensorboard_tracker import TensorBoardTracker

__all__ = ["MLflowTracker", "RUN_ID_ATTR", "TRACKERS", "TensorBoardTracker", "Tracker",
           "active_trackers", "make_tracker", "tracking"]


def _mlflow(arg: str | None, default_dir: Path | None) -> Tracker:
    return MLflowTracker(arg or None)


def _tensorboard(arg: str | None, default_dir: Path | None) -> Tracker:
    if not arg and default_dir is None:
        raise MTLSearchError("the tensorboard tracker needs a folder: tensorboard:DIR")
    return TensorBoardTracker(arg or default_dir / "tensorboard")  # type: ignore[operator]


#: ``NAME[:ARG]`` -> the tracker; ARG is MLflow's tracking URI or TensorBoard's log folder.
TRACKERS: dict[str, Callable[[str | None, Path | None], Tracker]] = {
    "mlflow": _mlflow,
    "tensorboard": _tensorboard,
}


def make_tracker(spec: str, default_dir: str | Path | None = None) -> Tracker:
    """The tracker ``spec`` names: ``mlflow``, ``mlflow:URI``, ``tensorboard[:DIR]``.

    ``default_dir``: where ``tensorboard`` without a folder writes (``DIR/tensorboard``).
    """
    name, _, arg = spec.strip().partition(":")
    if name not in TRACKERS:
        raise MTLSearchError(f"unknown tracker {name!r} in {spec!r}; known: "
                             f"{', '.join(sorted(TRACKERS))} (e.g. mlflow:sqlite:///mlflow.db, "
                             "tensorboard:runs)")
    return TRACKERS[name](arg or None, Path(default_dir) if default_dir is not None else None)


@contextlib.contextmanager
def tracking(specs: Sequence[str | Tracker],
             default_dir: str | Path | None = None) -> Iterator[list[Tracker]]:
    """Register the trackers ``specs`` name (or are) for the length of the block.

    Every tracker is made before any is registered, so a missing extra fails before the
    search starts, with nothing left registered.
    """
    trackers = [s if isinstance(s, Tracker) else make_tracker(s, default_dir) for s in specs]
    with contextlib.ExitStack() as stack:
        for tracker in trackers:
            stack.enter_context(tracker)
        yield trackers
