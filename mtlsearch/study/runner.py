"""Optuna studies over sharing architectures: search, resume, inspect and export trials.

A study is what one :func:`search` call (or several workers) fills: each trial asks the
strategy for a proposal, trains and scores it, and records everything needed to rebuild it in
the trial's user attributes. The budget is study-wide, so calling :func:`search` again with
the same arguments resumes an interrupted study and several workers on one storage stop
together at ``trials``.

Example:
    >>> from mtlsearch.engine.train import TrainConfig
    >>> result = search(dataset="synthetic", space="mlp", trials=2, progress=False,
    ...                 dataset_kwargs={"n_tasks": 3, "n_samples": 300},
    ...                 budget=TrainConfig(epochs=1))  # doctest: +SKIP
    >>> print(result.describe())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.data.dataset import DatasetSplits
from mtlsearch.engine.compute import Compute, Meter, compute_unit, meter, parse_compute
from mtlsearch.engine.distributed import DistributedAbort, torchrun_session
from mtlsearch.engine.train import TrainConfig, seed_everything
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.space import SearchSpace
from mtlsearch.plugin_manager import get_hooks
from mtlsearch.registry import create_space, create_strategy, default_strategy, load_dataset
from mtlsearch.strategy.base import Strategy
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import TrialResult, evaluate_proposal
from mtlsearch.study.artifacts import open_artifact_store
from mtlsearch.study.pruners import PRUNERS, make_pruner, with_history
from mtlsearch.study.samplers import (
    LEGACY_SAMPLER,
    load_callback,
    make_sampler,
    sampler_setting,
)
from mtlsearch.study.storage import (
    LEASE_ATTR,
    WORKER_ATTR,
    Lease,
    OutOfSpaceError,
    budget_lock,
    check_free_space,
    fail_stale_trials,
    free_bytes,
    free_space_floor,
    is_out_of_space,
    open_storage,
    retried_numbers,
    retry_trial,
    storage_errors,
    storage_folder,
    uses_lease,
    worker_identity,
)
from mtlsearch.study.trials import (
    OBJECTIVES,
    STUDY_ATTR,
    best_trial,
    best_value,
    derive_seed,
    describe,
    front_trials,
    pareto_front,
    save_weights,
    trials_table,
    weights_path,
)
from mtlsearch.study.weighting_search import requested_weightings, sample_weighting
from mtlsearch.study.worker_count import AUTO, WorkerPlan, parse_workers, plan_workers

__all__ = ["PRUNERS", "OutOfSpaceError", "SearchResult", "make_pruner", "search",
           "spent_compute"]

log = logging.getLogger(__name__)

_COMPARED = ("strategy", "strategy_kwargs", "dataset", "dataset_kwargs", "data_fingerprint",
             "space", "space_kwargs", "budget", "seed", "objectives", "weighting", "sampler",
             "preprocessing")


# --------------------------------------------------------------------------- storage


# --------------------------------------------------------------------------- helpers
_CHARGED_ATTR = "mtlsearch_compute_charged"  # cached items already charged to this study
_INITIAL_ATTR = "mtlsearch_initial_params"  # the strategy's initial_params were queued
_STOP_ATTR = "mtlsearch:stop"  # study system attribute: why a callback stopped the study


def spent_compute(study: optuna.Study) -> float:
    """Training MACs the study's finished trials spent (see :mod:`mtlsearch.engine.compute`)."""
    return sum(float((t.user_attrs.get("compute") or {}).get("macs", 0.0))
               for t in study.get_trials(deepcopy=False) if t.state.is_finished())


def _jsonable(value: Any) -> Any:
    """The value as it reads back from storage (tuples become lists...)."""
    return json.loads(json.dumps(value, default=str))


def _check_objectives(objectives: Sequence[str]) -> list[str]:
    objectives = [objectives] if isinstance(objectives, str) else list(objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives or len(set(objectives)) != len(objectives):
        raise MTLSearchError(
            f"bad objectives {objectives}; pick distinct ones among {', '.join(OBJECTIVES)}"
        )
    if "delta_mtl" not in objectives:
        raise MTLSearchError("the objectives must include delta_mtl (the score being searched)")
    return objectives


class _LeaseLost(Exception):
    """Another worker failed (and queued again) this worker's running trial."""


class _TrialProxy:
    """What evaluate_proposal reports epochs to: feeds the progress display, and forwards
    to the Optuna trial only when pruning is possible (single-objective studies). Stops the
    training at the next epoch once the trial's lease is lost."""

    def __init__(self, trial: Any | None, on_epoch: Callable[[int, float], None],
                 lost: threading.Event | None = None):
        self._trial, self._on_epoch, self._lost = trial, on_epoch, lost

    def report(self, value: float, step: int) -> None:
        if self._lost is not None and self._lost.is_set():
            raise _LeaseLost("the trial was failed and queued again by another worker")
        self._on_epoch(step, value)
        if self._trial is not None:
            self._trial.report(value, step)

    def should_prune(self) -> bool:
        return self._trial is not None and self._trial.should_prune()


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Any:
    """Optuna's heartbeat thread for ``trial`` (a no-op on storages without heartbeats)."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses

    return get_heartbeat_thread(trial._trial_id, study._storage)


# --------------------------------------------------------------------------- settings
@dataclass
class _Setup:
    settings: dict[str, Any]
    strategy: Strategy
    ctx: SearchContext


def _setup(
    strategy: str | Strategy | None,
    dataset: str | DatasetSplits,
    space: str | SearchSpace,
    budget: TrainConfig | None,
    seed: int,
    objectives: Sequence[str],
    dataset_kwargs: Mapping[str, Any] | None,
    space_kwargs: Mapping[str, Any] | None,
    strategy_kwargs: Mapping[str, Any] | None,
    cache: ResultCache,
    weighting: str | Sequence[str] | None = None,
) -> _Setup:
    """Resolve names to objects and record them (as JSON) for the study."""
    if isinstance(dataset, str):
        data = load_dataset(dataset, **dict(dataset_kwargs or {}))
    else:
        data = dataset
    if isinstance(space, str):
        space_obj = create_space(space, input_shape=data.input_shape, **dict(space_kwargs or {}))
    else:
        space_obj = space
    if strategy is None:
        strategy = default_strategy()
    if isinstance(strategy, str):
        strategy_obj = create_strategy(strategy, **dict(strategy_kwargs or {}))
    else:
        strategy_obj = strategy
    budget = (budget or TrainConfig()).replace(seed=seed)
    recorded_budget = budget.to_dict()
    recorded_budget.pop("device", None)  # the same study may run on a GPU and a laptop
    spec = space_obj.spec()
    from mtlsearch._version import __version__

    settings = _jsonable({
        "strategy": strategy_obj.name or type(strategy_obj).__name__,
        "strategy_kwargs": dict(strategy_kwargs or {}),
        "dataset": data.name,
        "dataset_kwargs": dict(data.kwargs) or dict(dataset_kwargs or {}),
        "data_fingerprint": data.fingerprint(),
        "space": spec["name"],
        "space_kwargs": spec["kwargs"],
        "budget": recorded_budget,
        "seed": seed,
        "objectives": list(objectives),
        "version": __version__,
    })
    requested = requested_weightings(weighting)
    if requested is not None:  # absent when not asked for: older studies resume unchanged
        settings["weighting"] = requested
    prep = getattr(data, "preprocessing", None)
    if prep is not None:  # how raw inputs became the network's: the export records it
        settings["preprocessing"] = prep.to_dict()
    ctx = SearchContext(data=data, space=space_obj, budget=budget, seed=seed, cache=cache)
    return _Setup(settings, strategy_obj, ctx)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping) and key in ("budget",):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_ATTR, settings)
        return
    # Studies made before samplers could be picked ran seeded TPE with no lag.
    stored = {**stored, "sampler": stored.get("sampler", LEGACY_SAMPLER)}
    old = _flatten({k: stored.get(k) for k in _COMPARED})
    new = _flatten({k: settings.get(k) for k in _COMPARED})
    diffs = [f"{k}: {old.get(k)!r} (stored) vs {new.get(k)!r} (now)"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise MTLSearchError(
            f"study {study.study_name!r} already exists with other settings: "
            + "; ".join(diffs)
            + ". Resume it with the same settings, or pick another --study name."
        )
    if stored.get("version") != settings.get("version"):
        log.warning("study %r was created by mtlsearch %s (this is %s)", study.study_name,
                    stored.get("version"), settings.get("version"))


# --------------------------------------------------------------------------- the search
@dataclass
class SearchResult:
    """What :func:`search` returns: the Optuna study plus convenient views of it.

    Example:
        >>> result = search(trials=2, progress=False)  # doctest: +SKIP
        >>> result.pareto_front()[0]["delta_mtl"]  # doctest: +SKIP
    """

    study: optuna.Study | None  # None on the ranks other than 0 of a torchrun search
    settings: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None

    @property
    def best_trials(self) -> list[FrozenTrial]:
        """The Pareto front (multi-objective) or the best trial, best Δ_MTL first."""
        return front_trials(self.study)

    def best(self) -> FrozenTrial:
        """The complete trial with the highest validation Δ_MTL."""
        return best_trial(self.study)

    def pareto_front(self) -> list[dict[str, Any]]:
        """The rows of :meth:`trials_table` on the Pareto front, best Δ_MTL first."""
        return pareto_front(self.study)

    def trials_table(self) -> list[dict[str, Any]]:
        """One row per trial: number, state, Δ_MTL (val, test), params, MACs, reason..."""
        return trials_table(self.study)

    def describe(self) -> str:
        """A few lines of text: counts per state, the Pareto front and the best trial."""
        return describe(self.study)

    def summary(self) -> str:
        """Deprecated name of :meth:`describe` (kept for one release; see CHANGELOG.md)."""
        warnings.warn("SearchResult.summary() is now SearchResult.describe()",
                      DeprecationWarning, stacklevel=2)
        return describe(self.study)


def search(
    *,
    strategy: str | Strategy | None = None,
    dataset: str | DatasetSplits = "multi_digits",
    space: str | SearchSpace = "small_cnn",
    trials: int = 10,
    budget: TrainConfig | None = None,
    seed: int = 0,
    storage: str | Any | None = None,
    study_name: str | None = None,
    objectives: Sequence[str] = ("delta_mtl", "params"),
    pruner: str | Any = "median",
    dataset_kwargs: Mapping[str, Any] | None = None,
    space_kwargs: Mapping[str, Any] | None = None,
    strategy_kwargs: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    timeout: float | None = None,
    cache: ResultCache | str | Path | None = None,
    compute: float | str | None = None,
    weighting: str | Sequence[str] | None = None,
    sampler: str | optuna.samplers.BaseSampler | None = None,
    sampler_kwargs: Mapping[str, Any] | None = None,
    history_lag: int | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None] | str] | None = None,
    workers: int | str = 1,
    artifact_store: Any = None,
) -> SearchResult:
    """Search sharing architectures with an Optuna study (created, or resumed if it exists).

    Args:
        strategy, dataset, space: Registered names or objects; the space is built for the
            dataset's input shape. ``strategy=None`` runs the registry's
            :func:`~mtlsearch.registry.default_strategy`.
        trials: Study-wide budget of trials that finished on their own: complete, pruned, or
            failed for a reason of their own (an exception, a NaN loss, out of memory). An
            interrupted trial (Ctrl-C, SIGTERM), a crashed worker's (``kill -9``), a stale
            lease's or one stopped by a full disk does not count: it is queued again with the
            same parameters and seed. A resumed study or several workers run only what is left.
        budget: How every candidate is trained (default ``TrainConfig()``).
        seed: Seeds training and the sampler: trial ``n`` depends on ``seed``, ``n`` and the
            trials before it only, whatever the number of workers.
        storage: ``None`` (in memory), ``"journal:FILE"`` or a database URL.
        study_name: Defaults to ``"<strategy>-<dataset>-<space>"`` for stored studies.
        objectives: ``delta_mtl`` (maximized) plus optional ``params``/``macs`` (minimized).
        pruner: ``median``, ``percentile``, ``hyperband``, ``successive_halving``, ``none``
            (or an Optuna pruner); only single-objective studies prune.
        out: Folder for the result cache (``out/cache``) and trained weights
            (``out/weights/trial_<n>.safetensors``).
        progress: Show a live display (one line per trial when not on a terminal).
        timeout: Start no new trial after this many seconds.
        cache: Cache of expensive results (default ``out/cache`` or in memory).
        compute: A compute budget in training MACs (:mod:`mtlsearch.engine.compute`), or ``"Nx"``
            for N trainings of a hard-sharing network with ``budget``: no new trial starts
            once the study's trials together spent this much (``trials`` stays the cap). Every trial records what it spent in its ``compute`` user attribute.
        weighting: How the task losses are weighed: ``None`` (the budget's
            ``TrainConfig.weighting``), a registered name (fixed), ``"auto"`` or a list /
            ``"a,b"`` to sample the weighting and its hyper-parameters with the architecture
            (docs/weighting.md).
        sampler: An Optuna sampler by name (:data:`~mtlsearch.study.samplers.SAMPLERS`:
            ``tpe``, ``nsga2``, ``nsga3``, ``random``, ``gp``, ``qmc``; default ``tpe``),
            rebuilt per trial from ``(seed, trial number)`` so that serial and parallel runs
            give the same trials; or an Optuna sampler instance, used as given (its own seed;
            not reproducible across workers). Recorded in the study: a resumed study needs
            the same one.
        sampler_kwargs: Constructor arguments of a named sampler (e.g.
            ``{"n_startup_trials": 5}``; not ``seed``).
        history_lag: Trial ``n``'s sampler sees the trials numbered below ``n - lag`` (default
            :data:`~mtlsearch.study.samplers.DEFAULT_LAG`), waiting for any still running.
        callbacks: Optuna study callbacks ``callback(study, frozen_trial)`` (or
            ``"module:object"`` paths), called after each finished trial, in the process that
            ran it; one that calls ``study.stop()`` ends the search cleanly after that trial
            (every worker; the same call later resumes).
        workers: Processes running trials side by side on one machine (this one and
            ``workers - 1`` spawned), sharing the study through ``storage`` (required: a
            journal, SQLite or database URL). Same trials as one worker. ``"auto"``: one per
            usable CPU core on the CPU, the device-share rule on a GPU (as many as the
            largest candidate's measured memory allows), one with in-memory storage
            (:mod:`mtlsearch.study.worker_count`). Each process gets the caller's torch
            threads, at most its share of the cores.
        artifact_store: Where trial weights are kept: an ``optuna.artifacts`` store,
            ``"s3://BUCKET"``, ``"gs://BUCKET"`` or a folder; default ``out/artifacts`` (none
            without ``out``). The storage records each trial's artifact, so any machine with
            the storage exports it without retraining (docs/export.md).

    Returns:
        A :class:`SearchResult`.

    Raises:
        MTLSearchError: Unknown names, bad settings, or a stored study with other settings.
        StorageError: The storage file is damaged (a torn journal tail is repaired instead).
        OutOfSpaceError: Too little free space under ``out``, the cache or the storage file
            (``MTLSEARCH_MIN_FREE_MB``), or a write failed for lack of it: the running trial
            is queued again; free space and call again.
        KeyboardInterrupt: After marking the running trial failed ("interrupted") and
            queueing it again: the same call resumes and redoes it.

    Example:
        >>> r = search(dataset="synthetic", space="mlp", trials=3, progress=False,
        ...            dataset_kwargs={"n_tasks": 3, "n_samples": 300},
        ...            budget=TrainConfig(epochs=1))  # doctest: +SKIP
        >>> len(r.trials_table())  # doctest: +SKIP
        3
    """
    from mtlsearch.study.progress import quiet_optuna

    call = _Call(strategy=strategy, dataset=dataset, space=space, trials=trials, budget=budget,
                 seed=seed, storage=storage, study_name=study_name, objectives=objectives,
                 pruner=pruner, dataset_kwargs=dataset_kwargs, space_kwargs=space_kwargs,
                 strategy_kwargs=strategy_kwargs, out=out, progress=progress, timeout=timeout,
                 cache=cache, compute=compute, weighting=weighting, sampler=sampler,
                 sampler_kwargs=sampler_kwargs, history_lag=history_lag,
                 callbacks=list(callbacks or ()), workers=workers,
                 artifact_store=artifact_store)
    # Under torchrun, rank 0 runs the study and every rank trains each candidate (DDP).
    with quiet_optuna(progress), torchrun_session(budget.device if budget else None) as ranks:
        return _search(call, ranks)


@dataclass
class _Call:
    """The arguments of one :func:`search` call (what a worker process is handed)."""

    strategy: Any
    dataset: Any
    space: Any
    trials: int
    budget: Any
    seed: int
    storage: Any
    study_name: str | None
    objectives: Sequence[str]
    pruner: Any
    dataset_kwargs: Any
    space_kwargs: Any
    strategy_kwargs: Any
    out: Any
    progress: bool
    timeout: float | None
    cache: Any
    compute: float | str | None
    weighting: Any
    sampler: Any = None
    sampler_kwargs: Any = None
    history_lag: int | None = None
    callbacks: list[Any] = field(default_factory=list)
    workers: int | str = 1
    artifact_store: Any = None


def _check_workers(call: _Call, ranks: Any) -> int | str:
    """``call.workers`` checked before any work: a number or ``"auto"`` (decided once the
    space and data are known, :func:`_plan_workers`)."""
    workers = parse_workers(call.workers)
    if workers != 1:
        from mtlsearch.study.workers import check_not_bootstrapping

        check_not_bootstrapping()
    if workers == AUTO:
        return 1 if ranks is not None else workers  # under torchrun the ranks share each training
    if workers > 1 and ranks is not None:
        raise MTLSearchError("workers > 1 cannot run under torchrun (its ranks already train "
                             "each candidate together); drop --workers or torchrun")
    if workers > 1 and not isinstance(call.storage, str):
        raise MTLSearchError(
            "workers > 1 share the study through its storage: pass storage='journal:FILE.log', "
            "'sqlite:///FILE.db' or a database URL (an in-memory study lives in one process)")
    return workers


def _plan_workers(asked: int | str, call: _Call, ctx: SearchContext, left: int) -> WorkerPlan:
    """How many processes run the ``left`` trials (``"auto"``: from the device, see
    :mod:`mtlsearch.study.worker_count`), and with how many torch threads each."""
    def measure_gpu(device: Any, cap: int) -> Any:
        from mtlsearch.engine.device_share import plan_device_share

        return plan_device_share(ctx.space, ctx.data.train, batch_size=ctx.budget.batch_size,
                                 device=device, cap=cap)

    return plan_workers(asked, device=ctx.budget.device, jobs=left,
                        measure_gpu=measure_gpu, shared_storage=isinstance(call.storage, str))


def _search(call: _Call, ranks: Any = None, *, events: Any = None) -> SearchResult:
    """The search of ``call``; ``events`` set: this is a worker process of a parallel search
    (its progress goes to the parent through ``events``; the parent did the setup)."""
    from mtlsearch.study.progress import SearchProgress

    objectives = _check_objectives(call.objectives)
    trials, storage, seed = call.trials, call.storage, call.seed
    if trials < 1:
        raise MTLSearchError(f"trials must be at least 1, got {trials}")
    workers = _check_workers(call, ranks) if events is None else 1
    cache, out = call.cache, call.out
    if not isinstance(cache, ResultCache):
        folder = cache if cache is not None else (Path(out) / "cache" if out else None)
        cache = ResultCache(folder)
    setup = _setup(call.strategy, call.dataset, call.space, call.budget, seed, objectives,
                   call.dataset_kwargs, call.space_kwargs, call.strategy_kwargs, cache,
                   call.weighting)
    settings, ctx = setup.settings, setup.ctx
    settings["sampler"] = sampler_setting(call.sampler, call.sampler_kwargs, len(objectives),
                                          call.history_lag)
    callbacks = [load_callback(c) if isinstance(c, str) else c for c in call.callbacks]
    unit = compute_unit(ctx.data, ctx.space, ctx.budget) if isinstance(call.compute, str) else 0.0
    compute = parse_compute(call.compute, unit)
    if ranks is not None and not ranks.join(settings, ctx):
        return SearchResult(None, settings, None)  # a follower rank: it trained along, rank 0 has the study
    study_name = call.study_name
    if study_name is None and storage is not None:
        study_name = f"{settings['strategy']}-{settings['dataset']}-{settings['space']}"
    opened = open_storage(storage)
    # Optuna prunes single-objective studies only; a bad name is an error either way.
    pruner_obj = make_pruner(call.pruner, ctx.budget.epochs)
    if len(objectives) > 1:
        pruner_obj = optuna.pruners.NopPruner()
    with storage_errors(storage):
        study = optuna.create_study(
            storage=opened,
            study_name=study_name,
            directions=[OBJECTIVES[o] for o in objectives],
            sampler=optuna.samplers.RandomSampler(seed=seed),  # replaced below
            pruner=pruner_obj,
            load_if_exists=True,
        )
        stored = study.user_attrs.get(STUDY_ATTR)
        if (stored is not None and "sampler" not in stored and call.sampler is None
                and call.history_lag is None and not call.sampler_kwargs):
            settings["sampler"] = dict(LEGACY_SAMPLER)  # an older study keeps its sampler
        _check_settings(study, settings)
    result = SearchResult(study, settings, Path(out) if out else None)
    runner = _Runner(study, setup, objectives, storage, Path(out) if out else None, callbacks)
    runner.artifacts = open_artifact_store(call.artifact_store, out=out)
    chosen = settings["sampler"]
    study.sampler = make_sampler(
        call.sampler if isinstance(call.sampler, optuna.samplers.BaseSampler) else chosen["name"],
        seed=seed, kwargs=chosen["kwargs"], lag=chosen["lag"], n_objectives=len(objectives),
        on_wait=runner.fail_stale)
    # Pruning, like sampling, sees the fixed history: the same trials pruned with any workers.
    study.pruner = with_history(study.pruner, chosen["lag"], on_wait=runner.fail_stale)
    if events is None:  # a new call resumes a study a callback stopped
        with contextlib.suppress(Exception):
            if study._storage.get_study_system_attrs(study._study_id).get(_STOP_ATTR):
                study._storage.set_study_system_attr(study._study_id, _STOP_ATTR, None)
    finished = runner.count()[0]
    title = "search" if study.study_name.startswith("no-name-") else study.study_name
    if events is not None:
        display: Any = events
    else:
        display = SearchProgress(trials, done=finished, enabled=call.progress,
                                 best=best_value(study), title=title)
    with display:
        runner.display = display
        if finished >= trials:
            log.info("study %r already has %d finished trials", study.study_name, finished)
            return result
        why = runner.stop_reason()
        if why:
            display.message(why)
            return result
        display.status("single-task reference")
        runner.check_space()
        with runner.no_space_stops():
            ctx.reference()  # once, before the trials: every trial and later study reuses it
        runner.enqueue_initial()  # takes the budget lock itself, to queue
        plan = _plan_workers(workers, call, ctx, trials - runner.count()[0])
        if call.workers == AUTO or plan.workers > 1:
            log.info("%s; %d torch thread(s) each", plan.why, plan.threads)
        if plan.workers > 1:
            from mtlsearch.study.workers import SharedDisplay, run_workers
            from mtlsearch.tasks.kinds import get_task_kind

            # The workers reopen the cache folder (the reference is in it by now).
            folder = getattr(cache, "folder", None)
            runner.display = shared = SharedDisplay(display)
            # ... and get small loaded data (unpickling it is cheaper than loading it again).
            handed = replace(call, cache=str(folder) if folder is not None else None,
                             dataset=ctx.data if _small(ctx.data) else call.dataset)
            run_workers(_search, handed, plan.workers, shared,
                        lambda: runner.loop(trials, compute, call.timeout), runner.halt,
                        threads=plan.threads, cores=plan.cores,
                        device_kind=plan.device_kind, no_fork=_fork_risks(call),
                        kinds=[get_task_kind(t.kind) for t in ctx.tasks])
            return result
        runner.loop(trials, compute, call.timeout)
    return result


def _fork_risks(call: _Call) -> list[str]:
    """What in ``call`` a forked worker must not inherit (an object may hold a connection
    or a thread): callbacks given as objects, experiment trackers, an artifact store object.
    Given as names (``"module:object"``, a folder), they are rebuilt in the worker."""
    from mtlsearch.study.trackers import active_trackers

    risks = []
    if any(not isinstance(c, str) for c in call.callbacks):
        risks.append("callbacks given as objects")
    if active_trackers():
        risks.append("experiment trackers are active")
    if call.artifact_store is not None and not isinstance(call.artifact_store, (str, Path)):
        risks.append("an artifact store object")
    return risks


def _small(data: Any, limit: int = 256 * 2**20) -> bool:
    """Whether ``data`` is held in tensors of at most ``limit`` bytes in all (then a worker
    process is handed the loaded splits rather than loading them again)."""
    try:
        total = 0
        for split in (data.train, data.val, data.test):
            tensors = [split.inputs, *split.targets.values()]
            if not all(isinstance(t, torch.Tensor) for t in tensors):
                return False
            total += sum(t.numel() * t.element_size() for t in tensors)
        return total <= limit
    except AttributeError:
        return False


class _Runner:
    """Runs one trial at a time and records it."""

    def __init__(self, study: optuna.Study, setup: _Setup, objectives: list[str],
                 storage: Any, out: Path | None, callbacks: Sequence[Any] = ()):
        self.study, self.setup, self.objectives = study, setup, objectives
        self.storage, self.out = storage, out
        self.callbacks = list(callbacks)
        self.artifacts: Any = None  # where trial weights go (study.artifacts), set by _search
        self.single = len(objectives) == 1
        self.display: Any = None
        self.worker = worker_identity()
        self.lease = uses_lease(study)
        # Folders a trial writes to, checked for free space before each trial.
        cache_folder = getattr(setup.ctx.cache, "folder", None)
        self.folders = list(dict.fromkeys(
            Path(f) for f in (out, cache_folder, storage_folder(storage)) if f is not None))
        self.largest_weights = max((p.stat().st_size for p in (out / "weights").glob(
            "trial_*.safetensors")), default=0) if out is not None else 0
        # What this search has spent; cached items it used are charged to it once.
        self.meter = Meter(charged_keys=set(study.user_attrs.get(_CHARGED_ATTR, [])))
        self.pending = Compute()  # spent outside a trial (initial_params), for the next one
        self.spent: Meter | None = None  # the running trial's meter
        self.lost_trial: int | None = None  # a trial another worker failed while this one ran
        self.halt = threading.Event()  # set from another thread: start no further trial

    # ----------------------------------------------------------------- the loop
    def loop(self, trials: int, compute: float | None, timeout: float | None) -> None:
        """Ask, run and record trials until the budget (or a stop) is reached."""
        study, storage = self.study, self.storage
        deadline = time.monotonic() + timeout if timeout else None
        study._thread_local.in_optimize_loop = True  # lets a callback call study.stop()
        study._stop_flag = False
        try:
            while (deadline is None or time.monotonic() < deadline) and not self.halt.is_set():
                self.check_space()  # before training, not after: a full disk stops the study
                trial = None
                with budget_lock(storage):
                    fail_stale_trials(study)  # dead or silent workers' trials: failed, queued again
                    done, running = self.count()
                    if done + running >= trials:
                        break
                    if compute is not None and spent_compute(study) >= compute:
                        log.info("study %r spent its compute budget", study.study_name)
                        break
                    why = self.stop_reason()
                    if why:
                        self.display.message(why)
                        break
                    if not self.first_trial_pending():
                        with warnings.catch_warnings():  # we run Optuna's heartbeat thread ourselves
                            warnings.filterwarnings("ignore", "Heartbeat of storage")
                            trial = study.ask()
                        self.claim(trial)
                if trial is None:  # another worker's first trial decides whether to go on
                    time.sleep(0.2)
                    continue
                self.run(trial)
                if study._stop_flag:
                    why = f"a callback stopped the study after trial {trial.number}"
                    study._storage.set_study_system_attr(study._study_id, _STOP_ATTR, why)
                    self.display.message(why + "; the same command resumes it")
                    break
        finally:
            study._thread_local.in_optimize_loop = False

    def fail_stale(self) -> None:
        """Fail and queue again dead workers' trials (called while a history is awaited)."""
        with contextlib.suppress(Exception), budget_lock(self.storage):
            fail_stale_trials(self.study)

    def stop_reason(self) -> str | None:
        """Why no further trial should start: a callback stopped the study, or the strategy
        samples nothing (its one candidate is trained; more trials would repeat it)."""
        system = self.study._storage.get_study_system_attrs(self.study._study_id)
        if system.get(_STOP_ATTR):
            return str(system[_STOP_ATTR])
        if getattr(self.setup.strategy, "samples_nothing", None) is False:
            return None
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if not t.params and not t.distributions:
                return (f"{self.setup.settings['strategy']} samples no parameter: its one "
                        f"candidate was trained (trial {t.number}), so the search stops; more "
                        "trials would train the same network again")
        return None

    def first_trial_pending(self) -> bool:
        """Whether to wait for another worker's running trial before asking one: no trial is
        complete yet and a running one has proposed without sampling (or is still proposing),
        so it may be the whole search."""
        if getattr(self.setup.strategy, "samples_nothing", None) is False:
            return False
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in trials):
            return False
        for t in trials:
            if t.state == TrialState.RUNNING and not t.params and not t.distributions:
                return True
        return False

    def enqueue_initial(self) -> None:
        """Queue the strategy's :meth:`~mtlsearch.strategy.base.Strategy.initial_params` once.

        They are computed outside the budget lock (an affinity tensor takes seconds, and every
        search on the storage waits for that lock to ask a trial), then queued under it,
        unless another process queued them meanwhile.
        """
        if self.study.user_attrs.get(_INITIAL_ATTR):
            return
        with meter(into=self.meter), meter() as spent:
            spent.charged_keys = self.meter.charged_keys
            initial = self.setup.strategy.initial_params(self.setup.ctx)
        with budget_lock(self.storage):
            if self.study.user_attrs.get(_INITIAL_ATTR):
                return  # another worker was first; it charged the compute
            self.pending.add(spent)
            for params in initial:
                self.study.enqueue_trial(_jsonable(dict(params)), skip_if_exists=True)
            self.study.set_user_attr(_INITIAL_ATTR, len(initial))

    def count(self) -> tuple[int, int]:
        """Trials that use up the budget, and running trials.

        Counted: finished trials that were not queued again (a retried failure is redone by
        its copy). Stale trials are failed and queued again by :func:`fail_stale_trials`
        first, under the budget lock.
        """
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        done = sum(t.state.is_finished() and t.number not in retried for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return done, running

    def claim(self, trial: optuna.Trial) -> None:
        """Record who runs ``trial`` and start its lease (others spot a dead worker by it)."""
        trial.set_user_attr(WORKER_ATTR, self.worker)
        if self.lease:
            trial.set_user_attr(LEASE_ATTR, time.time())

    # ----------------------------------------------------------------- free space
    def check_space(self) -> None:
        """Stop the study (OutOfSpaceError) when a folder it writes to is nearly full."""
        check_free_space(self.folders, free_space_floor(self.largest_weights))

    @contextlib.contextmanager
    def no_space_stops(self) -> Any:
        """A write that failed for lack of space outside a trial stops the study clearly."""
        try:
            yield
        except Exception as exc:
            if is_out_of_space(exc):
                raise OutOfSpaceError(self._no_space_text(exc)) from exc
            raise

    def _no_space_text(self, exc: BaseException, number: int | None = None) -> str:
        where = getattr(exc, "filename", None)
        folder = Path(where).parent if where else (self.folders[0] if self.folders else None)
        free = f"{free_bytes(folder) / 2**20:.1f} MiB free under {folder}" if folder else "?"
        queued = (f"trial {number} was stopped and queued again (same parameters and seed). "
                  if number is not None else "")
        return (f"no space left to write ({' '.join(str(exc).split())[:160]}; {free}): "
                f"the study stops; {queued}Free some space and run the same command again "
                "to resume")

    # ----------------------------------------------------------------- one trial
    def run(self, trial: optuna.Trial) -> None:
        with _heartbeat(self.study, trial), Lease(self.study, trial, enabled=self.lease) as lease:
            try:
                self._run(trial, lease)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Recording a failure or a pruning on a trial another worker failed meanwhile.
                if not self.study._storage.get_trial(trial._trial_id).state.is_finished():
                    raise
                self._lost(trial)
                return
        if self.callbacks:
            frozen = self.study._storage.get_trial(trial._trial_id)
            if frozen.state.is_finished() and self.lost_trial != trial.number:
                for callback in self.callbacks:  # as study.optimize calls them
                    callback(self.study, frozen)

    def _requeue(self, trial: optuna.Trial, start: float, reason: str) -> None:
        """Fail ``trial`` for a reason not its own and queue it again; it does not count."""
        # A full disk may refuse even this: a trial left running is retried by the dead-worker
        # check, one failed without its copy by the next fail_stale_trials (under this lock).
        with contextlib.suppress(Exception), budget_lock(self.storage):
            trial.set_user_attr("fail_reason", reason)
            self._finish(trial, TrialState.FAIL, start, {"fail_reason": reason}, counted=False)
            frozen = self.study._storage.get_trial(trial._trial_id)
            retry = retry_trial(self.study, frozen, limited=False)
            log.warning("trial %d %s: queued again as trial %s", trial.number, reason, retry)

    def _lost(self, trial: optuna.Trial) -> None:
        log.warning("trial %d was failed and queued again by another worker while this one ran "
                    "it (its lease ran out: this worker was silent for longer than the grace "
                    "period); its result is dropped, the retry redoes it", trial.number)
        self.lost_trial = trial.number
        self.spent = None
        _free_memory()

    def _run(self, trial: optuna.Trial, lease: Lease) -> None:
        setup, hooks = self.setup, get_hooks()
        name = setup.settings["strategy"]
        start = time.perf_counter()
        try:
            # Trial n's randomness depends on (seed, n) only: same seed -> same study on CPU.
            # A retried trial reuses its original's seed: it redoes exactly the lost work.
            system = self.study._storage.get_trial_system_attrs(trial._trial_id)
            original = system.get("failed_trial", trial.number)
            seed_everything(derive_seed(setup.ctx.seed, "trial", original))
            with meter(into=self.meter), meter(Meter(charged_keys=self.meter.charged_keys)) as spent:
                self.spent = spent
                spent.add(self.pending)
                self.pending = Compute()
                proposal = setup.strategy.propose(trial, setup.ctx)
                chosen = sample_weighting(  # fixed, or sampled with the architecture
                    trial, setup.settings.get("weighting"),
                    task_sampling=proposal.train_overrides.get(
                        "task_sampling", setup.ctx.budget.task_sampling),
                    distributed=setup.ctx.distributed is not None)
                proposal.train_overrides = {**proposal.train_overrides, **chosen.overrides}
                for key, value in chosen.facts.items():
                    trial.set_user_attr(key, value)
                epochs = int(proposal.train_overrides.get("epochs", setup.ctx.budget.epochs))
                trial.set_user_attr("train_overrides", _jsonable(proposal.train_overrides))
                self.display.trial_started(trial.number, epochs)
                hooks.on_trial_start(trial=trial, strategy=name, params=dict(trial.params))
                proxy = _TrialProxy(trial if self.single else None, self.display.epoch_end,
                                    lease.lost)
                result = evaluate_proposal(proposal, setup.ctx, strategy=setup.strategy, trial=proxy)
            values = [float(getattr(result, o)) for o in self.objectives]
            self._record(trial, result)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            self._finish(trial, TrialState.PRUNED, start, {"pruned": str(exc)})
        except (KeyboardInterrupt, SystemExit) as exc:
            # Not the trial's fault, like a crash: queued again, not counted (issue 17).
            if isinstance(exc, SystemExit):
                reason = f"interrupted (exit {exc.code})"
            else:  # the CLI turns SIGTERM into KeyboardInterrupt("SIGTERM")
                reason = "interrupted (SIGTERM)" if str(exc) == "SIGTERM" else "interrupted"
            self._requeue(trial, start, reason)
            raise
        except (_LeaseLost, optuna.exceptions.UpdateFinishedTrialError):
            self._lost(trial)
        except Exception as exc:  # a plugin's bug, a NaN loss, out of memory: record, go on
            if is_out_of_space(exc):  # the environment's fault: stop, retry when space is back
                space = " ".join(str(exc).split())[:160]
                self._requeue(trial, start, f"interrupted: no space left ({space})")
                _free_memory()
                raise OutOfSpaceError(self._no_space_text(exc, trial.number)) from exc
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            log.warning("trial %d failed: %s", trial.number, reason)
            _free_memory()
            self._finish(trial, TrialState.FAIL, start, {"fail_reason": reason})
            if isinstance(exc, DistributedAbort):
                raise  # torchrun: the other ranks cannot follow any more
        else:
            self._finish(trial, TrialState.COMPLETE, start, result.to_dict(), values)
            del result
            _free_memory()

    def _record(self, trial: optuna.Trial, result: TrialResult) -> None:
        data = result.to_dict()
        for key, value in data.items():  # every field of TrialResult: one place to add one
            trial.set_user_attr(key, _jsonable(value))
        trial.set_user_attr("strategy", self.setup.settings["strategy"])
        if result.model is not None and (self.out is not None or self.artifacts is not None):
            kept = save_weights(
                result.model, weights_path(self.out, trial.number) if self.out else None,
                self.study.study_name, trial.number, data["graph"], trial=trial,
                artifact_store=self.artifacts)
            if kept.path is not None:
                trial.set_user_attr("weights_file", str(kept.path.resolve()))
            self.largest_weights = max(self.largest_weights, kept.size)

    def _finish(self, trial: optuna.Trial, state: TrialState, start: float,
                result: dict[str, Any], values: list[float] | None = None, *,
                counted: bool = True) -> None:
        seconds = time.perf_counter() - start
        with contextlib.suppress(Exception):
            trial.set_user_attr("trial_seconds", seconds)
            spent = self.spent
            if spent is not None:  # every state: a failed or pruned trial spent compute too
                trial.set_user_attr("compute", spent.snapshot().to_dict())
                charged = sorted(self.meter.charged_keys)
                if charged != self.study.user_attrs.get(_CHARGED_ATTR, []):
                    self.study.set_user_attr(_CHARGED_ATTR, charged)
            self.spent = None
        try:
            self.study.tell(trial, values, state=state)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            if not self.study._storage.get_trial(trial._trial_id).state.is_finished():
                raise
            self._lost(trial)  # another worker failed it meanwhile: its copy redoes it
            return
        get_hooks().on_trial_end(  # an observer that raises is logged: the study goes on
            trial=trial, strategy=self.setup.settings["strategy"],
            result={"state": state.name, "values": values, **result})
        self.display.trial_finished(
            trial.number, state.name, delta=result.get("delta_mtl"),
            delta_test=result.get("delta_mtl_test"), params=result.get("params"),
            seconds=seconds, reason=result.get("fail_reason") or result.get("pruned"),
            counted=counted)


# --------------------------------------------------------------------------- views


# --------------------------------------------------------------------------- rebuild, export


