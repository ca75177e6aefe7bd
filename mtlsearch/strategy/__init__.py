"""Strategies' side of the flow: what a strategy is, what it sees, and what its proposal becomes.

``base`` defines :class:`Strategy` (the abstract surface every plugin implements, its
lifecycle in the class docstring) and :class:`Proposal` (a graph, optional trained weights,
training overrides); ``context`` the :class:`SearchContext` a strategy proposes in (data,
space, budget, seed, the single-task reference, the trainer) and the :class:`ResultCache`;
``pipeline`` turns a proposal into a scored :class:`TrialResult` (materialize, train, score,
cost). Built-in strategies live in ``mtlsearch.plugins`` and enter through the
``register_strategies`` hook; nothing here imports them. This subpackage imports ``tasks``,
``data``, ``graph``, ``engine`` and the base modules; export and studies import it.
"""

from __future__ import annotations

from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import TrialResult, evaluate_proposal, run_strategy

__all__ = [
    "Proposal",
    "ResultCache",
    "SearchContext",
    "Strategy",
    "TrialResult",
    "evaluate_proposal",
    "run_strategy",
]
