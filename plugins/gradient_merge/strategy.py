"""The ``gradient_merge`` strategy: Selective Sharing, tasks merged by their gradients.

Structure (section 3): the blocks before the branch depth are hard-shared (feature extractor
and shared representation); from the branch depth on every task has its own, identically
initialised branch; each task has its own head. During training the strategy

1. captures each branch's first-layer gradient after every backward pass
   (:class:`~.capture.GradientRecorder`), factorised by tensor train;
2. at the end of each epoch from ``start_epoch`` on, clusters the branches' normalised
   factors with HDBSCAN under a directive (:mod:`.clustering`);
3. merges each cluster into the branch with the lowest aggregated training loss (or writes
   the mean, maximum or minimum weights into it) and returns the new graph; the trainer keeps
   the remaining weights and optimizer state;
4. stops grouping when every task shares its branch with another task, or after ``patience``
   epochs in a row without a merge; training goes on with the final structure.

The record of every epoch (groups, merges, parameter count, timings) is in
``Proposal.info["gradient_merge"]``, which the engine copies into the trial's info.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> from mtlsearch.pipeline import run_strategy
    >>> result = run_strategy(GradientMerge(directive="similarity"), tiny_context())
    >>> sorted(result.info["gradient_merge"])[:3]
    ['branch_depth', 'epochs', 'final_groups']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlsearch.errors import MTLSearchError
from mtlsearch.graph import SharingGraph
from mtlsearch.model import MultiTaskModel, module_key
from mtlsearch.strategy import Proposal, Strategy
from mtlsearch.summary import summarize
from mtlsearch.train import EpochState, StepState

from .capture import GradientRecorder, aggregated_losses, branches
from .clustering import DIRECTIVES, cluster_branches, groups_from_labels
from .factors import normalise_rows
from .merge import MERGE_MODES, branch_nodes, merge_branches, merge_weights

__all__ = ["GradientMerge"]


@dataclass
class _Run:
    """State of one trial's training (a fresh one per ``propose``)."""

    depth: int
    directive: str
    min_cluster_size: int
    min_samples: int
    rank: int
    start_epoch: int
    recorder: GradientRecorder
    record: dict[str, Any]
    active: bool = True
    synced: bool = False
    quiet_epochs: int = 0
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_counts: dict[str, int] = field(default_factory=dict)


class GradientMerge(Strategy):
    """Selective Sharing: per-task branches merged during training by gradient similarity.

    Every argument left ``None`` is sampled from the Optuna trial (``directive``,
    ``min_cluster_size``, ``min_samples``, ``tt_rank``, ``start_epoch``); a value fixes it.

    Args:
        directive: ``similarity``, ``dissimilarity`` or ``variance`` (see :mod:`.clustering`).
        min_cluster_size: HDBSCAN's smallest group (>= 2).
        min_samples: HDBSCAN's core-distance ``k`` (>= 1).
        tt_rank: Tensor-train rank of the gradient factorisation.
        start_epoch: First epoch whose end clusters (gradients are captured from then on).
        branch_depth: Block depth where the per-task branches start (default: half the
            blocks, rounded down, so a 4-block space shares 2 and branches 2).
        merge: ``best`` (keep the lowest-loss branch's weights), ``mean``, ``max`` or ``min``.
        patience: Epochs in a row without a merge that end the grouping (paper: 3).
        retrain: Retrain the final graph from scratch instead of keeping the trained weights.
        window: Mini-batches summed before each factorisation (1 = every batch, as the paper).
        max_rank: Upper end of the sampled ``tt_rank`` range.
        sketch_size: Random probes per factorised gradient (length of each row of ``C_t``).

    Example:
        >>> GradientMerge(directive="variance", merge="mean").merge
        'mean'
    """

    name = "gradient_merge"
    description = "Selective Sharing: per-task branches merged by HDBSCAN on TT gradient factors"

    def __init__(
        self,
        *,
        directive: str | None = None,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        tt_rank: int | None = None,
        start_epoch: int | None = None,
        branch_depth: int | None = None,
        merge: str = "best",
        patience: int = 3,
        retrain: bool = False,
        window: int = 1,
        max_rank: int = 8,
        sketch_size: int = 64,
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
            ("window", window, 1),
            ("max_rank", max_rank, 1),
            ("sketch_size", sketch_size, 1),
        ):
            if value is not None and (not isinstance(value, int) or value < low):
                raise MTLSearchError(f"{label} must be an integer >= {low}, got {value!r}")
        self.directive = directive
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.tt_rank = tt_rank
        self.start_epoch = start_epoch
        self.branch_depth = branch_depth
        self.merge = merge
        self.patience = patience
        self.retrain = retrain
        self.window = window
        self.max_rank = max_rank
        self.sketch_size = sketch_size
        self._run: _Run | None = None

    # ------------------------------------------------------------------ proposal
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
            "min_cluster_size", 2, max(2, len(tasks) // 2)
        )
        samples = self.min_samples or trial.suggest_int("min_samples", 1, mcs)
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
            "patience": self.patience, "window": self.window, "retrain": self.retrain,
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
            rank=rank, start_epoch=start,
            recorder=GradientRecorder(
                depth=depth, rank=rank, window=self.window, sketch_size=self.sketch_size,
                seed=ctx.seed,
            ),
            record=record,
        )  # fmt: skip
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
            _sync_branches(state.model, run.depth)  # identical initial branches (section 3)
            run.synced = True
        if state.epoch < run.start_epoch:
            return
        for task, loss in state.losses.items():
            value = loss.detach().float()
            run.loss_sums[task] = run.loss_sums[task] + value if task in run.loss_sums else value
            run.loss_counts[task] = run.loss_counts.get(task, 0) + 1
        run.recorder.capture(state.model)

    def on_epoch_end(self, state: EpochState) -> SharingGraph | None:
        run = self._run
        if run is None or not run.active or state.epoch < run.start_epoch:
            return None
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
        if groups:
            sums = {t: float(v) for t, v in run.loss_sums.items()}
            losses = aggregated_losses(sums, run.loss_counts, current)
            keep = [min(g, key=lambda n: (losses[n], names.index(n))) for g in groups]
            for group, kept in zip(groups, keep):
                merge_weights(model, run.depth, group, keep=kept, mode=self.merge)
            new_graph = merge_branches(graph, run.depth, groups, keep=keep)
            run.quiet_epochs = 0
            merged = [sorted((t for b in g for t in current[b]), key=graph.tasks.index) for g in groups]
            record["merges"].append({"epoch": state.epoch, "groups": merged, "kept": keep})
            graph = new_graph
        else:
            run.quiet_epochs += 1
        after = branches(graph, run.depth)
        params = summarize(graph, model.space, model.task_specs).params
        entry.update(groups=list(after.values()), merged=bool(groups), params=params, branches=len(after))
        record["epochs"].append(entry)
        record["final_groups"] = list(after.values())
        record["final_params"] = params
        reason = _stop_reason(after, run.quiet_epochs, self.patience, run.min_cluster_size)
        if reason is not None:
            run.active = False
            record["lock_epoch"] = state.epoch
            record["stop_reason"] = reason
        run.recorder.reset()
        run.loss_sums, run.loss_counts = {}, {}
        return new_graph


def _stop_reason(
    groups: dict[str, list[str]], quiet: int, patience: int, min_cluster_size: int
) -> str | None:
    """Why grouping ends now, or ``None`` to go on."""
    if all(len(tasks) >= 2 for tasks in groups.values()) or len(groups) < 2:
        return "every task is grouped"
    if quiet >= patience:
        return f"no change for {patience} epochs"
    if len(groups) < min_cluster_size:
        return f"fewer branches ({len(groups)}) than min_cluster_size ({min_cluster_size})"
    return None


@torch.no_grad()
def _sync_branches(model: MultiTaskModel, depth: int) -> None:
    """Copy the first task's branch into every other branch (weights and buffers)."""
    graph = model.graph
    current = branches(graph, depth)
    names = list(current)
    source = branch_nodes(graph, depth, names[0], current)
    for branch in names[1:]:
        for src, dst in zip(source, branch_nodes(graph, depth, branch, current)):
            model.blocks[module_key(dst)].load_state_dict(model.blocks[module_key(src)].state_dict())
