"""Studies: search, Pareto front, failures, interruption and resume, storages, export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.hookspecs import hookimpl
from mtlsearch.plugin_manager import register_plugin, unregister_plugin
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.study import export_trial, open_study, rebuild_trial, search, weights_path

TINY = {
    "dataset": "synthetic",
    "space": "mlp",
    "dataset_kwargs": {"n_tasks": 3, "n_samples": 240},
    "space_kwargs": {"widths": [8, 8]},
    "budget": TrainConfig(epochs=1, batch_size=64),
    "progress": False,
}


class Flaky(Strategy):
    """Samples one number; trial ``fail_on`` raises ``error`` (once if ``once``)."""

    name = "test_flaky"
    fail_on: int = -1
    error: type[BaseException] = RuntimeError
    raised: int = 0
    once: bool = True

    def propose(self, trial, ctx):
        trial.suggest_int("x", 0, 7)
        if trial.number == type(self).fail_on and not (type(self).once and type(self).raised):
            type(self).raised += 1
            raise type(self).error("boom")
        return Proposal(ctx.new_graph("hard_sharing"))


class Poison(Strategy):
    """Turns the weights to NaN after the first backward pass: a NaN training loss."""

    name = "test_poison"

    def propose(self, trial, ctx):
        return Proposal(ctx.new_graph("hard_sharing"))

    def on_backward(self, state):
        with torch.no_grad():
            next(state.model.parameters()).fill_(float("nan"))


@pytest.fixture
def plugin():
    """Register the test strategies and an observer that records trial hooks."""
    seen: list[tuple[str, int, dict]] = []
    module = types.ModuleType("mtlsearch_test_plugin")

    @hookimpl
    def register_strategies(register):
        register(Flaky)
        register(Poison)

    @hookimpl
    def on_trial_start(trial, strategy, params):
        seen.append(("start", trial.number, dict(params)))

    @hookimpl
    def on_trial_end(trial, strategy, result):
        seen.append(("end", trial.number, result))

    module.register_strategies = register_strategies
    module.on_trial_start = on_trial_start
    module.on_trial_end = on_trial_end
    Flaky.fail_on, Flaky.error, Flaky.raised = -1, RuntimeError, 0
    name = register_plugin(module, name="mtlsearch_test_plugin")
    yield seen
    unregister_plugin(name)


def test_search_records_pareto_front_and_attributes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = search(trials=3, storage=storage, study_name="s", out=tmp_path, **TINY)
    assert len(result.trials_table()) == 3
    front = result.pareto_front()
    assert front and all(row["pareto"] for row in front)
    assert [t.number for t in result.best_trials] == [row["number"] for row in front]
    assert front[0]["delta_mtl"] == max(r["delta_mtl"] for r in result.trials_table())
    assert "Pareto front" in result.describe()
    with pytest.warns(DeprecationWarning, match="describe"):  # the old name, for one release
        assert result.summary() == result.describe()

    # The study opened with plain Optuna shows everything that was recorded.
    study = optuna.load_study(study_name="s", storage=storage)
    settings = study.user_attrs["mtlsearch"]
    assert settings["strategy"] == "random_tree" and settings["space"] == "mlp"
    assert settings["budget"]["epochs"] == 1 and "device" not in settings["budget"]
    assert settings["objectives"] == ["delta_mtl", "params"] and settings["version"]
    attrs = study.trials[0].user_attrs
    for key in ("graph", "metrics", "params", "macs", "train_seconds", "delta_mtl_test",
                "per_task_delta", "info"):
        assert key in attrs, key
    assert set(attrs["metrics"]) == {"val", "test"}
    assert study.trials[0].values == [attrs["delta_mtl"], attrs["params"]]
    assert "weights_artifact" in attrs  # kept in the artifact store under out
    assert (tmp_path / "artifacts").is_dir() and not weights_path(tmp_path, 0).exists()
    graph, info = rebuild_trial(study, 0)
    assert graph.tasks == ["t000", "t001", "t002"] and info.params == study.trials[0].params


def test_same_seed_same_study_single_objective():
    a = search(trials=2, objectives=("delta_mtl",), **TINY)
    b = search(trials=2, objectives=("delta_mtl",), **TINY)
    assert [t.params for t in a.study.trials] == [t.params for t in b.study.trials]
    assert [t.values for t in a.study.trials] == [t.values for t in b.study.trials]
    assert len(a.best_trials) == 1 and a.best_trials[0].number == a.best().number


def test_failing_plugin_is_recorded_and_the_study_goes_on(plugin):
    Flaky.fail_on = 1
    result = search(strategy="test_flaky", trials=3, **TINY)
    states = [t.state for t in result.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert result.study.trials[1].user_attrs["fail_reason"] == "RuntimeError: boom"
    ends = {n: r for kind, n, r in plugin if kind == "end"}
    assert ends[1]["fail_reason"] == "RuntimeError: boom" and ends[0]["state"] == "COMPLETE"
    assert [n for kind, n, _ in plugin if kind == "start"] == [0, 2]  # 1 failed in propose
    assert "failed: RuntimeError: boom" in result.describe()


def test_nan_loss_is_a_failed_trial(plugin):
    result = search(strategy="test_poison", trials=1, **TINY)
    trial = result.study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("TrainingError")
    assert result.pareto_front() == []


def test_interrupted_study_resumes_to_the_budget(plugin, tmp_path):
    Flaky.fail_on, Flaky.error = 1, KeyboardInterrupt
    args = dict(strategy="test_flaky", trials=4, storage=f"journal:{tmp_path / 'j.log'}",
                study_name="resume", out=tmp_path, **TINY)
    with pytest.raises(KeyboardInterrupt):
        search(**args)
    study = open_study(args["storage"], "resume")
    # issue 17: the interrupted trial is failed and queued again, like a crashed worker's.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.WAITING]
    assert study.trials[1].user_attrs["fail_reason"] == "interrupted"
    assert study.trials[2].system_attrs["failed_trial"] == 1
    result = search(**args)  # the same call resumes: the copy first, then what is left
    trials = result.study.trials
    numbers = [t.number for t in trials]
    assert numbers == sorted(set(numbers)) == [0, 1, 2, 3, 4]
    assert all(t.state.is_finished() for t in trials)
    assert trials[2].state == TrialState.COMPLETE and trials[2].params == trials[1].params
    counted = [t for t in trials if t.number != 1]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    again = search(**args)  # budget reached: nothing more runs
    assert len(again.study.trials) == 5


def test_mismatched_resume_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search(trials=1, storage=storage, study_name="m", **TINY)
    changed = {**TINY, "budget": TrainConfig(epochs=2, batch_size=64)}
    with pytest.raises(MTLSearchError) as info:
        search(trials=2, storage=storage, study_name="m", seed=5, **changed)
    message = str(info.value)
    assert "budget.epochs: 1 (stored) vs 2 (now)" in message
    assert "seed: 0 (stored) vs 5 (now)" in message and "another --study" in message


def test_bad_settings_are_clear_errors():
    with pytest.raises(MTLSearchError, match="objectives"):
        search(objectives=("delta_mtl", "speed"), **TINY)
    with pytest.raises(MTLSearchError, match="known pruners"):
        search(pruner="nope", **TINY)
    with pytest.raises(MTLSearchError, match="random_tree"):
        search(strategy="nope", **TINY)


WORKER = textwrap.dedent("""
    import os, pathlib, sys, time
    from mtlsearch.study import search
    from mtlsearch.engine.train import TrainConfig
    # A barrier: start searching only when both workers are up, so they really overlap.
    folder = pathlib.Path(sys.argv[2])
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    search(dataset="synthetic", space="mlp", trials=5, storage=sys.argv[1], study_name="shared",
           dataset_kwargs={"n_tasks": 3, "n_samples": 240}, space_kwargs={"widths": [8, 8]},
           budget=TrainConfig(epochs=1), out=sys.argv[2], progress=False)
""")


def test_two_processes_share_a_journal_study_and_stop_at_the_budget(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {"OMP_NUM_THREADS": "1"}
    import os

    procs = [subprocess.Popen([sys.executable, str(script), storage, str(tmp_path)],
                              env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    study = open_study(storage, "shared")
    assert len(study.trials) == 5
    assert sorted(t.number for t in study.trials) == list(range(5))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    workers = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(workers) == 2  # both did work
    params = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(params)) == len(params)  # per-trial seeding: no repeated proposals


def test_export_uses_kept_weights_or_retrains_identically(tmp_path):
    from mtlsearch import export

    result = search(trials=2, storage=f"sqlite:///{tmp_path / 'db.db'}", out=tmp_path / "out",
                    **TINY)
    best = result.best().number
    kept = export_trial(result.study, "best", tmp_path / "kept")
    shutil.rmtree(tmp_path / "out")  # the artifact store with it: nothing kept
    retrained = export_trial(result.study, best, tmp_path / "retrained")
    x = torch.rand(5, 32)
    a, b = export.load(kept)(x), export.load(retrained)(x)
    assert all(torch.equal(a[t], b[t]) for t in a)
    record = json.loads((Path(kept) / "architecture.json").read_text())
    assert record["info"]["trial"] == best


def test_unfinished_trial_cannot_be_exported(plugin, tmp_path):
    result = search(strategy="test_poison", trials=1, **TINY)
    with pytest.raises(MTLSearchError, match="no complete trial"):
        export_trial(result.study, "best", tmp_path / "x")
    with pytest.raises(MTLSearchError, match="TrainingError"):
        rebuild_trial(result.study, 0)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_single_objective_studies_prune_and_multi_objective_ones_do_not():
    single = search(trials=1, objectives=("delta_mtl",), pruner=AlwaysPrune(), **TINY)
    trial = single.study.trials[0]
    assert trial.state == TrialState.PRUNED and "pruned at epoch 0" in trial.user_attrs[
        "pruned_reason"]
    multi = search(trials=1, pruner=AlwaysPrune(), **TINY)
    assert multi.study.trials[0].state == TrialState.COMPLETE


def test_a_dead_workers_running_trial_is_failed_and_counted(tmp_path):
    import socket

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search(trials=1, storage=storage, study_name="dead", **TINY)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = open_study(storage, "dead")
    orphan = study.ask()
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": gone.pid})
    result = search(trials=3, storage=storage, study_name="dead", **TINY)
    states = [t.state for t in result.study.trials]
    # issue 8: the abandoned trial is failed and queued again; the retry, not it, counts.
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                      TrialState.COMPLETE]
    assert result.study.trials[1].user_attrs["fail_reason"].startswith("abandoned")
    assert result.study.trials[2].system_attrs["failed_trial"] == 1


def test_top_level_compare_is_the_function_even_after_its_module_is_imported():
    import importlib

    import mtlsearch

    importlib.import_module("mtlsearch.study.comparison")
    assert callable(mtlsearch.compare) and mtlsearch.compare.__module__ == "mtlsearch.study.comparison"
    from mtlsearch import compare

    assert compare is mtlsearch.study.comparison.compare
