"""Tests of the ``gradient_merge`` strategy (Selective Sharing)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from mtlsearch.engine.model import materialize, module_key
from mtlsearch.engine.train import TrainConfig, _rewire, task_losses
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.grouping import grouping_ari
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.plugins.gradient_merge import (
    DIRECTIVES,
    GradientMerge,
    GradientRecorder,
    branch_gradients,
    branch_layer,
    branches,
    cluster_branches,
    cluster_size_range,
    factor_vector,
    factor_vectors,
    groups_from_labels,
    merge_branches,
    merge_weights,
    min_samples_range,
    normalise_rows,
    sketch_projections,
    tt_cores,
    tt_reconstruct,
    tt_sketch,
)
from mtlsearch.plugins.gradient_merge import strategy as strategy_module
from mtlsearch.registry import create_space, load_dataset
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import run_strategy
from mtlsearch.tasks.kinds import TaskSpec
from mtlsearch.testing import tiny_context


def _trial():
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()


def _branched_model(ctx, depth=1):
    strategy = GradientMerge(directive="similarity", min_cluster_size=2, min_samples=1,
                             tt_rank=2, start_epoch=0, branch_depth=depth)
    proposal = strategy.propose(_trial(), ctx)
    torch.manual_seed(0)
    return strategy, proposal, materialize(proposal.graph, ctx.space, ctx.tasks)


# ------------------------------------------------------------------ gradient capture
def test_captured_gradients_equal_per_task_autograd():
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    x, y = next(ctx.data.train.batches(32, shuffle=False))
    losses = task_losses(model, model(x), y)
    expected = {}
    for task, node in zip(ctx.task_names, branches(model.graph, 1)):
        weight = branch_layer(model.blocks[module_key(node)])
        # each task's gradient alone, from its own loss
        expected[node] = torch.autograd.grad(losses[task], weight, retain_graph=True)[0]
    sum(losses.values()).backward()
    captured = branch_gradients(model, 1)
    assert set(captured) == set(expected) and len(captured) == 3
    for node, grad in captured.items():
        assert torch.allclose(grad, expected[node], atol=1e-7)
        assert grad.abs().sum() > 0


def test_recorder_rows_are_sketches_of_the_captured_gradients():
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    recorder = GradientRecorder(depth=1, rank=8, window=2, sketch_size=16, seed=3)
    grads = []
    for x, y in list(ctx.data.train.batches(16, shuffle=False))[:2]:
        model.zero_grad()
        sum(task_losses(model, model(x), y).values()).backward()
        grads.append({n: g.clone() for n, g in branch_gradients(model, 1).items()})
        recorder.capture(model)
    rows = recorder.matrix()
    node = next(iter(rows))
    total = (grads[0][node] + grads[1][node]).double().numpy()  # one window of two batches
    probes = sketch_projections(total.shape, size=16, seed=3)
    assert rows[node].shape == (16,)
    np.testing.assert_allclose(rows[node], factor_vector(total, rank=8, projections=probes), rtol=1e-9)


def _truncated_sketch_by_hand(matrix: np.ndarray, rank: int, probes) -> np.ndarray:
    """A matrix's TT of rank r is its rank-r truncated SVD; probe j of the sketch is
    ``u_j^T A_r v_j / sqrt(size)`` (the reference, written out without the library code)."""
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    a_r = (u[:, :rank] * s[:rank]) @ vt[:rank]
    left, right = probes
    return np.array([left[j] @ a_r @ right[j] for j in range(len(left))]) / np.sqrt(len(left))


@pytest.mark.parametrize("shape, rank", [((5, 7), 2), ((6, 4), 8), ((3, 2, 3, 3), 2), ((9,), 3)])
def test_batched_factorisation_equals_one_tensor_train_per_gradient(shape, rank):
    gradients = np.random.default_rng(1).standard_normal((4, *shape))
    probes = sketch_projections(shape, size=12, seed=5)
    rows = factor_vectors(gradients, rank=rank, projections=probes)
    assert rows.shape == (4, 12)
    for row, gradient in zip(rows, gradients):  # the per-gradient path (tensorly's TT-SVD)
        np.testing.assert_allclose(row, factor_vector(gradient, rank=rank, projections=probes),
                                   rtol=1e-10, atol=1e-12)
        if gradient.ndim == 2:
            np.testing.assert_allclose(row, _truncated_sketch_by_hand(gradient, rank, probes),
                                       rtol=1e-10, atol=1e-12)
    with pytest.raises(MTLSearchError, match="rank must be an integer >= 1"):
        factor_vectors(gradients, rank=0, projections=probes)


def test_recorder_rows_and_similarities_equal_a_hand_loop_over_branches():
    """The stacked capture (one batched factorisation per window) against the plain loop it
    replaced: each branch's first-layer gradient summed over its window, one TT sketch per
    branch; a task left out of a batch (no gradient) adds zeros."""
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    recorder = GradientRecorder(depth=1, rank=2, window=2, sketch_size=8, seed=4)
    groups = branches(model.graph, 1)
    nodes = list(groups)
    left_out = next(n for n, tasks in groups.items() if tasks == [ctx.task_names[0]])
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, list[np.ndarray]] = {n: [] for n in nodes}
    probes = None
    batches = list(ctx.data.train.batches(16, shuffle=False))[:4]
    for step, (x, y) in enumerate(batches):
        model.zero_grad(set_to_none=True)
        losses = task_losses(model, model(x), y)
        if step == 1:  # one task sits this batch out: its branch has no gradient
            losses.pop(ctx.task_names[0])
        sum(losses.values()).backward()
        assert (branch_layer(model.blocks[module_key(left_out)]).grad is None) == (step == 1)
        for node in nodes:
            grad = branch_layer(model.blocks[module_key(node)]).grad
            grad = torch.zeros_like(branch_layer(model.blocks[module_key(node)])) \
                if grad is None else grad.detach()
            sums[node] = sums[node] + grad if node in sums else grad.clone()
        recorder.capture(model)
        if step % 2 == 1:  # the end of a window of two
            for node in nodes:
                total = sums[node].double().numpy()
                probes = probes or sketch_projections(total.shape, size=8, seed=4)
                rows[node].append(factor_vector(total, rank=2, projections=probes))
            sums = {}
    got = recorder.matrix()
    assert list(got) == nodes
    for node in nodes:
        np.testing.assert_allclose(got[node], np.concatenate(rows[node]), rtol=1e-9, atol=1e-12)
    # what clustering sees: distances between the normalised rows
    expected = normalise_rows(np.stack([np.concatenate(rows[n]) for n in nodes]))
    points = normalise_rows(np.stack([got[n] for n in nodes]))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.testing.assert_allclose(distances, np.linalg.norm(expected[:, None] - expected[None],
                                                         axis=-1), atol=1e-9)


# ------------------------------------------------------------------ tensor train
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 3, 3), (7,)])
def test_tensor_train_round_trip_at_full_rank(shape):
    tensor = np.random.default_rng(0).standard_normal(shape)
    cores = tt_cores(tensor, rank=100)
    assert cores[0].shape[0] == 1 and cores[-1].shape[-1] == 1
    np.testing.assert_allclose(tt_reconstruct(cores), tensor, atol=1e-10)


def test_tensor_train_truncation_matches_eckart_young():
    matrix = np.random.default_rng(1).standard_normal((8, 6))
    s = np.linalg.svd(matrix, compute_uv=False)
    error = np.linalg.norm(tt_reconstruct(tt_cores(matrix, rank=2)) - matrix)
    assert error == pytest.approx(np.sqrt((s[2:] ** 2).sum()), rel=1e-8)


def test_sketch_equals_dense_inner_products_with_rank_one_probes():
    tensor = np.random.default_rng(2).standard_normal((3, 4, 2))
    probes = sketch_projections(tensor.shape, size=5, seed=0)
    dense = [np.einsum("i,j,k->ijk", *(p[k] for p in probes)) for k in range(5)]
    expected = np.array([(d * tensor).sum() for d in dense]) / np.sqrt(5)
    np.testing.assert_allclose(tt_sketch(tt_cores(tensor, rank=100), probes), expected, rtol=1e-9)
    with pytest.raises(MTLSearchError, match="rank"):
        tt_cores(tensor, rank=0)


# ------------------------------------------------------------------ clustering
def test_similarity_finds_planted_clusters_and_variance_makes_bigger_groups():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 40))
    points = normalise_rows(np.repeat(centers, 4, axis=0) + 0.3 * rng.standard_normal((12, 40)))
    labels = cluster_branches(points, directive="similarity", min_cluster_size=2, min_samples=1)
    assert sorted(map(sorted, groups_from_labels(labels))) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    wide = cluster_branches(points, directive="variance", min_cluster_size=2, min_samples=1)
    assert max(map(len, groups_from_labels(wide))) > 4
    with pytest.raises(MTLSearchError, match="directive"):
        cluster_branches(points, directive="closeness")


def test_variance_merges_nearby_clusters_but_not_into_one_by_default():
    # three tight pairs; pairs A and B are close to each other, C is far from both
    a, b, c = np.array([1.0, 0.0, 0.0]), np.array([0.8, 0.6, 0.0]), np.array([0.0, 0.0, 1.0])
    rng = np.random.default_rng(1)
    centers = np.repeat(np.stack([a, b, c]), 2, axis=0)
    points = normalise_rows(centers + 0.01 * rng.standard_normal((6, 3)))
    sim = cluster_branches(points, directive="similarity", min_cluster_size=2, min_samples=1)
    assert sorted(map(sorted, groups_from_labels(sim))) == [[0, 1], [2, 3], [4, 5]]
    # median distance (about 0.63 between A and B, 1.41 to C): A and B merge, C stays apart
    var = cluster_branches(points, directive="variance", min_cluster_size=2, min_samples=1)
    assert sorted(map(sorted, groups_from_labels(var))) == [[0, 1, 2, 3], [4, 5]]
    # epsilon 0 merges nothing beyond similarity's clusters
    zero = cluster_branches(points, directive="variance", min_cluster_size=2, min_samples=1,
                            epsilon_quantile=0.0)
    assert groups_from_labels(zero) == groups_from_labels(sim)
    # the earlier variant may answer "one group of everything"
    one = cluster_branches(points, directive="variance", min_cluster_size=2, min_samples=1,
                           allow_single_cluster=True, epsilon_quantile=1.0)
    assert groups_from_labels(one) == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(MTLSearchError, match="epsilon_quantile"):
        cluster_branches(points, directive="variance", epsilon_quantile=2.0)


def test_dissimilarity_groups_opposite_points():
    # two antipodal pairs: reversed distances make each pair the closest neighbours
    points = np.array([[1.0, 0.0], [-1.0, 0.01], [0.0, 1.0], [0.01, -1.0]])
    labels = cluster_branches(points, directive="dissimilarity", min_cluster_size=2, min_samples=1)
    assert sorted(map(sorted, groups_from_labels(labels))) == [[0, 1], [2, 3]]
    sim = cluster_branches(points, directive="similarity", min_cluster_size=2, min_samples=1)
    assert [0, 1] not in groups_from_labels(sim)


# ------------------------------------------------------------------ merging
def test_merge_bookkeeping_routes_heads_and_optimizer_state():
    ctx = tiny_context()
    _, proposal, model = _branched_model(ctx)
    cfg = TrainConfig(epochs=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = next(ctx.data.train.batches(32, shuffle=False))
    sum(task_losses(model, model(x), y).values()).backward()
    opt.step()
    graph = proposal.graph
    new = merge_branches(graph, 1, [["b1.0", "b1.2"]], keep=["b1.2"])
    assert new.route("bin") == new.route("reg") == ["b0.0", "b1.2"]
    assert new.route("cls") == ["b0.0", "b1.1"] and new.block_nodes(1) == ["b1.1", "b1.2"]
    kept_w = model.blocks["b1_2"].linear.weight
    kept_state = {k: v.clone() for k, v in opt.state[kept_w].items()}
    head = model.heads["bin"][0].weight if isinstance(model.heads["bin"], torch.nn.Sequential) else next(model.heads["bin"].parameters())
    head_before = head.detach().clone()
    new_model, new_opt = _rewire(model, opt, new, cfg.replace(optimizer="adam", lr=1e-2))
    assert "b1_0" not in new_model.blocks and set(new_model.heads) == {"bin", "cls", "reg"}
    assert torch.equal(new_model.blocks["b1_2"].linear.weight, kept_w)
    new_w = new_model.blocks["b1_2"].linear.weight
    for key, value in kept_state.items():
        assert torch.equal(new_opt.state[new_w][key], value)
    assert len(new_opt.state) == sum(1 for _ in new_model.parameters())  # removed ones left
    new_head = next(p for n, p in new_model.named_parameters() if n.startswith("heads.bin"))
    assert torch.equal(new_head, head_before)
    with pytest.raises(MTLSearchError, match="not in its group"):
        merge_branches(graph, 1, [["b1.0", "b1.1"]], keep=["b1.2"])


@pytest.mark.parametrize("mode,reduce", [("mean", torch.mean), ("max", torch.amax), ("min", torch.amin)])
def test_merge_weights_writes_the_elementwise_reduction(mode, reduce):
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    weights = [model.blocks[k].linear.weight.detach().clone() for k in ("b1_0", "b1_1")]
    untouched = model.blocks["b1_2"].linear.weight.detach().clone()
    merge_weights(model, 1, ["b1.0", "b1.1"], keep="b1.1", mode=mode)
    expected = reduce(torch.stack(weights), 0)
    assert torch.allclose(model.blocks["b1_1"].linear.weight, expected)
    assert torch.equal(model.blocks["b1_0"].linear.weight, weights[0])
    assert torch.equal(model.blocks["b1_2"].linear.weight, untouched)


def test_branches_start_identical():
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    assert not torch.equal(model.blocks["b1_0"].linear.weight, model.blocks["b1_1"].linear.weight)
    strategy_module._sync_branches(model, 1)
    for key in ("b1_1", "b1_2"):
        for a, b in zip(model.blocks["b1_0"].state_dict().values(), model.blocks[key].state_dict().values()):
            assert torch.equal(a, b)


def _heads_equal(model, a, b):
    sa, sb = model.heads[a].state_dict(), model.heads[b].state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _one_step(strategy, ctx, steps=1):
    """Train ``steps`` optimizer steps with the strategy's hooks; return the model."""
    proposal = strategy.propose(_trial(), ctx)
    result = ctx.train(proposal.graph, max_steps=steps, on_backward=[strategy.on_backward],
                       on_epoch_end=[strategy.on_epoch_end])
    return result.model


def test_heads_are_synchronised_by_kind_and_stay_equal_after_the_first_step():
    # 4 binary tasks: one head shape; every head and branch must be equal after step 1
    ctx = _ctx(epochs=2)
    model = _one_step(GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=2), ctx)
    names = list(model.heads)
    assert len(names) == 4
    for other in names[1:]:
        assert _heads_equal(model, names[0], other)
    for depth in (1, 2):  # every block of every branch (branch depth 1 of 3 blocks)
        nodes = model.graph.block_nodes(depth)
        assert len(nodes) == 4
        first = model.blocks[module_key(nodes[0])].state_dict()
        for node in nodes[1:]:
            for key, value in model.blocks[module_key(node)].state_dict().items():
                assert torch.equal(value, first[key]), (node, key)
    # the paper's variant keeps the engine's per-head initialisation
    plain = _one_step(GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=2,
                                    sync_heads=False), ctx)
    assert not _heads_equal(plain, names[0], names[1])


def test_heads_of_different_kinds_or_sizes_are_not_mixed():
    # tiny_context: binary (1 output), multiclass (3 outputs), regression (1 output)
    ctx = tiny_context()
    _, _, model = _branched_model(ctx)
    before = {k: {n: v.clone() for n, v in h.state_dict().items()} for k, h in model.heads.items()}
    synced = strategy_module._sync_heads(model)
    assert synced == []  # no two heads share kind and shape: nothing copied
    for key, head in model.heads.items():
        assert all(torch.equal(v, before[key][n]) for n, v in head.state_dict().items())
    # two regression heads of one size, one binary head of the same shape: only the pair syncs
    data = load_dataset("synthetic", n_tasks=3, n_groups=1, n_samples=60, kind="regression")
    specs = [data.tasks[0], data.tasks[1], TaskSpec(data.tasks[2].name, kind="binary")]
    graph = SharingGraph.from_partitions(data.task_names, [[data.task_names]])
    space = create_space("mlp", input_shape=data.input_shape, widths=(8,))
    torch.manual_seed(0)
    model = materialize(graph, space, specs)
    synced = strategy_module._sync_heads(model)
    assert len(synced) == 2
    assert _heads_equal(model, "t000", "t001") and not _heads_equal(model, "t000", "t002")


# ------------------------------------------------------------------ sampled settings
@pytest.mark.parametrize("n_tasks,expected", [(2, (2, 2)), (6, (2, 2)), (11, (2, 2)), (12, (2, 3)),
                                              (15, (2, 3)), (16, (2, 4)), (312, (2, 4))])
def test_cluster_size_range_by_hand(n_tasks, expected):
    assert cluster_size_range(n_tasks) == expected


def test_min_samples_range_by_hand():
    assert [min_samples_range(m) for m in (2, 3, 4, 9)] == [(1, 1), (1, 2), (1, 2), (1, 2)]


def test_trials_sample_only_the_restricted_ranges():
    ctx = _ctx(epochs=3, n_tasks=12)
    strategy = GradientMerge()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = strategy.propose(trial, ctx).graph.info
        assert set(trial.params) == {"min_cluster_size", "min_samples", "tt_rank"}
        assert params["directive"] == "similarity" and params["start_epoch"] == 0
        seen.add((params["min_cluster_size"], params["min_samples"]))
        study.tell(trial, 0.0)
    assert seen == {(2, 1), (3, 1), (3, 2)}  # every allowed pair, nothing else
    # asked for, the directive and start epoch are sampled again
    trial = study.ask()
    GradientMerge(directive=None, start_epoch=None).propose(trial, ctx)
    assert trial.params["directive"] in DIRECTIVES and 0 <= trial.params["start_epoch"] <= 1


def test_initial_params_are_the_measured_settings_in_order():
    strategy = GradientMerge()
    twelve = _ctx(epochs=3, n_tasks=12)
    assert strategy.initial_params(twelve) == [
        {"min_cluster_size": 2, "min_samples": 1, "tt_rank": 2},
        {"min_cluster_size": 3, "min_samples": 1, "tt_rank": 2},
        {"min_cluster_size": 3, "min_samples": 2, "tt_rank": 2},
    ]
    # 4 tasks allow only (2, 1); fixed arguments are not trial parameters
    four = _ctx(epochs=3, n_tasks=4)
    assert strategy.initial_params(four) == [{"min_cluster_size": 2, "min_samples": 1, "tt_rank": 2}]
    assert GradientMerge(tt_rank=4, min_samples=1).initial_params(four) == [{"min_cluster_size": 2}]
    assert GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=1).initial_params(four) == []
    sampled = GradientMerge(directive=None, start_epoch=None).initial_params(four)
    assert sampled == [{"directive": "similarity", "min_cluster_size": 2, "min_samples": 1,
                        "tt_rank": 2, "start_epoch": 0}]
    # enqueued, each one is what propose uses
    for params in strategy.initial_params(twelve):
        study = optuna.create_study()
        study.enqueue_trial(params)
        info = strategy.propose(study.ask(), twelve).graph.info
        assert {k: info[k] for k in params} == params


# ------------------------------------------------------------------ stopping and record
def _ctx(epochs, n_tasks=4):
    data = load_dataset("synthetic", n_tasks=n_tasks, n_groups=2, n_samples=300, seed=0)
    space = create_space("mlp", input_shape=data.input_shape, widths=(16, 16, 8))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=epochs, batch_size=64))


def test_grouping_stops_after_patience_epochs_without_change(monkeypatch):
    monkeypatch.setattr(strategy_module, "cluster_branches", lambda pts, **kw: np.full(len(pts), -1))
    strategy = GradientMerge(directive="similarity", min_cluster_size=2, min_samples=1,
                             tt_rank=2, start_epoch=1, patience=2)
    result = run_strategy(strategy, _ctx(epochs=5))
    record = result.info["gradient_merge"]
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]  # starts at 1, stops after 2 quiet
    assert record["lock_epoch"] == 2 and "no change" in record["stop_reason"]
    assert result.epochs_run == 5 and record["merges"] == []


def test_merging_everything_stops_and_shrinks_the_model(monkeypatch):
    monkeypatch.setattr(strategy_module, "cluster_branches", lambda pts, **kw: np.zeros(len(pts), int))
    strategy = GradientMerge(directive="similarity", min_cluster_size=2, min_samples=1,
                             tt_rank=2, start_epoch=0)
    result = run_strategy(strategy, _ctx(epochs=2))
    record = result.info["gradient_merge"]
    assert record["lock_epoch"] == 0 and record["stop_reason"] == "every task is grouped"
    assert len(record["epochs"]) == 1 and record["final_groups"] == [["t000", "t001", "t002", "t003"]]
    assert record["epochs"][0]["params"] == result.params < record["initial_params"]
    graph = SharingGraph.from_dict(result.graph)
    assert graph.branches_per_depth() == [1, 1, 1]
    assert result.epochs_run == 2


def test_pair_merge_keeps_lowest_loss_branch(monkeypatch):
    monkeypatch.setattr(strategy_module, "cluster_branches", lambda pts, **kw: np.array([0, 0, -1, -1]))
    monkeypatch.setattr(strategy_module, "aggregated_losses",
                        lambda s, c, groups: {n: (0.1 if n == "b2.1" else 1.0) for n in groups})
    strategy = GradientMerge(directive="similarity", min_cluster_size=2, min_samples=1,
                             tt_rank=2, start_epoch=0, patience=1, branch_depth=2)
    record = run_strategy(strategy, _ctx(epochs=2)).info["gradient_merge"]
    assert record["merges"] == [{"epoch": 0, "groups": [["t000", "t001"]], "kept": ["b2.1"]}]
    assert record["final_groups"] == [["t000", "t001"], ["t002"], ["t003"]]


def test_no_merge_at_the_last_epoch(monkeypatch):
    calls = []

    def merge_all(pts, **kw):
        calls.append(len(pts))
        return np.zeros(len(pts), int)

    monkeypatch.setattr(strategy_module, "cluster_branches", merge_all)
    # one epoch: its clusters are recorded, but a merge would leave the moved tasks' heads
    # untrained on their new branch, so none happens
    result = run_strategy(GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=2), _ctx(epochs=1))
    record = result.info["gradient_merge"]
    assert calls == [4] and record["merges"] == []
    assert record["epochs"][0]["last_epoch"] is True and record["epochs"][0]["merged"] is False
    assert record["epochs"][0]["would_merge"] == [["t000", "t001", "t002", "t003"]]
    assert "last epoch" in record["stop_reason"]
    assert record["final_groups"] == [["t000"], ["t001"], ["t002"], ["t003"]]
    assert SharingGraph.from_dict(result.graph).branches_per_depth() == [1, 4, 4]
    # start_epoch 1 of 3 epochs: the merge comes at the end of epoch 1, epoch 0 is not clustered
    record = run_strategy(GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=2, start_epoch=1),
                          _ctx(epochs=3)).info["gradient_merge"]
    assert calls == [4, 4] and [m["epoch"] for m in record["merges"]] == [1]
    # past the last epoch: nothing at all
    record = run_strategy(GradientMerge(min_cluster_size=2, min_samples=1, tt_rank=2, start_epoch=3),
                          _ctx(epochs=3)).info["gradient_merge"]
    assert calls == [4, 4] and record["epochs"] == [] and "past the last epoch" in record["stop_reason"]


def _pairs_then_rest(pts, **kw):
    """Merge the first two branches (a pair each call) and leave the others alone."""
    labels = np.full(len(pts), -1)
    labels[:2] = 0
    return labels


def test_max_rounds_ends_grouping_and_the_paper_rule_goes_on(monkeypatch):
    monkeypatch.setattr(strategy_module, "cluster_branches", _pairs_then_rest)
    params = dict(min_cluster_size=2, min_samples=1, tt_rank=2)
    one = run_strategy(GradientMerge(**params), _ctx(epochs=4)).info["gradient_merge"]
    assert [m["epoch"] for m in one["merges"]] == [0]
    assert one["lock_epoch"] == 0 and "max_rounds=1" in one["stop_reason"]
    assert one["final_groups"] == [["t000", "t001"], ["t002"], ["t003"]]
    # paper: merge each epoch until every task is grouped; by hand: {0 1} 2 3 -> {0 1 2} 3 ->
    # {0 1 2 3} after epochs 0, 1, 2 (epoch 3, the last, never clusters)
    paper = run_strategy(GradientMerge(max_rounds=None, **params), _ctx(epochs=4)).info["gradient_merge"]
    assert [m["epoch"] for m in paper["merges"]] == [0, 1, 2]
    assert [len(e["groups"]) for e in paper["epochs"]] == [3, 2, 1]
    assert paper["final_groups"] == [["t000", "t001", "t002", "t003"]]
    assert paper["lock_epoch"] == 2 and paper["stop_reason"] == "every task is grouped"
    # the paper's rule stopped by a cap of two rounds instead
    two = run_strategy(GradientMerge(max_rounds=2, **params), _ctx(epochs=4)).info["gradient_merge"]
    assert [m["epoch"] for m in two["merges"]] == [0, 1] and "max_rounds=2" in two["stop_reason"]


def test_planted_groups_are_recovered_on_synthetic():
    from sklearn.metrics import adjusted_rand_score

    data = load_dataset("synthetic", n_tasks=8, n_groups=2, n_samples=2000, seed=0)
    space = create_space("mlp", input_shape=data.input_shape, widths=(64, 64, 32, 32))
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=2, batch_size=64))
    strategy = GradientMerge()  # defaults, and the first setting a study tries
    result = run_strategy(strategy, ctx, strategy.initial_params(ctx)[0])
    record = result.info["gradient_merge"]
    found = {t: i for i, g in enumerate(record["final_groups"]) for t in g}
    ari = adjusted_rand_score(data.info["labels"], [found[t] for t in data.task_names])
    assert ari == 1.0, record["final_groups"]
    assert grouping_ari(result.graph, data.info["groups"]) == 1.0


def test_same_seed_same_result_and_retrain_option():
    params = dict(directive="similarity", min_cluster_size=2, min_samples=1, tt_rank=2, start_epoch=0)
    a = run_strategy(GradientMerge(**params), _ctx(epochs=2))
    b = run_strategy(GradientMerge(**params), _ctx(epochs=2))
    assert a.graph == b.graph and a.metrics == b.metrics
    c = run_strategy(GradientMerge(retrain=True, **params), _ctx(epochs=2))
    assert c.graph["graph"]["nodes"] == a.graph["graph"]["nodes"]  # same structure found
    assert "search_seconds" in c.info["gradient_merge"]


def test_bad_arguments_name_the_fix():
    with pytest.raises(MTLSearchError, match="directive"):
        GradientMerge(directive="closest")
    with pytest.raises(MTLSearchError, match="merge"):
        GradientMerge(merge="average")
    with pytest.raises(MTLSearchError, match="min_cluster_size"):
        GradientMerge(min_cluster_size=1)
    with pytest.raises(MTLSearchError, match="branch_depth"):
        GradientMerge(branch_depth=5).propose(_trial(), tiny_context())
    with pytest.raises(MTLSearchError, match="max_rounds"):
        GradientMerge(max_rounds=0)
    with pytest.raises(MTLSearchError, match="sync_heads"):
        GradientMerge(sync_heads="yes")
