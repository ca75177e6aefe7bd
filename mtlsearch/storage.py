"""Where studies live: in memory, SQLite, Optuna's journal file, or a database server.

Example:
    >>> open_storage(None) is None
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from .errors import MTLSearchError

__all__ = ["open_storage", "open_study", "study_names", "budget_lock"]


def open_storage(storage: str | optuna.storages.BaseStorage | None) -> Any:
    """What Optuna should open: ``None`` (in memory), ``"journal:PATH"``, or a database URL.

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

