"""The trainer: determinism, task sampling, early stopping, dynamic graphs, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlsearch import (
    MTLSearchError,
    SharingGraph,
    TrainConfig,
    Trainer,
    create_space,
    from_arrays,
    materialize,
)
from mtlsearch.engine.train import build_and_train
from mtlsearch.errors import TrainingError


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(300, 6, generator=gen)
    return from_arrays(X, {"a": (X[:, 0] > 0).float(), "b": (X[:, 1] > 0).float(), "c": X[:, 2]}, kinds={"c": "regression"})


@pytest.fixture(scope="module")
def space():
    return create_space("mlp", input_shape=(6,), widths=(16, 16))


def _train(data, space, graph=None, **cfg):
    graph = graph or SharingGraph.hard_sharing(data.task_names, 2)
    return build_and_train(graph, space, data.tasks, data.train, data.val, TrainConfig(**{"epochs": 3, "batch_size": 32, **cfg}))


def test_same_seed_same_result_on_cpu(data, space):
    a, b = _train(data, space, seed=5), _train(data, space, seed=5)
    c = _train(data, space, seed=6)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history == b.history
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_training_lowers_the_loss(data, space):
    result = _train(data, space, epochs=6, lr=3e-3)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_one_active_task_per_batch_only_updates_that_route(data, space):
    graph = SharingGraph.single_task(data.task_names, 2)
    seen = []
    torch.manual_seed(0)
    model = materialize(graph, space, data.tasks)
    Trainer(TrainConfig(epochs=1, batch_size=32, task_sampling="one"), on_backward=[lambda s: seen.append(s.active_tasks)]).fit(model, data.train)
    assert all(len(active) == 1 for active in seen)
    assert len({a[0] for a in seen}) > 1  # random, not always the same task


def test_early_stopping_restores_the_best_epoch(space):
    # Validation labels are the training rule inverted: learning makes validation worse.
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(300, 6, generator=gen)
    flipped = from_arrays(X, {"a": (X[:, 0] > 0).float()})
    flipped.val.targets["a"] = 1 - flipped.val.targets["a"]
    graph = SharingGraph.hard_sharing(["a"], 2)
    cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-2, patience=2)
    result = build_and_train(graph, space, flipped.tasks, flipped.train, flipped.val, cfg)
    assert result.stopped_early and result.epochs_run < 30
    best = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch]["val_loss"] == best


def test_max_steps_stops_mid_epoch(data, space):
    assert _train(data, space, max_steps=3).steps == 3


def test_non_finite_loss_is_a_clear_error(data, space):
    with pytest.raises(TrainingError, match="loss became nan.*lower the learning rate"):
        _train(data, space, lr=1e30, optimizer="sgd")


def test_dynamic_graph_keeps_surviving_weights_and_optimizer_state(data, space):
    start = SharingGraph.single_task(data.task_names, 2)  # nodes b{d}.0/1/2 for a, b, c
    merged = SharingGraph.from_partitions(data.task_names, [[["a", "b"], ["c"]]] * 2)  # b{d}.0, b{d}.1
    calls = []

    def change(state):
        calls.append(state.epoch)
        if state.epoch == 0:
            change.before = {k: v.clone() for k, v in state.model.state_dict().items()}
            change.moments = {n: state.optimizer.state[p]["exp_avg"].clone() for n, p in state.model.named_parameters()}
            return merged
        return None

    torch.manual_seed(0)
    model = materialize(start, space, data.tasks)
    result = Trainer(TrainConfig(epochs=1, batch_size=32), on_epoch_end=[change]).fit(model, data.train, data.val)
    new = result.model
    assert new.graph is merged and result.graphs == [start, merged]
    state = new.state_dict()
    assert "blocks.b0_2.linear.weight" not in state  # c's own depth-0 block left with the merge
    for key in ("blocks.b0_0.linear.weight", "blocks.b1_1.linear.weight", "heads.c.linear.weight"):
        assert torch.equal(state[key], change.before[key]), key
    # The rewired optimizer carried Adam's moments for the parameters that remain.
    from mtlsearch.engine.train import _rewire, make_optimizer

    opt = make_optimizer(TrainConfig(), model.parameters())
    model(data.train.inputs[:8])["a"].sum().backward()
    opt.step()
    rewired, new_opt = _rewire(model, opt, merged, TrainConfig())
    params = dict(rewired.named_parameters())
    kept = params["blocks.b0_0.linear.weight"]
    old = dict(model.named_parameters())["blocks.b0_0.linear.weight"]
    assert torch.equal(new_opt.state[kept]["exp_avg"], opt.state[old]["exp_avg"])
    assert params["blocks.b0_0.linear.weight"] in new_opt.state
    assert all(p in {q for g in new_opt.param_groups for q in g["params"]} for p in params.values())


def test_unknown_settings_are_listed():
    with pytest.raises(MTLSearchError, match="unknown optimizer 'rmsprop'.*adam"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(MTLSearchError, match="unknown training settings \\['epoch'\\]"):
        TrainConfig().replace(epoch=3)


def test_task_weights_change_the_loss(data, space):
    a = _train(data, space, epochs=1, task_weights={"a": 1.0, "b": 1.0, "c": 0.0})
    b = _train(data, space, epochs=1)
    assert not np.isclose(a.history[0]["train_loss"], b.history[0]["train_loss"])


def test_training_freezes_the_garbage_collector_only_while_it_runs(data, space):
    import gc

    seen = []
    graph = SharingGraph.hard_sharing(data.task_names, 2)
    torch.manual_seed(0)
    model = materialize(graph, space, data.tasks)
    Trainer(TrainConfig(epochs=1, batch_size=64), on_backward=[lambda s: seen.append(gc.get_freeze_count())]).fit(model, data.train)
    assert seen and min(seen) > 0  # the model, graph and data were frozen during the steps
    assert gc.get_freeze_count() == 0


def test_one_task_steps_touch_only_the_trunk_and_the_active_head_with_identical_results(data, space):
    graph = SharingGraph.hard_sharing(data.task_names, 2)
    cfg = TrainConfig(epochs=2, batch_size=32, task_sampling="one", seed=3)
    results = []
    for split in (True, False):
        torch.manual_seed(0)
        model = materialize(graph, space, data.tasks)
        trainer = Trainer(cfg)
        trainer.split_heads = split
        results.append(trainer.fit(model, data.train, data.val))
    grouped, plain = (r.model.state_dict() for r in results)
    assert all(torch.equal(grouped[k], plain[k]) for k in grouped)  # same Adam per parameter
    assert results[0].history == results[1].history


def test_split_heads_groups_cover_every_parameter_once(data, space):
    from mtlsearch.engine.train import _param_groups

    model = materialize(SharingGraph.hard_sharing(data.task_names, 2), space, data.tasks)
    groups = _param_groups(model)
    assert len(groups) == 1 + len(data.task_names)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert set(map(id, groups[2]["params"])) == set(map(id, model.heads["b"].parameters()))
