"""Measuring the affinity tensor: recombined networks (sections 3.1-3.2) or RSA.

``full``: train one single-task model per task, then for every ordered pair ``(i, j)`` and
every split depth ``l``, freeze the bottom ``l`` blocks of task ``j``'s model and retrain the
rest (initialised from task ``i``'s model) plus ``i``'s head for task ``i``; the held-out
per-sample losses feed the tournaments of :mod:`.affinity`. All ``N^2`` recombined networks of
one depth train together as one sharing graph of ``N^2`` pseudo-tasks: the frozen bottoms are
grouped by source task, so each runs once per batch, and the tops own their weights, so the
sum of losses trains each network as if alone. ``N^2 * L`` networks cost ``L`` trainer runs.

``subset``: the same on a seeded fraction of the training split with early stopping (the
paper's section 4.4 and 4.5 savings). ``rsa``: representation similarity analysis of the
single-task models' features after every block (the approach of the paper's later version):
per task a dissimilarity matrix ``1 - corr`` between held-out samples, and the affinity of two
tasks is the Spearman correlation of their matrices; it needs only the ``N`` single-task models.

Example:
    >>> from mtlsearch.testing import tiny_context
    >>> tensor = estimate_affinity(tiny_context(), "rsa")  # doctest: +SKIP
    >>> tensor.values.shape  # doctest: +SKIP
    (2, 3, 3)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.model import MultiTaskModel, materialize, module_key
from mtlsearch.engine.train import Trainer
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph

from .affinity import AffinityTensor, affinity_from_losses, per_sample_losses

__all__ = ["ESTIMATORS", "estimate_affinity", "train_single_task", "recombination_losses", "rsa_affinity"]

ESTIMATORS = ("full", "subset", "rsa")


def train_single_task(ctx: Any) -> MultiTaskModel:
    """Train the single-task models (one graph, one chain per task) with the context's budget.

    This is the very run :meth:`SearchContext.reference` makes, so its metrics are stored as
    the reference when none is cached yet (saving the engine that training).
    """
    model = ctx.single_task_model()
    key = ctx.key("single_task_reference")
    if ctx.cache.get(key) is None:
        ctx.cache.put(key, {"val": ctx.evaluate(model, "val"), "test": ctx.evaluate(model, "test")})
    return model


def _block(model: MultiTaskModel, task: str, depth: int) -> nn.Module:
    return model.blocks[module_key(model.graph.route(task)[depth])]


def _head(model: MultiTaskModel, task: str) -> nn.Module:
    return model.heads[model._head_keys[task]]  # private, but the only map of odd task names


def _freeze(module: nn.Module) -> None:
    """No gradients, and BatchNorm statistics kept: the trainer calls ``model.train()`` every
    epoch, so a pre-hook puts each part of the frozen block back in eval mode before it runs
    (on every submodule: the executor calls ``pre_activation``, not the block's forward)."""
    module.requires_grad_(False)
    for part in module.modules():
        part.register_forward_pre_hook(_keep_eval)


def _keep_eval(module: nn.Module, args: Any) -> None:
    if module.training:
        module.eval()


def _recombined(
    ctx: Any, single: MultiTaskModel, split: int
) -> tuple[MultiTaskModel, dict[tuple[int, int], str]]:
    """All ``N^2`` networks for one split depth: bottom ``split`` blocks of ``j`` (frozen)."""
    specs, depth = ctx.tasks, ctx.space.num_blocks
    n = len(specs)
    names = {(i, j): f"{i}<{j}" for i in range(n) for j in range(n)}
    pseudo = [names[i, j] for i in range(n) for j in range(n)]
    partitions = [[[names[i, j] for i in range(n)] for j in range(n)]] * split
    partitions += [[[p] for p in pseudo]] * (depth - split)
    graph = SharingGraph.from_partitions(pseudo, partitions)
    pseudo_specs = [
        dataclasses.replace(specs[i], name=names[i, j], weight=1.0) for i in range(n) for j in range(n)
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = materialize(graph, ctx.space, pseudo_specs)
    tasks = [s.name for s in specs]
    for d in range(depth):
        for (i, j), name in names.items():
            node = graph.route(name)[d]
            source = tasks[j] if d < split else tasks[i]
            model.blocks[module_key(node)].load_state_dict(_block(single, source, d).state_dict())
    for (i, _), name in names.items():
        _head(model, name).load_state_dict(_head(single, tasks[i]).state_dict())
    for d in range(split):
        for j in range(n):
            _freeze(model.blocks[module_key(graph.route(names[0, j])[d])])
    return model, names


def _pseudo_data(data: MultiTaskDataset, names: dict[tuple[int, int], str], model: MultiTaskModel) -> MultiTaskDataset:
    tasks = [s.name for s in data.tasks]
    targets = {name: data.targets[tasks[i]] for (i, _), name in names.items()}
    return data.with_targets(targets, model.task_specs)


@torch.no_grad()
def _held_out_losses(model: MultiTaskModel, data: MultiTaskDataset, batch_size: int) -> dict[str, Tensor]:
    model.eval()
    specs = {s.name: s for s in model.task_specs}
    device = next(model.parameters()).device
    parts: dict[str, list[Tensor]] = {t: [] for t in specs}
    for x, y in data.batches(batch_size):
        outputs = model(x.to(device))
        for t, out in outputs.items():
            parts[t].append(per_sample_losses(specs[t], out, y[t].to(device)).cpu())
    return {t: torch.cat(v) for t, v in parts.items()}


def recombination_losses(
    ctx: Any,
    single: MultiTaskModel,
    *,
    epochs: int,
    train_fraction: float = 1.0,
    patience: int | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Held-out losses ``(L, N task, N encoder, samples)`` of every recombined network.

    Depth ``l`` (0-based) freezes blocks ``0..l`` of the encoder's single-task model, so it
    measures how useful the features after block ``l`` are.

    Returns:
        The losses and the wall time of each depth, in seconds.
    """
    if not 0 < train_fraction <= 1:
        raise MTLSearchError(f"train_fraction must be in (0, 1], got {train_fraction}")
    train, val = ctx.data.train, ctx.data.val
    if train_fraction < 1:
        gen = torch.Generator().manual_seed(ctx.seed)
        keep = max(1, int(round(train_fraction * len(train))))
        train = train.subset(torch.randperm(len(train), generator=gen)[:keep])
    config = ctx.budget.replace(
        epochs=epochs, patience=patience, task_sampling="all", task_weights=None, max_steps=None
    )
    n, depth = len(ctx.tasks), ctx.space.num_blocks
    losses = np.full((depth, n, n, len(val)), np.nan)
    seconds = []
    for split in range(1, depth + 1):
        start = time.perf_counter()
        model, names = _recombined(ctx, single, split)
        Trainer(config).fit(
            model,
            _pseudo_data(train, names, model),
            _pseudo_data(val, names, model) if patience is not None else None,
        )
        held_out = _held_out_losses(model, _pseudo_data(val, names, model), config.eval_batch_size)
        for (i, j), name in names.items():
            losses[split - 1, i, j] = held_out[name].numpy()
        seconds.append(time.perf_counter() - start)
    return losses, seconds


@torch.no_grad()
def _features(single: MultiTaskModel, task: str, x: Tensor) -> list[Tensor]:
    feats, h = [], x
    for d in range(single.graph.num_blocks):
        h = _block(single, task, d)(h)
        feats.append(h.flatten(1))
    return feats


def _rank_rows(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=1)


def rsa_affinity(ctx: Any, single: MultiTaskModel, *, samples: int = 256) -> np.ndarray:
    """``(L, N, N)`` Spearman correlations between the tasks' representation dissimilarity
    matrices (``1 - Pearson`` between the features of ``samples`` held-out inputs)."""
    val = ctx.data.val
    gen = torch.Generator().manual_seed(ctx.seed)
    idx = torch.randperm(len(val), generator=gen)[: min(samples, len(val))]
    if len(idx) < 3:
        raise MTLSearchError(f"RSA needs at least 3 held-out samples, the validation split has {len(val)}")
    device = next(single.parameters()).device
    x = val.inputs[idx].to(device)
    single.eval()
    tasks = [s.name for s in ctx.tasks]
    per_task = [_features(single, t, x) for t in tasks]
    upper = np.triu_indices(len(idx), k=1)
    out = np.empty((single.graph.num_blocks, len(tasks), len(tasks)))
    for d in range(single.graph.num_blocks):
        rdms = []
        for feats in per_task:
            f = feats[d].double().cpu().numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.nan_to_num(np.corrcoef(f), nan=0.0)  # a constant sample: no correlation
            rdms.append((1.0 - corr)[upper])
        ranks = _rank_rows(np.array(rdms))
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.nan_to_num(np.corrcoef(ranks), nan=0.0)
        np.fill_diagonal(sim, 1.0)
        out[d] = sim
    return out


def estimate_affinity(
    ctx: Any,
    estimator: str = "full",
    *,
    epochs: int | None = None,
    subset_fraction: float = 0.5,
    subset_patience: int = 1,
    rsa_samples: int = 256,
    single_task_model: MultiTaskModel | None = None,
) -> AffinityTensor:
    """The affinity tensor of ``ctx``'s tasks, from ``ctx.cache`` when it was measured before.

    Args:
        ctx: The search context (data, space, budget and seed key the cache).
        estimator: ``full`` (every recombined network), ``subset`` (recombined networks on
            ``subset_fraction`` of the training split with early stopping after
            ``subset_patience`` epochs without improvement) or ``rsa``.
        epochs: Epochs of each recombined network (default: the budget's).
        subset_fraction, subset_patience: Settings of ``subset``.
        rsa_samples: Held-out samples compared by ``rsa``.
        single_task_model: Already trained single-task models (else trained here).

    Example:
        >>> from mtlsearch.testing import tiny_context
        >>> estimate_affinity(tiny_context(), "rsa").values.shape
        (2, 3, 3)
    """
    if estimator not in ESTIMATORS:
        raise MTLSearchError(f"unknown affinity estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    epochs = int(epochs or ctx.budget.epochs)
    if epochs < 1:
        raise MTLSearchError(f"epochs must be at least 1, got {epochs}")
    options: dict[str, Any] = {"estimator": estimator}
    if estimator == "full":
        options.update(epochs=epochs, patience=ctx.budget.patience)
    elif estimator == "subset":
        options.update(epochs=epochs, fraction=subset_fraction, patience=subset_patience)
    else:
        options.update(samples=rsa_samples)
    key = ctx.key("affinity_tensor", **options)
    made: list[AffinityTensor] = []

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        single = single_task_model if single_task_model is not None else train_single_task(ctx)
        single_seconds = time.perf_counter() - start
        losses, per_depth = None, []
        start = time.perf_counter()
        if estimator == "rsa":
            values = rsa_affinity(ctx, single, samples=rsa_samples)
        else:
            losses, per_depth = recombination_losses(
                ctx,
                single,
                epochs=epochs,
                train_fraction=1.0 if estimator == "full" else subset_fraction,
                patience=ctx.budget.patience if estimator == "full" else subset_patience,
            )
            values = affinity_from_losses(losses)
        seconds = time.perf_counter() - start
        meta = {
            **options,
            "seconds": {
                "single_task": single_seconds if single_task_model is None else 0.0,
                "estimator": seconds,
                "per_depth": per_depth,
            },
        }
        tensor = AffinityTensor(
            [s.name for s in ctx.tasks], values, estimator, list(range(values.shape[0])), meta, losses
        )
        made.append(tensor)
        return tensor.to_dict()

    # Several workers of a study (processes sharing the cache folder) measure it once: the
    # others wait for the first one's result (ResultCache's per-key file lock).
    value = ctx.cache.get_or_compute(key, compute)
    return made[0] if made else AffinityTensor.from_dict(value)
