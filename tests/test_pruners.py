"""Pruning on the fixed history (mtlsearch/study/pruners.py): trial n's pruner sees the
finished trials numbered below n - lag, so a parallel search prunes the trials a serial one
prunes."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from mtlsearch.errors import MTLSearchError
from mtlsearch.study.pruners import HistoryPruner, make_pruner, with_history
from tests.test_search_workers import PeerFirst, _trials


def _complete(value: float) -> optuna.trial.FrozenTrial:
    return create_trial(value=value, intermediate_values={0: value})


def test_a_trial_finished_out_of_order_is_not_seen():
    """Trials 0 and 1 finished (1.0, 2.0); trial 2, numbered after the pruned trial's
    history, finished first in another worker (10.0). Trial 3 at 1.8, lag 1: its history is
    trials 0-1, median 1.5 -> kept; the live study's median, 2.0 -> pruned."""
    inner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=inner)
    for value in (1.0, 2.0, 10.0):
        study.add_trial(_complete(value))
    trial = study.ask()
    trial.report(1.8, 0)
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.number == 3
    assert bool(inner.prune(study, frozen)) is True  # the live study (numpy bools: bool())
    assert bool(HistoryPruner(inner, lag=1).prune(study, frozen)) is False
    assert bool(HistoryPruner(inner, lag=0).prune(study, frozen)) is True  # lag 0: all of 0-2


def test_a_retried_trial_is_shown_its_originals_history():
    inner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=inner)
    for value in (1.0, 2.0, 10.0):
        study.add_trial(_complete(value))
    study.enqueue_trial({}, user_attrs={})
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, "failed_trial", 2)  # a copy of 2
    trial.report(1.8, 0)
    frozen = study._storage.get_trial(trial._trial_id)
    # trial 2's history with lag 1 is trial 0 alone: median 1.0 -> kept
    assert bool(HistoryPruner(inner, lag=1).prune(study, frozen)) is False
    too_few = HistoryPruner(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0), lag=1)
    assert bool(too_few.prune(study, frozen)) is False  # one trial in the history: never


def test_with_history_leaves_what_never_prunes_alone():
    nop = optuna.pruners.NopPruner()
    assert with_history(nop, 3) is nop
    median = make_pruner("median", epochs=3)
    assert with_history(median, None) is median  # a sampler instance: the live study
    wrapped = with_history(median, 2)
    assert isinstance(wrapped, HistoryPruner) and wrapped.inner is median
    assert with_history(wrapped, 2) is wrapped
    with pytest.raises(MTLSearchError, match="known pruners: median, percentile"):
        make_pruner("early", epochs=3)


def test_the_sampler_still_sees_hyperbands_brackets(tmp_path):
    """TPE filters its history by Hyperband's bracket when the study's pruner is one: the
    wrapper must not hide it (the sampler's view gets the inner pruner)."""
    from mtlsearch.study.samplers import make_sampler

    study = optuna.create_study(direction="maximize",
                                pruner=with_history(make_pruner("hyperband", 3), 1))
    sampler = make_sampler("tpe", seed=0, lag=1)
    study.sampler = sampler
    trial = study.ask()
    _, view = sampler._state(study, study._storage.get_trial(trial._trial_id))
    assert isinstance(view.pruner, optuna.pruners.HyperbandPruner)


def test_two_workers_prune_the_trials_of_one(tiny, tmp_path):
    """A single-objective search that prunes: the same trials, pruned at the same epochs,
    with one worker and with two."""
    pruner = optuna.pruners.PercentilePruner(10.0, n_startup_trials=2, n_warmup_steps=0)  # maximized: keeps the top 10%
    common = dict(trials=6, objectives=("delta_mtl",), pruner=pruner, history_lag=1,
                  sampler="random", **tiny)
    serial = search_study(PeerFirst(), tmp_path / "a", workers=1, **common)
    parallel = search_study(PeerFirst(wait=True), tmp_path / "b", workers=2, **common)
    assert _trials(parallel) == _trials(serial)
    states = [t.state for t in serial.trials]
    assert TrialState.PRUNED in states, states  # the test prunes something
    pids = {t.user_attrs["worker"]["pid"] for t in parallel.trials}
    assert len(pids) == 2


def search_study(strategy, folder, **kwargs):
    from mtlsearch.study import search

    return search(strategy=strategy, storage=f"journal:{folder}.log", out=folder,
                  **kwargs).study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from mtlsearch.data.builtin.synthetic import load_synthetic
    from mtlsearch.engine.train import TrainConfig

    return {"dataset": load_synthetic(n_tasks=3, n_samples=240), "space": "mlp",
            "space_kwargs": {"widths": [8, 8]}, "budget": TrainConfig(epochs=2, batch_size=64),
            "progress": False, "cache": str(tmp_path_factory.mktemp("cache"))}
