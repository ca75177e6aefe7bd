"""The defaults ``compare`` runs with, in a module light enough for ``mtlsearch --help``.

:mod:`mtlsearch.study.comparison` (which imports Optuna and torch) and the ``compare``
command's help texts both read them here. Sized so ``mtlsearch compare`` ends in a few minutes
on two CPU cores.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_TRIALS", "DEFAULT_SEEDS", "DEFAULT_COMPUTE", "usable_core_ids",
           "usable_cores"]

DEFAULT_EPOCHS = 3
DEFAULT_TRIALS = 12
DEFAULT_SEEDS = (0, 1, 2)
#: Equal compute per search, in hard-sharing trainings (see
#: :func:`mtlsearch.engine.compute.compute_unit`).
DEFAULT_COMPUTE = "6x"


def usable_core_ids() -> list[int]:
    """The ids of the cores this process may run on (empty where the system cannot say)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system has one): what
    default worker counts are sized by."""
    return max(1, len(usable_core_ids()) or os.cpu_count() or 1)
