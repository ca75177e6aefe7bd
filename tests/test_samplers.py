"""Samplers by name (seeded per trial, fixed history), callbacks, and strategies that sample
nothing: the Optuna side of a search."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.cli.main import main
from mtlsearch.data.builtin.synthetic import load_synthetic
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.study import search
from mtlsearch.study.samplers import DEFAULT_LAG, SAMPLERS, load_callback, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    # One result cache for the module: the single-task reference is trained once.
    return {"dataset": load_synthetic(n_tasks=3, n_samples=240), "space": "mlp",
            "space_kwargs": {"widths": [8, 8]}, "budget": TrainConfig(epochs=1, batch_size=64),
            "progress": False, "cache": str(tmp_path_factory.mktemp("cache"))}


def _toy(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    k = trial.suggest_int("k", 0, 4)
    return (x - 1.0) ** 2 + k


def _serial(name: str, n: int, lag: int, **kwargs) -> list[dict]:
    study = optuna.create_study(sampler=make_sampler(name, seed=3, lag=lag, kwargs=kwargs))
    study.optimize(_toy, n_trials=n)
    return [t.params for t in study.trials]


# --------------------------------------------------------------------------- names, seeds
@pytest.mark.parametrize("name", ["tpe", "random", "gp", "qmc"])
def test_a_named_sampler_gives_the_same_trials_for_the_same_seed(name):
    kwargs = {"n_startup_trials": 2} if name in ("tpe", "gp") else {}
    first = _serial(name, 5, 1, **kwargs)
    assert first == _serial(name, 5, 1, **kwargs)
    assert len({tuple(p.values()) for p in first}) == 5  # distinct proposals


def test_trials_told_out_of_order_get_the_serial_trials():
    # Three trials in flight at once (as three workers), finished in reverse order: with a lag
    # of 2 every trial's history is the same as in a serial run, so are its parameters.
    serial = _serial("tpe", 9, 2, n_startup_trials=2)
    study = optuna.create_study(sampler=make_sampler("tpe", seed=3, lag=2,
                                                     kwargs={"n_startup_trials": 2}))
    params = {}
    for _ in range(3):
        batch = [study.ask() for _k in range(3)]
        for trial in batch:
            _toy(trial)
            params[trial.number] = dict(trial.params)
        for trial in reversed(batch):
            study.tell(trial, _toy(optuna.trial.FixedTrial(trial.params)))
    assert [params[n] for n in range(9)] == serial


def test_a_trial_whose_history_is_running_waits_for_it():
    serial = _serial("tpe", 2, 0, n_startup_trials=1)
    study = optuna.create_study(sampler=make_sampler("tpe", seed=3, lag=0,
                                                     kwargs={"n_startup_trials": 1}))
    first = study.ask()
    value = _toy(first)
    second = study.ask()  # its sampler needs trial 0 finished: it waits until then
    timer = threading.Timer(0.6, lambda: study.tell(first, value))
    timer.start()
    start = time.monotonic()
    _toy(second)
    waited = time.monotonic() - start
    timer.join()
    assert waited >= 0.5
    assert [first.params, second.params] == serial


def test_unknown_sampler_names_the_known_ones(tiny, tmp_path, capsys):
    with pytest.raises(MTLSearchError, match="unknown sampler 'nope'.*tpe, nsga2"):
        search(strategy="random_tree", trials=1, sampler="nope", **tiny)
    with pytest.raises(MTLSearchError, match="bad arguments for sampler 'tpe'"):
        make_sampler("tpe", kwargs={"no_such_option": 1})
    assert main(["search", "--sampler", "nope", "--dataset", "synthetic", "--space", "mlp",
                 "--out", str(tmp_path), "--quiet"]) == 2
    assert "unknown sampler 'nope'" in capsys.readouterr().err


def test_the_cli_help_lists_every_sampler_and_the_lag(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in SAMPLERS:
        assert name in text
    assert f"(default {DEFAULT_LAG})" in text
    assert "cmaes" not in SAMPLERS  # it would unpickle its state from the storage


def test_an_instance_is_used_as_given():
    given = optuna.samplers.RandomSampler(seed=1)
    assert make_sampler(given) is given


# --------------------------------------------------------------------------- in a search
def test_a_multi_objective_search_with_nsga2(tiny, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    result = search(strategy="random_tree", trials=4, sampler="nsga2", storage=storage,
                    sampler_kwargs={"population_size": 2}, history_lag=0, **tiny)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert result.settings["sampler"] == {"name": "nsga2", "kwargs": {"population_size": 2},
                                          "lag": 0}
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in trials]
    assert generations == [0, 0, 1, 1]  # a population of 2: trials 2, 3 are its children
    # Resuming with another sampler is refused, naming both.
    with pytest.raises(MTLSearchError, match="sampler"):
        search(strategy="random_tree", trials=5, sampler="random", storage=storage, **tiny)


def test_an_older_study_resumes_with_the_sampler_it_ran(tiny, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search(strategy="random_tree", trials=1, storage=storage, study_name="old", **tiny)
    study = optuna.load_study(study_name="old", storage=storage)
    settings = dict(study.user_attrs["mtlsearch"])
    del settings["sampler"]  # as a study made before samplers could be chosen
    study.set_user_attr("mtlsearch", settings)
    result = search(strategy="random_tree", trials=2, storage=storage, study_name="old", **tiny)
    assert result.settings["sampler"] == {"name": "tpe", "kwargs": {}, "lag": 0}
    assert len(result.study.trials) == 2


class StopAfterTwo:
    """A study callback (made with no arguments) that stops the study after trial 1."""

    def __init__(self):
        self.seen: list[int] = []

    def __call__(self, study, trial):
        self.seen.append(trial.number)
        if trial.number == 1:
            study.stop()


def test_a_callback_sees_each_trial_and_can_stop_the_study(tiny, tmp_path):
    storage = f"journal:{tmp_path / 's.log'}"
    stop = StopAfterTwo()
    result = search(strategy="random_tree", trials=5, storage=storage, callbacks=[stop], **tiny)
    assert stop.seen == [0, 1]
    assert len(result.study.trials) == 2
    # The same call again resumes to the budget (the stop is not remembered forever).
    result = search(strategy="random_tree", trials=4, storage=storage, **tiny)
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 4


def test_callback_paths_load_or_say_what_is_wrong():
    assert isinstance(load_callback("test_samplers:StopAfterTwo"), StopAfterTwo)
    assert callable(load_callback("optuna.study:MaxTrialsCallback.__call__"))
    for path, message in [("nocolon", "MODULE:OBJECT"), ("no_such_mod_xyz:f", "cannot import"),
                          ("test_samplers:nothing_here", "has no 'nothing_here'"),
                          ("test_samplers:DEFAULT_LAG", "not a callable"),
                          ("optuna.study:MaxTrialsCallback", "no arguments")]:
        with pytest.raises(MTLSearchError, match=message):
            load_callback(path)


def test_cli_callback_paths_are_checked_before_training(tmp_path, capsys):
    assert main(["search", "--callback", "no_such_mod_xyz:f", "--out", str(tmp_path),
                 "--quiet"]) == 2
    assert "cannot import module 'no_such_mod_xyz'" in capsys.readouterr().err


# --------------------------------------------------------------------------- rough edges
def test_a_strategy_that_samples_nothing_runs_once(tiny, capsys):
    result = search(strategy="hard_sharing", trials=3, **{**tiny, "progress": True})
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE]
    err = capsys.readouterr().err
    assert "trial 0 (1/3)" in err  # the budget from the start
    assert "samples no parameter" in err
    # ... unless it samples a weighting with the architecture (then trials differ).
    result = search(strategy="hard_sharing", trials=2, weighting="equal,uncertainty", **tiny)
    assert len(result.study.trials) == 2


def test_progress_counts_to_the_budget_from_the_start(tiny, capsys):
    search(strategy="random_tree", trials=2, **{**tiny, "progress": True})
    err = capsys.readouterr().err
    assert "(1/2)" in err and "(2/2)" in err and "(1/1)" not in err
