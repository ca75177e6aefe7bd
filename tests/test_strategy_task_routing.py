"""Tests of the ``task_routing`` strategy plugin: masks, strategy, per-task batch-norm
statistics, update parity, batched evaluation, subnet extraction, export, sweep."""

from __future__ import annotations

import itertools
import json

import numpy as np
import optuna
import pytest
import torch

from mtlsearch import SharingGraph, TaskSpec, create_space, load_dataset
from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset
from mtlsearch.engine.model import GroupedBatchNorm, materialize
from mtlsearch.engine.scoring import evaluate
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import GraphError, MTLSearchError
from mtlsearch.export import export_model, load
from mtlsearch.plugins.task_routing import (
    INITIAL_SIGMAS,
    BatchedRouting,
    TaskRouting,
    evaluate_routed,
    extract_subnet,
    mask_stats,
    norm_statistics,
    recalibrate_norms,
    routed_forward,
    routed_graph,
    routing_masks,
    shared_units,
    task_chunk_size,
)
from mtlsearch.plugins.task_routing import sweep as sweep_module
from mtlsearch.plugins.task_routing.sweep import main as sweep_main
from mtlsearch.plugins.task_routing.sweep import plot_sigma_sweep, sigma_sweep
from mtlsearch.registry import create_strategy
from mtlsearch.strategy.context import SearchContext
from mtlsearch.testing import check_strategy, tiny_context

TASKS = [f"t{i}" for i in range(6)]

@pytest.fixture(scope="module")
def cnn_ctx():
    data = load_dataset("multi_digits", n_train=160, n_val=64, n_test=64)
    space = create_space("small_cnn", input_shape=data.input_shape, channels=(8, 12, 12), pool_after=(0,))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=32), seed=0)


@pytest.fixture(scope="module")
def mlp_ctx():
    data = load_dataset("synthetic", n_tasks=5, n_samples=240, input_dim=10)
    space = create_space("mlp", input_shape=data.input_shape, widths=(12, 10))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=32), seed=0)


def _trained(ctx, sigma, seed=1, scheme="paper"):
    graph = routed_graph(ctx.new_graph("hard_sharing"), ctx.space, sigma=sigma, seed=seed, scheme=scheme)
    return ctx.train(graph, task_sampling="one").model.eval()


# ------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("channels,sigma", [(10, 0.0), (10, 0.4), (7, 0.5), (64, 0.2), (5, 1.0), (3, 0.0)])
def test_paper_masks_have_the_papers_statistics(channels, sigma):
    masks = routing_masks(TASKS, channels, sigma=sigma, seed=3)
    stats = mask_stats(masks)
    expected_shared = int(np.floor(sigma * channels + 0.5))  # round half up, by hand
    assert stats.shared == expected_shared
    assert stats.unused == 0  # every unit is used by someone
    rest = channels - expected_shared
    # every non-shared unit belongs to exactly one task, dealt out evenly
    assert stats.specific == rest if len(TASKS) > 1 else True
    assert sorted(set(np.array(stats.per_task) - expected_shared)) <= [rest // 6, -(-rest // 6)]
    assert sum(stats.per_task) == expected_shared * 6 + rest


def test_sigma_zero_gives_disjoint_units_and_sigma_one_hard_sharing():
    zero = routing_masks(TASKS, 12, sigma=0.0, seed=0)
    for a, b in itertools.combinations(range(6), 2):
        assert not (zero[a] & zero[b]).any()
    assert zero.sum(axis=1).tolist() == [2] * 6
    assert routing_masks(TASKS, 12, sigma=1.0, seed=0, scheme="paper").all()
    assert routing_masks(TASKS, 12, sigma=1.0, seed=0, scheme="official").all()


def test_official_masks_keep_a_fixed_count_per_task_independently():
    masks = routing_masks([f"t{i}" for i in range(400)], 20, sigma=0.6, seed=0, scheme="official")
    assert (masks.sum(axis=1) == 12).all()  # C - floor(C(1 - σ)) = 20 - 8
    # independent draws: each unit is kept by about T * k / C = 240 of the 400 tasks
    users = masks.sum(axis=0)
    assert abs(users.mean() - 240) < 1e-9
    assert users.std() > 0  # not the paper's all-or-one structure
    pair = mask_stats(masks).pair_overlap
    assert abs(pair - (12 / 20) ** 2) < 0.005  # independent draws: E|A∩B| / C = (k / C)^2
    assert routing_masks(TASKS, 5, sigma=0.0, seed=0, scheme="official").sum(axis=1).tolist() == [1] * 6


def test_masks_are_reproducible_per_seed():
    a = routing_masks(TASKS, 16, sigma=0.3, seed=7)
    assert np.array_equal(a, routing_masks(TASKS, 16, sigma=0.3, seed=7))
    assert not np.array_equal(a, routing_masks(TASKS, 16, sigma=0.3, seed=8))
    assert shared_units(5, 0.5) == 3  # half up, not to even


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_sigma_is_a_clear_error(bad):
    with pytest.raises(MTLSearchError, match="sigma"):
        routing_masks(TASKS, 4, sigma=bad, seed=0)


def test_bad_scheme_and_graph_are_clear_errors(mlp_ctx):
    with pytest.raises(MTLSearchError, match="scheme"):
        routing_masks(TASKS, 4, sigma=0.5, seed=0, scheme="dropout")
    with pytest.raises(GraphError, match="hard-sharing"):
        routed_graph(mlp_ctx.new_graph("single_task"), mlp_ctx.space, sigma=0.5, seed=0)
    with pytest.raises(MTLSearchError, match="schemes"):
        TaskRouting(schemes=["nope"])


# ---------------------------------------------------------------------------- strategy
def test_conforms_and_samples_sigma_seed_and_scheme(mlp_ctx):
    check_strategy("task_routing")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    proposal = create_strategy("task_routing").propose(trial, mlp_ctx)
    assert set(trial.params) == {"sigma", "mask_seed", "scheme"}
    assert 0.0 <= trial.params["sigma"] <= 1.0
    assert proposal.train_overrides["task_sampling"] == "one"
    assert proposal.graph.info["sigma"] == trial.params["sigma"]
    masks = proposal.graph.masks()
    assert sorted(masks) == ["b0.0", "b1.0"] and all(len(m) == 5 for m in masks.values())


def test_fixed_settings_and_memory_fallback(mlp_ctx):
    trial = optuna.create_study().ask()
    proposal = TaskRouting(sigma=0.5, mask_seed=3, schemes=["official"], task_sampling="all",
                           max_eval_bytes=10_000).propose(trial, mlp_ctx)
    assert trial.params == {}
    assert proposal.train_overrides["task_sampling"] == "all"
    # 5 tasks x (2*12 + 3*12) values x 4 bytes = 1200 bytes a row: 10_000 bytes hold 8 rows
    assert proposal.train_overrides["eval_batch_size"] == 8
    assert proposal.info["mask_stats"]["0"]["per_task"] == [6] * 5


def test_sigma_one_equals_hard_sharing_with_the_same_weights(cnn_ctx):
    routed = _trained(cnn_ctx, 1.0)
    # Trained in the trainer's channels-last layout; the comparison is exact in one layout.
    routed.to(memory_format=torch.contiguous_format)
    hard = materialize(cnn_ctx.new_graph("hard_sharing"), cnn_ctx.space, cnn_ctx.tasks).eval()
    hard.load_state_dict(routed.state_dict())
    x = cnn_ctx.data.test.inputs[:16]
    with torch.no_grad():
        a, b = routed(x), hard(x)
    assert all(torch.equal(a[t], b[t]) for t in cnn_ctx.task_names)
    assert routed.plan().num_computations == hard.plan().num_computations  # all-ones masks merge


def test_masks_gate_channels_and_are_not_parameters(cnn_ctx):
    model = _trained(cnn_ctx, 0.0)
    assert not any("mask" in name for name in model.state_dict())
    task = cnn_ctx.task_names[0]
    off = ~model.graph.masks()["b0.0"][task]
    seen = {}
    block = model.blocks["b0_0"]
    handle = block.bn.register_forward_hook(lambda m, i, o: seen.setdefault("z", o))
    with torch.no_grad():
        model(cnn_ctx.data.test.inputs[:4], [task])
    handle.remove()
    assert seen["z"][:, torch.as_tensor(off)].abs().sum() > 0  # the BN output is not yet masked
    # channels masked for the task reach the next block as exact zeros: changing their weights
    # in block 1 leaves the task's output unchanged
    x = cnn_ctx.data.test.inputs[:4]
    with torch.no_grad():
        before = model(x, [task])[task].clone()
        model.blocks["b1_0"].conv.weight[:, torch.as_tensor(off)] += 5.0
        after = model(x, [task])[task]
    assert torch.allclose(before, after, atol=1e-6)



# ------------------------------------------------------------- per-task normalisation
MASK_A, MASK_B = [1, 1, 0, 0], [0, 1, 1, 1]


def _two_task_mlp(task_norm="task"):
    """mlp 3 -> 4 -> 3, tasks a and b masked differently at block 0, so block 1's batch norm
    sees a task-specific input."""
    space = create_space("mlp", input_shape=(3,), widths=(4, 3))
    graph = SharingGraph.hard_sharing(["a", "b"], 2)
    graph.set_mask("a", "b0.0", MASK_A)
    graph.set_mask("b", "b0.0", MASK_B)
    graph.task_norm = task_norm
    torch.manual_seed(0)
    model = materialize(graph, space, [TaskSpec("a"), TaskSpec("b")])
    with torch.no_grad():  # non-trivial affine weights, so a wrong formula shows
        for p in model.parameters():
            p.uniform_(-1, 1)
    return model


def _block1_input(model, x, mask, bn0_stats=None):
    """By hand: block 1's pre-normalisation activation for one task (block 0 normalised by
    the batch's statistics, or by ``bn0_stats = (mean, var)``)."""
    lin0, bn0 = model.blocks["b0_0"].linear, model.blocks["b0_0"].norm
    h = x @ lin0.weight.T + lin0.bias
    mean, var = bn0_stats if bn0_stats is not None else (h.mean(0), h.var(0, unbiased=False))
    h = (h - mean) / torch.sqrt(var + bn0.eps) * bn0.weight + bn0.bias
    h = torch.relu(h * torch.tensor(mask, dtype=torch.float32))
    lin1 = model.blocks["b1_0"].linear
    return h @ lin1.weight.T + lin1.bias


def test_grouped_batchnorm_equals_one_batchnorm_per_row_block():
    torch.manual_seed(1)
    for base, shape in ((torch.nn.BatchNorm2d, (5, 3, 4, 4)), (torch.nn.BatchNorm1d, (5, 3))):
        bn = base(3)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
        grouped = GroupedBatchNorm(bn, 3)
        refs = [base(3) for _ in range(3)]
        for ref in refs:
            ref.load_state_dict(bn.state_dict())
        for layout in ([2, 0], [1], [0, 1, 2]):
            xs = [torch.randn(*shape) for _ in layout]
            grouped.train()
            grouped.layout = layout
            got = grouped(torch.cat(xs))
            want = torch.cat([refs[g].train()(x) for g, x in zip(layout, xs)])
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        for g in range(3):  # each group's statistics are its own batch norm's
            torch.testing.assert_close(grouped.running_mean[g], refs[g].running_mean)
            torch.testing.assert_close(grouped.running_var[g], refs[g].running_var)
            assert int(grouped.num_batches_tracked[g]) == int(refs[g].num_batches_tracked)
        grouped.eval()
        grouped.layout = [1, 2, 0]
        xs = [torch.randn(*shape) for _ in range(3)]
        want = torch.cat([refs[g].eval()(x) for g, x in zip([1, 2, 0], xs)])
        torch.testing.assert_close(grouped(torch.cat(xs)), want, atol=1e-6, rtol=1e-6)
        plain = grouped.as_batchnorm(2)
        assert type(plain) is base and torch.equal(plain.running_var, refs[2].running_var)
        grouped.layout = None
        with pytest.raises(RuntimeError, match="layout"):
            grouped(torch.cat(xs))


def test_task_statistics_equal_the_hand_computed_ones_in_training():
    model = _two_task_mlp()
    norm = model.blocks["b1_0"].norm
    assert isinstance(norm, GroupedBatchNorm) and norm.running_mean.shape == (2, 3)
    assert not isinstance(model.blocks["b0_0"].norm, GroupedBatchNorm)  # one input: one set
    assert model.norm_group("b1.0", "a") == 0 and model.norm_group("b1.0", "b") == 1
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(2))
    za, zb = _block1_input(model, x, MASK_A), _block1_input(model, x, MASK_B)
    model.train()
    with torch.no_grad():
        model(x, ["a"])  # one active task (Algorithm 1): only a's statistics move
    torch.testing.assert_close(norm.running_mean[0], 0.1 * za.mean(0))
    torch.testing.assert_close(norm.running_var[0], 0.9 + 0.1 * za.var(0, unbiased=True))
    assert torch.equal(norm.running_mean[1], torch.zeros(3)) and torch.equal(norm.running_var[1], torch.ones(3))
    assert norm.num_batches_tracked.tolist() == [1, 0]
    with torch.no_grad():
        out = model(x)  # both tasks in one stacked pass: each row block its own statistics
    torch.testing.assert_close(norm.running_mean[0], 0.9 * 0.1 * za.mean(0) + 0.1 * za.mean(0))
    torch.testing.assert_close(norm.running_mean[1], 0.1 * zb.mean(0))
    torch.testing.assert_close(norm.running_var[1], 0.9 + 0.1 * zb.var(0, unbiased=True))
    assert norm.num_batches_tracked.tolist() == [2, 1]
    with torch.no_grad():  # the stacked pass normalises a's rows exactly as a's own pass
        alone = model(x, ["b"])["b"]
    torch.testing.assert_close(out["b"], alone)


def test_evaluation_normalises_each_task_with_its_own_statistics():
    model = _two_task_mlp()
    norm, bn0 = model.blocks["b1_0"].norm, model.blocks["b0_0"].norm
    with torch.no_grad():
        bn0.running_mean.uniform_(-1, 1)
        bn0.running_var.uniform_(0.5, 2)
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x)
        for g, (task, mask) in enumerate((("a", MASK_A), ("b", MASK_B))):
            z = _block1_input(model, x, mask, (bn0.running_mean, bn0.running_var))
            z = (z - norm.running_mean[g]) / torch.sqrt(norm.running_var[g] + norm.eps) * norm.weight + norm.bias
            head = model.heads[task].linear
            torch.testing.assert_close(out[task], torch.relu(z) @ head.weight.T + head.bias)
            assert torch.equal(norm_statistics(model, "b1.0", task)[0][0], norm.running_mean[g])
        batched = BatchedRouting(model)(x)
    for task in ("a", "b"):
        torch.testing.assert_close(batched[task], out[task])


def test_recalibration_sets_the_training_splits_statistics_per_task():
    model = _two_task_mlp()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(20, 3, generator=gen)
    labels = {t: (torch.rand(20, generator=gen) > 0.5).float() for t in ("a", "b")}
    train = MultiTaskDataset(x, labels, [TaskSpec("a"), TaskSpec("b")])
    model.eval()
    assert recalibrate_norms(model, train, batch_size=7) == 2
    # by hand: the batches the pass sees (7, 7, 6 rows), block 0 normalised per batch
    za = torch.cat([_block1_input(model, x[i:i + 7], MASK_A) for i in range(0, 20, 7)])
    zb = torch.cat([_block1_input(model, x[i:i + 7], MASK_B) for i in range(0, 20, 7)])
    norm = model.blocks["b1_0"].norm
    torch.testing.assert_close(norm.running_mean[0], za.mean(0))
    torch.testing.assert_close(norm.running_var[0], za.var(0, unbiased=True))
    torch.testing.assert_close(norm.running_mean[1], zb.mean(0))
    torch.testing.assert_close(norm.running_var[1], zb.var(0, unbiased=True))
    lin0, bn0 = model.blocks["b0_0"].linear, model.blocks["b0_0"].norm
    h = x @ lin0.weight.T + lin0.bias  # block 0's input is every task's: one set
    torch.testing.assert_close(bn0.running_mean, h.mean(0))
    torch.testing.assert_close(bn0.running_var, h.var(0, unbiased=True))
    assert not any(m.training for m in model.modules())  # the mode is restored
    assert norm.num_batches_tracked.tolist() == [0, 0]


def test_shared_norm_keeps_the_papers_single_statistics():
    model = _two_task_mlp("shared")
    assert not any(isinstance(m, GroupedBatchNorm) for m in model.modules())
    assert model.blocks["b1_0"].norm.running_mean.shape == (3,)
    assert model.norm_group("b1.0", "a") is None
    data = model.graph.to_dict()
    assert data["schema_version"] == 1 and "task_norm" not in data
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(2))
    model.train()
    with torch.no_grad():
        model(x, ["a"])
        model(x, ["b"])  # both tasks' statistics mix in one running average
    za, zb = _block1_input(model, x, MASK_A), _block1_input(model, x, MASK_B)
    torch.testing.assert_close(model.blocks["b1_0"].norm.running_mean, 0.09 * za.mean(0) + 0.1 * zb.mean(0))
    graph = routed_graph(SharingGraph.hard_sharing(["a", "b"], 2), model.space, sigma=0.5, seed=0,
                         task_norm="shared")
    assert graph.task_norm == "shared" and graph.info["task_norm"] == "shared"
    with pytest.raises(MTLSearchError, match="task_norm"):
        TaskRouting(task_norm="batch")


def test_task_statistics_export_to_onnx(tmp_path):
    import onnxruntime

    model = _two_task_mlp().eval()
    with torch.no_grad():  # distinct statistics per task, so sharing them would show
        model.blocks["b1_0"].norm.running_mean.uniform_(-1, 1)
        model.blocks["b1_0"].norm.running_var.uniform_(0.5, 2)
    folder = export_model(model, tmp_path / "onnx", onnx=True)  # checked against PyTorch there too
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(5))
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x)
    for task, array in zip(["a", "b"], got):
        np.testing.assert_allclose(array, want[task].numpy(), atol=1e-5, rtol=1e-5)
    assert json.loads((folder / "architecture.json").read_text())["graph"]["task_norm"] == "task"


def test_sigma_one_routes_merge_and_need_no_task_statistics(mlp_ctx):
    graph = routed_graph(mlp_ctx.new_graph("hard_sharing"), mlp_ctx.space, sigma=1.0, seed=0)
    model = materialize(graph, mlp_ctx.space, mlp_ctx.tasks)
    assert graph.task_norm == "task" and not any(isinstance(m, GroupedBatchNorm) for m in model.modules())


def test_strategy_recalibrates_after_the_last_epoch(mlp_ctx):
    from mtlsearch.plugins.task_routing.strategy import _last_epoch
    from mtlsearch.strategy.pipeline import run_strategy

    model = run_strategy(TaskRouting(sigma=0.5, mask_seed=0, schemes=["paper"]), mlp_ctx).model
    norm = model.blocks["b1_0"].norm
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    recalibrate_norms(model, mlp_ctx.data.train)  # same weights: the same exact statistics
    torch.testing.assert_close(norm.running_mean, mean)
    torch.testing.assert_close(norm.running_var, var)
    plain = run_strategy(TaskRouting(sigma=0.5, mask_seed=0, schemes=["paper"], recalibrate=False), mlp_ctx).model
    for name, p in plain.named_parameters():  # same seed, same weights: only the statistics differ
        assert torch.equal(p, dict(model.named_parameters())[name])
    assert not torch.allclose(plain.blocks["b1_0"].norm.running_mean, mean, atol=1e-3)
    # the last epoch under a step cap: 3 tasks x 4 batches = 12 steps an epoch with parity
    capped = TrainConfig(epochs=5, max_steps=7, batch_size=32, task_sampling="one")
    assert _last_epoch(capped, 100, 3) == 0
    assert _last_epoch(capped.replace(update_parity=False), 100, 3) == 1
    assert _last_epoch(capped.replace(max_steps=None), 100, 3) == 4


# --------------------------------------------------------------------- update parity
def _head_updates(ctx, proposal, epochs=2):
    """Optimizer steps each head got (Adam's per-parameter step count) in a real training."""
    counts = {}

    def read(state):
        model, opt = state.model, state.optimizer
        for t in model.tasks:
            weight = model.heads[model._head_keys[t]].linear.weight
            counts[t] = int(opt.state[weight]["step"]) if weight in opt.state else 0

    ctx.train(proposal.graph, **proposal.train_overrides, epochs=epochs, on_epoch_end=[read])
    return counts


def test_one_task_training_gets_as_many_updates_per_head_as_all_task_training(mlp_ctx):
    trial = optuna.create_study().ask()
    batches = -(-len(mlp_ctx.data.train) // 32)
    n_tasks = len(mlp_ctx.task_names)
    all_tasks = _head_updates(mlp_ctx, TaskRouting(sigma=0.5, mask_seed=0, task_sampling="all").propose(trial, mlp_ctx))
    assert all_tasks == {t: 2 * batches for t in mlp_ctx.task_names}
    proposal = TaskRouting(sigma=0.5, mask_seed=0).propose(optuna.create_study().ask(), mlp_ctx)
    assert proposal.train_overrides["update_parity"] is True and proposal.info["update_parity"] is True
    parity = _head_updates(mlp_ctx, proposal)
    assert sum(parity.values()) == n_tasks * 2 * batches  # T passes per epoch, one head a step
    # one random active task per step: each head about as many updates as under all-task training
    assert all(0.5 * 2 * batches <= c <= 1.5 * 2 * batches for c in parity.values()), parity
    paper = TaskRouting(sigma=0.5, mask_seed=0, update_parity=False).propose(optuna.create_study().ask(), mlp_ctx)
    assert paper.train_overrides["update_parity"] is False
    starved = _head_updates(mlp_ctx, paper)
    assert sum(starved.values()) == 2 * batches  # the paper's code: 1/T of the updates per head
    kept = TaskRouting(sigma=0.5, mask_seed=0, update_parity=None).propose(optuna.create_study().ask(), mlp_ctx)
    assert "update_parity" not in kept.train_overrides  # the study budget decides


# -------------------------------------------------------------------- initial params
def test_initial_params_cover_spread_sigmas_and_drive_the_first_trials(mlp_ctx):
    strategy = TaskRouting()
    params = strategy.initial_params(mlp_ctx)
    assert [p["sigma"] for p in params] == list(INITIAL_SIGMAS)
    assert len(set(INITIAL_SIGMAS)) == len(INITIAL_SIGMAS) and all(0 < s < 1 for s in INITIAL_SIGMAS)
    assert all(p == {"sigma": p["sigma"], "mask_seed": mlp_ctx.seed, "scheme": "paper"} for p in params)
    study = optuna.create_study()
    for p in params:
        study.enqueue_trial(p)
    for p in params:
        trial = study.ask()
        proposal = strategy.propose(trial, mlp_ctx)
        assert trial.params == p and proposal.info["sigma"] == p["sigma"]
    assert TaskRouting(sigma_range=(0.6, 1.0)).initial_params(mlp_ctx) == [
        {"sigma": 0.75, "mask_seed": mlp_ctx.seed, "scheme": "paper"}]
    assert TaskRouting(sigma=0.3, schemes=["official"]).initial_params(mlp_ctx) == [{"mask_seed": mlp_ctx.seed}]
    assert TaskRouting(sigma=0.3, mask_seed=1, schemes=["paper"]).initial_params(mlp_ctx) == []


# ------------------------------------------------------------------ batched evaluation
def test_batched_routing_equals_the_core_plan_and_chunks_agree(cnn_ctx):
    model = _trained(cnn_ctx, 0.4)
    x = cnn_ctx.data.test.inputs[:24]
    with torch.no_grad():
        core = model(x)
        batched = BatchedRouting(model)(x)
        chunked = routed_forward(model, x, max_bytes=1)  # one task per pass
        sub = BatchedRouting(model)(x, ["sum_ge10", "left_even"])
    for t in cnn_ctx.task_names:
        assert torch.allclose(core[t], batched[t], atol=1e-5)
        assert torch.allclose(core[t], chunked[t], atol=1e-5)
    assert list(sub) == ["sum_ge10", "left_even"]
    assert torch.allclose(sub["left_even"], core["left_even"], atol=1e-5)


def test_chunk_size_follows_the_memory_budget(mlp_ctx):
    per_row_per_task = (2 * 12 + 3 * 12) * 4  # widest level of mlp (10 -> 12 -> 10)
    assert task_chunk_size(mlp_ctx.space, n_tasks=5, batch=10, max_bytes=10**9) == 5
    assert task_chunk_size(mlp_ctx.space, n_tasks=5, batch=10, max_bytes=per_row_per_task * 10 * 2) == 2
    assert task_chunk_size(mlp_ctx.space, n_tasks=5, batch=10, max_bytes=1) == 1


def test_evaluate_routed_matches_the_engine_and_adds_precision_recall(mlp_ctx):
    model = _trained(mlp_ctx, 0.3)
    ours = evaluate_routed(model, mlp_ctx.data.test, batch_size=50, max_bytes=5000)
    core = evaluate(model, mlp_ctx.data.test, batch_size=50)
    with torch.no_grad():
        out = model(mlp_ctx.data.test.inputs)
    for t in mlp_ctx.task_names:
        assert ours[t]["accuracy"] == pytest.approx(core[t]["accuracy"])
        assert ours[t]["loss"] == pytest.approx(core[t]["loss"], rel=1e-5)
        pred = out[t].reshape(-1) > 0
        truth = mlp_ctx.data.test.targets[t] > 0.5
        tp = int((pred & truth).sum())
        assert ours[t]["precision"] == pytest.approx(tp / max(int(pred.sum()), 1))
        assert ours[t]["recall"] == pytest.approx(tp / max(int(truth.sum()), 1))


# -------------------------------------------------------------------- subnet extraction
@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_extracted_subnet_equals_the_routed_task_and_is_smaller(which, cnn_ctx, mlp_ctx):
    ctx = cnn_ctx if which == "cnn" else mlp_ctx
    model = _trained(ctx, 0.25)
    x = ctx.data.test.inputs[:16]
    full = sum(p.numel() for p in model.parameters())
    for task in ctx.task_names:
        subnet = extract_subnet(model, task).eval()
        with torch.no_grad():
            assert torch.allclose(subnet(x), model(x, [task])[task], atol=1e-5)
        kept = [int(m.sum()) for m in (model.graph.masks()[n][task] for n in sorted(model.graph.masks()))]
        assert [len(k) for k in subnet.kept] == kept
        assert sum(p.numel() for p in subnet.parameters()) < full


def test_subnet_extraction_handles_residual_blocks():
    torch.manual_seed(0)
    space = create_space("resnet18", input_shape=(1, 8, 8), width=4, small_input=True)
    ctx = tiny_context(space)
    graph = routed_graph(ctx.new_graph(), space, sigma=0.5, seed=0)
    model = materialize(graph, space, ctx.tasks)
    # Non-trivial batch-norm statistics, so slicing them wrongly would show.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    for task in ctx.task_names:
        subnet = extract_subnet(model, task).eval()
        with torch.no_grad():
            torch.testing.assert_close(subnet(x), model(x, [task])[task], atol=1e-5, rtol=1e-4)
        assert sum(p.numel() for p in subnet.parameters()) < sum(p.numel() for p in model.parameters())
    with pytest.raises(MTLSearchError, match="unknown task"):
        extract_subnet(model, "nope")


# ------------------------------------------------------------------------------ export
def test_export_load_reproduces_masks_and_predictions(cnn_ctx, tmp_path):
    model = _trained(cnn_ctx, 0.3, seed=11)
    folder = export_model(model, tmp_path / "tr", picture=True)
    loaded = load(folder)
    assert loaded.graph.task_norm == "task"
    n_tasks = len(cnn_ctx.task_names)
    for key in ("b1_0", "b2_0"):  # blocks after a mask: one set of statistics per task
        assert loaded.state_dict()[f"blocks.{key}.bn.running_mean"].shape == (n_tasks, 12)
        torch.testing.assert_close(loaded.blocks[key].bn.running_var, model.blocks[key].bn.running_var)
    for node, masks in model.graph.masks().items():
        for task, mask in masks.items():
            assert np.array_equal(loaded.graph.masks()[node][task], mask)
    assert loaded.graph.info["sigma"] == 0.3 and loaded.graph.info["mask_seed"] == 11
    x = cnn_ctx.data.test.inputs[:8]
    model.to(memory_format=torch.contiguous_format)  # trained channels-last; loaded contiguous
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[t], b[t]) for t in cnn_ctx.task_names)
    assert (folder / "architecture.png").is_file()


# ------------------------------------------------------------------------------- sweep
def test_sigma_sweep_one_line_and_plot(tmp_path, mlp_ctx):
    result = sigma_sweep(
        mlp_ctx.data, space=mlp_ctx.space, sigmas=(0.0, 1.0), seeds=(0, 1),
        budget=TrainConfig(epochs=1, batch_size=32), plot=tmp_path / "sweep",
    )
    assert len(result.runs) == 4 and result.tasks == mlp_ctx.task_names and result.split == "val"
    values = result.values("accuracy", 0.0)
    mean, std = result.overall("accuracy")[0.0]
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert result.table().count("| 0") == 1 and "(chosen)" in result.table()
    assert (tmp_path / "sweep.png").is_file()
    assert len(result.test_runs) == 2 and {r["sigma"] for r in result.test_runs} == {result.chosen_sigma}
    fig = plot_sigma_sweep(result)
    assert len(fig.axes) == 3  # accuracy, precision, recall
    again = sigma_sweep(mlp_ctx.data, space=mlp_ctx.space, sigmas=(0.0,), seeds=(0,),
                        budget=TrainConfig(epochs=1, batch_size=32))
    assert again.runs[0]["metrics"] == result.runs[0]["metrics"]  # same seed, same result


def test_sweep_chooses_sigma_on_validation_and_reads_test_only_for_it(mlp_ctx, monkeypatch):
    data = mlp_ctx.data
    # test = validation with every label flipped: each model's test accuracy is 1 - its
    # validation accuracy, so choosing on test would pick the worst validation sigma
    flipped = MultiTaskDataset(data.val.inputs, {t: 1 - data.val.targets[t] for t in data.task_names}, data.tasks)
    splits = DatasetSplits("flipped", data.train, data.val, flipped, data.tasks)
    real, reads = sweep_module.evaluate_routed, []

    def spy(model, dataset, **kwargs):
        split = {id(data.val): "val", id(flipped): "test"}.get(id(dataset), "other")
        reads.append((split, model.graph.info["sigma"], model.graph.info["mask_seed"]))
        return real(model, dataset, **kwargs)

    monkeypatch.setattr(sweep_module, "evaluate_routed", spy)
    sigmas = (0.0, 0.5, 1.0)
    result = sigma_sweep(splits, space=mlp_ctx.space, sigmas=sigmas, seeds=(0, 1),
                         budget=TrainConfig(epochs=1, batch_size=32))
    val = {s: m for s, (m, _) in result.overall("accuracy").items()}
    assert len(set(val.values())) == 3  # distinct, so the best and the worst are clear
    assert result.chosen_sigma == max(val, key=val.get) != min(val, key=val.get)
    assert result.test_overall("accuracy")[0] == pytest.approx(1 - val[result.chosen_sigma])
    assert sorted(r for r in reads if r[0] == "val") == sorted(("val", s, k) for s in sigmas for k in (0, 1))
    assert [r for r in reads if r[0] != "val"] == [("test", result.chosen_sigma, 0), ("test", result.chosen_sigma, 1)]
    rows = result.test_table().splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith(f"| {result.chosen_sigma:g} |")  # one σ on test
    with pytest.raises(MTLSearchError, match="cannot choose sigma"):
        sigma_sweep(splits, space=mlp_ctx.space, sigmas=(0.0,), seeds=(0,), select="mae")


def test_sweep_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_main(["--help"])
    assert exc.value.code == 0 and "sigma" in capsys.readouterr().out
    code = sweep_main([
        "--dataset", "synthetic", "--dataset-option", "n_tasks=3", "--dataset-option", "n_samples=200",
        "--space", "mlp", "--space-option", "widths=[8]", "--sigmas", "0", "1", "--seeds", "0",
        "--epochs", "1", "--json", str(tmp_path / "r.json"),
    ])
    out = capsys.readouterr().out
    assert code == 0 and "| 1" in out and "chosen sigma" in out and (tmp_path / "r.json").is_file()
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["split"] == "val" and saved["chosen_sigma"] in (0.0, 1.0) and len(saved["test_runs"]) == 1
    assert sweep_main(["--dataset", "synthetic", "--space", "mlp", "--sigmas", "2"]) == 2
    assert "sigma" in capsys.readouterr().err
