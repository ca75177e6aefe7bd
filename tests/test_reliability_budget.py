"""A study always reaches its budget and never silently loses work (issue 17, section 3).

Each scenario ends with :func:`audit` (from ``test_reliability_journal``): trials lost and
studies left short of their budget, both 0, and every retried trial redone with the same
parameters and seed. ``pytest tests/test_reliability_budget.py -s`` prints the figures that
docs/reliability.md reports ("Round II: studies that finish their budget").

* leases: a silent worker (SIGSTOP, real processes) has its trial failed after the grace
  period and drops its late result; a reused process id, a restarted machine or container
  (another host name) are told from live workers; ``mtlsearch fail-stale`` by hand;
* a full disk: the free-space floor (``shutil.disk_usage`` patched), ENOSPC injected into the
  weights write, and a real tiny tmpfs when the tests run as root;
* a torn journal tail is repaired (backup kept) on open and before every append, a journal
  damaged earlier is refused with the command that cuts it; junk / truncated SQLite files
  give one clear line;
* hypothesis: generated sequences of interruptions, crashes, stale leases, full disks and own
  failures always end with the budget reached and no trial lost; every prefix of a journal
  opens; junk and truncated SQLite files never give a traceback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import optuna
import pytest
import safetensors
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from test_reliability_journal import (
    audit,
    counted,
    finish,
    journal,
    record_figure,
    start_worker,
    wait_for,
)

from mtlsearch.cli import EXIT_CODES, main
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.hookspecs import hookimpl
from mtlsearch.plugin_manager import register_plugin, unregister_plugin
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.study import search
from mtlsearch.study.storage import (
    LEASE_ATTR,
    WORKER_ATTR,
    OutOfSpaceError,
    StorageError,
    fail_stale_trials,
    open_storage,
    open_study,
    retry_trial,
    worker_identity,
    worker_state,
)

TINY = {"dataset": "synthetic", "space": "mlp", "dataset_kwargs": {"n_tasks": 3, "n_samples": 200},
        "space_kwargs": {"widths": [8, 8]}, "budget": TrainConfig(epochs=1, batch_size=64),
        "progress": False, "pruner": "none"}
CLI_TINY = ["--dataset", "synthetic", "--dataset-arg", "n_tasks=3", "--dataset-arg",
            "n_samples=200", "--space", "mlp", "--space-arg", "widths=[8,8]", "--epochs", "1",
            "--pruner", "none", "--quiet"]
NO_SPACE = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _spawned_and_gone() -> int:
    """The process id of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _orphan(study: optuna.Study, worker: dict, heartbeat: float | None) -> optuna.Trial:
    """A running trial as a worker that vanished would leave it."""
    trial = study.ask()
    trial.suggest_int("x", 0, 7)
    trial.set_user_attr(WORKER_ATTR, worker)
    if heartbeat is not None:
        trial.set_user_attr(LEASE_ATTR, heartbeat)
    return trial


# ----------------------------------------------------------------------------- leases
def test_a_silent_workers_trial_is_failed_after_the_grace_and_its_late_result_dropped(tmp_path):
    """SIGSTOP a worker mid-trial (alive, verifiable, but silent): after the grace period the
    next worker fails and redoes its trial; woken up, the stopped worker drops its result."""
    storage, trials = journal(tmp_path), 3
    lease = {"MTLSEARCH_HEARTBEAT_INTERVAL": "1", "MTLSEARCH_GRACE_PERIOD": "3"}
    marker, release = tmp_path / "hang.json", tmp_path / "release"
    victim = start_worker(storage, "silent", trials, tmp_path, faulty=True,
                          FAULTS=json.dumps({"hang": [1]}), MARKER=str(marker),
                          RELEASE=str(release), **lease)
    hung = wait_for(marker, victim)
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        time.sleep(3.5)  # the stopped worker's lease runs out before the other one looks
        code, err = finish(start_worker(storage, "silent", trials, tmp_path, faulty=True,
                                        **lease))
        assert code == 0, err[-3000:]
        stale = open_study(storage, "silent").trials[hung["number"]]
        assert stale.state == TrialState.FAIL
        assert stale.user_attrs["fail_reason"].startswith("stale: no heartbeat from worker")
        release.touch()
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    code, err = finish(victim, timeout=120)
    assert code == 0, err[-3000:]
    assert "its result is dropped" in err and "Traceback" not in err
    study = open_study(storage, "silent")
    assert study.trials[hung["number"]].state == TrialState.FAIL  # not overwritten late
    assert Counter(t.state for t in study.trials) == {TrialState.COMPLETE: trials,
                                                     TrialState.FAIL: 1}
    figures = audit(study, trials)
    assert figures["lost"] == figures["short"] == 0 and figures["counted"] == trials
    record_figure("stale lease: worker SIGSTOPped mid-trial (journal, grace 3 s)", figures)


def test_a_reused_pid_a_restarted_machine_and_another_host_are_told_apart(tmp_path):
    """The quick process-id path checks the process start time: a live process that took a
    dead worker's pid is not taken for it. Other hosts wait for their lease."""
    study = optuna.create_study(storage=open_storage(journal(tmp_path)), study_name="ids")
    me = worker_identity()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = worker_identity(sleeper.pid)
        assert alive["start"] and alive["start"] != me["start"]
        assert worker_state(alive, me)[0] == "alive"
        reused = {**alive, "start": "proc:1"}  # the pid now belongs to a later process
        assert worker_state(reused, me) == (
            "dead", f"worker {sleeper.pid} ended (its process id is now another process's)")
        assert worker_state({**alive, "boot": "an-earlier-boot"}, me)[0] == "dead"
        assert worker_state({**alive, "pidns": "pid:[1]"}, me)[0] == "unknown"
        assert worker_state({**alive, "host": "elsewhere"}, me)[0] == "unknown"
        gone = _spawned_and_gone()
        assert worker_state({**me, "pid": gone, "start": None}, me) == (
            "dead", f"worker {gone} ended")

        now = time.time()
        live = _orphan(study, alive, now)
        fake = _orphan(study, reused, now)
        away_fresh = _orphan(study, {"host": "restarted-container", "pid": 7}, now)
        away_old = _orphan(study, {"host": "restarted-container", "pid": 8}, now - 500)
        rows = {r.number: r for r in fail_stale_trials(study)}
    finally:
        sleeper.kill()
        sleeper.wait()
    assert rows[live.number].verdict == "running"
    assert rows[fake.number].verdict == "abandoned"  # at once: no grace period to wait
    assert rows[away_fresh.number].verdict == "running"
    assert rows[away_old.number].verdict == "stale"
    assert rows[away_old.number].reason.startswith(
        "stale: no heartbeat from worker restarted-container pid 8 for 0:08:")
    trials = study.get_trials(deepcopy=False)
    for failed in (fake, away_old):
        copy = trials[rows[failed.number].retry]
        assert copy.state == TrialState.WAITING and copy.params == trials[failed.number].params
        assert copy.system_attrs["failed_trial"] == failed.number
    assert len(trials) == 6


def test_a_trial_left_by_a_restarted_container_no_longer_blocks_the_budget(tmp_path,
                                                                          monkeypatch):
    """Issue 17: a running trial from another host name stayed RUNNING forever on journal and
    SQLite files, so the budget was never reached. Now its lease runs out."""
    monkeypatch.setenv("MTLSEARCH_GRACE_PERIOD", "2")
    monkeypatch.setenv("MTLSEARCH_HEARTBEAT_INTERVAL", "1")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search(trials=1, storage=storage, study_name="moved", cache=tmp_path / "cache", **TINY)
    study = open_study(storage, "moved")
    orphan = _orphan(study, {"host": "container-before-restart", "pid": 1, "start": "proc:5"},
                     time.time() - 60)
    orphan_params = dict(study.trials[orphan.number].params)
    result = search(trials=3, storage=storage, study_name="moved", cache=tmp_path / "cache",
                    **TINY)
    trials = result.study.trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs["fail_reason"].startswith("stale")
    copy = next(t for t in trials if t.user_attrs.get("retry_of") == orphan.number)
    assert copy.state == TrialState.COMPLETE
    assert orphan_params.items() <= copy.params.items()  # redone with the orphan's parameters
    figures = audit(result.study, 3)
    assert figures["lost"] == figures["short"] == 0
    record_figure("stale lease: trial of a restarted container (other host name, SQLite)",
                  figures)


def test_fail_stale_command_lists_fails_and_requeues_by_hand(tmp_path, capsys):
    storage = f"journal:{tmp_path / 'study.log'}"
    out = tmp_path / "out"
    assert main(["search", *CLI_TINY, "--workers", "1", "--trials", "1", "--storage", storage, "--study", "s",
                 "--out", str(out)]) == 0
    study = open_study(storage, "s")
    away = _orphan(study, {"host": "gpu-7", "pid": 99}, time.time())
    dead = _orphan(study, {**worker_identity(), "pid": _spawned_and_gone()}, time.time())
    capsys.readouterr()
    args = ["fail-stale", "--storage", storage, "--study", "s"]

    assert main(args) == 0  # defaults: the dead local worker only
    text = capsys.readouterr().out
    assert f"trial {dead.number}: failed (abandoned: worker" in text
    assert "queued again as trial 3 with the same parameters and seed" in text
    assert f"trial {away.number}: kept running (worker gpu-7 pid 99" in text
    assert "1 stale trial failed and queued again, 1 running trial kept" in text

    assert main([*args, "--older-than", "0", "--dry-run"]) == 0
    assert f"trial {away.number}: would be failed" in capsys.readouterr().out
    assert open_study(storage, "s").trials[away.number].state == TrialState.RUNNING

    assert main([*args, "--older-than", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["trials"]
    assert row["number"] == away.number and row["verdict"] == "stale" and row["retry"] == 4
    study = open_study(storage, "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.FAIL, TrialState.WAITING,
                                               TrialState.WAITING]
    assert main([*args, "--older-than", "-1"]) == 2
    assert "--older-than must be 0 or more" in capsys.readouterr().err
    # The copies run first on resume, with the orphans' parameters; the budget is exact.
    assert main(["search", *CLI_TINY, "--workers", "1", "--trials", "3", "--storage", storage, "--study", "s",
                 "--out", str(out)]) == 0
    study = open_study(storage, "s")
    assert study.trials[dead.number].params.items() <= study.trials[3].params.items()
    figures = audit(study, 3)
    assert figures == {"counted": 3, "budget": 3, "lost": 0, "short": 0, "retries": 2}


def test_retries_of_crashes_are_limited_but_interruptions_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLSEARCH_MAX_RETRY", "1")
    study = optuna.create_study(storage=open_storage(journal(tmp_path)), study_name="limit")
    trial = study.ask()
    trial.suggest_int("x", 0, 7)
    study.tell(trial, state=TrialState.FAIL)
    first = retry_trial(study, study.trials[0])  # a crash: counts toward the limit
    study.tell(study.ask(), state=TrialState.FAIL)  # the copy fails again
    assert retry_trial(study, study.trials[first]) is None  # limit reached: it counts
    again = retry_trial(study, study.trials[first], limited=False)  # an interruption
    assert again is not None and study.trials[again].system_attrs["retry_history"] == [0, 1]


# ----------------------------------------------------------------------------- full disk
def _usage(free: int):
    return shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30 - free, free)


def _search_cli(storage: str, out: Path, trials: int) -> list[str]:
    return ["search", *CLI_TINY, "--workers", "1", "--trials", str(trials), "--storage", storage, "--study", "d",
            "--out", str(out)]


def test_too_little_free_space_stops_before_training(tmp_path, capsys, monkeypatch):
    storage, out = f"journal:{tmp_path / 'study.log'}", tmp_path / "out"
    assert main(_search_cli(storage, out, 1)) == 0
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _usage(10 * 2**20))
    capsys.readouterr()
    assert main(_search_cli(storage, out, 3)) == EXIT_CODES["no_space"] == 75
    err = capsys.readouterr().err
    assert err.startswith("mtlsearch: error: only 10.0 MiB free under ") and str(out) in err
    assert "wants 64.0 MiB free" in err and "run the same command again" in err
    assert len(open_study(storage, "d").trials) == 1  # nothing started, nothing lost
    monkeypatch.setenv("MTLSEARCH_MIN_FREE_MB", "5")  # the floor is the user's to set
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert main(_search_cli(storage, out, 3)) == 0
    figures = audit(open_study(storage, "d"), 3)
    assert figures["lost"] == figures["short"] == 0
    record_figure("full disk: floor not met before a trial (disk_usage patched)", figures)


def test_enospc_on_the_weights_write_stops_the_study_and_the_trial_is_retried(
        tmp_path, capsys, monkeypatch):
    """Issue 17: every trial trained, failed writing its weights, used up the budget, and
    the command exited 0. Now the first failed write stops the study with status 75."""
    storage, out = f"journal:{tmp_path / 'study.log'}", tmp_path / "out"
    real, calls = safetensors.torch.save_file, []

    def full_on_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"half a file")  # what a full disk leaves behind
            raise safetensors.SafetensorError(NO_SPACE)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_on_second)
    assert main(_search_cli(storage, out, 3)) == 75
    err = capsys.readouterr().err
    assert "no space left to write" in err and "trial 1 was stopped and queued again" in err
    assert "run the same command again" in err and "Traceback" not in err
    study = open_study(storage, "d")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.WAITING]
    assert study.trials[1].user_attrs["fail_reason"].startswith("interrupted: no space left")
    assert not list((out / "weights").glob(".*.tmp"))  # the half file was removed
    monkeypatch.setattr(safetensors.torch, "save_file", real)  # space is back
    assert main(_search_cli(storage, out, 3)) == 0
    study = open_study(storage, "d")
    assert study.trials[2].state == TrialState.COMPLETE
    assert study.trials[2].params == study.trials[1].params
    assert "weights_artifact" in study.trials[2].user_attrs
    figures = audit(study, 3)
    assert figures == {"counted": 3, "budget": 3, "lost": 0, "short": 0, "retries": 1}
    record_figure("full disk: ENOSPC injected into the weights write", figures)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a real full file system needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: the write itself fails
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28
    return filler


def test_a_real_full_disk_under_out(tiny_disk, tmp_path, capsys, monkeypatch):
    storage, out = f"journal:{tmp_path / 'study.log'}", tiny_disk / "out"
    assert main(_search_cli(storage, out, 1)) == 75  # 3 MiB < the 64 MiB floor: no training
    assert "free under" in capsys.readouterr().err
    assert open_study(storage, "d").trials == []
    monkeypatch.setenv("MTLSEARCH_MIN_FREE_MB", "0")  # no floor: the writes themselves fail
    assert main(_search_cli(storage, out, 1)) == 0
    filler = _fill(tiny_disk)
    capsys.readouterr()
    assert main(_search_cli(storage, out, 3)) == 75
    err = capsys.readouterr().err
    assert "No space left on device" in err and "trial 1 was stopped and queued again" in err
    filler.unlink()
    assert main(_search_cli(storage, out, 3)) == 0
    figures = audit(open_study(storage, "d"), 3)
    assert figures == {"counted": 3, "budget": 3, "lost": 0, "short": 0, "retries": 1}
    record_figure("full disk: a real 3 MiB tmpfs under --out", figures)


# ----------------------------------------------------------------------------- torn journal
def _torn(path: Path) -> bytes:
    """Append half of a real record, as a writer killed mid-write leaves it."""
    last = path.read_bytes().splitlines(keepends=True)[-1]
    torn = last[: len(last) // 2]
    with open(path, "ab") as handle:
        handle.write(torn)
    return torn


def test_a_torn_journal_tail_is_repaired_and_the_study_resumes(tmp_path, capsys, caplog):
    log_file, out = tmp_path / "study.log", tmp_path / "out"
    storage = f"journal:{log_file}"
    assert main(_search_cli(storage, out, 2)) == 0
    torn = _torn(log_file)
    control = tmp_path / "control.log"  # what plain Optuna did with the same file
    shutil.copy(log_file, control)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    plain = JournalStorage(JournalFileBackend(str(control)))
    plain.set_study_user_attr(0, "appended", 1)  # lands on the torn line (and is lost)
    with pytest.raises(ValueError):  # the next write, and every reader, fail from then on
        plain.set_study_user_attr(0, "appended", 2)
    with pytest.raises(ValueError):
        JournalStorage(JournalFileBackend(str(control)))

    caplog.set_level("WARNING")
    capsys.readouterr()
    assert main(["show", "--storage", storage, "--study", "d"]) == 0
    [backup] = tmp_path.glob("study.log.torn-*")
    assert backup.read_bytes() == torn and str(backup) in caplog.text
    assert log_file.read_bytes().endswith(b"\n")
    assert main(_search_cli(storage, out, 4)) == 0
    figures = audit(open_study(storage, "d"), 4)
    assert figures["lost"] == figures["short"] == 0 and figures["counted"] == 4
    record_figure("torn journal tail (a crash mid-write), then show + search", figures)


def test_a_tail_torn_while_workers_run_is_cut_before_the_next_write(tmp_path):
    path = tmp_path / "study.log"
    storage = open_storage(f"journal:{path}")
    study = optuna.create_study(storage=storage, study_name="live")
    trial = study.ask()
    _torn(path)  # another worker died mid-write meanwhile
    trial.set_user_attr("after", 1)  # under the journal's lock: the torn tail goes first
    assert len(list(tmp_path.glob("study.log.torn-*"))) == 1
    again = open_study(f"journal:{path}", "live")
    assert again.trials[0].user_attrs == {"after": 1}


def test_a_journal_damaged_before_its_end_is_refused_with_the_command_that_cuts_it(
        tmp_path, capsys):
    path = tmp_path / "study.log"
    storage = f"journal:{path}"
    study = optuna.create_study(storage=open_storage(storage), study_name="bad")
    for _ in range(3):
        study.enqueue_trial({"x": 1})
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"garbage that is not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(StorageError, match=f"is damaged at line 3 of {len(lines)}") as info:
        open_study(storage, "bad")
    assert main(["show", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "head -n 2" in err
    command = str(info.value).rsplit("): ", 1)[1]
    subprocess.run(command, shell=True, check=True)  # the advice works as printed
    assert len(open_study(storage, "bad").trials) == 1


@pytest.fixture(scope="module")
def journal_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("journal")
    study = optuna.create_study(storage=open_storage(f"journal:{folder / 'j.log'}"),
                                study_name="j", directions=["maximize", "minimize"])
    for i in range(4):
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        trial.set_user_attr("graph", {"nodes": list(range(i * 3))})
        study.tell(trial, [float(i), float(-i)])
    return (folder / "j.log").read_bytes()


GENERATED: dict[str, Counter] = {"journal prefixes": Counter(), "damaged SQLite files": Counter(),
                                 "interruption and crash sequences": Counter()}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1))
def test_every_prefix_of_a_journal_opens_and_takes_writes(journal_bytes, cut):
    """A crash can stop a journal anywhere: the study opens with the whole records before the
    cut, the torn bytes are kept aside, and the next writes read back in a fresh process."""
    n = int(cut * len(journal_bytes))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "j.log"
        path.write_bytes(journal_bytes[:n])
        whole = journal_bytes[:n].rfind(b"\n") + 1
        figures = GENERATED["journal prefixes"]
        figures.update(tried=1, repaired=n > whole)
        try:
            study = open_study(f"journal:{path}", "j")
        except MTLSearchError as exc:  # the cut came before the study was created
            assert "no study 'j'" in str(exc)
            figures.update(no_study_yet=1)
            return
        figures.update(opened=1)
        assert path.read_bytes() == journal_bytes[:whole]
        backups = list(Path(folder).glob("j.log.torn-*"))
        assert [b.read_bytes() for b in backups] == ([journal_bytes[whole:n]] if n > whole
                                                     else [])
        study.set_user_attr("resumed", True)
        assert open_study(f"journal:{path}", "j").user_attrs["resumed"] is True


# ----------------------------------------------------------------------------- junk SQLite
@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("db")
    study = optuna.create_study(storage=open_storage(f"sqlite:///{folder / 's.db'}"),
                                study_name="s")
    for i in range(3):
        trial = study.ask()
        trial.set_user_attr("graph", {"nodes": list(range(50))})
        study.tell(trial, float(i))
    return (folder / "s.db").read_bytes()


def test_junk_and_truncated_sqlite_files_are_one_clear_line(tmp_path, capsys, study_db):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    cases = {"junk.db": (b"these are my notes\n" * 20, "is not a SQLite database"),
             "cut.db": (study_db[: len(study_db) // 2], "is truncated"),
             "head.db": (study_db[:40], "is truncated (shorter than a SQLite header)"),
             "other.db": (None, "of something else (tables invoices)")}
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        url = f"sqlite:///{path}"
        with pytest.raises(StorageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            open_study(url)
        for argv in (["show", "--storage", url],
                     ["search", *CLI_TINY, "--workers", "1", "--trials", "1", "--storage", url]):
            capsys.readouterr()
            assert main(argv) == 2, (name, argv[0])
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err and str(path) in err
            assert "restore it from a backup, or start a new study" in err.lower()
    assert other.read_bytes()  # refused untouched: no Optuna tables added to it
    with sqlite3.connect(other) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"invoices"}
    empty = tmp_path / "empty.db"
    empty.touch()  # SQLite's own notion of a new database: accepted
    assert open_storage(f"sqlite:///{empty}") is not None


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["cut", "junk", "junk_with_header"]), cut=st.floats(0, 1),
       junk=st.binary(min_size=1, max_size=3000))
def test_no_damaged_sqlite_file_gives_a_traceback(study_db, kind, cut, junk, capsys):
    if kind == "cut":
        content = study_db[: int(cut * len(study_db))]
    elif kind == "junk":
        content = junk
    else:
        content = study_db[:100] + junk
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.db"
        path.write_bytes(content)
        capsys.readouterr()
        code = main(["show", "--storage", f"sqlite:///{path}", "--json"])
        err = capsys.readouterr().err
    GENERATED["damaged SQLite files"].update(tried=1, refused=code == 2, opened=code == 0)
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("mtlsearch: error: ")
    else:
        assert content == study_db


# ----------------------------------------------------------------------------- generated runs
class _Crash(BaseException):
    """The process dies here (kill -9, power cut): nothing of the trial is recorded."""


EVENTS = ("ok", "own_failure", "interrupt", "crash", "vanish", "disk_full")
PLAN: list[str] = []
DISK = {"full": False}


class Scripted(Strategy):
    """Each trial attempt takes the next event of PLAN (after sampling and a seeded draw)."""

    name = "test_scripted"

    def propose(self, trial, ctx):
        trial.suggest_int("x", 0, 10**6)
        trial.set_user_attr("seed_draw", random.random())
        event = PLAN.pop(0) if PLAN else "ok"
        if event == "own_failure":
            raise RuntimeError("own failure")
        if event == "interrupt":
            raise KeyboardInterrupt
        if event in ("crash", "vanish"):
            trial.set_user_attr("crash", event)
            raise _Crash(event)
        DISK["full"] = event == "disk_full"
        return Proposal(ctx.new_graph("hard_sharing"))


@pytest.fixture(scope="module")
def scripted():
    plugin = type("P", (), {"register_strategies": hookimpl(
        lambda self, register: register(Scripted))})()
    name = register_plugin(plugin, "scripted_plugin")
    real = safetensors.torch.save_file

    def save(tensors, filename, metadata=None):
        if DISK["full"]:
            DISK["full"] = False  # space is back for the next call
            raise safetensors.SafetensorError(NO_SPACE)
        return real(tensors, filename, metadata=metadata)

    safetensors.torch.save_file = save
    try:
        yield
    finally:
        safetensors.torch.save_file = real
        unregister_plugin(name)


FIGURES = GENERATED["interruption and crash sequences"]


def _after_crash(study: optuna.Study) -> None:
    """Make the crashed trial look as a dead process leaves it (this one lives on)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("crash") == "crash":  # same machine: the process id is gone
            worker = {**worker_identity(), "pid": _spawned_and_gone(), "start": "proc:1"}
            study._storage.set_trial_user_attr(t._trial_id, WORKER_ATTR, worker)
        else:  # a worker elsewhere that went silent long ago
            study._storage.set_trial_user_attr(t._trial_id, WORKER_ATTR,
                                               {"host": "elsewhere", "pid": 3})
            study._storage.set_trial_user_attr(t._trial_id, LEASE_ATTR, time.time() - 10**4)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(budget=st.integers(1, 3), plan=st.lists(st.sampled_from(EVENTS), max_size=6))
def test_any_sequence_of_interruptions_and_crashes_ends_with_the_budget(
        scripted, tmp_path_factory, monkeypatch, budget, plan):
    monkeypatch.setenv("MTLSEARCH_MAX_RETRY", "10")  # no chain here is long enough to matter
    cache = tmp_path_factory.getbasetemp() / "shared-cache"  # one reference for every run
    PLAN[:] = list(plan)
    DISK["full"] = False
    with tempfile.TemporaryDirectory() as folder:
        storage = f"journal:{Path(folder) / 'study.log'}"
        args = dict(strategy="test_scripted", trials=budget, storage=storage, study_name="g",
                    out=Path(folder) / "out", cache=cache, **TINY)
        for _ in range(len(plan) + 2):  # each event stops at most one run
            try:
                search(**args)
                break
            except (KeyboardInterrupt, OutOfSpaceError):
                pass
            except _Crash:
                _after_crash(open_study(storage, "g"))
        trials = open_study(storage, "g").trials
    study = types.SimpleNamespace(trials=trials)  # what audit reads; the folder is gone
    figures = audit(study, budget)
    own = sum(t.user_attrs.get("fail_reason") == "RuntimeError: own failure" for t in trials)
    assert figures["lost"] == 0 and figures["short"] == 0, (plan, figures)
    assert figures["counted"] == budget == len(counted(study))
    assert sum(t.state == TrialState.COMPLETE for t in trials) == budget - own
    FIGURES.update(sequences=1, counted=figures["counted"], lost=figures["lost"],
                   short=figures["short"], retries=figures["retries"])
    FIGURES.update(e for e in plan[: len(plan) - len(PLAN)] if e != "ok")


def test_zz_generated_figures():
    """Report what the generated cases above did (they run first, in file order)."""
    if not any(GENERATED.values()):
        pytest.skip("the generated cases did not run")
    for name, figures in GENERATED.items():
        if figures:
            record_figure(f"generated: {name} (hypothesis, derandomized)",
                          dict(sorted(figures.items())))
    assert FIGURES["lost"] == FIGURES["short"] == 0
