"""The ``task_routing`` strategy: the hard-shared backbone with a fixed random channel mask per
task after every block's normalisation (Strezoski et al., ICCV 2019).

The masks live in the sharing graph (``set_mask``), so export and load reproduce them bit for
bit; they are never trained and never parameters. Training follows Algorithm 1 (one random
active task per mini-batch) unless ``task_sampling="all"``, with the trainer's update parity
(T passes over the data per epoch, so every task gets as many updates as under all-task
training). Blocks after the first mask normalise each task with its own batch-norm statistics
(``task_norm="task"``), recalibrated on the training split after the last epoch
(``recalibrate=True``); ``task_norm="shared"``, ``update_parity=False`` and
``recalibrate=False`` give the paper's code.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> ctx = tiny_context()
    >>> graph = routed_graph(ctx.new_graph("hard_sharing"), ctx.space, sigma=0.5, seed=3)
    >>> sorted(graph.masks())
    ['b0.0', 'b1.0']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlsearch.errors import GraphError, MTLSearchError
from mtlsearch.graph.sharing import TASK_NORMS, SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.strategy.base import Proposal, Strategy

from .evaluation import DEFAULT_MAX_BYTES, routed_bytes_per_row
from .masks import SCHEMES, check_sigma, mask_stats, routing_masks
from .norms import recalibrate_norms

__all__ = ["TaskRouting", "routed_graph", "INITIAL_SIGMAS", "TASK_NORMS"]

#: σ values a study tries first (see :meth:`TaskRouting.initial_params`), best first on
#: multi_digits / small_cnn (docs/strategies/task_routing.md), then spread over (0, 1).
INITIAL_SIGMAS = (0.75, 0.5, 0.25)


def _check_task_norm(task_norm: str) -> str:
    if task_norm not in TASK_NORMS:
        raise MTLSearchError(f"task_norm must be one of {list(TASK_NORMS)}, got {task_norm!r}")
    return task_norm


def _check_blocks(blocks: Sequence[int] | None, num_blocks: int) -> list[int]:
    if blocks is None:
        return list(range(num_blocks))
    chosen = sorted(set(int(b) for b in blocks))
    bad = [b for b in chosen if not 0 <= b < num_blocks]
    if bad or not chosen:
        raise MTLSearchError(
            f"routed blocks {list(blocks)} must be a non-empty subset of 0..{num_blocks - 1}"
        )
    return chosen


def routed_graph(
    graph: SharingGraph,
    space: SearchSpace,
    *,
    sigma: float,
    seed: int,
    scheme: str = "paper",
    blocks: Sequence[int] | None = None,
    task_norm: str = "task",
) -> SharingGraph:
    """Put task routing masks on a hard-sharing ``graph`` (in place; returns it).

    Block ``i`` gets its masks from the seed stream ``[seed, i]``, so routing fewer blocks
    does not change the masks of the others.

    Args:
        graph: A hard-sharing graph (one block node per depth, every task through it).
        space: The search space (gives each block's channel count).
        sigma: Sharing ratio in [0, 1] (1 = hard sharing, 0 = no unit shared).
        seed: Mask seed.
        scheme: ``"paper"`` or ``"official"`` (see :mod:`.masks`).
        blocks: Block indices to route (default: all).
        task_norm: ``"task"``: batch norms of blocks that tasks reach with different
            (masked) inputs keep one set of running statistics per task, so evaluation
            normalises each task as training did; ``"shared"``: one set for all tasks (the
            paper's code: trained on per-task batch statistics, evaluated with their mixture).

    Raises:
        GraphError: ``graph`` is not hard sharing.
        MTLSearchError: bad sigma, scheme, blocks or task_norm.

    Example:
        >>> from mtlsearch import create_space
        >>> space = create_space("mlp", input_shape=(4,), widths=(8,))
        >>> g = routed_graph(SharingGraph.hard_sharing(["a", "b"], 1), space, sigma=0, seed=0)
        >>> bool((g.masks()["b0.0"]["a"] & g.masks()["b0.0"]["b"]).any())
        False
    """
    check_sigma(sigma)
    _check_task_norm(task_norm)
    if graph.branches_per_depth() != [1] * graph.num_blocks:
        raise GraphError(
            "task routing masks a hard-sharing graph (one block node per depth); got branches "
            f"{graph.branches_per_depth()}; build it with ctx.new_graph('hard_sharing')"
        )
    for index in _check_blocks(blocks, graph.num_blocks):
        node = graph.block_nodes(index)[0]
        channels = space.blocks[index].channels
        matrix = routing_masks(graph.tasks, channels, sigma=sigma, seed=[seed, index], scheme=scheme)
        for task, row in zip(graph.tasks, matrix):
            graph.set_mask(task, node, row)
    graph.task_norm = task_norm
    graph.info.update({"strategy": "task_routing", "sigma": sigma, "scheme": scheme, "mask_seed": seed,
                       "task_norm": task_norm})
    return graph


class TaskRouting(Strategy):
    """Task Routing: fixed random per-task channel masks on a shared backbone.

    Each trial samples the sharing ratio ``sigma`` (continuous in ``sigma_range``), the
    ``mask_seed`` and the ``scheme`` unless they are fixed here. The proposal trains with one
    random active task per batch (Algorithm 1) by default, with update parity: T passes over
    the training data per epoch, so each task gets as many updates as under all-task training
    (and the trunk T times the compute).

    Args:
        sigma: Fix the sharing ratio instead of sampling it.
        sigma_range: ``(low, high)`` of the sampled sharing ratio.
        schemes: Mask schemes the trial chooses from (``"paper"``, ``"official"``).
        mask_seed: Fix the mask seed instead of sampling it.
        task_sampling: ``"one"`` (Algorithm 1) or ``"all"`` tasks every batch.
        update_parity: With ``task_sampling="one"``, make T passes over the data per epoch
            (``TrainConfig.update_parity``); ``False`` is the paper's code (one pass, so each
            head gets about 1/T of the updates of all-task training); ``None`` keeps the
            study budget's setting.
        task_norm: ``"task"`` (per-task batch-norm statistics where the tasks' inputs differ)
            or ``"shared"`` (the paper's code); see :func:`routed_graph`.
        blocks: Block indices to route (default: every block).
        max_eval_bytes: Memory allowed for the one batched pass over all tasks during the
            trainer's validation; above it the proposal lowers ``eval_batch_size``.
        initial_sigmas: σ values :meth:`initial_params` lists for a study to try first
            (those inside ``sigma_range``).
        recalibrate: After the last training epoch, set every batch norm's running
            statistics to the exact ones of the training split, per task
            (:func:`~.norms.recalibrate_norms`, one forward pass, charged as compute): with
            one active task per batch a task's moving averages are updated on only 1/T of the
            steps and lag the weights. ``False``: keep the moving averages (the paper's code).
            With early stopping (``patience``) the restored best epoch keeps its moving
            averages.

    Example:
        >>> from mtlsearch.strategy.pipeline import run_strategy
        >>> result = run_strategy(TaskRouting(sigma=0.4), ctx)  # doctest: +SKIP
    """

    name = "task_routing"
    description = "hard-shared backbone with fixed random per-task channel masks (sharing ratio σ)"

    def __init__(
        self,
        *,
        sigma: float | None = None,
        sigma_range: tuple[float, float] = (0.0, 1.0),
        schemes: Sequence[str] = SCHEMES,
        mask_seed: int | None = None,
        task_sampling: str = "one",
        update_parity: bool | None = True,
        task_norm: str = "task",
        blocks: Sequence[int] | None = None,
        max_eval_bytes: int = DEFAULT_MAX_BYTES,
        initial_sigmas: Sequence[float] = INITIAL_SIGMAS,
        recalibrate: bool = True,
    ):
        self.sigma = None if sigma is None else check_sigma(sigma)
        low, high = (check_sigma(v) for v in sigma_range)
        if low > high:
            raise MTLSearchError(f"sigma_range {sigma_range} must be (low, high) with low <= high")
        self.sigma_range = (low, high)
        self.schemes = list(schemes)
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if not self.schemes or unknown:
            raise MTLSearchError(f"schemes {list(schemes)} must be a non-empty subset of {list(SCHEMES)}")
        if task_sampling not in ("one", "all"):
            raise MTLSearchError(f"task_sampling must be 'one' or 'all', got {task_sampling!r}")
        if update_parity is not None and not isinstance(update_parity, bool):
            raise MTLSearchError(f"update_parity must be True, False or None, got {update_parity!r}")
        self.mask_seed = mask_seed
        self.task_sampling = task_sampling
        self.update_parity = update_parity
        self.task_norm = _check_task_norm(task_norm)
        self.blocks = None if blocks is None else list(blocks)
        self.max_eval_bytes = int(max_eval_bytes)
        self.initial_sigmas = [check_sigma(v) for v in initial_sigmas]
        self.recalibrate = bool(recalibrate)
        # set by propose: the training split and the index of the last epoch to recalibrate at
        self._recalibration: dict[str, Any] | None = None

    def initial_params(self, ctx: Any) -> list[dict[str, Any]]:
        """A few spread-out σ to try first (``initial_sigmas`` inside ``sigma_range``).

        Each dict names only what this strategy samples: ``sigma`` (unless fixed),
        ``mask_seed`` (unless fixed; the study's seed, so seeds draw different masks) and
        ``scheme`` (``"paper"`` when it may choose). A fixed σ gives a single entry.

        Example:
            >>> TaskRouting(mask_seed=0, schemes=["paper"]).initial_params(None)
            [{'sigma': 0.75}, {'sigma': 0.5}, {'sigma': 0.25}]
        """
        low, high = self.sigma_range
        sigmas: list[float | None] = [None]
        if self.sigma is None:
            sigmas = [s for s in dict.fromkeys(self.initial_sigmas) if low <= s <= high]
        out = []
        for sigma in sigmas:
            params: dict[str, Any] = {}
            if sigma is not None:
                params["sigma"] = sigma
            if self.mask_seed is None:
                params["mask_seed"] = int(getattr(ctx, "seed", 0)) % 2**31
            if len(self.schemes) > 1:
                params["scheme"] = "paper" if "paper" in self.schemes else self.schemes[0]
            if params:
                out.append(params)
        return out

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        sigma = self.sigma
        if sigma is None:
            sigma = trial.suggest_float("sigma", *self.sigma_range)
        seed = self.mask_seed
        if seed is None:
            seed = trial.suggest_int("mask_seed", 0, 2**31 - 1)
        scheme = self.schemes[0]
        if len(self.schemes) > 1:
            scheme = trial.suggest_categorical("scheme", self.schemes)
        graph = routed_graph(
            ctx.new_graph("hard_sharing"), ctx.space, sigma=sigma, seed=seed, scheme=scheme,
            blocks=self.blocks, task_norm=self.task_norm,
        )
        overrides: dict[str, Any] = {"task_sampling": self.task_sampling}
        if self.update_parity is not None:
            overrides["update_parity"] = self.update_parity
        per_row = routed_bytes_per_row(ctx.space, len(ctx.task_names))
        if per_row * ctx.budget.eval_batch_size > self.max_eval_bytes:
            # the trainer validates all tasks in one batched pass: fewer rows keep it in memory
            overrides["eval_batch_size"] = max(1, self.max_eval_bytes // per_row)
        layers = {
            str(i): mask_stats(_matrix(graph, i)).__dict__ for i in _check_blocks(self.blocks, graph.num_blocks)
        }
        config = ctx.budget.replace(**overrides)
        if self.recalibrate:
            self._recalibration = {
                "split": ctx.data.train,
                "last_epoch": _last_epoch(config, len(ctx.data.train), len(ctx.task_names)),
                "batch_size": config.eval_batch_size,
            }
        info = {"sigma": sigma, "scheme": scheme, "mask_seed": seed, "task_norm": self.task_norm,
                "update_parity": config.update_parity, "recalibrate": self.recalibrate,
                "mask_stats": layers}
        return Proposal(graph, train_overrides=overrides, info=info)

    def on_epoch_end(self, state: Any) -> None:
        """After the last epoch, recalibrate the batch-norm statistics on the training split."""
        plan = self._recalibration
        if plan is None or state.epoch != plan["last_epoch"]:
            return None
        if state.model.graph.info.get("strategy") != "task_routing":
            return None  # not a network this strategy proposed
        recalibrate_norms(state.model, plan["split"], batch_size=plan["batch_size"])
        return None


def _last_epoch(config: Any, n_train: int, n_tasks: int) -> int:
    """Index of the trainer's last epoch under ``config`` (``max_steps`` may end it early)."""
    if config.max_steps is None:
        return config.epochs - 1
    passes = n_tasks if config.task_sampling == "one" and config.update_parity else 1
    per_epoch = passes * math.ceil(n_train / config.batch_size)
    return min(config.epochs, math.ceil(config.max_steps / per_epoch)) - 1


def _matrix(graph: SharingGraph, index: int) -> np.ndarray:
    node = graph.block_nodes(index)[0]
    masks = graph.masks()[node]
    return np.stack([masks[t] for t in graph.tasks])
