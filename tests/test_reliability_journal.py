"""Fault tests with real worker processes on one study (issues 8 and 17), journal storage.

The same scenarios run against PostgreSQL in ``test_reliability_postgres.py`` (it imports the
scenario functions from here): exact study-wide budget with 4 workers, a SIGKILLed worker's
trial failed and retried, SIGINT (and SIGTERM) then resume with the interrupted trial retried,
and failing trials (raise, NaN, out of memory) recorded with their reason. ``audit`` counts
what docs/reliability.md reports: trials lost and studies left short of their budget.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from mtlsearch.engine.train import TrainConfig
from mtlsearch.plugin_manager import register_plugin, unregister_plugin
from mtlsearch.study import search
from mtlsearch.study.storage import open_study

TINY_ARGS = ["--dataset", "synthetic", "--dataset-arg", "n_tasks=3", "--dataset-arg",
             "n_samples=160", "--space", "mlp", "--space-arg", "widths=[8,8]", "--epochs", "1",
             "--threads", "1", "--pruner", "none", "-q"]

# A worker that registers the "faulty" strategy and then runs the ordinary CLI. Faults are
# chosen per original trial number by the environment (JSON): hang = write a marker file
# then sleep (the test kills or interrupts the worker there), or, with RELEASE set, wait for
# that file and go on. Every trial records a draw of the seeded RNG: a retry must redo it.
FAULTY_WORKER = textwrap.dedent('''
    import json, os, pathlib, random, sys, time
    from mtlsearch.hookspecs import hookimpl
    from mtlsearch.plugin_manager import register_plugin
    from mtlsearch.cli import main
    from mtlsearch.plugins.random_tree import RandomTree

    class Faulty(RandomTree):
        name = "faulty"
        def propose(self, trial, ctx):
            trial.set_user_attr("seed_draw", random.random())
            proposal = super().propose(trial, ctx)
            system = trial.study._storage.get_trial_system_attrs(trial._trial_id)
            original = system.get("failed_trial", trial.number)
            faults = json.loads(os.environ.get("FAULTS", "{}"))
            if original in faults.get("hang", []) and "retry_history" not in system:
                marker = pathlib.Path(os.environ["MARKER"])
                marker.write_text(json.dumps({"number": trial.number, "pid": os.getpid()}))
                release = os.environ.get("RELEASE")
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    if release and pathlib.Path(release).exists():
                        break
                    time.sleep(0.1)
            return proposal

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(Faulty)

    register_plugin(Plugin(), "faulty")
    sys.exit(main(sys.argv[1:]))
''')


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def start_worker(storage: str, study: str, trials: int, folder: Path, *, faulty: bool = False,
                 **env: str) -> subprocess.Popen:
    """One ``mtlsearch search`` worker process (the faulty one registers the test strategy)."""
    # One process each (--workers 1): these tests start the processes themselves.
    args = ["search", "--storage", storage, "--study", study, "--trials", str(trials),
            "--out", str(folder), "--workers", "1", *TINY_ARGS]
    if faulty:
        script = folder / "faulty_worker.py"
        script.write_text(FAULTY_WORKER)
        cmd = [sys.executable, str(script), *args, "--strategy", "faulty"]
    else:
        cmd = [sys.executable, "-m", "mtlsearch", *args]
    return subprocess.Popen(cmd, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # A test suite started as a background job (`cmd &` in a script) inherits SIGINT ignored,
    # and so would the worker: give it the terminal's default so the Ctrl-C test means it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"worker ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no marker {path} after {timeout}s")


def counted(study) -> list:
    """Finished trials that use up the budget (a retried failure does not)."""
    retried = set()
    for t in study.trials:
        if "failed_trial" in t.system_attrs:
            retried.add(t.system_attrs["failed_trial"])
            retried.update(t.system_attrs.get("retry_history", []))
    return [t for t in study.trials if t.state.is_finished() and t.number not in retried]


NOT_ITS_OWN = ("interrupted", "abandoned", "stale")  # fail reasons that are retried


def audit(study, budget: int) -> dict:
    """What docs/reliability.md reports for a study after its last resume.

    lost: trials stopped for a reason not their own (interrupted, a dead or silent worker, a
    full disk) that no copy redid, trials left running, copies left waiting; short: 1 when
    the study has fewer counted trials than its budget. Also checks every copy redoes its
    original: its parameters and the same seeded draw.
    """
    trials = study.trials
    copies = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    lost = 0
    for t in trials:
        reason = str(t.user_attrs.get("fail_reason", ""))
        if t.state == TrialState.FAIL and reason.startswith(NOT_ITS_OWN):
            copy = copies.get(t.number)
            if copy is None:
                lost += 1
                continue
            # What the original had sampled, the copy reuses (it may sample what it had not).
            assert t.params.items() <= copy.params.items(), (t.number, copy.number)
            if "seed_draw" in t.user_attrs and "seed_draw" in copy.user_attrs:
                assert copy.user_attrs["seed_draw"] == t.user_attrs["seed_draw"]
        elif t.state in (TrialState.RUNNING, TrialState.WAITING):
            lost += 1
    done = len(counted(study))
    return {"counted": done, "budget": budget, "lost": lost, "short": int(done < budget),
            "retries": len(copies)}


def record_figure(scenario: str, figures: dict) -> None:
    """Print a figure line (``pytest -s``) and append it to $MTLSEARCH_FIGURES if set."""
    print(f"FIGURE {scenario}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    target = os.environ.get("MTLSEARCH_FIGURES")
    if target:
        with open(target, "a") as handle:
            handle.write(json.dumps({"scenario": scenario, **figures}) + "\n")


# ----------------------------------------------------------------------------- scenarios
def check_many_workers_exact_budget(storage: str, study_name: str, folder: Path,
                                       workers: int = 4, trials: int = 40) -> None:
    procs = [start_worker(storage, study_name, trials, folder) for _ in range(workers)]
    for p in procs:
        code, err = finish(p, timeout=400)
        assert code == 0, err[-3000:]
    study = open_study(storage, study_name)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == trials  # no duplicate, no overshoot
    assert Counter(t.state for t in study.trials) == {TrialState.COMPLETE: trials}, [
        t.user_attrs.get("fail_reason") for t in study.trials if t.state != TrialState.COMPLETE]
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(pids) >= 2, "the workers did not share the study"
    figures = audit(study, trials)
    assert figures["lost"] == figures["short"] == 0
    record_figure(f"{workers} workers, one study ({storage.split(':')[0]})", figures)


def check_sigkill_is_failed_and_retried(storage: str, study_name: str, folder: Path,
                                           wait_stale: float = 0.0, **env: str) -> None:
    marker, trials = folder / "hang.json", 4
    victim = start_worker(storage, study_name, trials, folder, faulty=True,
                          FAULTS=json.dumps({"hang": [1]}), MARKER=str(marker), **env)
    hung = wait_for(marker, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    time.sleep(wait_stale)  # a database server needs the heartbeat grace period to pass
    code, err = finish(start_worker(storage, study_name, trials, folder, faulty=True, **env))
    assert code == 0, err[-3000:]
    study = open_study(storage, study_name)
    killed = study.trials[hung["number"]]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith(("abandoned", "stale"))
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params  # the same candidate, redone
    assert retries[0].user_attrs["seed_draw"] == killed.user_attrs["seed_draw"]  # same seed
    assert "fail_reason" not in retries[0].user_attrs
    assert len(counted(study)) == trials
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == trials
    figures = audit(study, trials)
    assert figures["lost"] == figures["short"] == 0
    record_figure(f"SIGKILL mid-trial ({storage.split(':')[0]})", figures)


def check_sigint_stops_cleanly_and_resumes(storage: str, study_name: str, folder: Path,
                                              sig: int = signal.SIGINT, **env: str) -> None:
    """Ctrl-C (or SIGTERM): the trial is failed and queued again; the resume redoes it with
    the same parameters and seed and ends with exactly ``trials`` complete trials."""
    marker, trials = folder / "hang.json", 3
    worker = start_worker(storage, study_name, trials, folder, faulty=True,
                          FAULTS=json.dumps({"hang": [1]}), MARKER=str(marker), **env)
    hung = wait_for(marker, worker)
    worker.send_signal(sig)
    code, err = finish(worker, timeout=60)
    assert code == (143 if sig == signal.SIGTERM else 130), err[-3000:]
    assert "Run the same command again to resume" in err and "Traceback" not in err
    study = open_study(storage, study_name)
    stopped = study.trials[hung["number"]]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["fail_reason"] == (
        "interrupted (SIGTERM)" if sig == signal.SIGTERM else "interrupted")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    copies = [t for t in study.trials if t.user_attrs.get("retry_of") == stopped.number]
    assert len(copies) == 1 and copies[0].state == TrialState.WAITING
    assert len(counted(study)) == hung["number"]  # the interrupted trial does not count
    code, err = finish(start_worker(storage, study_name, trials, folder, faulty=True, **env))
    assert code == 0, err[-3000:]
    study = open_study(storage, study_name)
    copy = study.trials[copies[0].number]
    assert copy.state == TrialState.COMPLETE and copy.params == stopped.params
    assert copy.user_attrs["seed_draw"] == stopped.user_attrs["seed_draw"]  # the same seed
    assert len(counted(study)) == trials and all(t.state.is_finished() for t in study.trials)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == trials
    figures = audit(study, trials)
    assert figures["lost"] == figures["short"] == 0
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
    record_figure(f"{name} mid-trial, then resume ({storage.split(':')[0]})", figures)


# ----------------------------------------------------------------------------- journal tests
def journal(tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'study.log'}"


def test_four_workers_forty_trials_exactly(tmp_path):
    check_many_workers_exact_budget(journal(tmp_path), "many", tmp_path)


def test_sigkilled_worker_trial_is_failed_and_retried(tmp_path):
    check_sigkill_is_failed_and_retried(journal(tmp_path), "kill", tmp_path)


def test_sigint_stops_cleanly_and_restart_resumes(tmp_path):
    check_sigint_stops_cleanly_and_resumes(journal(tmp_path), "sigint", tmp_path)


def test_sigterm_is_an_interruption_too(tmp_path):
    check_sigint_stops_cleanly_and_resumes(journal(tmp_path), "sigterm", tmp_path,
                                           sig=signal.SIGTERM)


# ----------------------------------------------------------------------------- bad trials
class _Bad:
    """Strategy factory: trial 1 raises, trial 2's loss turns NaN, trial 3 runs out of memory."""

    held: list = []

    @staticmethod
    def make():
        from mtlsearch.plugins.random_tree import RandomTree

        class Bad(RandomTree):
            name = "bad_trials"

            def propose(self, trial, ctx):
                self.nan = trial.number == 2
                if trial.number == 1:
                    raise RuntimeError("injected failure")
                if trial.number == 3:
                    block = torch.ones(32, 1024, 1024)  # 128 MiB that the failure must free
                    _Bad.held.append(weakref.ref(block))
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
                return super().propose(trial, ctx)

            def on_backward(self, state):
                if self.nan:
                    for p in state.model.parameters():
                        if p.grad is not None:
                            p.grad.fill_(math.nan)

        return Bad


@pytest.fixture
def bad_strategy():
    from mtlsearch.hookspecs import hookimpl

    strategy = _Bad.make()

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            register(strategy)

    name = register_plugin(Plugin(), "bad_trials_plugin")
    yield strategy
    unregister_plugin(name)
    _Bad.held.clear()


def test_raise_nan_and_oom_are_recorded_and_the_study_goes_on(tmp_path, bad_strategy):
    torch.set_num_threads(1)
    result = search(strategy="bad_trials", dataset="synthetic", space="mlp", trials=5,
                    storage=journal(tmp_path), study_name="bad", progress=False,
                    dataset_kwargs={"n_tasks": 3, "n_samples": 160},
                    space_kwargs={"widths": [8, 8]}, budget=TrainConfig(epochs=1), pruner="none")
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
                                         TrialState.FAIL, TrialState.COMPLETE]
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials]
    assert reasons[1] == "RuntimeError: injected failure"
    assert reasons[2].startswith("TrainingError") and "nan" in reasons[2]
    assert reasons[3].startswith("OutOfMemoryError") and "simulated" in reasons[3]
    assert "injected failure" in trials[1].user_attrs["fail_traceback"]
    gc.collect()
    assert _Bad.held and all(ref() is None for ref in _Bad.held), "memory was not released"
    rows = result.trials_table()
    assert [r["fail_reason"] is not None for r in rows] == [False, True, True, True, False]
