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
from mtlsearch.errors import ExportError, MTLSearchError, UnknownNameError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import create_space, create_strategy, load_dataset
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import TrialResult, evaluate_proposal
from mtlsearch.study.artifacts import (
    ARTIFACT_ATTR,
    ArtifactRecord,
    fetch_weights,
    scratch_folder,
    upload_weights,
)

__all__ = [
    "OBJECTIVES",
    "KeptWeights",
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


@dataclass(frozen=True)
class KeptWeights:
    """Where :func:`save_weights` kept a trial's weights.

    Attributes:
        path: The local file (``None`` when only the artifact store has them).
        artifact: The artifact's record in the storage (``None`` without a store).
        size: The file's size in bytes.
    """

    path: Path | None
    artifact: ArtifactRecord | None
    size: int


def save_weights(model: Any, path: Path | None, study_name: str, number: int, graph: dict, *,
                 trial: optuna.Trial | None = None, artifact_store: Any = None,
                 keep_file: bool | None = None) -> KeptWeights:
    """Write ``model``'s weights atomically, with the study, trial and graph hash as metadata.

    Args:
        path: The local file (``OUT/weights/trial_<n>.safetensors``); ``None`` with a store
            and no ``out``.
        trial: The running trial: with ``artifact_store``, the file is uploaded to the store
            and the storage records it (:mod:`mtlsearch.study.artifacts`), so another machine
            exports the trial without retraining it.
        artifact_store: An Optuna artifact store (:func:`open_artifact_store`).
        keep_file: Keep the local file too; default: only when nothing was uploaded.

    Raises:
        OSError: The write failed; a full disk is an ``OSError`` with ``errno.ENOSPC`` (or
            ``EDQUOT``) whatever safetensors reported, and no partial file is left behind.
    """
    upload = trial is not None and artifact_store is not None
    if path is None and not upload:
        raise MTLSearchError("save_weights needs a path, or a trial and an artifact store")
    if not upload:
        _write_weights(model, path, study_name, number, graph)
        return KeptWeights(path, None, path.stat().st_size)
    with contextlib.ExitStack() as stack:
        if path is None:
            path = stack.enter_context(scratch_folder()) / f"trial_{number}.safetensors"
            keep_file = False
        # Written where it is kept (under out, whose free space the runner checks), then the
        # store keeps the only copy unless asked otherwise.
        _write_weights(model, path, study_name, number, graph)
        try:
            record = upload_weights(trial, path, artifact_store)
        finally:
            if not keep_file:
                path.unlink()
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when empty: no empty weights folder left
        return KeptWeights(path if keep_file else None, record, record.size)


def _write_weights(model: Any, path: Path, study_name: str, number: int, graph: dict) -> None:
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


def _meta_problem(meta: Mapping[str, str], study_name: str, info: TrialInfo) -> str | None:
    if meta.get("study") != study_name or meta.get("trial") != str(info.number):
        return (f"holds trial {meta.get('trial')} of study {meta.get('study')!r}, not trial "
                f"{info.number} of {study_name!r}")
    digest = _graph_digest(info.user_attrs["graph"])
    if meta.get("graph") != digest:
        return (f"was saved for another architecture (graph hash {meta.get('graph')!r}; the "
                f"trial's is {digest!r})")
    return None


def _read_kept(path: Path, study_name: str,
               info: TrialInfo) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """The tensors of a kept safetensors file, or ``None`` and what is wrong with it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:  # safetensors: a header and raw tensors, nothing to unpickle
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        problem = _meta_problem(meta, study_name, info)
        return (None, problem) if problem else (load_file(str(path)), None)
    except Exception as exc:  # a truncated or foreign file
        return None, f"cannot be read as safetensors ({exc})"


def _load_kept(path: Path, study_name: str, info: TrialInfo) -> dict[str, torch.Tensor] | None:
    """A local kept file's tensors; ``None`` (and retraining) if it is absent or not the trial's."""
    if not path.is_file():
        return None
    state, problem = _read_kept(path, study_name, info)
    if problem:
        log.warning("kept weights %s %s; not using them", path, problem)
    return state


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _find_kept(study: optuna.Study, info: TrialInfo, folder: Path, *, out: str | Path | None,
               artifact_store: Any) -> tuple[dict[str, torch.Tensor] | None, list[str]]:
    """The trial's kept tensors (artifact store first, then local files) and where it looked.

    Raises:
        ExportError: The recorded artifact is damaged or is not this trial's (an artifact is
            a claim the storage makes: it is never silently replaced by retraining).
    """
    path, looked = fetch_weights(_frozen(study, info.number), folder, store=artifact_store,
                                 out=out)
    if path is not None:
        state, problem = _read_kept(path, study.study_name, info)
        if problem:
            raise ExportError(f"the weights artifact of trial {info.number} of study "
                              f"{study.study_name!r} {problem}; the artifact store or the "
                              "storage was changed: restore it, or delete the trial's "
                              f"{ARTIFACT_ATTR!r} to retrain")
        return state, looked
    candidates = [weights_path(out, info.number)] if out is not None else []
    if "weights_file" in info.user_attrs:
        candidates.append(Path(info.user_attrs["weights_file"]))
    for local in dict.fromkeys(candidates):
        state = _load_kept(local, study.study_name, info)
        if state is not None:
            return state, looked
        looked.append(f"{local}: " + ("not this trial's weights" if local.is_file()
                                      else "no such file"))
    return None, looked


def _kept_model(graph: SharingGraph, info: TrialInfo, state: dict[str, torch.Tensor], *,
                dataset: DatasetSplits | None, device: str | None, study: str) -> Any:
    """The trial's model from kept weights: the graph records the space and task specs."""
    from mtlsearch.engine.model import materialize
    from mtlsearch.tasks.kinds import TaskSpec

    s = info.settings
    if graph.task_specs:
        tasks = [TaskSpec.from_dict(dict(spec)) for spec in graph.task_specs]
    elif dataset is not None:
        tasks = list(dataset.tasks)
    else:  # a graph recorded before task specs were: only the data knows them
        tasks = _retrain_context(info, None, None, device, [], "read its task specs",
                                 study=study).tasks
    space = create_space(s["space"], **s["space_kwargs"])
    budget = TrainConfig(**{**s["budget"], "device": device})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s["seed"])
        model = materialize(graph, space, tasks)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # names or shapes: the space's code changed since the search
        raise ExportError(f"the kept weights of trial {info.number} do not fit its "
                          f"architecture built from search space {s['space']!r} now: "
                          f"{str(exc)[:300]}") from None
    overrides = info.user_attrs.get("train_overrides") or {}
    model.train_info = train_info(budget.replace(**{  # as the trainer records it
        k: overrides[k] for k in ("weighting", "weighting_kwargs") if k in overrides}))
    return model.eval()


def _retrain_context(info: TrialInfo, dataset: DatasetSplits | None, out: str | Path | None,
                     device: str | None, looked: list[str], why: str = "retrain it", *,
                     study: str) -> Any:
    """The search context for retraining; a clear error when the data cannot be loaded."""
    try:
        return info.context(dataset=dataset, out=out, device=device)
    except (MTLSearchError, OSError) as exc:
        if dataset is not None:
            raise
        name = info.settings.get("dataset")
        if isinstance(exc, UnknownNameError):
            cause = (f"dataset {name!r} is not a registered name (a search on arrays, "
                     "from_arrays/from_npz, or a plugin that is not installed)")
        else:
            cause = f"dataset {name!r} cannot be loaded: {exc}"
        found = "; ".join(looked) if looked else "none recorded"
        raise MTLSearchError(
            f"trial {info.number} of study {study!r} has no kept weights ({found}), and to "
            f"{why} mtlsearch needs "
            f"the data it was searched on, but {cause}. Pass the data: "
            f"export_trial(study, {info.number}, folder, dataset=splits) / trial_model(..., "
            "dataset=splits); or point to the kept weights: artifact_store=... "
            "(--artifact-store) or out=... (--search-out)") from None


def trial_model(study: optuna.Study, number: int | str, *, out: str | Path | None = None,
                dataset: DatasetSplits | None = None, device: str | None = None,
                artifact_store: Any = None, retrain: bool = True) -> Any:
    """The trained model of a trial: its kept weights if found, else retrained identically.

    Kept weights are looked for in the artifact store the storage records (or
    ``artifact_store``, then ``out/artifacts``), then in ``out/weights`` and the recorded
    ``weights_file``. With kept weights nothing needs the data: the trial's graph records the
    space and the task specs. Retraining needs the dataset (loaded by its recorded name, or
    ``dataset``).

    Args:
        artifact_store: A store or spec (:func:`~mtlsearch.study.artifacts.open_artifact_store`)
            overriding the recorded one.
        retrain: ``False``: an error instead of retraining when no weights are kept.

    Raises:
        ExportError: A damaged or mismatched weights artifact.
        MTLSearchError: No kept weights and no way to retrain (the message says how).
    """
    graph, info = rebuild_trial(study, number)
    with scratch_folder() as folder:
        state, looked = _find_kept(study, info, folder, out=out, artifact_store=artifact_store)
    if state is not None:
        model = _kept_model(graph, info, state, dataset=dataset, device=device,
                            study=study.study_name)
        return _with_preprocessing(model, info, dataset)
    if not retrain:
        raise MTLSearchError(f"trial {info.number} of study {study.study_name!r} has no kept "
                             f"weights ({'; '.join(looked) or 'none recorded'}) and retrain "
                             "is off")
    ctx = _retrain_context(info, dataset, out, device, looked, study=study.study_name)
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
    return _with_preprocessing(result.model.eval(), info, ctx.data)


def _with_preprocessing(model: Any, info: TrialInfo, dataset: DatasetSplits | None) -> Any:
    """Give the model the inputs' preprocessing, which the export records.

    The study's recorded ``preprocessing`` settings come first (no data needed), then the
    dataset's own.
    """
    recorded = info.settings.get("preprocessing")
    if recorded is None and dataset is not None:
        recorded = getattr(dataset, "preprocessing", None)
    if recorded is not None and getattr(model, "preprocessing", None) is None:
        model.preprocessing = recorded  # a Preprocessing or its to_dict(): export takes both
    return model


def export_trial(study: optuna.Study, number: int | str, folder: str | Path, *,
                 out: str | Path | None = None, onnx: bool = False,
                 dataset: DatasetSplits | None = None, artifact_store: Any = None,
                 retrain: bool = True) -> Path:
    """Export trial ``number`` (or ``"best"``) with :func:`mtlsearch.export.export_model`.

    Kept weights (the artifact store, ``out/weights`` or the recorded file; see
    :func:`trial_model`) are used when found, and then the data is not needed; otherwise the
    trial is retrained from the recorded settings (same seed: same weights on the CPU).

    Example:
        >>> export_trial(result.study, "best", "best-model")  # doctest: +SKIP
    """
    from mtlsearch import export

    number = _resolve_number(study, number)
    model = trial_model(study, number, out=out, dataset=dataset,
                        artifact_store=artifact_store, retrain=retrain)
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

