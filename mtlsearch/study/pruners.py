"""Optuna pruners by name, shown the fixed history a serial run would show them.

A pruner decides from the other trials' intermediate values (the median pruner: the median
Δ_MTL of the complete trials at this epoch). Read from the live study, that depends on which
trials other workers have finished by then, so a parallel search would prune other trials
than a serial one. :class:`HistoryPruner` shows trial ``n``'s pruner what its sampler sees:
the finished trials numbered below ``n - lag`` (:mod:`mtlsearch.study.history`, waiting for
any still running), so pruning, like sampling, depends on the seed and trial numbers only.

Example:
    >>> type(make_pruner("median", epochs=3)).__name__
    'MedianPruner'
    >>> with_history(make_pruner("median", epochs=3), lag=3).lag
    3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from mtlsearch.errors import MTLSearchError
from mtlsearch.study.history import FixedHistory, finished_below

__all__ = ["PRUNERS", "HistoryPruner", "make_pruner", "with_history"]

PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")


def make_pruner(pruner: str | optuna.pruners.BasePruner | None, epochs: int) -> Any:
    """An Optuna pruner by name (``median``, ``percentile``, ``hyperband``, ...), or the given
    pruner object.

    Raises:
        MTLSearchError: an unknown name (the known ones are listed).
    """
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":  # a warm-up epoch: Δ_MTL after one epoch is mostly noise
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if pruner == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    raise MTLSearchError(f"unknown pruner {pruner!r}; known pruners: {', '.join(PRUNERS)}")


class HistoryPruner(optuna.pruners.BasePruner):
    """``inner``, shown trial ``n`` the finished trials numbered below ``n - lag`` only.

    A retried trial is shown its original's history (it redoes the original's work). Writes
    the inner pruner makes (successive halving's rungs on the trial) go to the real storage.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, lag: int,
                 on_wait: Callable[[], None] | None = None):
        self.inner, self.lag, self.on_wait = inner, int(lag), on_wait
        self._cached: tuple[int, list[FrozenTrial]] | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        number = int(trial.system_attrs.get("failed_trial", trial.number))
        limit = number - self.lag
        history = FixedHistory(study._storage, limit,
                               study._storage.get_study_system_attrs(study._study_id),
                               lambda: self._history(study, trial._trial_id, limit))
        view = optuna.Study(study_name=study.study_name, storage=history,
                            sampler=study.sampler, pruner=self.inner)
        return self.inner.prune(view, trial)

    def _history(self, study: optuna.Study, trial_id: int, limit: int) -> list[FrozenTrial]:
        # Once none of them runs, the trials below the limit are final (new ones get higher
        # numbers): read once per trial, not at every epoch.
        if self._cached is None or self._cached[0] != trial_id:
            self._cached = (trial_id, finished_below(study, limit, on_wait=self.on_wait,
                                                     lag=self.lag))
        return self._cached[1]


def with_history(pruner: optuna.pruners.BasePruner, lag: int | None,
                 on_wait: Callable[[], None] | None = None) -> optuna.pruners.BasePruner:
    """``pruner`` shown the fixed history of ``lag``; unchanged when it never prunes or when
    ``lag`` is ``None`` (a sampler instance: the live study, as given)."""
    if lag is None or isinstance(pruner, (optuna.pruners.NopPruner, HistoryPruner)):
        return pruner
    return HistoryPruner(pruner, lag, on_wait=on_wait)
