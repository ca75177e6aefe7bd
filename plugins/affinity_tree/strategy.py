"""Strategy ``affinity_tree``: a branched tree clustered from measured task affinities.

Vandenhende et al., "Branched Multi-Task Networks: Deciding What Layers To Share". The affinity
tensor is measured once per data, space, budget and seed (kept in ``ctx.cache``). Two ways to
choose the tree of a trial:

- ``alpha_sampling="trees"`` (default): the distinct trees that ``alpha`` in ``alpha_range``
  produces are enumerated once (:func:`~.tree.enumerate_trees`; the single-task tree, the
  reference, is left out unless it is the only one) and the trial picks one by index
  (parameter ``tree``). :meth:`AffinityTree.initial_params` queues them all, the tree that
  stays the cheapest over the widest ``alpha`` interval first, so no two of the first trials
  train the same tree.
- ``alpha_sampling="log_uniform"`` (the paper): the trial samples ``alpha`` log-uniformly and
  the beam width ``n`` (parameters ``alpha``, ``beam_width``).

The tree is then trained from scratch. Trials that land on a tree trained before reuse its
trained weights instead of training again.

Example:
    >>> from mtlsearch import create_strategy
    >>> from mtlsearch.strategy.pipeline import run_strategy
    >>> from mtlsearch.testing import tiny_context
    >>> result = run_strategy(create_strategy("affinity_tree", estimator="rsa"), tiny_context())
    >>> result.info["tree"]  # doctest: +SKIP
    [[['bin', 'cls', 'reg']], [['bin'], ['cls'], ['reg']]]
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mtlsearch.errors import MTLSearchError
from mtlsearch.strategy.base import Proposal, Strategy

from .affinity import AffinityTensor
from .estimators import ESTIMATORS, estimate_affinity
from .tree import (
    CANDIDATES,
    CLUSTERING_COSTS,
    TreeCandidate,
    build_tree,
    enumerate_trees,
    is_single_task,
    pooling_steps,
)

__all__ = ["AffinityTree", "ALPHA_SAMPLING"]

ALPHA_SAMPLING = ("trees", "log_uniform")


class AffinityTree(Strategy):
    """Cluster tasks by affinity at every depth into a branched network.

    Args:
        estimator: How the affinity tensor is measured: ``full`` (every recombined network,
            the paper), ``subset`` (recombined networks on part of the data with early
            stopping) or ``rsa`` (representation similarity of the single-task models).
        affinity: A saved :class:`AffinityTensor` (``.json``/``.npz`` path) or a tensor to use
            instead of measuring one.
        affinity_epochs: Epochs per recombined network (default: the budget's epochs).
        subset_fraction: Share of the training split for ``subset``.
        subset_patience: Early-stopping patience (epochs) for ``subset``.
        rsa_samples: Held-out samples compared by ``rsa``.
        alpha_range: Range of the complexity weight ``alpha``.
        alpha_sampling: ``trees`` (pick one of the distinct trees of ``alpha_range``) or
            ``log_uniform`` (the paper: sample ``alpha`` log-uniformly in ``alpha_range``).
        clustering: Clustering cost of a grouping: ``size_weighted`` (each group's largest
            distance weighted by its share of the tasks) or ``paper`` (the plain mean over
            groups, where every singleton dilutes the mean).
        max_beam_width: ``log_uniform``: the trial samples ``n`` in ``1..max_beam_width``;
            ``trees``: the trees are enumerated with the beam width ``max_beam_width``.
        search: ``beam`` (the paper), ``exhaustive`` (exact, small task counts) or ``auto``
            (exhaustive up to ``exhaustive_max_tasks`` tasks).
        candidates: Groupings the beam tries at each depth: ``spectral`` (the paper) or ``all``.
        exhaustive_max_tasks: Task count up to which ``auto`` searches exhaustively.
        reuse_trained: Train the tree in ``propose`` and keep its weights, so a later trial
            with the same tree returns them instead of training again. ``False`` leaves the
            training to the engine (per-epoch pruning then applies; nothing is reused).
        max_kept_models: Trained trees kept in memory (oldest dropped first).

    Example:
        >>> AffinityTree(estimator="rsa", alpha_range=(0.01, 1.0)).name
        'affinity_tree'
    """

    name = "affinity_tree"
    description = "branched tree from task affinities at every depth (Vandenhende et al.)"
    # compare: the RSA estimator trains the single-task models only, not every recombination
    quick_settings = {"estimator": "rsa"}

    def __init__(
        self,
        *,
        estimator: str = "full",
        affinity: str | Path | AffinityTensor | None = None,
        affinity_epochs: int | None = None,
        subset_fraction: float = 0.5,
        subset_patience: int = 1,
        rsa_samples: int = 256,
        alpha_range: tuple[float, float] = (1e-3, 1.0),
        alpha_sampling: str = "trees",
        clustering: str = "size_weighted",
        max_beam_width: int = 3,
        search: str = "beam",
        candidates: str = "spectral",
        exhaustive_max_tasks: int = 6,
        reuse_trained: bool = True,
        max_kept_models: int = 16,
    ):
        if estimator not in ESTIMATORS:
            raise MTLSearchError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
        if search not in ("beam", "exhaustive", "auto"):
            raise MTLSearchError(f"unknown search {search!r}; choose beam, exhaustive or auto")
        if candidates not in CANDIDATES:
            raise MTLSearchError(f"unknown candidates {candidates!r}; choose one of {list(CANDIDATES)}")
        if alpha_sampling not in ALPHA_SAMPLING:
            raise MTLSearchError(
                f"unknown alpha_sampling {alpha_sampling!r}; choose one of {list(ALPHA_SAMPLING)}"
            )
        if clustering not in CLUSTERING_COSTS:
            raise MTLSearchError(
                f"unknown clustering cost {clustering!r}; choose one of {list(CLUSTERING_COSTS)}"
            )
        low, high = (float(a) for a in alpha_range)
        if not 0 < low <= high:
            raise MTLSearchError(f"alpha_range must be 0 < low <= high, got {alpha_range}")
        if max_beam_width < 1:
            raise MTLSearchError(f"max_beam_width must be at least 1, got {max_beam_width}")
        if not 0 < subset_fraction <= 1:
            raise MTLSearchError(f"subset_fraction must be in (0, 1], got {subset_fraction}")
        self.estimator = estimator
        self.affinity = affinity
        self.affinity_epochs = affinity_epochs
        self.subset_fraction = subset_fraction
        self.subset_patience = subset_patience
        self.rsa_samples = rsa_samples
        self.alpha_range = (low, high)
        self.alpha_sampling = alpha_sampling
        self.clustering = clustering
        self.max_beam_width = max_beam_width
        self.search = search
        self.candidates = candidates
        self.exhaustive_max_tasks = exhaustive_max_tasks
        self.reuse_trained = reuse_trained
        self.max_kept_models = max_kept_models
        # Trained weights per (context, tree): weights do not belong in the JSON cache.
        self._trained: OrderedDict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = OrderedDict()
        # Enumerated trees per context (deterministic, cheap next to training: not cached on disk).
        self._candidates: dict[str, list[TreeCandidate]] = {}

    def affinity_tensor(self, ctx: Any) -> AffinityTensor:
        """The affinity tensor for ``ctx``: the given one, or measured (and cached) once."""
        given = self.affinity
        if isinstance(given, (str, Path)):
            given = AffinityTensor.load(given)
        tensor = given if given is not None else estimate_affinity(
            ctx,
            self.estimator,
            epochs=self.affinity_epochs,
            subset_fraction=self.subset_fraction,
            subset_patience=self.subset_patience,
            rsa_samples=self.rsa_samples,
        )
        tensor.check_fits(ctx.task_names, ctx.space.num_blocks)
        return tensor

    def _uses_beam(self, n_tasks: int) -> bool:
        return self.search == "beam" or (self.search == "auto" and n_tasks > self.exhaustive_max_tasks)

    def tree_candidates(self, ctx: Any) -> list[TreeCandidate]:
        """The distinct trees of ``alpha_range`` for ``ctx``, most branched first.

        The single-task tree is left out (it is the reference every trial is scored against)
        unless it is the only tree of the range. Enumerated with the beam width
        ``max_beam_width`` (the widest search allowed: it finds the cheapest trees).
        """
        tensor = self.affinity_tensor(ctx)
        key = ctx.key(
            "affinity_tree_candidates",
            estimator=tensor.estimator,
            values=tensor.values.round(12).tolist(),
            alpha_range=list(self.alpha_range),
            clustering=self.clustering,
            search=self.search,
            candidates=self.candidates,
            beam_width=self.max_beam_width,
            exhaustive_max_tasks=self.exhaustive_max_tasks,
        )
        if key not in self._candidates:
            beam = self._uses_beam(len(ctx.task_names))
            found = enumerate_trees(
                tensor.values,
                pooling_steps(ctx.space),
                alpha_range=self.alpha_range,
                beam_width=self.max_beam_width,
                search="beam" if beam else "exhaustive",
                candidates=self.candidates,
                clustering=self.clustering,
                seed=ctx.seed,
            )
            kept = [c for c in found if not is_single_task(c.partitions)]
            self._candidates[key] = kept or found
        return self._candidates[key]

    def initial_params(self, ctx: Any) -> list[dict[str, Any]]:
        """With ``alpha_sampling="trees"``: every candidate tree once, as ``{"tree": index}``.

        Order: first the trees whose ``alpha`` intervals lie inside ``alpha_range``, by total
        interval width in decades, widest first (the tree that stays the cheapest over the
        widest range of complexity weights depends least on the arbitrary ``alpha``); then
        the trees that reach an end of the range (hard sharing at the top), whose width only
        says where the range was cut, also widest first. Ties by index. With ``log_uniform``
        nothing is queued (the paper's blind sampling).
        """
        if self.alpha_sampling != "trees":
            return []
        found = self.tree_candidates(ctx)
        low, high = self.alpha_range

        def at_an_end(c: TreeCandidate) -> bool:
            return any(
                math.isclose(lo, low, rel_tol=1e-9) or math.isclose(hi, high, rel_tol=1e-9)
                for lo, hi in c.intervals
            )

        order = sorted(
            range(len(found)),
            key=lambda k: (at_an_end(found[k]), -round(found[k].log_width, 9), k),
        )
        return [{"tree": k} for k in order]

    def _choose(self, trial: Any, ctx: Any) -> tuple[list[list[list[str]]], dict[str, Any]]:
        """The trial's tree (task names per group per depth) and what to record about it."""
        n_tasks = len(ctx.task_names)
        beam = self._uses_beam(n_tasks)
        if self.alpha_sampling == "trees":
            found = self.tree_candidates(ctx)
            index = trial.suggest_int("tree", 0, len(found) - 1)
            chosen = found[index]
            low, high = self.alpha_range
            partitions = chosen.named(ctx.task_names)
            return partitions, {
                "alpha": chosen.alpha,
                "alpha_interval": list(chosen.widest),
                "alpha_intervals": [list(iv) for iv in chosen.intervals],
                "prior_share": chosen.log_width / math.log10(high / low) if high > low else 1.0,
                "tree_index": index,
                "n_candidates": len(found),
                "beam_width": self.max_beam_width if beam else None,
                "search": f"beam(n={self.max_beam_width})" if beam else "exhaustive",
                "tree_cost": chosen.cost(chosen.alpha),
            }
        alpha = trial.suggest_float("alpha", *self.alpha_range, log=True)
        width = trial.suggest_int("beam_width", 1, self.max_beam_width) if beam else 1
        result = build_tree(
            self.affinity_tensor(ctx).values,
            pooling_steps(ctx.space),
            alpha=alpha,
            beam_width=width,
            search="beam" if beam else "exhaustive",
            candidates=self.candidates,
            clustering=self.clustering,
            seed=ctx.seed,
        )
        return result.named(ctx.task_names), {
            "alpha": alpha,
            "beam_width": width if beam else None,
            "search": result.method,
            "tree_cost": result.cost,
        }

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        partitions, chosen = self._choose(trial, ctx)
        tensor = self.affinity_tensor(ctx)
        graph = ctx.new_graph("partitions", partitions=partitions)
        info: dict[str, Any] = {
            **chosen,
            "alpha_sampling": self.alpha_sampling,
            "clustering": self.clustering,
            "tree": partitions,
            "branches": [len(p) for p in partitions],
            "estimator": tensor.estimator,
            "affinity_seconds": tensor.meta.get("seconds"),
        }
        if not self.reuse_trained:
            return Proposal(graph, info=info)
        key = ctx.key("affinity_tree_trained", tree=json.dumps(partitions))
        if key in self._trained:
            state, first = self._trained[key]
            self._trained.move_to_end(key)
            return Proposal(graph, state_dict=state, info={**info, "reused": True, **first})
        result = ctx.train(graph)
        state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
        first = {"trained_seconds": result.seconds, "trained_epochs": result.epochs_run}
        self._trained[key] = (state, first)
        while len(self._trained) > self.max_kept_models:
            self._trained.popitem(last=False)
        return Proposal(graph, state_dict=state, info={**info, "reused": False, **first})
