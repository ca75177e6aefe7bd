"""Per-branch gradient capture at the branch point (section 3.1 of the paper).

The branch point is the first block depth where tasks have their own block nodes; a branch is
identified by its node at that depth. The captured tensor is the gradient of the branch's
first layer (the first weight of that block with two or more dimensions, bias excluded as in
eq. 1). With every task in every batch and one summed loss, an unmerged branch serves a single
task, so its gradient is exactly that task's ``G_t``; a merged branch receives the sum of its
tasks' gradients (eq. 3), which is what is captured for it: after a merge the branch, not
the task, is the unit that is clustered (merged tasks never split again).

Example:
    >>> from mtlsearch.graph.sharing import SharingGraph
    >>> g = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]])
    >>> branch_depth(g), branches(g, 1)
    (1, {'b1.0': ['a'], 'b1.1': ['b']})
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlsearch.engine.model import MultiTaskModel, module_key
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

from .factors import factor_vectors, sketch_projections

__all__ = ["branch_depth", "branches", "branch_layer", "branch_gradients", "GradientRecorder"]


def branch_depth(graph: SharingGraph) -> int:
    """The first block depth with more than one node (the number of blocks if none)."""
    for index, count in enumerate(graph.branches_per_depth()):
        if count > 1:
            return index
    return graph.num_blocks


def branches(graph: SharingGraph, depth: int) -> dict[str, list[str]]:
    """``{branch node at depth: its tasks in graph order}``."""
    out: dict[str, list[str]] = {}
    for task, route in graph.routes().items():
        out.setdefault(route[depth], []).append(task)
    return out


def branch_layer(block: nn.Module) -> nn.Parameter:
    """The first weight with two or more dimensions of ``block`` (its first layer's weight)."""
    for param in block.parameters():
        if param.ndim >= 2:
            return param
    raise MTLSearchError(
        f"block {type(block).__name__} has no weight matrix to capture gradients from; "
        "branch at a depth whose block has a linear or convolution layer"
    )


def branch_gradients(
    model: MultiTaskModel, depth: int, nodes: Sequence[str] | None = None
) -> dict[str, Tensor | None]:
    """The current ``.grad`` of each branch's first layer (``None`` if it got none).

    ``nodes``: the branch nodes at ``depth``, if the caller already knows them.
    """
    out = {}
    for node in branches(model.graph, depth) if nodes is None else nodes:
        grad = branch_layer(model.blocks[module_key(node)]).grad
        out[node] = None if grad is None else grad.detach()
    return out


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finding the loaded BLAS libraries once: ms per call


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    # small SVDs: a multi-threaded BLAS next to torch's threads is ~100x slower here
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


class GradientRecorder:
    """Accumulates each branch's first-layer gradients over an epoch and factorises them.

    Every ``window`` mini-batches, the summed gradient of each branch is factorised
    (tensor train, rank ``rank``) and sketched into one row ``B`` of ``sketch_size`` numbers
    (the same probes for every branch); :meth:`matrix` stacks an epoch's rows into ``C_t``
    (one row per window), flattened. ``window=1`` is the paper's per-batch factorisation.

    The branches' gradients are summed as one stacked tensor per weight shape and
    factorised together (:func:`~.factors.factor_vectors`, one batched SVD per bond): the
    same rows as one :func:`~.factors.factor_vector` per branch, at a fraction of the cost
    when there are hundreds of branches.

    Args:
        depth: The branch depth.
        rank: Tensor-train rank.
        window: Mini-batches summed before each factorisation.
        sketch_size: Random probes per row.
        seed: Seed of the probes.
    """

    def __init__(
        self, *, depth: int, rank: int, window: int = 1, sketch_size: int = 64, seed: int = 0
    ):
        if window < 1:
            raise MTLSearchError(f"window must be at least 1 mini-batch, got {window}")
        self.depth, self.rank, self.window = depth, rank, window
        self.sketch_size, self.seed = sketch_size, seed
        self._probes: list[np.ndarray] | None = None
        self.rows: dict[str, list[np.ndarray]] = {}
        self._sums: list[tuple[list[str], Tensor]] = []  # (branches, their stacked sums)
        self._pending = 0
        self.factorise_seconds = 0.0
        self._graph: SharingGraph | None = None
        self._model: MultiTaskModel | None = None
        self._groups: list[tuple[list[str], list[nn.Parameter]]] = []

    def _layers(self, model: MultiTaskModel) -> list[tuple[list[str], list[nn.Parameter]]]:
        """The branches and their first layers, grouped by weight shape (found once per graph:
        merging replaces the graph object)."""
        if model.graph is not self._graph or model is not self._model:
            self._graph, self._model = model.graph, model
            by_shape: dict[tuple[int, ...], tuple[list[str], list[nn.Parameter]]] = {}
            for node in branches(model.graph, self.depth):
                layer = branch_layer(model.blocks[module_key(node)])
                nodes, layers = by_shape.setdefault(tuple(layer.shape), ([], []))
                nodes.append(node)
                layers.append(layer)
            self._groups = list(by_shape.values())
        return self._groups

    def capture(self, model: MultiTaskModel) -> None:
        """Add the current gradients of every branch (call after ``backward``)."""
        groups = self._layers(model)
        with torch.no_grad():
            for i, (nodes, layers) in enumerate(groups):
                # a task not active in this batch has no gradient: it adds nothing
                grads = torch.stack([torch.zeros_like(p) if p.grad is None else p.grad
                                     for p in layers])
                if i < len(self._sums) and self._sums[i][0] == nodes:
                    self._sums[i][1].add_(grads)
                else:
                    self._sums.append((list(nodes), grads))
        self._pending += 1
        if self._pending >= self.window:
            self.flush()

    def flush(self) -> None:
        """Factorise what was summed since the last row (no-op if nothing was)."""
        if not self._pending:
            return
        start = time.perf_counter()
        with _one_blas_thread():
            for nodes, total in self._sums:
                arrays = total.double().cpu().numpy()
                if self._probes is None:
                    self._probes = sketch_projections(
                        arrays.shape[1:], size=self.sketch_size, seed=self.seed
                    )
                rows = factor_vectors(arrays, rank=self.rank, projections=self._probes)
                for node, row in zip(nodes, rows):
                    self.rows.setdefault(node, []).append(row.copy())
        self.factorise_seconds += time.perf_counter() - start
        self._sums, self._pending = [], 0

    def matrix(self) -> dict[str, np.ndarray]:
        """``{branch: flattened C_t}`` over the rows recorded so far (flushes first)."""
        self.flush()
        return {node: np.concatenate(rows) for node, rows in self.rows.items()}

    def reset(self) -> None:
        self.rows, self._sums, self._pending = {}, [], 0
        self.factorise_seconds = 0.0


def aggregated_losses(
    sums: Mapping[str, float], counts: Mapping[str, int], groups: Mapping[str, list[str]]
) -> dict[str, float]:
    """Each branch's aggregated loss: the mean over its tasks of their epoch-mean loss."""
    out = {}
    for node, tasks in groups.items():
        means = [sums[t] / counts[t] for t in tasks if counts.get(t)]
        out[node] = float(np.mean(means)) if means else float("inf")
    return out
