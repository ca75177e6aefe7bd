"""Conformance checks every strategy, search space, dataset, task kind and weighting must pass;
reusable by plugin authors.

mtlsearch's own test suite runs them over everything registered, so a new plugin is tested the
moment it is registered. A check given a registered name builds the entry at the tiny size its
registration carries (``register(..., tiny=...)``, read with
:func:`mtlsearch.registry.tiny_settings`). In a plugin package's tests::

    from mtlsearch.testing import check_strategy

    def test_my_strategy_conforms():
        check_strategy("my_strategy")

Each check raises ``AssertionError`` with a message saying what failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mtlsearch.data.dataset import DatasetSplits, from_arrays
from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.train import TrainConfig, build_and_train
from mtlsearch.engine.weighting import Weighting
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.graph.summary import summarize
from mtlsearch.registry import (
    create_space,
    create_strategy,
    create_weighting,
    get_weighting_class,
    load_dataset,
    task_kinds,
    tiny_settings,
)
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import evaluate_proposal
from mtlsearch.tasks.kinds import TaskKind, TaskSpec

__all__ = [
    "check_dataset",
    "check_model",
    "check_space",
    "check_strategy",
    "check_task_kind",
    "check_weighting",
    "tiny_context",
    "tiny_dataset",
]


def tiny_dataset(input_shape: tuple[int, ...] = (6,), n: int = 96, seed: int = 0) -> DatasetSplits:
    """Three tasks (binary, multiclass, regression) on random inputs of ``input_shape``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *input_shape, generator=gen)
    score = x.reshape(n, -1)[:, 0]
    targets = {
        "bin": (score > 0).float(),
        "cls": torch.arange(n) % 3,
        "reg": score * 2.0,
    }
    tasks = [TaskSpec("bin"), TaskSpec("cls", kind="multiclass", num_classes=3), TaskSpec("reg", kind="regression")]
    return from_arrays(x, targets, tasks=tasks, seed=seed, name="tiny")


def tiny_context(space: SearchSpace | None = None, *, seed: int = 0) -> SearchContext:
    """A context with :func:`tiny_dataset` and one epoch of training."""
    space = space or create_space("mlp", **(tiny_settings("search space", "mlp") or {}))
    data = tiny_dataset(space.input_shape, seed=seed)
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=32), seed=seed)


def check_model(model: MultiTaskModel, x: torch.Tensor) -> None:
    """Forward/backward over all tasks, each task alone equal to the joint pass, and the
    summary's parameter count equal to the model's."""
    model.train()
    outputs = model(x)
    assert set(outputs) == set(model.tasks), f"outputs {sorted(outputs)} != tasks {model.tasks}"
    loss = sum(o.float().pow(2).mean() for o in outputs.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), "no gradient reached the weights"
    model.eval()
    with torch.no_grad():
        joint = model(x)
        for task in model.tasks:
            alone = model(x, [task])[task]
            assert torch.allclose(alone, joint[task], atol=1e-5), f"task {task!r} alone differs from the joint pass"
    summary = summarize(model.graph, model.space, model.task_specs)
    actual = sum(p.numel() for p in model.parameters())
    assert summary.params == actual, f"summary says {summary.params} parameters, the model has {actual}"


def _roundtrip(model: MultiTaskModel, x: torch.Tensor) -> None:
    graph = SharingGraph.from_json(model.graph.to_json())
    assert graph == model.graph, "the graph changed in a JSON round trip"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    loaded = load_safetensors(save_safetensors(state))
    clone = materialize(graph, model.space, model.task_specs)
    clone.load_state_dict(loaded)
    model.eval()
    clone.eval()
    with torch.no_grad():
        a, b = model(x), clone(x)
    for task in model.tasks:
        assert torch.equal(a[task], b[task]), f"task {task!r} differs after a save/load round trip"


def check_space(space: str | SearchSpace, **kwargs: Any) -> None:
    """A space's blocks chain, are fresh per instance, and every shape of graph works on it.

    A name is built with ``kwargs``, or else at its registered tiny size. "Fresh" means new
    tensors each time: new random weights, or for a space with ``keeps_weights`` (pretrained
    weights) equal copies of its initial weights.
    """
    if isinstance(space, str):
        space = create_space(space, **(kwargs or tiny_settings("search space", space) or {}))
    blocks = space.blocks
    assert len(blocks) == space.num_blocks > 0
    for a, b in zip(blocks, blocks[1:]):
        assert a.out_shape == b.in_shape, f"block {a.index} outputs {a.out_shape}, block {b.index} takes {b.in_shape}"
    first, second = space.make_block(0), space.make_block(0)
    params = list(zip(first.parameters(), second.parameters()))
    if params:
        assert all(p is not q for p, q in params), "make_block returned shared parameters"
        if getattr(space, "keeps_weights", False):  # every branch starts from one (pretrained) set
            assert all(torch.equal(p, q) for p, q in params), (
                "a space that keeps weights returned different weights twice")
        else:
            assert any(not torch.equal(p, q) for p, q in params if p.numel() > 1), "make_block returned the same weights twice"
    tasks = [TaskSpec("a"), TaskSpec("b", kind="multiclass", num_classes=3), TaskSpec("c", kind="regression")]
    names = [t.name for t in tasks]
    depth = space.num_blocks
    graphs = [
        SharingGraph.hard_sharing(names, depth),
        SharingGraph.single_task(names, depth),
        SharingGraph.from_partitions(names, [[names]] * (depth - 1) + [[["a", "b"], ["c"]]]),
    ]
    masked = SharingGraph.hard_sharing(names, depth)
    gen = torch.Generator().manual_seed(0)
    for task in names:
        for node in masked.route(task):
            channels = space.blocks[masked.node_index(node)].channels
            masked.set_mask(task, node, (torch.rand(channels, generator=gen) > 0.3).numpy())
    graphs.append(masked)
    skippable = [b.index for b in blocks if b.skip != "none"]
    if skippable:
        skipped = SharingGraph.hard_sharing(names, depth)
        skipped.set_skip("a", skipped.block_nodes(skippable[-1])[0])
        graphs.append(skipped)
    x = torch.randn(4, *space.input_shape)
    for graph in graphs:
        model = materialize(graph, space, tasks)
        check_model(model, x)
        _roundtrip(model, x)


def check_strategy(strategy: str | type[Strategy] | Strategy, *, ctx: SearchContext | None = None) -> None:
    """A strategy proposes a valid graph for a real Optuna trial, and the engine can train,
    score and save what it proposes (a name is built with its registered tiny settings)."""
    import optuna

    if isinstance(strategy, str):
        strategy = create_strategy(strategy, **(tiny_settings("strategy", strategy) or {}))
    elif isinstance(strategy, type):
        strategy = strategy()
    assert isinstance(strategy, Strategy), f"{strategy!r} is not a Strategy"
    assert strategy.name, "a strategy needs a non-empty name"
    ctx = ctx or tiny_context()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    proposal = strategy.propose(trial, ctx)
    assert isinstance(proposal, Proposal), f"propose() returned {type(proposal).__name__}, not a Proposal"
    proposal.graph.validate(ctx.space)
    assert sorted(proposal.graph.tasks) == sorted(ctx.task_names), "the proposal does not cover every task"
    model = materialize(proposal.graph, ctx.space, ctx.tasks)
    x = ctx.data.train.inputs[:4]
    check_model(model, x)
    _roundtrip(model, x)
    result = evaluate_proposal(proposal, ctx, strategy=strategy)
    assert math.isfinite(result.delta_mtl), f"Δ_MTL is {result.delta_mtl}"
    assert result.params == summarize(SharingGraph.from_dict(result.graph), ctx.space, ctx.tasks).params


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype.is_floating_point:  # a renormalised normal map moves by rounding only
        return torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6, equal_nan=True)
    return torch.equal(a, b)


def _row_keys(inputs: torch.Tensor) -> set[bytes]:
    return {row.contiguous().numpy().tobytes() for row in inputs}


def check_dataset(dataset: str | DatasetSplits, **kwargs: Any) -> DatasetSplits:
    """A dataset loads, its splits are non-empty and disjoint, and every target fits its task.

    A name is loaded with ``kwargs``, or else at its registered tiny size; it is loaded twice
    (the same data both times, and again from the options it records in ``kwargs``). Checked:
    each split has a row per input of one input shape and targets for exactly the dataset's
    tasks; no input row is in two splits; each task has labelled samples in the training split;
    each kind accepts its targets as they are (``prepare_targets`` changes nothing).

    Returns:
        The loaded splits.
    """
    if isinstance(dataset, str):
        name = dataset
        if not kwargs:
            tiny = tiny_settings("dataset", name)
            assert tiny is not None, (
                f"dataset {name!r} was registered without a tiny size (tiny=...); pass its "
                "options (e.g. a root folder) to check_dataset")
            kwargs = tiny
        data = load_dataset(name, **kwargs)
        again = load_dataset(name, **kwargs)
        assert again.fingerprint() == data.fingerprint(), f"{name!r} loads different data twice"
        rebuilt = load_dataset(name, **data.kwargs)
        assert rebuilt.fingerprint() == data.fingerprint(), (
            f"{name!r} loaded from its recorded kwargs {data.kwargs} differs: record every option")
    else:
        data = dataset
    assert isinstance(data, DatasetSplits), f"the loader returned {type(data).__name__}"
    names = [t.name for t in data.tasks]
    assert names and len(set(names)) == len(names), f"task names must be unique, got {names}"
    splits = {"train": data.train, "val": data.val, "test": data.test}
    for split, part in splits.items():
        assert len(part) > 0, f"the {split} split is empty"
        assert part.input_shape == data.input_shape, (
            f"{split} inputs have shape {part.input_shape}, train has {data.input_shape}")
        assert sorted(part.targets) == sorted(names), (
            f"the {split} split has targets for {sorted(part.targets)}, the tasks are {names}")
        for spec in data.tasks:
            target = part.targets[spec.name]
            assert target.shape[0] == len(part), (
                f"task {spec.name!r} has {target.shape[0]} {split} targets for {len(part)} inputs")
            kind = task_kinds().get(spec.kind)
            try:
                again = kind.prepare_targets(spec, target)
            except MTLSearchError as exc:
                raise AssertionError(f"{split} targets of task {spec.name!r} do not fit its kind "
                                     f"{spec.kind!r}: {exc}") from None
            assert again.shape == target.shape and again.dtype == target.dtype and _same(
                again, target), (f"{split} targets of task {spec.name!r} do not fit its kind "
                                 f"{spec.kind!r}: prepare_targets changes them")
    for spec in data.tasks:
        kind = task_kinds().get(spec.kind)
        assert bool(kind.valid(data.train.targets[spec.name]).any()), (
            f"task {spec.name!r} has no labelled training sample")
    keys = {split: _row_keys(part.inputs) for split, part in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = len(keys[a] & keys[b])
        assert not shared, f"{shared} input rows are in both the {a} and the {b} split"
    return data


def _best(kind: TaskKind, metric: str, best: Mapping[str, float]) -> float:
    if metric in best:
        return float(best[metric])
    return 1.0 if kind.metrics[metric] else 0.0


def check_task_kind(kind: str | TaskKind, *, tiny: Mapping[str, Any] | None = None) -> None:
    """A kind's loss, metrics and head work together on a tiny batch.

    ``tiny`` is the example a kind is registered with (for a name, the registered one):
    ``example(spec, n, generator) -> (labels, perfect_output)`` and optionally ``spec``
    (TaskSpec keyword arguments), ``feature_shape``, ``best`` and ``atol`` (see
    :class:`~mtlsearch.hookspecs.TaskKindRegistrar`). Checked: the labels pass
    ``prepare_targets``; the loss of a random output is a finite scalar whose gradient reaches
    the output; the perfect output's loss is lower, and its metrics (accumulated over two
    batches, as evaluation does) hit their best values (1 or 0, or ``best``); accumulating
    equals :meth:`~mtlsearch.tasks.kinds.TaskKind.compute_metrics` on the whole batch;
    ``predict`` keeps one row per sample; the head built for ``feature_shape`` gives one row
    per sample and ``output_size`` channels, and the loss trains it. The kind's ``name`` must
    be registered (a TaskSpec checks its kind through the registry).
    """
    if isinstance(kind, str):
        tiny = tiny if tiny is not None else task_kinds().registration(kind).tiny
        kind = task_kinds().get(kind)
    assert isinstance(kind, TaskKind), f"{kind!r} is not a TaskKind instance"
    assert kind.name and kind.metrics, "a task kind needs a name and at least one metric"
    tiny = dict(tiny or {})
    assert callable(tiny.get("example")), (
        f"task kind {kind.name!r} has no tiny example: register it with "
        "tiny={'example': example} (example(spec, n, generator) -> (labels, perfect_output))")
    spec = TaskSpec("t", kind=kind.name, **dict(tiny.get("spec", {})))
    n, gen = 6, torch.Generator().manual_seed(0)
    labels, perfect = tiny["example"](spec, n, gen)
    target = kind.prepare_targets(spec, labels)
    assert target.shape[0] == n and perfect.shape[0] == n, "the example must have n rows"

    noise = torch.randn(perfect.shape, generator=gen).requires_grad_(True)
    loss = kind.loss(spec, noise, target)
    value = float(loss.detach())
    assert loss.ndim == 0 and math.isfinite(value), f"the loss of a random output is {value}"
    loss.backward()
    assert noise.grad is not None and bool(torch.isfinite(noise.grad).all()), "no finite gradient"
    assert bool(noise.grad.abs().sum() > 0), "the loss's gradient is zero everywhere"
    best_loss = float(kind.loss(spec, perfect, target))
    assert math.isfinite(best_loss) and best_loss < value, (
        f"the perfect output's loss {best_loss} is not below a random output's {value}")

    atol = float(tiny.get("atol", 1e-4))
    acc = kind.new_accumulator(spec)
    half = n // 2
    acc.update(perfect[:half], target[:half])
    acc.update(perfect[half:], target[half:])
    scores = acc.compute()
    for metric in kind.metrics:
        want = _best(kind, metric, tiny.get("best", {}))
        assert metric in scores and abs(scores[metric] - want) <= atol, (
            f"a perfect output scores {metric}={scores.get(metric)}, its best value is {want}")
    acc = kind.new_accumulator(spec)
    acc.update(noise.detach()[:half], target[:half])
    acc.update(noise.detach()[half:], target[half:])
    split, whole = acc.compute(), kind.compute_metrics(spec, noise.detach(), target)
    for metric in kind.metrics:
        assert math.isclose(split[metric], whole[metric], rel_tol=1e-6, abs_tol=1e-6), (
            f"{metric}: accumulated over two batches {split[metric]}, on the whole {whole[metric]}")
    assert kind.predict(spec, perfect).shape[0] == n, "predict must keep one row per sample"

    feature_shape = tuple(tiny.get("feature_shape", (8,)))
    head = kind.make_head(spec, feature_shape)
    out = head(torch.randn(n, *feature_shape, generator=gen))
    assert out.shape[0] == n and out.shape[1] == kind.output_size(spec), (
        f"the head gives {tuple(out.shape)}; want {n} rows of {kind.output_size(spec)} channels")
    head_loss = kind.loss(spec, out, target)
    assert math.isfinite(float(head_loss.detach())), f"the head's output has loss {head_loss}"
    head_loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in head.parameters()), (
        "the loss does not reach the head's weights")


def _finite_state(model: MultiTaskModel) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values()
               if v.dtype.is_floating_point)


def check_weighting(weighting: str, **kwargs: Any) -> None:
    """A registered loss weighting or aggregator trains a tiny hard-sharing network.

    Built with ``kwargs``, or else at its registered tiny size. Checked: the factory builds a
    :class:`~mtlsearch.engine.weighting.base.Weighting`; three tasks on a one-block mlp train
    two steps (two epochs of one batch, so ``end_epoch`` runs) with finite losses and
    weights; the trunk and every head change; the same seed gives the same weights twice (on
    the CPU); the weights it reports are finite, one per task; a weighting that needs every
    task (``all_tasks``) is refused with one-task sampling, any other trains that way too;
    and what :meth:`~mtlsearch.engine.weighting.base.Weighting.suggest` samples from an
    Optuna trial builds it.
    """
    import optuna

    name = weighting
    kwargs = dict(kwargs or tiny_settings("weighting", name) or {})
    cls = get_weighting_class(name)
    missing = cls.missing() if hasattr(cls, "missing") else []
    assert not missing, f"weighting {name!r} needs {missing}, which are not installed here"
    built = create_weighting(name, **kwargs)
    assert isinstance(built, Weighting), f"{name!r} built {type(built).__name__}, not a Weighting"
    data = tiny_dataset((6,), n=48)
    space = create_space("mlp", input_shape=(6,), widths=(8,))
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], space.num_blocks)
    config = TrainConfig(epochs=2, batch_size=len(data.train), device="cpu", weighting=name,
                         weighting_kwargs=kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        before = materialize(graph, space, data.tasks).state_dict()
    first = build_and_train(graph, space, data.tasks, data.train, data.val, config)
    second = build_and_train(graph, space, data.tasks, data.train, data.val, config)
    assert first.steps == 2, f"two steps were asked for, {first.steps} were taken"
    losses = [h["train_loss"] for h in first.history]
    assert all(math.isfinite(v) for v in losses), f"training losses {losses}"
    model = first.model
    assert _finite_state(model), "the weights are not finite after two steps"
    after = model.state_dict()
    trunk = [k for k in after if k.startswith("blocks.") and after[k].dtype.is_floating_point
             and "running" not in k]
    assert any(not torch.equal(after[k], before[k]) for k in trunk), "the trunk did not change"
    for task in model.tasks:
        keys = [k for k in after if k.startswith("heads.") and k.split(".")[1] == task]
        assert any(not torch.equal(after[k], before[k]) for k in keys), (
            f"the head of task {task!r} did not change")
    again = second.model.state_dict()
    for key, value in after.items():
        assert torch.equal(value, again[key]), f"{key} differs between two runs with one seed"
    reported = first.weighting.get("weights")
    if reported is not None:
        assert sorted(reported) == sorted(model.tasks), f"weights {reported} are not per task"
        assert all(math.isfinite(v) for v in reported.values()), f"weights {reported}"
    one = config.replace(weighting="equal", weighting_kwargs={}, task_sampling="one")
    if getattr(built, "all_tasks", False):
        try:
            one.replace(weighting=name, weighting_kwargs=kwargs)
        except MTLSearchError as exc:
            assert "task_sampling" in str(exc), f"the refusal does not name the option: {exc}"
        else:
            raise AssertionError(f"{name!r} needs every task but accepts task_sampling='one'")
    else:
        alone = build_and_train(graph, space, data.tasks, data.train, data.val,
                                one.replace(weighting=name, weighting_kwargs=kwargs))
        assert all(math.isfinite(h["train_loss"]) for h in alone.history), (
            "training with one task per batch gave non-finite losses")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggested = type(built).suggest(study.ask())
    assert isinstance(suggested, dict), f"suggest() returned {suggested!r}, not a dict"
    create_weighting(name, **{**kwargs, **suggested})
