"""Conformance checks every strategy and search space must pass; reusable by plugin authors.

mtlsearch's own test suite runs them over everything registered, so a new plugin is tested the
moment it is registered. In a plugin package's tests::

    from mtlsearch.testing import check_strategy

    def test_my_strategy_conforms():
        check_strategy("my_strategy")

Each check raises ``AssertionError`` with a message saying what failed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mtlsearch.data.dataset import DatasetSplits, from_arrays
from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.train import TrainConfig
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.graph.summary import summarize
from mtlsearch.registry import create_space, create_strategy
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import evaluate_proposal
from mtlsearch.tasks.kinds import TaskSpec

__all__ = ["check_space", "check_strategy", "check_model", "tiny_dataset", "tiny_context"]

#: Small kwargs that make each built-in space cheap enough for a conformance run.
SMALL_SPACE_KWARGS: dict[str, dict[str, Any]] = {
    "mlp": {"input_shape": (6,), "widths": (8, 8)},
    "small_cnn": {"input_shape": (1, 8, 8), "channels": (4, 8, 8), "pool_after": (0,)},
    "resnet18": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
    "resnet34": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
    "vgg16_bn": {"input_shape": (3, 8, 8), "omega": 4},
    "dilated_resnet18": {"input_shape": (3, 16, 16), "width": 4},
    "dilated_resnet34": {"input_shape": (3, 16, 16), "width": 4},
}


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
    space = space or create_space("mlp", **SMALL_SPACE_KWARGS["mlp"])
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
    """A space's blocks chain, are fresh per instance, and every shape of graph works on it."""
    if isinstance(space, str):
        space = create_space(space, **(kwargs or SMALL_SPACE_KWARGS.get(space, {})))
    blocks = space.blocks
    assert len(blocks) == space.num_blocks > 0
    for a, b in zip(blocks, blocks[1:]):
        assert a.out_shape == b.in_shape, f"block {a.index} outputs {a.out_shape}, block {b.index} takes {b.in_shape}"
    first, second = space.make_block(0), space.make_block(0)
    params = list(zip(first.parameters(), second.parameters()))
    if params:
        assert any(p is not q for p, q in params)
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
    score and save what it proposes."""
    import optuna

    if isinstance(strategy, str):
        strategy = create_strategy(strategy)
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
