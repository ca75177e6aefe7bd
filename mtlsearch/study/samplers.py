"""Optuna samplers by name, seeded per trial, and study callbacks from ``module:object`` paths.

A named sampler (``tpe``, ``nsga2``, ``random``, ...) is rebuilt for every trial with a seed
derived from ``(seed, trial number)`` and shown a fixed *history*: trial ``n`` conditions on the
trials numbered below ``n - lag`` only (``lag`` :data:`DEFAULT_LAG`), waiting for any of them
still running in another worker. So a trial's parameters depend on the seed, its number and
the trials before it, never on how many workers ran the study or in which order they finished:
a parallel search gives the trials of a serial one. An Optuna sampler *instance* is used as
given (its own seed, the live study): reproducible serially when it is seeded, not across
workers.

Example:
    >>> sampler = make_sampler("random", seed=0)
    >>> type(sampler.inner(3)).__name__
    'RandomSampler'
    >>> sampler_names()[:3]
    ['tpe', 'nsga2', 'nsga3']
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from mtlsearch.errors import MTLSearchError
from mtlsearch.study.history import FixedHistory, finished_below
from mtlsearch.study.trials import derive_seed

__all__ = ["DEFAULT_LAG", "LEGACY_SAMPLER", "SAMPLERS", "TrialSeededSampler", "default_sampler", "load_callback",
           "make_sampler", "sampler_names", "sampler_setting"]

#: Trials just before trial ``n`` that its sampler does not see (they may still be running in
#: other workers): up to ``DEFAULT_LAG + 1`` workers seldom wait for one another.
DEFAULT_LAG = 3
#: What a study made before samplers could be chosen ran: seeded TPE that saw every finished
#: trial (lag 0). Resuming such a study without naming a sampler keeps running it.
LEGACY_SAMPLER = {"name": "tpe", "kwargs": {}, "lag": 0}


def _samplers() -> dict[str, Callable[..., optuna.samplers.BaseSampler]]:
    s = optuna.samplers
    return {
        "tpe": s.TPESampler,            # Optuna's default; multi-objective as MOTPE
        "nsga2": s.NSGAIISampler,       # genetic, multi-objective; random first generation
        "nsga3": s.NSGAIIISampler,      # NSGA-II with reference points (3+ objectives)
        "random": s.RandomSampler,
        "gp": s.GPSampler,              # Gaussian process (BoTorch-free, needs scipy)
        "qmc": s.QMCSampler,            # quasi-random Sobol points, seeded once per study
    }


#: The sampler names :func:`make_sampler` knows (``cmaes`` is left out: Optuna's CmaEsSampler
#: keeps its state pickled in the storage, and mtlsearch unpickles nothing it reads back).
SAMPLERS = tuple(_samplers())


def sampler_names() -> list[str]:
    """The known sampler names, in :data:`SAMPLERS` order."""
    return list(SAMPLERS)


def default_sampler(n_objectives: int) -> str:
    """TPE for one objective and for several (multi-objective TPE).

    NSGA-II's first generation (50 trials) is random search, longer than most mtlsearch
    budgets; TPE models the history after 10 trials whatever the objective count. Keeping TPE
    also keeps older studies' trials unchanged.
    """
    return "tpe"


def sampler_setting(sampler: str | optuna.samplers.BaseSampler | None,
                    kwargs: Mapping[str, Any] | None, n_objectives: int,
                    lag: int | None) -> dict[str, Any]:
    """What a study records about its sampler: ``{"name", "kwargs", "lag"}``."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        if kwargs:
            raise MTLSearchError("sampler_kwargs go with a sampler name, not an instance")
        return {"name": f"instance:{type(sampler).__name__}", "kwargs": {}, "lag": None}
    name = default_sampler(n_objectives) if sampler is None else str(sampler).lower()
    if name not in SAMPLERS:
        raise MTLSearchError(f"unknown sampler {sampler!r}; known samplers: "
                             f"{', '.join(SAMPLERS)} (or pass an Optuna sampler instance)")
    lag = DEFAULT_LAG if lag is None else int(lag)
    if lag < 0:
        raise MTLSearchError(f"the sampler lag must be 0 or more, got {lag}")
    kwargs = dict(kwargs or {})
    if "seed" in kwargs:
        raise MTLSearchError("the sampler's seed comes from the search's seed; leave out seed=")
    try:
        _build(name, 0, kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"bad arguments for sampler {name!r}: {exc}") from None
    return {"name": name, "kwargs": kwargs, "lag": lag}


def make_sampler(sampler: str | optuna.samplers.BaseSampler | None = None, *, seed: int = 0,
                 kwargs: Mapping[str, Any] | None = None, lag: int | None = None,
                 n_objectives: int = 1,
                 on_wait: Callable[[], None] | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler: a name seeded per trial (:class:`TrialSeededSampler`), or the
    given Optuna sampler instance unchanged.

    Raises:
        MTLSearchError: an unknown name (the known ones are listed) or bad ``kwargs``.
    """
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    setting = sampler_setting(sampler, kwargs, n_objectives, lag)
    return TrialSeededSampler(setting["name"], seed, setting["kwargs"], setting["lag"],
                              on_wait=on_wait)


def _build(name: str, seed: int, kwargs: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # QMC and NSGA-III are "experimental": said once in docs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _samplers()[name](seed=seed, **kwargs)


class _QmcAttrs(dict):
    """Study system attributes where QMC's shared counter reads ``number - 1``: trial ``n``
    takes point ``n`` of the scrambled sequence, whatever order the workers ask in."""

    def __init__(self, base: Mapping[str, Any], number: int):
        super().__init__(base)
        self._number = number

    def get(self, key: Any, default: Any = None) -> Any:
        if isinstance(key, str) and key.startswith("qmc:"):
            return self._number - 1
        return super().get(key, default)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A named Optuna sampler whose randomness and history depend on the trial number only.

    For trial ``n`` (a retried trial: its original's number) the inner sampler is built with
    the seed ``derive_seed(seed, "sampler", n)`` (QMC: one seed per study, point ``n``) and
    sees the finished trials numbered below ``n - lag``; when one of them is still running in
    another worker, the first read of the history waits for it (``on_wait`` is called about
    every 5 s meanwhile, to fail the trials of dead workers). Samplers in their random start-up
    (TPE, GP: fewer than ``n_startup_trials`` trials in any such history) never wait.

    Args:
        name: A name of :data:`SAMPLERS`; kwargs: its constructor arguments (no ``seed``).
        seed: The search's seed; lag: see :data:`DEFAULT_LAG`.
    """

    def __init__(self, name: str, seed: int, kwargs: Mapping[str, Any] | None = None,
                 lag: int = DEFAULT_LAG, *, on_wait: Callable[[], None] | None = None):
        self.name, self._seed, self._kwargs, self.lag = name, seed, dict(kwargs or {}), lag
        self.on_wait = on_wait
        self._local = threading.local()
        self._fallback = self.inner(0)

    def inner(self, number: int) -> optuna.samplers.BaseSampler:
        """A fresh inner sampler for trial ``number``."""
        if self.name == "qmc":  # one sequence per study; what it samples alone: per trial
            alone = optuna.samplers.RandomSampler(seed=derive_seed(self._seed, "sampler", number))
            return _build(self.name, derive_seed(self._seed, "sampler"),
                          {"independent_sampler": alone, **self._kwargs})
        return _build(self.name, derive_seed(self._seed, "sampler", number), self._kwargs)

    # ----------------------------------------------------------------- per trial
    def _state(self, study: optuna.Study, trial: FrozenTrial) -> tuple[Any, optuna.Study]:
        """The inner sampler and the history study of ``trial`` (made once per trial)."""
        cache = self._cache()
        if trial._trial_id in cache:
            return cache[trial._trial_id]
        number = int(trial.system_attrs.get("failed_trial", trial.number))
        inner = self.inner(number)
        limit = number - self.lag
        base = study._storage.get_study_system_attrs(study._study_id)
        attrs = _QmcAttrs(base, number) if self.name == "qmc" else base
        startup = getattr(inner, "_n_startup_trials", None)
        no_wait = isinstance(startup, int) and limit < startup and self.name in ("tpe", "gp")
        history = FixedHistory(study._storage, limit, attrs,
                           lambda: self._history(study, limit, wait=not no_wait))
        if self.name == "qmc":
            history.get_study_system_attrs = lambda study_id: attrs  # type: ignore[method-assign]
        # The inner pruner: TPE filters its history by Hyperband's brackets when it sees one.
        view = optuna.Study(study_name=study.study_name, storage=history, sampler=inner,
                            pruner=getattr(study.pruner, "inner", study.pruner))
        cache[trial._trial_id] = (inner, view)
        return inner, view

    def _cache(self) -> dict[int, tuple[Any, optuna.Study]]:
        # Per trial id, not "the current trial": failing a dead worker's trial while this
        # one's history is awaited tells that trial, and must not reset this one's sampler.
        if not hasattr(self._local, "trials"):
            self._local.trials = {}
        return self._local.trials

    def _history(self, study: optuna.Study, limit: int, *, wait: bool) -> list[FrozenTrial]:
        return finished_below(study, limit, wait=wait, on_wait=self.on_wait, lag=self.lag)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._cache().pop(trial._trial_id, None)
        inner, view = self._state(study, trial)
        inner.before_trial(view, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        inner, view = self._state(study, trial)
        return inner.infer_relative_search_space(view, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        inner, view = self._state(study, trial)
        return inner.sample_relative(view, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        inner, view = self._state(study, trial)
        return inner.sample_independent(view, trial, name, dist)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        inner, view = self._state(study, trial)
        inner.after_trial(view, trial, state, values)
        self._cache().pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()


# --------------------------------------------------------------------------- callbacks
def load_callback(path: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna study callback from ``"module:object"`` (a callable, or a class made with no
    arguments), e.g. ``"mypkg.callbacks:StopWhenGood"``.

    Raises:
        MTLSearchError: a malformed path, a module or object that does not exist, or an
            object that is not callable.
    """
    module_name, colon, attr = str(path).partition(":")
    if not colon or not module_name or not attr:
        raise MTLSearchError(f"a callback is MODULE:OBJECT (e.g. mypkg.callbacks:stop_early), "
                             f"got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MTLSearchError(f"callback {path!r}: cannot import module {module_name!r} ({exc}); "
                             "is it installed or on PYTHONPATH?") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise MTLSearchError(f"callback {path!r}: module {module_name!r} has no {attr!r}; "
                                 f"it has: {', '.join(known) or '(nothing public)'}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise MTLSearchError(f"callback {path!r}: the class must be made with no arguments "
                                 f"({exc}); pass a module-level instance instead") from None
    if not callable(obj):
        raise MTLSearchError(f"callback {path!r} is a {type(obj).__name__}, not a callable "
                             "(study, frozen_trial)")
    return obj
