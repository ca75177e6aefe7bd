"""Studies: a search as an Optuna study, its trials, where it is stored, and comparisons.

``runner`` runs :func:`search` (create or resume a study, one trial per proposal, failures
recorded, a study-wide trial and compute budget shared by workers), ``samplers`` names
Optuna's samplers (seeded per trial, with a fixed history) and loads callbacks, ``workers``
runs one search's trials in several processes, ``trials`` reads a
study back (table, Pareto front, best trial, rebuild / export one trial), ``storage`` opens
in-memory, SQLite, journal and database storages, ``comparison`` runs several strategies over
several seeds into a leaderboard, ``progress`` shows a search live, and ``torchrun`` lets
the ranks of one ``torchrun`` job train each candidate together. This is the top of the
flow: it may import every other subpackage (``tasks``, ``data``, ``graph``, ``engine``,
``strategy``, ``viz``, ``export``) and the base modules, and nothing imports it but the CLI,
``mtlsearch.testing`` and the package root.

Example:
    >>> from mtlsearch.study import search, trials_table  # doctest: +SKIP
"""

from __future__ import annotations

from mtlsearch.study.runner import PRUNERS, SearchResult, make_pruner, search, spent_compute
from mtlsearch.study.samplers import DEFAULT_LAG, SAMPLERS, load_callback, make_sampler
from mtlsearch.study.storage import open_storage, open_study, study_names
from mtlsearch.study.trials import (
    OBJECTIVES,
    TrialInfo,
    best_trial,
    describe,
    export_trial,
    pareto_front,
    rebuild_trial,
    trial_model,
    trials_table,
    weights_path,
)

__all__ = [
    "DEFAULT_LAG",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "SearchResult",
    "TrialInfo",
    "best_trial",
    "describe",
    "export_trial",
    "load_callback",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "pareto_front",
    "rebuild_trial",
    "search",
    "spent_compute",
    "study_names",
    "trial_model",
    "trials_table",
    "weights_path",
]
