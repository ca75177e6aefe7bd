"""Errors raised for user mistakes: each message names the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "MTLSearchError",
    "GraphError",
    "SpaceError",
    "DatasetError",
    "TaskError",
    "UndefinedMetricWarning",
    "UnknownNameError",
    "ExportError",
    "UnsafeInputError",
    "TrainingError",
    "DistributedAbort",
    "StorageError",
    "OutOfSpaceError",
]


class MTLSearchError(Exception):
    """Base class of every error mtlsearch raises for bad input."""


class GraphError(MTLSearchError, ValueError):
    """An invalid sharing graph (names the node, task or field at fault)."""


class SpaceError(MTLSearchError, ValueError):
    """A search space that cannot be built or does not fit the data."""


class DatasetError(MTLSearchError, ValueError):
    """A dataset that is empty, malformed or missing its files."""


class TaskError(MTLSearchError, ValueError):
    """A task spec or labels that do not fit the task's kind."""


class ExportError(MTLSearchError, ValueError):
    """An exported folder that is corrupt, truncated or of an unknown schema."""


class UnsafeInputError(MTLSearchError):
    """A file is too large, too deeply nested or not what it claims to be."""


class TrainingError(MTLSearchError, RuntimeError):
    """Training cannot go on (a non-finite loss, for instance)."""


class DistributedAbort(MTLSearchError):
    """Rank 0 failed while the ranks trained together: the others cannot follow any more.

    The trial is recorded as failed and the search stops (``torchrun`` then ends the other
    ranks); running the same command again resumes the study.
    """


class StorageError(MTLSearchError):
    """A storage file that cannot be read: not a database, truncated, or damaged."""


class OutOfSpaceError(MTLSearchError):
    """Too little free space to go on: the study stops, its running trial is queued again."""


class UndefinedMetricWarning(UserWarning):
    """A metric a split cannot define (AUROC with one class present), reported as NaN.

    mtlsearch's own, not scikit-learn's equivalent: importing scikit-learn for a warning class
    cost every training process 1.7 s.
    """


class UnknownNameError(MTLSearchError, KeyError):
    """A registry lookup for a name nobody registered; lists the known names."""

    def __init__(self, what: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.what, self.name, self.known = what, name, known
        if known:
            text = f"unknown {what} {name!r}; choose one of: {', '.join(known)}"
        else:  # not even the built-ins: they register through the installed package's metadata
            text = (f"unknown {what} {name!r}: no {what} is registered, not even the built-in "
                    "ones, which register through the installed package's entry points. Is "
                    "mtlsearch installed in this environment (pip install -e . in a checkout; "
                    "again after moving the checkout)?")
        super().__init__(text)

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]
