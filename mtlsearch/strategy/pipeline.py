"""From a proposal to a score: materialize, train, evaluate, compare with single-task.

Example:
    >>> from mtlsearch import create_space, create_strategy, load_dataset
    >>> from mtlsearch.strategy.context import SearchContext
    >>> from mtlsearch.engine.train import TrainConfig
    >>> data = load_dataset("synthetic", n_tasks=4, n_samples=400)
    >>> ctx = SearchContext(data=data, space=create_space("mlp", input_shape=data.input_shape),
    ...                     budget=TrainConfig(epochs=1))
    >>> result = run_strategy(create_strategy("hard_sharing"), ctx)
    >>> result.params > 0
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.scoring import Metrics, delta_mtl, metric_directions
from mtlsearch.engine.train import EpochState, TrainResult
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.summary import summarize
from mtlsearch.plugin_manager import get_hooks
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import SearchContext

__all__ = ["TrialResult", "evaluate_proposal", "run_strategy"]


@dataclass
class TrialResult:
    """Everything one trial produced (JSON-ready except :attr:`model`).

    Attributes:
        delta_mtl: Δ_MTL on the validation split (the search objective), percent.
        delta_mtl_test: Δ_MTL on the test split, percent.
        per_task_delta: Validation Δ per task.
        params: Parameter count; macs: multiply-accumulates per sample.
        metrics: ``{"val": ..., "test": ...}`` per-task metrics.
        graph: The final graph as a JSON-ready dictionary.
        train_seconds: Wall time of training; epochs_run: epochs trained.
        info: The proposal's facts.
    """

    delta_mtl: float
    delta_mtl_test: float
    per_task_delta: dict[str, float]
    params: int
    macs: int
    metrics: dict[str, Metrics]
    graph: dict[str, Any]
    train_seconds: float
    epochs_run: int
    info: dict[str, Any] = field(default_factory=dict)
    model: MultiTaskModel | None = field(default=None, repr=False, compare=False)

    #: The fields shown as columns of a study's trial table (``trials_table``); every field
    #: but ``model`` is recorded in the trial's user attributes.
    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "delta_mtl", "delta_mtl_test", "params", "macs", "train_seconds")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model")
        return data


def _pruning_callback(trial: Any, ctx: SearchContext, reference: Metrics):
    def callback(state: EpochState) -> None:
        if trial is None or not state.val_metrics or not hasattr(trial, "report"):
            return None
        value = delta_mtl(state.val_metrics, reference, ctx.tasks).overall
        if math.isfinite(value):
            trial.report(value, state.epoch)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned at epoch {state.epoch} (Δ_MTL {value:.2f})")
        return None

    return callback


def _observer_callback(state: EpochState) -> None:
    get_hooks().on_epoch_end(epoch=state.epoch, logs=dict(state.logs))  # observers never raise
    return None


def evaluate_proposal(
    proposal: Proposal,
    ctx: SearchContext,
    *,
    strategy: Strategy | None = None,
    trial: Any | None = None,
) -> TrialResult:
    """Train (unless weights came with it) and score ``proposal`` in ``ctx``."""
    reference = ctx.reference()
    graph = proposal.graph
    if graph.space is None:
        graph.space = ctx.space.spec()
    if graph.task_specs is None:
        graph.task_specs = [t.to_dict() for t in ctx.tasks]
    start = time.perf_counter()
    if proposal.state_dict is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            model = materialize(graph, ctx.space, ctx.tasks)
        try:
            model.load_state_dict(proposal.state_dict)
        except RuntimeError as exc:
            raise MTLSearchError(f"the proposal's weights do not fit its graph: {exc}") from None
        epochs = 0
    else:
        callbacks = [_pruning_callback(trial, ctx, reference["val"]), _observer_callback]
        backward = []
        if strategy is not None and strategy.is_dynamic():
            callbacks.insert(0, strategy.on_epoch_end)
            backward.append(strategy.on_backward)
        result: TrainResult = ctx.train(
            graph, **proposal.train_overrides, on_epoch_end=callbacks, on_backward=backward
        )
        model, graph, epochs = result.model, result.model.graph, result.epochs_run
    seconds = time.perf_counter() - start
    metrics = {"val": ctx.evaluate(model, "val"), "test": ctx.evaluate(model, "test")}
    # Only what Δ_MTL counts must be finite: a split with one class leaves AUROC undefined
    # (NaN, reported as such) while accuracy, the primary metric, is fine.
    counted = {spec.name: metric_directions(spec) for spec in ctx.tasks}
    for split in metrics.values():
        for task, values in split.items():
            if not all(math.isfinite(values[k]) for k in counted[task] if k in values):
                raise MTLSearchError(f"task {task!r} got non-finite metrics {values}")
    val_delta = delta_mtl(metrics["val"], reference["val"], ctx.tasks)
    test_delta = delta_mtl(metrics["test"], reference["test"], ctx.tasks)
    summary = summarize(graph, ctx.space, ctx.tasks)
    return TrialResult(
        delta_mtl=val_delta.overall,
        delta_mtl_test=test_delta.overall,
        per_task_delta=val_delta.per_task,
        params=summary.params,
        macs=summary.macs,
        metrics=metrics,
        graph=graph.to_dict(),
        train_seconds=seconds,
        epochs_run=epochs,
        info=dict(proposal.info),
        model=model,
    )


def run_strategy(
    strategy: Strategy,
    ctx: SearchContext,
    params: Mapping[str, Any] | None = None,
) -> TrialResult:
    """Run one trial of ``strategy`` outside a study (fixed ``params`` or seeded sampling)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a throwaway study: no banner
    try:
        study = optuna.create_study(
            sampler=optuna.samplers.RandomSampler(seed=ctx.seed), directions=["maximize"]
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    if params:
        study.enqueue_trial(dict(params))
    trial = study.ask()
    proposal = strategy.propose(trial, ctx)
    return evaluate_proposal(proposal, ctx, strategy=strategy, trial=None)
