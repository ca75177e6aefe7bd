"""Tests of the ``task_routing`` strategy plugin: masks, strategy, batched evaluation,
subnet extraction, export, sweep."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest
import torch

from mtlsearch import create_space, load_dataset
from mtlsearch.context import SearchContext
from mtlsearch.errors import GraphError, MTLSearchError
from mtlsearch.export import export_model, load
from mtlsearch.model import materialize
from mtlsearch.plugins.task_routing import (
    BatchedRouting,
    TaskRouting,
    evaluate_routed,
    extract_subnet,
    mask_stats,
    routed_forward,
    routed_graph,
    routing_masks,
    shared_units,
    task_chunk_size,
)
from mtlsearch.plugins.task_routing.sweep import main as sweep_main
from mtlsearch.plugins.task_routing.sweep import plot_sigma_sweep, sigma_sweep
from mtlsearch.registry import create_strategy
from mtlsearch.scoring import evaluate
from mtlsearch.testing import check_strategy, tiny_context
from mtlsearch.train import TrainConfig

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
    assert len(result.runs) == 4 and result.tasks == mlp_ctx.task_names
    values = result.values("accuracy", 0.0)
    mean, std = result.overall("accuracy")[0.0]
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert "| 0 |" in result.table() and (tmp_path / "sweep.png").is_file()
    fig = plot_sigma_sweep(result)
    assert len(fig.axes) == 3  # accuracy, precision, recall
    again = sigma_sweep(mlp_ctx.data, space=mlp_ctx.space, sigmas=(0.0,), seeds=(0,),
                        budget=TrainConfig(epochs=1, batch_size=32))
    assert again.runs[0]["metrics"] == result.runs[0]["metrics"]  # same seed, same result


def test_sweep_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_main(["--help"])
    assert exc.value.code == 0 and "sigma" in capsys.readouterr().out
    code = sweep_main([
        "--dataset", "synthetic", "--dataset-option", "n_tasks=3", "--dataset-option", "n_samples=200",
        "--space", "mlp", "--space-option", "widths=[8]", "--sigmas", "0", "1", "--seeds", "0",
        "--epochs", "1", "--json", str(tmp_path / "r.json"),
    ])
    assert code == 0 and "| 1 |" in capsys.readouterr().out and (tmp_path / "r.json").is_file()
    assert sweep_main(["--dataset", "synthetic", "--space", "mlp", "--sigmas", "2"]) == 2
    assert "sigma" in capsys.readouterr().err
