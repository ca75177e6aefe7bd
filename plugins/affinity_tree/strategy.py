"""Strategy ``affinity_tree``: a branched tree clustered from measured task affinities.

Vandenhende et al., "Branched Multi-Task Networks: Deciding What Layers To Share". Each trial
samples the complexity weight ``alpha`` (log scale) and the beam width ``n``, builds the
cheapest tree from the affinity tensor (measured once per data, space, budget and seed, and
kept in ``ctx.cache``) and trains it from scratch. Trials that land on a tree trained before
(several ``alpha`` often do) reuse its trained weights instead of training again.

Example:
    >>> from mtlsearch import create_strategy
    >>> from mtlsearch.pipeline import run_strategy
    >>> from mtlsearch.testing import tiny_context
    >>> result = run_strategy(create_strategy("affinity_tree", estimator="rsa"), tiny_context())
    >>> result.info["tree"]  # doctest: +SKIP
    [[['bin', 'cls', 'reg']], [['bin'], ['cls'], ['reg']]]
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mtlsearch.errors import MTLSearchError
from mtlsearch.strategy import Proposal, Strategy

from .affinity import AffinityTensor
from .estimators import ESTIMATORS, estimate_affinity
from .tree import CANDIDATES, build_tree, pooling_steps

__all__ = ["AffinityTree"]


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
        alpha_range: Log-uniform range of the complexity weight ``alpha``.
        max_beam_width: The trial samples ``n`` in ``1..max_beam_width``.
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
        self.max_beam_width = max_beam_width
        self.search = search
        self.candidates = candidates
        self.exhaustive_max_tasks = exhaustive_max_tasks
        self.reuse_trained = reuse_trained
        self.max_kept_models = max_kept_models
        # Trained weights per (context, tree): weights do not belong in the JSON cache.
        self._trained: OrderedDict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = OrderedDict()

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

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        alpha = trial.suggest_float("alpha", *self.alpha_range, log=True)
        n_tasks = len(ctx.task_names)
        beam = self._uses_beam(n_tasks)
        width = trial.suggest_int("beam_width", 1, self.max_beam_width) if beam else 1
        tensor = self.affinity_tensor(ctx)
        found = build_tree(
            tensor.values,
            pooling_steps(ctx.space),
            alpha=alpha,
            beam_width=width,
            search="beam" if beam else "exhaustive",
            candidates=self.candidates,
            seed=ctx.seed,
        )
        partitions = found.named(ctx.task_names)
        graph = ctx.new_graph("partitions", partitions=partitions)
        info: dict[str, Any] = {
            "alpha": alpha,
            "beam_width": width if beam else None,
            "search": found.method,
            "tree": partitions,
            "tree_cost": found.cost,
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
