"""Parallel trials in one search: worker processes sharing one study give the trials of a
serial run, and a killed worker's trial is retried with the budget kept exact."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from mtlsearch.data.builtin.synthetic import load_synthetic
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.plugins.random_tree.strategy import RandomTree
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.study import search


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    # One result cache for the module: the single-task reference is trained once.
    return {"dataset": load_synthetic(n_tasks=3, n_samples=240), "space": "mlp",
            "space_kwargs": {"widths": [8, 8]}, "budget": TrainConfig(epochs=1, batch_size=64),
            "progress": False, "cache": str(tmp_path_factory.mktemp("cache"))}


def _trials(study) -> dict[int, tuple]:
    return {t.number: (t.state.name, t.params, json.dumps(t.user_attrs.get("graph"),
                                                          sort_keys=True),
                       t.user_attrs.get("delta_mtl"), json.dumps(t.user_attrs.get("metrics"),
                                                                 sort_keys=True))
            for t in study.get_trials()}


class PeerFirst(RandomTree):
    """random_tree whose first trial in the calling process (``wait=True``) waits until a
    spawned worker has claimed a trial: both processes then surely train (tiny trials would
    all be done before a worker starts)."""

    def __init__(self, *, wait: bool = False):
        super().__init__()
        self.wait = wait

    def propose(self, trial, ctx):
        proposal = super().propose(trial, ctx)  # sampled: the other worker may ask now
        if self.wait and multiprocessing.parent_process() is None and trial.number == 0:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(
                    t.user_attrs.get("worker", {}).get("pid") not in (None, os.getpid())
                    for t in trial.study.get_trials(deepcopy=False)):
                time.sleep(0.1)
        return proposal


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_two_workers_give_the_trials_of_one(tiny, tmp_path, monkeypatch, start):
    # Forked (from this warmed process) or spawned, the worker runs the same trials.
    if start == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("workers fork on Linux only")
    monkeypatch.setenv("MTLSEARCH_WORKER_START", start)
    # TPE after 2 trials with a lag of 1: trial 3 waits for the history it models.
    common = dict(trials=4, sampler_kwargs={"n_startup_trials": 2}, history_lag=1, **tiny)
    serial = search(strategy=PeerFirst(), storage=f"journal:{tmp_path / 'a.log'}",
                    out=tmp_path / "a", **common)
    parallel = search(strategy=PeerFirst(wait=True), storage=f"journal:{tmp_path / 'b.log'}",
                      out=tmp_path / "b", workers=2, **common)
    assert _trials(parallel.study) == _trials(serial.study)
    assert len(_trials(serial.study)) == 4
    pids = {t.user_attrs["worker"]["pid"] for t in parallel.study.trials}
    assert len(pids) == 2  # this process and the spawned worker both trained


class KillOnce(Strategy):
    """Samples one of two graphs; the first trial a spawned worker runs kills that worker
    (SIGKILL: no clean-up at all) right after sampling. This process is a worker too: its
    first trial waits until that happened."""

    name = "test_kill_once"

    def __init__(self, *, marker: str = ""):
        self.marker = marker

    def propose(self, trial, ctx):
        groups = trial.suggest_int("groups", 1, 2)
        marker = Path(self.marker)
        if multiprocessing.parent_process() is None:  # the calling process
            deadline = time.monotonic() + 120
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)  # let the spawned worker take (and die on) a trial first
        elif not marker.exists():
            marker.write_text(str(trial.number))
            os.kill(os.getpid(), signal.SIGKILL)
        return Proposal(ctx.new_graph("hard_sharing" if groups == 1 else "single_task"))


def test_a_killed_workers_trial_is_retried_and_the_budget_stays_exact(tiny, tmp_path):
    strategy = KillOnce(marker=str(tmp_path / "killed"))
    result = search(strategy=strategy, trials=4, storage=f"journal:{tmp_path / 's.log'}",
                    out=tmp_path, workers=2, **tiny)
    trials = result.study.get_trials()
    killed = int((tmp_path / "killed").read_text())
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 4  # exactly the budget
    assert len(failed) == 1 and failed[0].number == killed
    assert failed[0].user_attrs["fail_reason"].startswith("abandoned")
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == failed[0].params  # the same trial, redone


def test_a_strategy_that_samples_nothing_runs_once_with_workers(tiny, tmp_path):
    result = search(strategy="hard_sharing", trials=3, storage=f"journal:{tmp_path / 's.log'}",
                    out=tmp_path, workers=2, **tiny)
    assert [t.state for t in result.study.get_trials()] == [TrialState.COMPLETE]


def test_workers_need_a_shared_storage(tiny):
    with pytest.raises(MTLSearchError, match="share the study through its storage"):
        search(strategy="random_tree", trials=2, workers=2, **tiny)
    with pytest.raises(MTLSearchError, match="at least 1"):
        search(strategy="random_tree", trials=2, workers=0, storage="journal:x.log", **tiny)


def _journal_trials(log_file: Path) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not log_file.exists():
        return []
    storage = JournalStorage(JournalFileBackend(str(log_file)))
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage).trials if names else []


def test_ctrl_c_stops_every_worker_and_the_same_command_resumes(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the whole process group) while two processes each train
    a trial: the command exits 130, both running trials are failed ("interrupted") and queued
    again, nobody is left running; the same command then ends with exactly the budget."""
    import subprocess
    import sys

    log_file = tmp_path / "study.log"
    command = [sys.executable, "-m", "mtlsearch", "search", "--strategy", "random_tree",
               "--dataset", "synthetic", "--dataset-arg", "n_tasks=3",
               "--dataset-arg", "n_samples=1000", "--space", "mlp", "--epochs", "30",
               "--trials", "4", "--workers", "2", "--objectives", "delta_mtl,params",
               "--storage", f"journal:{log_file}", "--out", str(tmp_path / "out"), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, start_new_session=True, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # until two processes each run a trial
            running = [t for t in _journal_trials(log_file) if t.state == TrialState.RUNNING
                       and "worker" in t.user_attrs]
            if len({t.user_attrs["worker"]["pid"] for t in running}) == 2:
                break
            assert first.poll() is None, first.communicate()[0]
            time.sleep(0.2)
        else:
            pytest.fail("two workers never ran a trial at once")
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, output
    assert "interrupted" in output and "Run the same command again" in output
    trials = _journal_trials(log_file)
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    # Both were running; one may have finished its last epoch before the signal landed.
    assert len(interrupted) >= 1 and not any(t.state == TrialState.RUNNING for t in trials)
    assert all(t.user_attrs["fail_reason"].startswith("interrupted") for t in interrupted)
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == len(interrupted)  # each queued again, same parameters
    by_number = {t.number: t for t in trials}
    for copy in queued:
        assert copy.params == by_number[copy.system_attrs["failed_trial"]].params

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    trials = _journal_trials(log_file)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


def test_ctrl_c_while_a_spawned_worker_starts_prints_no_traceback(tmp_path):
    """Ctrl-C while a spawned worker is still importing (its bootstrap): the worker starts
    with Ctrl-C blocked until its handler is set, so it stops cleanly like the others (no
    KeyboardInterrupt traceback from inside multiprocessing) and the command exits 130."""
    import subprocess

    command = [sys.executable, "-m", "mtlsearch", "search", "--strategy", "random_tree",
               "--dataset", "synthetic", "--dataset-arg", "n_tasks=3",
               "--dataset-arg", "n_samples=1000", "--space", "mlp", "--epochs", "30",
               "--trials", "4", "--workers", "2", "--log-level", "INFO",
               "--storage", f"journal:{tmp_path / 'study.log'}", "--out", str(tmp_path / "out"),
               "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MTLSEARCH_WORKER_START": "spawn"}
    first = subprocess.Popen(command, start_new_session=True, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    try:
        for line in first.stdout:  # until the parent says it spawns the worker
            said.append(line)
            if "workers spawned" in line:
                break
        else:
            pytest.fail("".join(said))
        time.sleep(0.3)  # the child exists and is importing (that takes seconds)
        os.killpg(first.pid, signal.SIGINT)
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    output = "".join(said) + output
    assert first.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "Run the same command again" in output


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_script_without_a_main_guard_is_told_the_fix(tmp_path, start):
    """spawn imports the calling script again in each worker: one that searches at import
    time gets the fix named (the worker refuses to search; the caller says why). Forked
    workers import nothing again: the same script just runs."""
    import os
    import subprocess
    import sys

    if start == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("workers fork on Linux only")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import torch\n"
        "from mtlsearch.data.builtin.synthetic import load_synthetic\n"
        "from mtlsearch.engine.train import TrainConfig\n"
        "from mtlsearch.study import search\n"
        "torch.set_num_threads(1)\n"
        f"search(strategy='random_tree', dataset=load_synthetic(n_tasks=3, n_samples=240),\n"
        "       space='mlp', space_kwargs={'widths': [8]}, trials=3, workers=2,\n"
        "       budget=TrainConfig(epochs=1), progress=False,\n"
        f"       storage={'journal:' + str(tmp_path / 's.log')!r})\n")
    env = {**os.environ, "MTLSEARCH_WORKER_START": start}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    if start == "fork":
        assert done.returncode == 0, said
        trials = _journal_trials(tmp_path / "s.log")
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
        return
    assert "starts a search at import time" in said, said
    assert 'if __name__ == "__main__":' in said
