"""The ``gradient_merge`` strategy: Selective Sharing, tasks merged by their gradients.

Structure (section 3): the blocks before the branch depth are hard-shared (feature extractor
and shared representation); from the branch depth on every task has its own, identically
initialised branch, and every task its own head, initialised identically to the other heads of
its kind and size. During training the strategy

1. captures each branch's first-layer gradient after every backward pass
   (:class:`~.capture.GradientRecorder`), factorised by tensor train;
2. at the end of each epoch from ``start_epoch`` on, clusters the branches' normalised factors
   with HDBSCAN under a directive (:mod:`.clustering`);
3. merges each cluster into the branch with the lowest aggregated training loss (or writes
   the mean, maximum or minimum weights into it) and returns the new graph; the trainer keeps
   the remaining weights, optimizer state and learning-rate schedule. After the last epoch
   the clusters are only recorded: a merge needs epochs after it to train the merged branch;
4. stops grouping when every task shares its branch with another task, after ``max_rounds``
   merging epochs, or after ``patience`` epochs in a row without a merge; training goes on
   with the final structure.

The record of every epoch (groups, merges, parameter count, timings) is in
``Proposal.info["gradient_merge"]``, which the engine copies into the trial's info.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> from mtlsearch.strategy.pipeline import run_strategy
    >>> result = run_strategy(GradientMerge(), tiny_context())
    >>> sorted(result.info["gradient_merge"])[:3]
    ['branch_depth', 'epochs', 'final_groups']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlsearch.engine.model import MultiTaskModel, module_key
from mtlsearch.engine.train import EpochState, StepState
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.summary import summarize
from mtlsearch.strategy.base import Proposal, Strategy

from .capture import GradientRecorder, aggregated_losses, branches
from .clustering import DIRECTIVES, cluster_branches, groups_from_labels
from .factors import normalise_rows
from .merge import MERGE_MODES, branch_nodes, merge_branches, merge_weights

__all__ = ["GradientMerge", "cluster_size_range", "min_samples_range"]

#: Largest sampled ``min_cluster_size`` and ``min_samples`` (measured on planted groups: larger
#: values found no cluster at all, see docs/strategies/gradient_merge.md).
MAX_SAMPLED_CLUSTER_SIZE = 4
MAX_SAMPLED_MIN_SAMPLES = 2


def cluster_size_range(n_tasks: int) -> tuple[int, int]:
    """The ``min_cluster_size`` range a trial samples for ``n_tasks`` tasks.

    HDBSCAN finds no group smaller than ``min_cluster_size``, so the range stays at or below
    a quarter of the tasks (room for four groups) and at most
    :data:`MAX_SAMPLED_CLUSTER_SIZE`; it is ``(2, 2)`` below 12 tasks.

    Example:
        >>> cluster_size_range(6), cluster_size_range(12), cluster_size_range(40)
        ((2, 2), (2, 3), (2, 4))
    """
    return 2, max(2, min(MAX_SAMPLED_CLUSTER_SIZE, n_tasks // 4))


def min_samples_range(min_cluster_size: int) -> tuple[int, int]:
    """The ``min_samples`` range a trial samples given ``min_cluster_size``.

    ``min_samples`` equal to ``min_cluster_size`` made every branch noise on planted groups,
    and values above 2 lost the smaller groups, so the range is ``1 .. min(2, mcs - 1)``.

    Example:
        >>> min_samples_range(2), min_samples_range(3), min_samples_range(4)
        ((1, 1), (1, 2), (1, 2))
    """
    return 1, max(1, min(MAX_SAMPLED_MIN_SAMPLES, min_cluster_size - 1))


@dataclass
class _Run:
    """State of one trial's training (a fresh one per ``propose``)."""

    depth: int
    directive: str
    min_cluster_size: int
    min_samples: int
    rank: int
    start_epoch: int
    last_epoch: int
    recorder: GradientRecorder
    record: dict[str, Any]
    active: bool = True
    synced: bool = False
    quiet_epochs: int = 0
    rounds: int = 0
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_counts: dict[str, int] = field(default_factory=dict)


class GradientMerge(Strategy):
    """Selective Sharing: per-task branches merged during training by gradient similarity.

    An argument left ``None`` is sampled from the Optuna trial: ``min_cluster_size`` and
    ``min_samples`` (by default, in the ranges of :func:`cluster_size_range` and
    :func:`min_samples_range`), ``tt_rank`` (by default), and ``directive`` and
    ``start_epoch`` when passed as ``None``; a value fixes it.

    Args:
        directive: ``similarity`` (default), ``dissimilarity`` or ``variance`` (see
            :mod:`.clustering`); ``None`` samples one of the three.
        min_cluster_size: HDBSCAN's smallest group (>= 2).
        min_samples: HDBSCAN's core-distance ``k`` (>= 1).
        tt_rank: Tensor-train rank of the gradient factorisation.
        start_epoch: First epoch whose end clusters (default 0: the branches' gradients are
            most alike while the branches are still near their identical start); ``None``
            samples it in ``0 .. epochs // 3``.
        branch_depth: Block depth where the per-task branches start (default: half the
            blocks, rounded down, so a 4-block space shares 2 and branches 2).
        merge: ``best`` (keep the lowest-loss branch's weights), ``mean``, ``max`` or ``min``.
        patience: Epochs in a row without a merge that end the grouping (paper: 3).
        max_rounds: Merging epochs before the grouping ends (default 1); ``None`` merges until
            the paper's stop rule (every task grouped, or ``patience`` quiet epochs).
        retrain: Retrain the final graph from scratch instead of keeping the trained weights.
        window: Mini-batches summed before each factorisation (1 = every batch, as the paper).
        max_rank: Upper end of the sampled ``tt_rank`` range.
        sketch_size: Random probes per factorised gradient (length of each row of ``C_t``).
        sync_heads: Initialise every head identically to the others of its kind and size,
            as the branches are (default); ``False`` keeps the engine's per-head weights.

    Example:
        >>> GradientMerge(directive="variance", merge="mean").merge
        'mean'
    """

    name = "gradient_merge"
    description = "Selective Sharing: per-task branches merged by HDBSCAN on TT gradient factors"

    def __init__(
        self,
        *,
        directive: str | None = "similarity",
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        tt_rank: int | None = None,
        start_epoch: int | None = 0,
        branch_depth: int | None = None,
        merge: str = "best",
        patience: int = 3,
        max_rounds: int | None = 1,
        retrain: bool = False,
        window: int = 1,
        max_rank: int = 8,
        sketch_size: int = 64,
        sync_heads: bool = True,
    ):
        if directive is not None and directive not in DIRECTIVES:
            raise MTLSearchError(f"unknown directive {directive!r}; choose one of {list(DIRECTIVES)}")
        if merge not in MERGE_MODES:
            raise MTLSearchError(f"unknown merge {merge!r}; choose one of {list(MERGE_MODES)}")
        for label, value, low in (
            ("min_cluster_size", min_cluster_size, 2),
            ("min_samples", min_samples, 1),
            ("tt_rank", tt_rank, 1),
            ("start_epoch", start_epoch, 0),
            ("branch_depth", branch_depth, 0),
            ("patience", patience, 1),
            ("max_rounds", max_rounds, 1),
            ("window", window, 1),
            ("max_rank", max_rank, 1),
            ("sketch_size", sketch_size, 1),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise MTLSearchError(f"{label} must be an integer >= {low}, got {value!r}")
        if not isinstance(sync_heads, bool):
            raise MTLSearchError(f"sync_heads must be True or False, got {sync_heads!r}")
        self.directive = directive
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.tt_rank = tt_rank
        self.start_epoch = start_epoch
        self.branch_depth = branch_depth
        self.merge = merge
        self.patience = patience
        self.max_rounds = max_rounds
        self.retrain = retrain
        self.window = window
        self.max_rank = max_rank
        self.sketch_size = sketch_size
        self.sync_heads = sync_heads
        self._run: _Run | None = None

    # ------------------------------------------------------------------ proposal
    def initial_params(self, ctx: Any) -> list[dict[str, Any]]:
        """Settings a study tries first: the measured best, then coarser clusterings.

        ``min_cluster_size=2, min_samples=1`` recovered the planted groups at every measured
        setting (docs/strategies/gradient_merge.md); ``3, 1`` and ``3, 2`` follow where
        :func:`cluster_size_range` allows them. Only the names :meth:`propose` samples are
        given (a fixed argument is not a trial parameter), duplicates dropped.
        """
        low, high = cluster_size_range(len(ctx.task_names))
        pairs = [(2, 1), (3, 1), (3, 2)]
        out: list[dict[str, Any]] = []
        for mcs, samples in pairs:
            if self.min_cluster_size is None and not low <= mcs <= high:
                continue
            if self.min_samples is None and not (
                min_samples_range(self.min_cluster_size or mcs)[0]
                <= samples
                <= min_samples_range(self.min_cluster_size or mcs)[1]
            ):
                continue
            params: dict[str, Any] = {}
            if self.directive is None:
                params["directive"] = "similarity"
            if self.min_cluster_size is None:
                params["min_cluster_size"] = mcs
            if self.min_samples is None:
                params["min_samples"] = samples
            if self.tt_rank is None:
                params["tt_rank"] = min(2, self.max_rank)
            if self.start_epoch is None:
                params["start_epoch"] = 0
            if params and params not in out:
                out.append(params)
        return out

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        tasks, num_blocks = ctx.task_names, ctx.space.num_blocks
        depth = num_blocks // 2 if self.branch_depth is None else self.branch_depth
        if depth >= num_blocks:
            raise MTLSearchError(
                f"branch_depth={depth} leaves no block for the branches of a {num_blocks}-block "
                f"space; use 0..{num_blocks - 1}"
            )
        directive = self.directive or trial.suggest_categorical("directive", list(DIRECTIVES))
        mcs = self.min_cluster_size or trial.suggest_int(
            "min_cluster_size", *cluster_size_range(len(tasks))
        )
        samples = self.min_samples or trial.suggest_int("min_samples", *min_samples_range(mcs))
        rank = self.tt_rank or trial.suggest_int("tt_rank", 1, self.max_rank)
        last_start = max(0, ctx.budget.epochs // 3)
        start = (
            self.start_epoch
            if self.start_epoch is not None
            else trial.suggest_int("start_epoch", 0, last_start)
        )
        params = {
            "directive": directive, "min_cluster_size": mcs, "min_samples": samples,
            "tt_rank": rank, "start_epoch": start, "branch_depth": depth, "merge": self.merge,
            "patience": self.patience, "max_rounds": self.max_rounds, "window": self.window,
            "retrain": self.retrain, "sync_heads": self.sync_heads,
        }  # fmt: skip
        partitions = [[list(tasks)]] * depth + [[[t] for t in tasks]] * (num_blocks - depth)
        graph = ctx.new_graph("partitions", partitions=partitions)
        graph.info = {"strategy": self.name, **params}
        record: dict[str, Any] = {
            "params": params,
            "branch_depth": depth,
            "initial_params": summarize(graph, ctx.space, ctx.tasks).params,
            "epochs": [],
            "merges": [],
            "lock_epoch": None,
            "stop_reason": None,
            "final_groups": [[t] for t in tasks],
        }
        self._run = _Run(
            depth=depth, directive=directive, min_cluster_size=mcs, min_samples=samples,
            rank=rank, start_epoch=start, last_epoch=ctx.budget.epochs - 1,
            recorder=GradientRecorder(
                depth=depth, rank=rank, window=self.window, sketch_size=self.sketch_size,
                seed=ctx.seed,
            ),
            record=record,
        )  # fmt: skip
        if start >= ctx.budget.epochs:
            record["stop_reason"] = (
                f"start_epoch={start} is past the last epoch of a {ctx.budget.epochs}-epoch "
                "budget: no grouping"
            )
        info = {"gradient_merge": record}
        if not self.retrain:
            return Proposal(graph, info=info)
        # search with merging, then hand the final structure over to be trained from scratch
        result = ctx.train(graph, on_epoch_end=[self.on_epoch_end], on_backward=[self.on_backward])
        self._run.active = False
        final = result.model.graph.copy()
        record["search_seconds"] = result.seconds
        return Proposal(final, info=info)

    # ------------------------------------------------------------------ training hooks
    def on_backward(self, state: StepState) -> None:
        run = self._run
        if run is None or not run.active:
            return
        if not run.synced:
            # identical initial branches (section 3) and, by default, identical heads
            synced = _sync_branches(state.model, run.depth)
            if self.sync_heads:
                synced += _sync_heads(state.model)
            _drop_grads(synced)  # this step's gradients belong to the unsynced weights
            run.synced = True
            return
        if state.epoch < run.start_epoch:
            return  # no clustering at this epoch's end: nothing to capture
        for task, loss in state.losses.items():
            value = loss.detach().float()
            run.loss_sums[task] = run.loss_sums[task] + value if task in run.loss_sums else value
            run.loss_counts[task] = run.loss_counts.get(task, 0) + 1
        run.recorder.capture(state.model)

    def on_epoch_end(self, state: EpochState) -> SharingGraph | None:
        run = self._run
        if run is None or not run.active or state.epoch < run.start_epoch:
            return None
        # The last epoch is clustered for the record only: a merge now would hand tasks a
        # branch their heads were never trained with, and no epoch is left to adapt them.
        last = state.epoch >= run.last_epoch
        model, record = state.model, run.record
        graph = model.graph
        current = branches(graph, run.depth)
        names = list(current)
        factors = run.recorder.matrix()
        entry: dict[str, Any] = {
            "epoch": state.epoch,
            "groups_before": list(current.values()),
            "factorise_seconds": run.recorder.factorise_seconds,
        }
        start = time.perf_counter()
        labels = np.full(len(names), -1)
        if len(names) >= 2 and all(n in factors for n in names):
            points = normalise_rows(np.stack([factors[n] for n in names]))
            labels = cluster_branches(
                points, directive=run.directive, min_cluster_size=run.min_cluster_size,
                min_samples=run.min_samples,
            )  # fmt: skip
        entry["cluster_seconds"] = time.perf_counter() - start
        entry["labels"] = {n: int(v) for n, v in zip(names, labels)}
        groups = [[names[i] for i in g] for g in groups_from_labels(labels)]
        new_graph = None
        if last:
            entry["last_epoch"] = True
            entry["would_merge"] = [sorted((t for b in g for t in current[b]), key=graph.tasks.index)
                                    for g in groups]  # fmt: skip
            groups = []
        if groups:
            sums = {t: float(v) for t, v in run.loss_sums.items()}
            losses = aggregated_losses(sums, run.loss_counts, current)
            keep = [min(g, key=lambda n: (losses[n], names.index(n))) for g in groups]
            for group, kept in zip(groups, keep):
                merge_weights(model, run.depth, group, keep=kept, mode=self.merge)
            new_graph = merge_branches(graph, run.depth, groups, keep=keep)
            run.quiet_epochs = 0
            run.rounds += 1
            merged = [sorted((t for b in g for t in current[b]), key=graph.tasks.index) for g in groups]
            record["merges"].append({"epoch": state.epoch, "groups": merged, "kept": keep})
            graph = new_graph
        elif not last:
            run.quiet_epochs += 1
        after = branches(graph, run.depth)
        params = summarize(graph, model.space, model.task_specs).params
        entry.update(groups=list(after.values()), merged=bool(groups), params=params, branches=len(after))
        record["epochs"].append(entry)
        record["final_groups"] = list(after.values())
        record["final_params"] = params
        reason = _stop_reason(
            after, run.quiet_epochs, self.patience, run.min_cluster_size, run.rounds,
            self.max_rounds,
        )  # fmt: skip
        if reason is None and last:
            reason = "last epoch: clustered, not merged (no epoch left to train a merge)"
        if reason is not None:
            run.active = False
            record["lock_epoch"] = state.epoch
            record["stop_reason"] = reason
        run.recorder.reset()
        run.loss_sums, run.loss_counts = {}, {}
        return new_graph


def _stop_reason(
    groups: dict[str, list[str]],
    quiet: int,
    patience: int,
    min_cluster_size: int,
    rounds: int = 0,
    max_rounds: int | None = None,
) -> str | None:
    """Why grouping ends now, or ``None`` to go on."""
    if all(len(tasks) >= 2 for tasks in groups.values()) or len(groups) < 2:
        return "every task is grouped"
    if max_rounds is not None and rounds >= max_rounds:
        return f"{rounds} merging epoch{'s' if rounds > 1 else ''} (max_rounds={max_rounds})"
    if quiet >= patience:
        return f"no change for {patience} epochs"
    if len(groups) < min_cluster_size:
        return f"fewer branches ({len(groups)}) than min_cluster_size ({min_cluster_size})"
    return None


@torch.no_grad()
def _sync_branches(model: MultiTaskModel, depth: int) -> list[torch.nn.Module]:
    """Copy the first task's branch into every other branch (weights and buffers).

    Returns every branch module (source included), in branch order.
    """
    graph = model.graph
    current = branches(graph, depth)
    names = list(current)
    source = branch_nodes(graph, depth, names[0], current)
    modules = [model.blocks[module_key(n)] for n in source]
    for branch in names[1:]:
        for src, dst in zip(source, branch_nodes(graph, depth, branch, current)):
            target = model.blocks[module_key(dst)]
            target.load_state_dict(model.blocks[module_key(src)].state_dict())
            modules.append(target)
    return modules


def _head_signature(kind: str, head: torch.nn.Module) -> tuple[Any, ...]:
    """What makes two heads interchangeable: task kind, module type, every tensor's shape."""
    state = head.state_dict()
    shapes = tuple((k, tuple(v.shape), v.dtype) for k, v in state.items())
    return (kind, type(head).__qualname__, shapes)


@torch.no_grad()
def _sync_heads(model: MultiTaskModel) -> list[torch.nn.Module]:
    """Copy the first head of each kind/size into every other head of that kind/size.

    Tasks whose heads differ in kind or shape (a 10-class head next to a binary one) cannot
    share initial weights; each is synchronised within its own group.

    Returns every head module that belongs to a group of two or more.
    """
    groups: dict[tuple[Any, ...], list[torch.nn.Module]] = {}
    for spec, head in zip(model.task_specs, model.heads.values(), strict=True):  # task order
        groups.setdefault(_head_signature(spec.kind, head), []).append(head)
    synced = []
    for heads in groups.values():
        if len(heads) < 2:
            continue
        state = heads[0].state_dict()
        for head in heads[1:]:
            head.load_state_dict(state)
        synced += heads
    return synced


def _drop_grads(modules: list[torch.nn.Module]) -> None:
    """Forget the gradients of ``modules`` so this optimizer step leaves them unchanged.

    Those gradients were computed with the weights before synchronisation; applying them
    would make the copies differ again after the first step.
    """
    for module in modules:
        for param in module.parameters():
            param.grad = None
