"""Search the loss weighting together with the architecture.

A study's ``weighting`` argument says how each trial is weighed:

* ``None``: as the budget says (``TrainConfig.weighting``, ``equal`` by default); nothing
  is sampled or recorded;
* a name (``"uw"``): that weighting, fixed, with its default hyper-parameters;
* ``"auto"``: every registered weighting that can run here (its optional modules are
  installed, it accepts the trial's task sampling and, under ``torchrun``, DDP);
* a list of names (or ``"a,b"``): one of those.

When there is a choice, the trial samples it (``trial.suggest_categorical("weighting",
...)``) and then that weighting's hyper-parameters (its ``suggest(trial)``, parameters named
``<weighting>_<argument>``), next to the strategy's architecture parameters: one Optuna study
searches both. :func:`sample_weighting` returns the training overrides for the trial's
proposal and the facts to record in the trial's user attributes; given a
``optuna.trial.FixedTrial`` of a recorded trial's parameters it gives back the same choice
(how a trial is retrained for export).

Example:
    >>> import optuna
    >>> trial = optuna.trial.FixedTrial({"weighting": "dwa", "dwa_temperature": 3.0})
    >>> sample_weighting(trial, ["equal", "dwa"]).overrides
    {'weighting': 'dwa', 'weighting_kwargs': {'temperature': 3.0}}
    >>> sample_weighting(trial, None).overrides
    {}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import get_weighting_class, list_weightings

__all__ = ["WeightingChoice", "requested_weightings", "sample_weighting", "weighting_choices"]

#: The trial parameter that holds the sampled weighting.
PARAM = "weighting"


@dataclass(frozen=True)
class WeightingChoice:
    """What :func:`sample_weighting` chose for one trial.

    Attributes:
        overrides: ``TrainConfig`` fields to merge into the proposal's ``train_overrides``
            (empty when the budget's weighting applies).
        facts: JSON-ready user attributes for the trial (``weighting``,
            ``weighting_kwargs``; empty likewise).
        sampled: Whether the weighting was sampled (``False``: fixed, or the budget's).
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    sampled: bool = False


def requested_weightings(weighting: str | Sequence[str] | None) -> str | list[str] | None:
    """The user's ``weighting`` argument in a normal, JSON-ready form (``"a,b"`` becomes
    ``["a", "b"]``); what a study records in its settings.

    Example:
        >>> requested_weightings("uw, dwa"), requested_weightings("auto")
        (['uw', 'dwa'], 'auto')
    """
    if weighting is None:
        return None
    if isinstance(weighting, str):
        names = [n.strip() for n in weighting.split(",") if n.strip()]
        if not names:
            raise MTLSearchError("weighting is empty; give a name, 'auto' or a list of names")
        return names[0] if len(names) == 1 else names
    names = [str(n).strip() for n in weighting]
    if not names or not all(names):
        raise MTLSearchError(f"weighting {list(weighting)!r}: give one or more names")
    if "auto" in names and len(names) > 1:
        raise MTLSearchError("weighting 'auto' already means every weighting; give it alone")
    return names


def _runs_here(name: str, task_sampling: str, distributed: bool) -> str | None:
    """Why the weighting ``name`` cannot train a trial here (``None``: it can)."""
    cls = get_weighting_class(name)
    missing = cls.missing() if hasattr(cls, "missing") else []
    if missing:
        return f"needs {missing}, which are not installed"
    if task_sampling == "one" and getattr(cls, "all_tasks", False):
        return "needs every task in every batch, and the trial samples one task per batch"
    if distributed and not getattr(cls, "distributed", False):
        return "does not run under DistributedDataParallel"
    return None


def weighting_choices(weighting: str | Sequence[str] | None, *, task_sampling: str = "all",
                      distributed: bool = False) -> list[str] | None:
    """The weightings a trial may use (``None``: the budget's, nothing to choose).

    ``"auto"`` keeps every registered weighting that can run here and leaves the others out;
    a named one that cannot is an error saying why.
    """
    requested = requested_weightings(weighting)
    if requested is None:
        return None
    if requested == "auto":
        return [n for n in list_weightings() if _runs_here(n, task_sampling, distributed) is None]
    names = [requested] if isinstance(requested, str) else list(requested)
    for name in names:
        reason = _runs_here(name, task_sampling, distributed)  # an unknown name lists the known
        if reason is not None:
            raise MTLSearchError(f"weighting {name!r} {reason}; choose another (mtlsearch "
                                 "weightings lists them)")
    return list(dict.fromkeys(names))


def sample_weighting(trial: Any, weighting: str | Sequence[str] | None, *,
                     task_sampling: str = "all", distributed: bool = False) -> WeightingChoice:
    """Choose the trial's weighting (see the module docstring).

    Args:
        trial: The Optuna trial (or a ``FixedTrial`` of recorded parameters).
        weighting: ``None``, a name, ``"auto"`` or a list of names.
        task_sampling: The trial's task sampling (its proposal may set it): with ``"one"``,
            ``"auto"`` leaves out the weightings that need every task.
        distributed: The trial trains under DDP: ``"auto"`` keeps the weightings that run so.
    """
    choices = weighting_choices(weighting, task_sampling=task_sampling, distributed=distributed)
    if choices is None:
        return WeightingChoice()
    if not choices:
        raise MTLSearchError(f"no registered weighting can train this trial ({task_sampling=}, "
                             f"{distributed=})")
    sampled = requested_weightings(weighting) == "auto" or len(choices) > 1
    name = trial.suggest_categorical(PARAM, choices) if sampled else choices[0]
    suggest = getattr(get_weighting_class(name), "suggest", None)  # a plain factory has none
    kwargs = dict(suggest(trial)) if sampled and suggest is not None else {}
    facts = {"weighting": name, "weighting_kwargs": kwargs}
    return WeightingChoice(overrides=dict(facts), facts=dict(facts), sampled=sampled)
