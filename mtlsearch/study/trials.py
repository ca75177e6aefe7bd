"""A finished study's trials: tables, the Pareto front, and rebuilding or exporting one.

Example:
    >>> study = open_study("sqlite:///mtlsearch-out/study.db")  # doctest: +SKIP
    >>> graph, info = rebuild_trial(study, "best")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.data.dataset import DatasetSplits
from mtlsearch.engine.train import TrainConfig, seed_everything, train_info
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import create_space, create_strategy, load_dataset
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import TrialResult, evaluate_proposal

__all__ = [
    "OBJECTIVES",
    "TrialInfo",
    "best_trial",
    "export_trial",
    "pareto_front",
    "rebuild_trial",
    "describe",
    "trial_model",
    "trials_table",
    "weights_path",
]

log = logging.getLogger(__name__)

#: Objective name -> Optuna direction.
OBJECTIVES = {"delta_mtl": "maximize", "params": "minimize", "macs": "minimize"}
STUDY_ATTR = "mtlsearch"  # the study user attribute that records what the study searches


def weights_path(out: str | Path, number: int) -> Path:
    """Where :func:`search` keeps the trained weights of trial ``number`` under ``out``."""
    return Path(out) / "weights" / f"trial_{number}.safetensors"


def _graph_digest(graph: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()[:16]


def save_weights(model: Any, path: Path, study_name: str, number: int, graph: dict) -> None:
    """Write ``model``'s weights to ``path`` atomically, with the study, trial and graph hash.

    Raises:
        OSError: The write failed; a full disk is an ``OSError`` with ``errno.ENOSPC`` (or
            ``EDQUOT``) whatever safetensors reported, and no partial file is left behind.
    """
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"study": study_name, "trial": str(number), "graph": _graph_digest(graph)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per writer
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)  # atomic: an interrupted save never leaves half a file
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # half a file on a full disk would keep it full
        if isinstance(exc, OSError) or not isinstance(exc, Exception):
            raise
        # safetensors reports I/O errors as SafetensorError("... (os error 28)"): give the
        # errno back, so a full disk is told apart from a bad tensor.
        code = re.search(r"os error (\d+)", str(exc))
        if code:
            raise OSError(int(code.group(1)), f"cannot write the weights: {exc}",
                          str(path)) from exc
        raise


def derive_seed(seed: int, *parts: Any) -> int:
    text = ":".join(str(p) for p in (seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 2**31


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "delta_mtl" in t.user_attrs]


def _rank(t: FrozenTrial) -> tuple[float, float]:
    return (-float(t.user_attrs["delta_mtl"]), float(t.user_attrs.get("params", 0)))


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    if not complete_trials(study):
        return []
    if len(study.directions) == 1:
        return [best_trial(study)]
    return sorted(study.best_trials, key=_rank)


def best_value(study: optuna.Study) -> float | None:
    trials = complete_trials(study)
    return max(float(t.user_attrs["delta_mtl"]) for t in trials) if trials else None


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The complete trial with the highest validation Δ_MTL (fewer parameters on ties)."""
    trials = complete_trials(study)
    if not trials:
        raise MTLSearchError(f"study {study.study_name!r} has no complete trial yet")
    return min(trials, key=_rank)


def _row(t: FrozenTrial, front: set[int]) -> dict[str, Any]:
    a = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        **{column: a.get(column) for column in TrialResult.TABLE_COLUMNS},
        "pareto": t.number in front,
        "hyperparams": dict(t.params),
        "fail_reason": a.get("fail_reason") or a.get("pruned_reason"),
    }


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial (see :meth:`SearchResult.trials_table`)."""
    front = {t.number for t in front_trials(study)}
    return [_row(t, front) for t in study.get_trials(deepcopy=False)]


def pareto_front(study: optuna.Study) -> list[dict[str, Any]]:
    """Rows of the Pareto-front trials (or the best one), best validation Δ_MTL first."""
    front = front_trials(study)
    numbers = {t.number for t in front}
    return [_row(t, numbers) for t in front]


def describe(study: optuna.Study) -> str:
    """Counts per state, objectives, the Pareto front and the best trial as text."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    settings = study.user_attrs.get(STUDY_ATTR, {})
    objectives = settings.get("objectives") or []
    lines = [
        f"study {study.study_name!r}: {len(trials)} trials ("
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")",
        f"searching {settings.get('strategy')} on {settings.get('dataset')} with "
        f"{settings.get('space')}; objectives: "
        + ", ".join(f"{OBJECTIVES[o]} {o}" for o in objectives if o in OBJECTIVES),
    ]
    front = pareto_front(study)
    if front:
        lines.append(f"Pareto front ({len(front)} trial{'s' if len(front) > 1 else ''}), "
                     "best validation Δ_MTL first:"
                     if len(study.directions) > 1 else "best trial:")
        for r in front:
            lines.append(f"  trial {r['number']:>3}  Δ_MTL val {r['delta_mtl']:+7.2f}%  "
                         f"test {r['delta_mtl_test']:+7.2f}%  params {r['params']:>10,}  "
                         f"MACs {r['macs']:>12,}")
    else:
        lines.append("no complete trial yet")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    for t in failed[:5]:
        lines.append(f"  trial {t.number} failed: {t.user_attrs.get('fail_reason', '?')}")
    return "\n".join(lines)


@dataclass
class TrialInfo:
    """A stored trial and the settings of its study (enough to rebuild and retrain it).

    Attributes:
        number: Trial number; state: Optuna state name.
        params: Sampled hyper-parameters; user_attrs: everything recorded for the trial.
        settings: The study's ``mtlsearch`` settings (strategy, dataset, space, budget...).
    """

    number: int
    state: str
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    settings: dict[str, Any]

    def context(self, *, dataset: DatasetSplits | None = None, out: str | Path | None = None,
                device: str | None = None) -> SearchContext:
        """Rebuild the search context: the dataset, space and budget the trial used."""
        s = self.settings
        data = dataset if dataset is not None else load_dataset(s["dataset"], **s["dataset_kwargs"])
        if dataset is None and data.fingerprint() != s.get("data_fingerprint", data.fingerprint()):
            raise MTLSearchError(f"dataset {s['dataset']!r} no longer loads the data the study "
                                 "searched; pass the dataset explicitly")
        space = create_space(s["space"], **s["space_kwargs"])
        budget = TrainConfig(**{**s["budget"], "device": device})
        cache = ResultCache(Path(out) / "cache" if out else None)
        return SearchContext(data=data, space=space, budget=budget, seed=s["seed"], cache=cache)


def _resolve_number(study: optuna.Study, which: int | str) -> int:
    if which == "best":
        return best_trial(study).number
    number = int(which)
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    if number not in numbers:
        raise MTLSearchError(f"study {study.study_name!r} has no trial {number}; "
                             f"its trials are 0..{max(numbers) if numbers else -1}")
    return number


def rebuild_trial(study: optuna.Study, number: int | str) -> tuple[SharingGraph, TrialInfo]:
    """The graph of trial ``number`` (or ``"best"``) and what is recorded about it.

    Example:
        >>> graph, info = rebuild_trial(result.study, "best")  # doctest: +SKIP
        >>> graph.branches_per_depth()  # doctest: +SKIP
    """
    number = _resolve_number(study, number)
    t = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if "graph" not in t.user_attrs:
        raise MTLSearchError(f"trial {number} is {t.state.name.lower()} and has no architecture"
                             + (f" ({t.user_attrs['fail_reason']})" if "fail_reason" in t.user_attrs else ""))
    settings = study.user_attrs.get(STUDY_ATTR)
    if settings is None:
        raise MTLSearchError(f"study {study.study_name!r} was not made by mtlsearch")
    info = TrialInfo(number, t.state.name, dict(t.params), dict(t.user_attrs), dict(settings))
    return SharingGraph.from_dict(t.user_attrs["graph"]), info


def _load_kept(path: Path, study_name: str, info: TrialInfo) -> dict[str, torch.Tensor] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if (meta.get("study") != study_name or meta.get("trial") != str(info.number)
                or meta.get("graph") != _graph_digest(info.user_attrs["graph"])):
            log.info("%s belongs to another study or trial; retraining", path)
            return None
        return load_file(str(path))
    except Exception as exc:  # a truncated file: retrain rather than fail
        log.warning("cannot read kept weights %s (%s); retraining", path, exc)
        return None


def trial_model(study: optuna.Study, number: int | str, *, out: str | Path | None = None,
                dataset: DatasetSplits | None = None, device: str | None = None) -> Any:
    """The trained model of a trial: kept weights if present, else retrained identically."""
    from mtlsearch.engine.model import materialize

    graph, info = rebuild_trial(study, number)
    ctx = info.context(dataset=dataset, out=out, device=device)
    candidates = [Path(info.user_attrs["weights_file"])] if "weights_file" in info.user_attrs else []
    if out is not None:
        candidates.insert(0, weights_path(out, info.number))
    for path in candidates:
        state = _load_kept(path, study.study_name, info)
        if state is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                model = materialize(graph, ctx.space, ctx.tasks)
            model.load_state_dict(state)
            overrides = info.user_attrs.get("train_overrides") or {}
            model.train_info = train_info(ctx.budget.replace(**{  # as the trainer records it
                k: overrides[k] for k in ("weighting", "weighting_kwargs") if k in overrides}))
            return model.eval()
    log.info("no kept weights for trial %d: retraining it", info.number)
    strategy = create_strategy(info.settings["strategy"], **info.settings["strategy_kwargs"])
    seed_everything(derive_seed(ctx.seed, "trial", info.number))
    fixed = optuna.trial.FixedTrial(info.params, number=info.number)
    proposal = strategy.propose(fixed, ctx)
    from mtlsearch.study.weighting_search import sample_weighting

    chosen = sample_weighting(fixed, info.settings.get("weighting"),  # the recorded choice
                              task_sampling=proposal.train_overrides.get(
                                  "task_sampling", ctx.budget.task_sampling))
    proposal.train_overrides = {**proposal.train_overrides, **chosen.overrides}
    result = evaluate_proposal(proposal, ctx, strategy=strategy, trial=None)
    return result.model.eval()


def export_trial(study: optuna.Study, number: int | str, folder: str | Path, *,
                 out: str | Path | None = None, onnx: bool = False,
                 dataset: DatasetSplits | None = None) -> Path:
    """Export trial ``number`` (or ``"best"``) with :func:`mtlsearch.export.export_model`.

    Kept weights (``out/weights`` or the recorded file) are used when present; otherwise the
    trial is retrained from the recorded settings (same seed: same weights on the CPU).

    Example:
        >>> export_trial(result.study, "best", "best-model")  # doctest: +SKIP
    """
    from mtlsearch import export

    number = _resolve_number(study, number)
    model = trial_model(study, number, out=out, dataset=dataset)
    _, info = rebuild_trial(study, number)
    a = info.user_attrs
    metrics = {"val": a.get("metrics", {}).get("val"), "test": a.get("metrics", {}).get("test"),
               "delta_mtl": a.get("delta_mtl"), "delta_mtl_test": a.get("delta_mtl_test"),
               "per_task_delta": a.get("per_task_delta"), "params": a.get("params"),
               "macs": a.get("macs")}
    extra = {"study": study.study_name, "trial": number, "hyperparams": info.params,
             "strategy": info.settings.get("strategy"), "settings": info.settings,
             "proposal": a.get("info")}
    return Path(export.export_model(model, folder, metrics=metrics, info=extra, onnx=onnx))

