"""Where studies live: in memory, SQLite, Optuna's journal file, or a database server.

Besides opening storages, this module keeps a study's budget honest when workers die: the
budget lock ("count, then ask" by one worker at a time), worker identities and leases (a
running trial whose worker is gone, or silent for longer than the grace period, is failed and
queued again with the same parameters), and the checks that refuse a damaged storage file with
a clear message (a torn journal tail is repaired, keeping a backup). See docs/reliability.md.

Example:
    >>> open_storage(None) is None
    True
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.errors import MTLSearchError, OutOfSpaceError, StorageError

__all__ = ["open_storage", "open_study", "study_names", "budget_lock", "retry_trial",
           "retried_numbers", "HEARTBEAT_ENV", "MIN_FREE_ENV", "LEASE_ATTR", "WORKER_ATTR",
           "Lease", "RunningTrial", "fail_stale_trials", "worker_identity", "worker_state",
           "uses_lease", "StorageError", "OutOfSpaceError", "check_free_space",
           "free_space_floor", "free_bytes", "is_out_of_space", "repair_journal",
           "storage_errors", "storage_folder", "lease_settings"]

log = logging.getLogger(__name__)

#: Environment variables that tune heartbeats and leases (seconds / count).
HEARTBEAT_ENV = {"interval": "MTLSEARCH_HEARTBEAT_INTERVAL", "grace": "MTLSEARCH_GRACE_PERIOD",
                 "retries": "MTLSEARCH_MAX_RETRY"}
_DEFAULTS = {"interval": 30, "grace": 120, "retries": 3}
#: Free space (MiB) a study wants under its folders before each trial (overrides the floor).
MIN_FREE_ENV = "MTLSEARCH_MIN_FREE_MB"
MIN_FREE_BYTES = 64 * 2**20
LEASE_ATTR = "heartbeat"  # trial user attribute: time.time() of the worker's last renewal
WORKER_ATTR = "worker"  # trial user attribute: worker_identity() of the process running it
_CRASHES_ATTR = "mtlsearch_crash_retries"  # system attribute: retries that count to the limit


def _env_int(key: str) -> int:
    raw = os.environ.get(HEARTBEAT_ENV[key], "")
    try:
        value = int(raw) if raw.strip() else _DEFAULTS[key]
    except ValueError:
        raise MTLSearchError(f"{HEARTBEAT_ENV[key]}={raw!r} is not a whole number") from None
    if value < (0 if key == "retries" else 1):
        raise MTLSearchError(f"{HEARTBEAT_ENV[key]} must be positive, got {value}")
    return value


def lease_settings() -> tuple[int, int]:
    """``(interval, grace)`` in seconds; the grace is at least two intervals."""
    interval = _env_int("interval")
    return interval, max(_env_int("grace"), 2 * interval)


# --------------------------------------------------------------------------- retries
def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that another trial retries (they do not use up the budget)."""
    numbers: set[int] = set()
    for t in trials:
        if "failed_trial" in t.system_attrs:
            numbers.add(int(t.system_attrs["failed_trial"]))
            # A retry of a retry: every trial of the chain was redone by the next one.
            numbers.update(int(n) for n in t.system_attrs.get("retry_history", []))
    return numbers


def retry_trial(study: optuna.Study, trial: FrozenTrial, *, max_retry: int | None = None,
                limited: bool = True) -> int | None:
    """Queue a fresh copy of failed ``trial`` (same parameters and seed) unless retried enough.

    Mirrors Optuna's ``RetryHeartbeatStaleTrialCallback`` but drops the user attributes (the
    copy must not inherit ``fail_reason`` or the dead worker's id). ``limited=False`` is for
    retries that are not the trial's doing (an interruption, a full disk): they are always
    queued and do not count toward ``max_retry`` (default ``MTLSEARCH_MAX_RETRY``).

    Returns:
        The number of the queued copy, or ``None`` when the trial was retried enough (it then
        counts as a failed trial).
    """
    max_retry = _env_int("retries") if max_retry is None else max_retry
    previous = trial.system_attrs.get("retry_history", [])
    crashes = int(trial.system_attrs.get(_CRASHES_ATTR, len(previous))) + int(limited)
    if limited and crashes > max_retry:
        return None
    original = trial.system_attrs.get("failed_trial", trial.number)
    system = {k: v for k, v in trial.system_attrs.items() if k in ("fixed_params",)}
    system.update({"failed_trial": original, "retry_history": [*previous, trial.number],
                   _CRASHES_ATTR: crashes})
    copy = optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number}, system_attrs=system)
    storage = study._storage
    trial_id = storage.create_new_trial(study._study_id, template_trial=copy)
    return storage.get_trial_number_from_id(trial_id)


def _stale_callback(max_retry: int) -> Any:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        # Called by optuna.storages.fail_stale_trials (Optuna's own tools) once per trial it
        # failed: the trial is finished by then, so no fail_reason can be added any more.
        # mtlsearch's workers fail stale trials themselves (fail_stale_trials below).
        retry_trial(study, trial, max_retry=max_retry)
    return callback


# --------------------------------------------------------------------------- workers, leases
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, owned by another user
    return True


def _process_start(pid: int, kind: str | None = None) -> str | None:
    """When process ``pid`` started, as ``"proc:TICKS"`` (Linux) or ``"psutil:SECONDS"``.

    With the pid, it names one process: a pid used again by a later process has another start.
    """
    if kind in (None, "proc"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                data = handle.read()
            # Field 22 (starttime); the name in field 2 may hold spaces and parentheses.
            return f"proc:{int(data[data.rindex(b')') + 2:].split()[19])}"
        except (OSError, ValueError, IndexError):
            if kind == "proc":
                return None
    try:
        import psutil  # optional: not a dependency
    except ImportError:
        return None
    try:
        return f"psutil:{psutil.Process(pid).create_time():.3f}"
    except Exception:  # no such process, access denied
        return None


def _read_first(path: str, link: bool = False) -> str | None:
    try:
        return os.readlink(path) if link else Path(path).read_text().strip() or None
    except OSError:
        return None


def worker_identity(pid: int | None = None) -> dict[str, Any]:
    """This process as a worker: host, pid, process start, boot id and pid namespace.

    The last three (Linux) tell a dead worker from a live one whose pid was reused, a machine
    that restarted (another boot id: every earlier process is gone), and a container that
    shares the host name but not the process ids (another pid namespace: no verdict).
    """
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid),
            "boot": _read_first("/proc/sys/kernel/random/boot_id"),
            "pidns": _read_first("/proc/self/ns/pid", link=True)}


def worker_state(worker: Mapping[str, Any], me: Mapping[str, Any] | None = None
                 ) -> tuple[str, str]:
    """``("dead" | "alive" | "unknown", why)`` for a recorded worker, as seen from here.

    Only a worker on this machine, in this pid namespace, can be checked: "dead" when its
    process is gone, its pid now belongs to a process that started at another time, or the
    machine restarted since; "alive" when the pid and its start time match. Everything else
    (another host, no start time to compare) is "unknown" and left to the lease.
    """
    me = worker_identity() if me is None else me
    if not worker or worker.get("host") != me["host"]:
        return "unknown", f"worker on {worker.get('host', '?')}"
    pid = worker.get("pid")
    if worker.get("boot") and me.get("boot") and worker["boot"] != me["boot"]:
        return "dead", f"worker {pid} ran before this machine restarted"
    if worker.get("pidns") and me.get("pidns") and worker["pidns"] != me["pidns"]:
        return "unknown", f"worker {pid} in another process namespace"
    if not pid:
        return "unknown", "worker without a process id"
    pid = int(pid)
    if not _pid_alive(pid):
        return "dead", f"worker {pid} ended"
    recorded = worker.get("start")
    if recorded:
        current = _process_start(pid, str(recorded).split(":", 1)[0])
        if current is not None:
            if current == recorded:
                return "alive", f"worker {pid} is running"
            return "dead", f"worker {pid} ended (its process id is now another process's)"
    return "unknown", f"worker {pid} (its process start time cannot be checked)"


def uses_lease(study: optuna.Study) -> bool:
    """Whether running trials keep a lease: every stored study (not one in memory, which a
    single process owns). Database servers also get Optuna's heartbeat; the lease covers what
    that does not (a worker that died between asking for a trial and its first heartbeat)."""
    return not isinstance(study._storage, optuna.storages.InMemoryStorage)


class Lease:
    """Keeps a running trial's lease fresh from a daemon thread while inside.

    Every ``interval`` seconds the trial's ``heartbeat`` user attribute gets the time; other
    workers fail and retry the trial once it is older than the grace period. ``lost`` is set
    when the trial was finished by someone else meanwhile (this worker was taken for dead).

    Example:
        >>> with Lease(study, trial) as lease:  # doctest: +SKIP
        ...     train()
    """

    def __init__(self, study: optuna.Study, trial: Any, *, enabled: bool = True,
                 interval: float | None = None):
        self.storage, self.trial_id = study._storage, trial._trial_id
        self.enabled = enabled
        self.interval = float(lease_settings()[0] if interval is None else interval)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        """Write the lease now (raises if the trial was finished elsewhere)."""
        try:
            self.storage.set_trial_user_attr(self.trial_id, LEASE_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            self.lost.set()
            raise

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except Exception as exc:  # a busy or briefly full storage: try again next time
                log.debug("lease of trial id %s not renewed: %s", self.trial_id, exc)

    def __enter__(self) -> Lease:
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name=f"mtlsearch-lease-{self.trial_id}")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None


@dataclass
class RunningTrial:
    """A trial that was running when :func:`fail_stale_trials` looked at it.

    Attributes:
        number: Trial number; worker: its recorded worker (host, pid, ...).
        age: Seconds since its lease was last renewed (or since it started).
        verdict: ``"running"`` (kept), ``"abandoned"`` (its worker is dead) or ``"stale"``
            (no lease renewal within the grace period); reason: the recorded ``fail_reason``.
        retry: Number of the queued copy (same parameters and seed), ``None`` when kept or
            retried too often already.
    """

    number: int
    worker: dict[str, Any]
    age: float
    verdict: str
    reason: str = ""
    retry: int | None = None
    state: str = field(default="", repr=False)  # what worker_state() said

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "worker": self.worker, "age_seconds": self.age,
                "verdict": self.verdict, "reason": self.reason, "retry": self.retry}


def _lease_age(t: FrozenTrial, now: float) -> float:
    """Seconds since the trial's lease was renewed (a clock ahead of ours counts as now)."""
    last = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        last = float(t.user_attrs[LEASE_ATTR])
    if last is None and t.datetime_start is not None:
        # A worker that died between asking and claiming, or an older mtlsearch: no lease.
        last = t.datetime_start.timestamp()
    return max(now - last, 0.0) if last is not None else float("inf")


def _fail_and_retry(study: optuna.Study, t: FrozenTrial, reason: str, *,
                    limited: bool = True) -> int | None:
    storage = study._storage
    try:
        storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # its worker finished it meanwhile
    now = storage.get_trial(t._trial_id)
    if now.state != TrialState.FAIL or now.user_attrs.get("fail_reason") != reason:
        return None  # someone else told it first
    return retry_trial(study, now, limited=limited)


def _hms(seconds: float) -> str:
    if seconds == float("inf"):
        return "ever"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _requeue_orphans(study: optuna.Study) -> None:
    """Queue the interrupted trials whose copy was never queued (a second Ctrl-C, or a full
    disk, in between): an interruption is never the trial's fault, so it never counts."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    for t in trials:
        if (t.state == TrialState.FAIL and t.number not in retried
                and str(t.user_attrs.get("fail_reason", "")).startswith("interrupted")):
            number = retry_trial(study, t, limited=False)
            log.warning("interrupted trial %d queued again as trial %s", t.number, number)


def fail_stale_trials(study: optuna.Study, *, grace: float | None = None,
                      dry_run: bool = False, now: float | None = None) -> list[RunningTrial]:
    """Fail, and queue again, the running trials whose worker is dead or silent.

    A trial is failed at once when its worker is verifiably dead on this machine
    (:func:`worker_state`), when its lease (:class:`Lease`) is older than ``grace`` seconds
    (default ``MTLSEARCH_GRACE_PERIOD``), whatever the host, and on database servers when
    Optuna's heartbeat of it is older than the storage's grace period.
    Each failed trial is queued again with the same parameters and seed and no longer counts
    toward the budget. Call it under :func:`budget_lock`, so two workers never retry one trial
    twice.

    Returns:
        Every trial that was running but this process's own: the failed ones (``verdict``
        ``abandoned``/``stale``) and the kept ones. ``dry_run=True`` changes nothing.
    """
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if isinstance(storage, optuna.storages.InMemoryStorage):
        return []
    silent: set[int] = set()  # Optuna's heartbeat (database servers): trials past the grace
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        # Asked here rather than through optuna.storages.fail_stale_trials, which fails the
        # trials before its callback runs: too late to record why.
        silent = set(storage._get_stale_trial_ids(study._study_id))
    if not dry_run:
        _requeue_orphans(study)
    grace = lease_settings()[1] if grace is None else max(float(grace), 0.0)
    now = time.time() if now is None else now
    me = worker_identity()
    seen: list[RunningTrial] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = dict(t.user_attrs.get(WORKER_ATTR) or {})
        if worker and all(worker.get(k) == me[k] for k in ("host", "pid", "start")):
            continue  # this very process (a trial of its own that is running)
        state, why = worker_state(worker, me)
        age = _lease_age(t, now)
        row = RunningTrial(t.number, worker, age, "running", state=state)
        if state == "dead":
            row.verdict, row.reason = "abandoned", f"abandoned: {why}"
        elif t._trial_id in silent:
            row.verdict = "stale"
            row.reason = "stale: the worker stopped sending heartbeats"
        elif age > grace:
            who = f"{worker.get('host', '?')} pid {worker.get('pid', '?')}"
            row.verdict = "stale"
            row.reason = (f"stale: no heartbeat from worker {who} for {_hms(age)} "
                          f"(grace {_hms(grace)})")
        if row.verdict != "running" and not dry_run:
            row.retry = _fail_and_retry(study, t, row.reason)
            log.warning("trial %d %s%s", t.number, row.reason,
                        f"; queued again as trial {row.retry}" if row.retry is not None
                        else "; retried too often: it counts as failed")
        seen.append(row)
    return seen


# --------------------------------------------------------------------------- free space
def is_out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk or an exceeded quota."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if any(s in text for s in ("No space left on device", "Disk quota exceeded",
                                   "database or disk is full", "os error 28", "os error 122")):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def free_space_floor(largest_weights: int = 0) -> int:
    """Bytes a study wants free before a trial: ``MTLSEARCH_MIN_FREE_MB``, else the larger of
    64 MiB and four times the largest weights file it wrote."""
    raw = os.environ.get(MIN_FREE_ENV, "").strip()
    if raw:
        try:
            mib = float(raw)
        except ValueError:
            raise MTLSearchError(f"{MIN_FREE_ENV}={raw!r} is not a number of MiB") from None
        if mib < 0:
            raise MTLSearchError(f"{MIN_FREE_ENV} must be 0 or more, got {raw}")
        return int(mib * 2**20)
    return max(MIN_FREE_BYTES, 4 * largest_weights)


def _existing(folder: Path) -> Path:
    folder = folder.expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the file system of ``folder`` (or of its nearest existing parent)."""
    return shutil.disk_usage(_existing(Path(folder))).free


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_free_space(folders: list[Path], need: int, *, what: str = "") -> None:
    """Raise :class:`OutOfSpaceError` when a folder has less than ``need`` bytes free."""
    if need <= 0:
        return
    for folder in folders:
        free = free_bytes(folder)
        if free < need:
            raise OutOfSpaceError(
                f"only {_mib(free)} free under {folder} (the study wants {_mib(need)} free "
                f"before a trial: its weights, cache and storage go there){what}. Free some "
                f"space (or set {MIN_FREE_ENV}) and run the same command again to resume")


# --------------------------------------------------------------------------- storage files
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot hold a study (``None``: it can, or is new)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None  # SQLite treats an empty file as a new database
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(_SQLITE_MAGIC[:min(len(header), len(_SQLITE_MAGIC))]):
        return "is not a SQLite database"
    if len(header) < 100:
        return "is truncated (shorter than a SQLite header)"
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    valid = header[92:96] == header[24:28]  # the header's page count is trustworthy
    wal = Path(f"{path}-wal").exists()
    if valid and pages and not wal and size < page * pages:
        return f"is truncated ({size:,} bytes of the {page * pages:,} its header declares)"
    try:
        with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro",
                                                uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master "
                                               "WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        return f"cannot be read ({exc})"
    if tables and "studies" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        return f"is a SQLite database of something else (tables {shown}), not of Optuna studies"
    return None


def _sqlite_error(path: Path, problem: str) -> StorageError:
    return StorageError(
        f"the study database {path} {problem}. Restore it from a backup, or start a new study "
        "with another --storage path (e.g. sqlite:///runs/new-study.db)")


@contextlib.contextmanager
def storage_errors(storage: Any) -> Iterator[None]:
    """Turn a damaged SQLite file's database errors into one clear :class:`StorageError`.

    Example:
        >>> with storage_errors("sqlite:///study.db"):  # doctest: +SKIP
        ...     optuna.load_study(study_name="s", storage="sqlite:///study.db")
    """
    path = _local_file(storage)
    try:
        yield
    except Exception as exc:
        module = type(exc).__module__
        if (path is not None and str(storage).startswith("sqlite:///")
                and module.startswith(("sqlalchemy", "sqlite3"))
                and "locked" not in str(exc)):
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
            raise _sqlite_error(path, f"cannot be read ({reason})") from None
        raise


def _sqlite(url: str) -> optuna.storages.RDBStorage:
    path = Path(url[len("sqlite:///"):]).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = _sqlite_problem(path)
    if problem:
        raise _sqlite_error(path, problem)
    with storage_errors(url):
        return optuna.storages.RDBStorage(url)


def _first_bad_line(path: Path, end: int) -> int | None:
    """Number of the first line before byte ``end`` that is not a whole JSON record."""
    offset = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if offset >= end:
                return None
            offset += len(line)
            try:
                json.loads(line)
            except ValueError:
                return number
    return None


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def _last_newline(handle: Any, end: int) -> int:
    """Offset of the last newline before byte ``end`` (-1: none), read backwards by blocks."""
    block = 1 << 16
    pos = end
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        found = handle.read(step).rfind(b"\n")
        if found >= 0:
            return pos + found
    return -1


def _torn_tail(path: Path) -> int | None:
    """Offset where the journal's torn tail starts (``None``: it ends in a whole JSON line).

    Torn: bytes after the last newline (a crash mid-write), or a last line that is not JSON.
    Only the last line is read.
    """
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) != b"\n":
            return _last_newline(handle, size) + 1
        start = _last_newline(handle, size - 1) + 1
        handle.seek(start)
        last = handle.read(size - start)
    try:
        json.loads(last)
    except ValueError:
        return start
    return None


def _damaged(path: Path, line: int, total: int) -> StorageError:
    if line == 1:
        return StorageError(f"{path} is not an Optuna journal (its first line is not a JSON "
                            "record); pass another journal:PATH")
    keep = f"{path}.bak"
    return StorageError(
        f"the journal {path} is damaged at line {line} of {total} (not a whole JSON record); "
        "only a damaged last line is repaired automatically. Keep a copy and cut the journal "
        f"before that line to resume from there (the records after it are lost): cp {path} "
        f"{keep} && head -n {line - 1} {keep} > {path}")


def repair_journal(path: str | Path) -> Path | None:
    """Move a torn tail of the journal ``path`` into ``PATH.torn-<time>``; return that file.

    Call it holding the journal's write lock (the workers' appends hold it too); the tail is
    moved only when every line before it parses, else :class:`StorageError` says where the
    journal is damaged and how to cut it there.
    """
    path = Path(path)
    start = _torn_tail(path)
    if start is None:
        return None
    bad = _first_bad_line(path, start)
    if bad is not None:
        raise _damaged(path, bad, _count_lines(path))
    with open(path, "rb") as handle:
        handle.seek(start)
        tail = handle.read()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = Path(f"{path}.torn-{stamp}")
    n = 1
    while backup.exists():
        backup, n = Path(f"{path}.torn-{stamp}-{n}"), n + 1
    with open(backup, "wb") as handle:  # the bytes are kept before the journal is cut
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())
    os.truncate(path, start)
    log.warning("the journal %s ended in a torn record (%d bytes: a crash mid-write?); moved "
                "it to %s and cut the journal after its last whole record", path, len(tail),
                backup)
    return backup


def _journal_lock_class() -> type:
    from optuna.storages.journal import JournalFileSymlinkLock

    class _RepairingLock(JournalFileSymlinkLock):
        """Optuna's journal write lock that first cuts a torn tail (so no record is ever
        appended onto half a line: a crashed writer's torn tail would swallow it)."""

        def acquire(self) -> bool:
            got = super().acquire()
            try:
                repair_journal(self._lock_target_file)
            except BaseException:
                self.release()
                raise
            return got

    return _RepairingLock


def _journal(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path.name:
        raise MTLSearchError("a journal storage needs a file: journal:PATH/TO/study.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _journal_lock_class()(str(path))
    if path.is_file() and _torn_tail(path) is not None:
        lock.acquire()  # under the writers' lock: a write in progress is not a torn tail
        lock.release()
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except (ValueError, KeyError, TypeError) as exc:
        bad = _first_bad_line(path, path.stat().st_size)
        if bad is not None:
            raise _damaged(path, bad, _count_lines(path)) from None
        raise StorageError(f"the journal {path} is not an Optuna journal ({type(exc).__name__}: "
                           f"{exc}); pass another journal:PATH") from None


def _database(url: str) -> optuna.storages.RDBStorage:
    """A database server storage with heartbeats: a dead worker's trial is failed and retried."""
    interval, grace = lease_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=interval, grace_period=grace,
            heartbeat_stale_trial_callback=_stale_callback(_env_int("retries")),
            engine_kwargs={"pool_pre_ping": True})


def open_storage(storage: str | optuna.storages.BaseStorage | None) -> Any:
    """What Optuna should open: ``None`` (in memory), ``"journal:PATH"``, or a database URL.

    Database servers (``postgresql://...``, ``mysql://...``) get Optuna's heartbeat: a worker
    that dies mid-trial has its trial failed after the grace period and queued again
    (``MTLSEARCH_HEARTBEAT_INTERVAL``, ``MTLSEARCH_GRACE_PERIOD``, ``MTLSEARCH_MAX_RETRY``);
    journal and SQLite files get a lease per running trial instead (:class:`Lease`).

    A journal whose last record is torn (a crash mid-write) is repaired: the torn bytes go to
    ``PATH.torn-<time>``. A SQLite file that is not a database, is truncated or damaged, and a
    journal damaged before its last line, raise :class:`StorageError` naming the file and
    what to do.

    Example:
        >>> open_storage(None) is None
        True
    """
    if storage is None or not isinstance(storage, str):
        return storage
    if storage.startswith("journal:"):
        return _journal(Path(storage[len("journal:"):]).expanduser())
    if storage.startswith("sqlite:///"):
        return _sqlite(storage)
    if "://" not in storage:
        raise MTLSearchError(
            f"unknown storage {storage!r}; use sqlite:///FILE.db, journal:FILE.log or a "
            "database URL such as postgresql://user:password@host/db"
        )
    return _database(storage)


def _local_file(storage: Any) -> Path | None:
    """The file behind a journal or SQLite storage (for the cross-process budget lock)."""
    if isinstance(storage, str):
        for prefix in ("journal:", "sqlite:///"):
            if storage.startswith(prefix):
                return Path(storage[len(prefix):]).expanduser()
    return None


def storage_folder(storage: Any) -> Path | None:
    """The folder of a journal or SQLite storage file (``None`` for the others)."""
    path = _local_file(storage)
    return path.parent if path is not None else None


@contextlib.contextmanager
def budget_lock(storage: Any) -> Iterator[None]:
    """Serialise "count trials, then ask one" among processes sharing a local storage file."""
    if isinstance(storage, str) and storage.startswith(("postgresql", "postgres://")):
        with _pg_lock(storage):
            yield
        return
    path = _local_file(storage)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; workers may overshoot the budget by one each
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    with open(f"{path}.mtlsearch-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the OS even if the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_lock(url: str) -> Iterator[None]:
    """A PostgreSQL advisory lock: held by this session, freed by the server if we die."""
    import sqlalchemy

    key = int(hashlib.sha256(b"mtlsearch-budget").hexdigest()[:15], 16)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


def study_names(storage: str | Any) -> list[str]:
    """Names of the studies in ``storage``."""
    opened = open_storage(storage)
    with storage_errors(storage):
        return sorted(optuna.get_all_study_names(storage=opened))


def open_study(storage: str | Any, study_name: str | None = None) -> optuna.Study:
    """Load a study; ``study_name`` may be left out when the storage holds exactly one.

    Raises:
        MTLSearchError: no such study (the known names are listed).
        StorageError: the storage file is damaged (see :func:`open_storage`).
    """
    if storage is None:
        raise MTLSearchError("an in-memory study cannot be reopened; pass a storage")
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        # Checked before opening: opening a missing SQLite file would create it.
        if not Path(storage[len("sqlite:///"):]).expanduser().is_file():
            raise MTLSearchError(f"no study database at {storage}; run `mtlsearch search` first")
    opened = open_storage(storage)
    with storage_errors(storage):
        names = sorted(optuna.get_all_study_names(storage=opened))
        if study_name is None:
            if len(names) != 1:
                listed = ", ".join(names) if names else "(none)"
                raise MTLSearchError(f"pick a study with --study; studies in {storage}: {listed}")
            study_name = names[0]
        if study_name not in names:
            listed = ", ".join(names) if names else "(none)"
            raise MTLSearchError(f"no study {study_name!r} in {storage}; its studies: {listed}")
        return optuna.load_study(study_name=study_name, storage=opened)

