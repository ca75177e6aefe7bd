"""The fixed history a trial's sampler and pruner see: the finished trials numbered below a
limit, whatever other workers are doing.

Trial ``n`` is shown the trials numbered below ``n - lag`` once they have all finished
(:func:`finished_below` waits for those still running in other workers), through a storage
that forwards everything else to the real one (:class:`FixedHistory`). That is what makes a
parallel search's trials those of a serial one (:mod:`mtlsearch.study.samplers`,
:mod:`mtlsearch.study.pruners`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["FixedHistory", "finished_below"]

log = logging.getLogger(__name__)


def finished_below(study: optuna.Study, limit: int, *, wait: bool = True,
                   on_wait: Callable[[], None] | None = None, lag: int = 0) -> list[FrozenTrial]:
    """The finished trials of ``study`` numbered below ``limit``; with ``wait``, first waits
    while one of them still runs (``on_wait`` is called about every 5 s meanwhile: it fails
    the trials of dead workers, which ends the wait). ``lag``: for the log line only."""
    last_check = time.monotonic()
    warned = False
    while True:
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        below = [t for t in trials if t.number < limit]
        running = [t.number for t in below if t.state == TrialState.RUNNING]
        if not running or not wait:
            return [t for t in below if t.state.is_finished()]
        if not warned:
            log.debug("trial history waits for trials %s (lag %d)", running, lag)
            warned = True
        time.sleep(0.2)
        if on_wait is not None and time.monotonic() - last_check > 5:
            on_wait()  # a dead worker's trial is failed (finished) and queued again
            last_check = time.monotonic()


class FixedHistory(optuna.storages.BaseStorage):
    """A storage that shows one trial's sampler (or pruner) a fixed history of the real study.

    Reads of the study's trials return the finished trials numbered below ``limit`` (waiting
    for those still running); study system attributes written by the sampler (NSGA-II's
    population cache, QMC's counter) stay local, so no trial sees another's cache and every
    trial computes from its own history. Everything else goes to the real storage.
    """

    def __init__(self, real: Any, limit: int, study_attrs: Mapping[str, Any],
                 wait: Callable[[], list[FrozenTrial]]):
        self._real, self._limit, self._wait = real, limit, wait
        self._local: dict[str, Any] = dict(study_attrs)
        self._trials: list[FrozenTrial] | None = None

    def __getattr__(self, name: str) -> Any:  # everything not overridden: the real storage
        return getattr(self._real, name)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        if self._trials is None:
            self._trials = self._wait()
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return [t for t in trials] if not deepcopy else [_copy(t) for t in trials]

    def get_n_trials(self, study_id: int, state: Any = None) -> int:
        states = None if state is None else (state if isinstance(state, tuple) else (state,))
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return {**self._real.get_study_system_attrs(study_id), **self._local}

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._local[key] = value

    # The abstract methods, all forwarded (BaseStorage declares them abstract).
    def create_new_study(self, *a: Any, **k: Any) -> Any:
        return self._real.create_new_study(*a, **k)

    def delete_study(self, *a: Any, **k: Any) -> Any:
        return self._real.delete_study(*a, **k)

    def set_study_user_attr(self, *a: Any, **k: Any) -> Any:
        return self._real.set_study_user_attr(*a, **k)

    def get_study_id_from_name(self, *a: Any, **k: Any) -> Any:
        return self._real.get_study_id_from_name(*a, **k)

    def get_study_name_from_id(self, *a: Any, **k: Any) -> Any:
        return self._real.get_study_name_from_id(*a, **k)

    def get_study_directions(self, *a: Any, **k: Any) -> Any:
        return self._real.get_study_directions(*a, **k)

    def get_study_user_attrs(self, *a: Any, **k: Any) -> Any:
        return self._real.get_study_user_attrs(*a, **k)

    def get_all_studies(self, *a: Any, **k: Any) -> Any:
        return self._real.get_all_studies(*a, **k)

    def create_new_trial(self, *a: Any, **k: Any) -> Any:
        return self._real.create_new_trial(*a, **k)

    def set_trial_param(self, *a: Any, **k: Any) -> Any:
        return self._real.set_trial_param(*a, **k)

    def get_trial_id_from_study_id_trial_number(self, *a: Any, **k: Any) -> Any:
        return self._real.get_trial_id_from_study_id_trial_number(*a, **k)

    def set_trial_state_values(self, *a: Any, **k: Any) -> Any:
        return self._real.set_trial_state_values(*a, **k)

    def set_trial_intermediate_value(self, *a: Any, **k: Any) -> Any:
        return self._real.set_trial_intermediate_value(*a, **k)

    def set_trial_user_attr(self, *a: Any, **k: Any) -> Any:
        return self._real.set_trial_user_attr(*a, **k)

    def set_trial_system_attr(self, *a: Any, **k: Any) -> Any:
        return self._real.set_trial_system_attr(*a, **k)

    def get_trial(self, *a: Any, **k: Any) -> Any:
        return self._real.get_trial(*a, **k)



def _copy(t: FrozenTrial) -> FrozenTrial:
    return copy.deepcopy(t)
