"""Where studies live: in memory, SQLite, Optuna's journal file, or a database server.

Example:
    >>> open_storage(None) is None
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.errors import MTLSearchError

__all__ = ["open_storage", "open_study", "study_names", "budget_lock", "retry_trial",
           "retried_numbers", "HEARTBEAT_ENV"]

#: Environment variables that tune heartbeats on database servers (seconds / count).
HEARTBEAT_ENV = {"interval": "MTLSEARCH_HEARTBEAT_INTERVAL", "grace": "MTLSEARCH_GRACE_PERIOD",
                 "retries": "MTLSEARCH_MAX_RETRY"}
_DEFAULTS = {"interval": 30, "grace": 120, "retries": 3}


def _env_int(key: str) -> int:
    raw = os.environ.get(HEARTBEAT_ENV[key], "")
    try:
        value = int(raw) if raw.strip() else _DEFAULTS[key]
    except ValueError:
        raise MTLSearchError(f"{HEARTBEAT_ENV[key]}={raw!r} is not a whole number") from None
    if value < (0 if key == "retries" else 1):
        raise MTLSearchError(f"{HEARTBEAT_ENV[key]} must be positive, got {value}")
    return value


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that another trial retries (they do not use up the budget)."""
    return {int(t.system_attrs["failed_trial"]) for t in trials
            if "failed_trial" in t.system_attrs}


def retry_trial(study: optuna.Study, trial: FrozenTrial, *, max_retry: int | None = None) -> bool:
    """Queue a fresh copy of failed ``trial`` (same parameters) unless it was retried enough.

    Mirrors Optuna's ``RetryHeartbeatStaleTrialCallback`` but drops the user attributes (the
    copy must not inherit ``fail_reason`` or the dead worker's id). Returns whether it queued.
    """
    max_retry = _env_int("retries") if max_retry is None else max_retry
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return False
    original = trial.system_attrs.get("failed_trial", trial.number)
    system = {k: v for k, v in trial.system_attrs.items() if k in ("fixed_params",)}
    system.update({"failed_trial": original, "retry_history": history})
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number}, system_attrs=system))
    return True


def _stale_callback(max_retry: int) -> Any:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        # Called by optuna.storages.fail_stale_trials once per trial it failed.
        study._storage.set_trial_user_attr(
            trial._trial_id, "fail_reason", "stale: the worker stopped sending heartbeats")
        retry_trial(study, trial, max_retry=max_retry)
    return callback


def _database(url: str) -> optuna.storages.RDBStorage:
    """A database server storage with heartbeats: a dead worker's trial is failed and retried."""
    interval, grace = _env_int("interval"), _env_int("grace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=interval, grace_period=max(grace, 2 * interval),
            heartbeat_stale_trial_callback=_stale_callback(_env_int("retries")),
            engine_kwargs={"pool_pre_ping": True})


def open_storage(storage: str | optuna.storages.BaseStorage | None) -> Any:
    """What Optuna should open: ``None`` (in memory), ``"journal:PATH"``, or a database URL.

    Database servers (``postgresql://...``, ``mysql://...``) get Optuna's heartbeat: a worker
    that dies mid-trial has its trial failed after the grace period and queued again
    (``MTLSEARCH_HEARTBEAT_INTERVAL``, ``MTLSEARCH_GRACE_PERIOD``, ``MTLSEARCH_MAX_RETRY``).

    Example:
        >>> open_storage(None) is None
        True
    """
    if storage is None or not isinstance(storage, str):
        return storage
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(storage[len("journal:"):]).expanduser()
        if not path.name:
            raise MTLSearchError("a journal storage needs a file: journal:PATH/TO/study.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in storage:
        raise MTLSearchError(
            f"unknown storage {storage!r}; use sqlite:///FILE.db, journal:FILE.log or a "
            "database URL such as postgresql://user:password@host/db"
        )
    else:
        return _database(storage)
    return storage


def _local_file(storage: Any) -> Path | None:
    """The file behind a journal or SQLite storage (for the cross-process budget lock)."""
    if isinstance(storage, str):
        for prefix in ("journal:", "sqlite:///"):
            if storage.startswith(prefix):
                return Path(storage[len(prefix):]).expanduser()
    return None


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
    return sorted(optuna.get_all_study_names(storage=open_storage(storage)))


def open_study(storage: str | Any, study_name: str | None = None) -> optuna.Study:
    """Load a study; ``study_name`` may be left out when the storage holds exactly one.

    Raises:
        MTLSearchError: no such study (the known names are listed).
    """
    if storage is None:
        raise MTLSearchError("an in-memory study cannot be reopened; pass a storage")
    opened = open_storage(storage)
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        if not Path(storage[len("sqlite:///"):]).expanduser().is_file():
            raise MTLSearchError(f"no study database at {storage}; run `mtlsearch search` first")
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

