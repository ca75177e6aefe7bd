"""Strategy ``affinity_tree``: tournaments, costs, tree searches, estimators, reuse of trees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtlsearch import MTLSearchError, SharingGraph, TrainConfig, Trainer, create_space, load_dataset
from mtlsearch.context import SearchContext
from mtlsearch.data import MultiTaskDataset
from mtlsearch.model import materialize, module_key
from mtlsearch.pipeline import run_strategy
from mtlsearch.plugins.affinity_tree import (
    AffinityTensor,
    AffinityTree,
    affinity_from_losses,
    beam_search,
    clustering_cost,
    complexity_cost,
    estimate_affinity,
    exhaustive_search,
    pair_spearman,
    per_sample_losses,
    performance_vector,
    pooling_steps,
    tournament_matrix,
    train_single_task,
    tree_ari,
    tree_cost,
)
from mtlsearch.plugins.affinity_tree import estimators as est
from mtlsearch.plugins.affinity_tree.tree import (
    _canonical,
    _singletons,
    candidate_groupings,
    distance_matrix,
    grouping_cost,
    is_refinement,
    set_partitions,
)
from mtlsearch.registry import create_strategy
from mtlsearch.tasks import TaskSpec, get_task_kind
from mtlsearch.testing import tiny_context


def _random_tensor(seed: int, depths: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((depths, n, n))
    x = (x + x.transpose(0, 2, 1)) / 2
    for d in range(depths):
        np.fill_diagonal(x[d], 1.0)
    return x


# ----------------------------------------------------------------------------- affinity
def test_tournament_matrix_by_hand():
    losses = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.3, 0.1]]
    # encoder 0 lower on sample 0; encoder 1 lower on samples 1 and 3; sample 2 ties.
    w = tournament_matrix(losses)
    np.testing.assert_allclose(w, [[0.5, (1 + 0.5) / 4], [(2 + 0.5) / 4, 0.5]])
    np.testing.assert_allclose(w + w.T, np.ones((2, 2)))


def test_performance_vector_is_the_scaled_principal_eigenvector():
    # eigenvalues 0.5 +- sqrt(0.1875); eigenvector of the largest: (1, sqrt(0.1875) / 0.75).
    v = performance_vector([[0.5, 0.75], [0.25, 0.5]])
    np.testing.assert_allclose(v, [1.0, 1 / np.sqrt(3)])
    three = np.array([[0.5, 0.8, 0.9], [0.2, 0.5, 0.6], [0.1, 0.4, 0.5]])
    v3 = performance_vector(three)
    lam = (three @ v3)[0] / v3[0]
    np.testing.assert_allclose(three @ v3, lam * v3, atol=1e-10)  # an eigenvector
    assert v3.max() == pytest.approx(1.0) and (v3 > 0).all()
    assert lam == pytest.approx(max(np.linalg.eigvals(three).real))


def test_affinity_from_losses_by_hand():
    # 1 depth, 2 tasks, 2 encoders, 2 samples. Task 0: its own encoder wins both samples;
    # task 1: encoder 0 wins one sample, encoder 1 the other.
    losses = np.zeros((1, 2, 2, 2))
    losses[0, 0] = [[0.1, 0.1], [0.9, 0.9]]
    losses[0, 1] = [[0.1, 0.9], [0.9, 0.1]]
    a = affinity_from_losses(losses)[0]
    # task 0: W = [[.5, 1], [0, .5]] -> eigenvector (1, 0); task 1: W = [[.5,.5],[.5,.5]] -> (1, 1)
    p = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(a, (p + p.T) / 2, atol=1e-12)


def test_missing_labels_are_left_out_of_tournaments():
    losses = np.zeros((1, 2, 2, 3))
    losses[0, 0] = [[0.1, 0.1, np.nan], [0.9, 0.9, 0.0]]
    losses[0, 1] = [[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]]
    a = affinity_from_losses(losses)[0]
    assert a[0, 1] == pytest.approx((0.0 + 1.0) / 2)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_per_sample_losses_average_to_the_task_loss(kind):
    gen = torch.Generator().manual_seed(0)
    spec = TaskSpec("t", kind=kind, num_classes=3 if kind == "multiclass" else None)
    if kind == "multiclass":
        out, target = torch.randn(8, 3, generator=gen), torch.tensor([0, 1, 2, -1, 0, 1, 2, 0])
    else:
        out, target = torch.randn(8, 1, generator=gen), (torch.rand(8, generator=gen) > 0.5).float()
        target[3] = float("nan")
    per = per_sample_losses(spec, out, target)
    assert torch.isnan(per[3]) and torch.isfinite(per[[0, 1, 2, 4, 5, 6, 7]]).all()
    reference = get_task_kind(kind).loss(spec, out, target)
    assert float(per[~torch.isnan(per)].mean()) == pytest.approx(float(reference), rel=1e-5)


def test_affinity_tensor_files_round_trip(tmp_path):
    losses = np.random.default_rng(0).random((2, 3, 3, 4))
    losses[0, 1, 2, 3] = np.nan
    t = AffinityTensor(["a", "b", "c"], affinity_from_losses(np.nan_to_num(losses)), "full", meta={"x": 1}, losses=losses)
    for suffix in (".json", ".npz"):
        back = AffinityTensor.load(t.save(tmp_path / f"aff{suffix}"))
        np.testing.assert_array_equal(back.values, t.values)
        np.testing.assert_array_equal(back.losses, t.losses)  # NaN kept in both formats
        assert back.tasks == t.tasks and back.meta == {"x": 1} and back.estimator == "full"
    with pytest.raises(MTLSearchError, match="use .json or .npz"):
        t.save(tmp_path / "aff.txt")
    with pytest.raises(MTLSearchError, match="no affinity tensor file"):
        AffinityTensor.load(tmp_path / "missing.json")
    with pytest.raises(MTLSearchError, match="recompute it for this dataset"):
        t.check_fits(["a", "c", "b"], 2)
    with pytest.raises(MTLSearchError, match="one depth per block"):
        t.check_fits(["a", "b", "c"], 3)


def test_heat_map_has_one_panel_per_depth(tmp_path):
    t = AffinityTensor(["a", "b", "c"], _random_tensor(0, 3, 3), "rsa")
    fig = t.draw(tmp_path / "heat")
    assert len(fig.axes) == 4  # three depths and the colour bar
    assert (tmp_path / "heat.png").stat().st_size > 0 and (tmp_path / "heat.svg").is_file()


# ----------------------------------------------------------------------------- costs
def test_costs_by_hand():
    a = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.4], [0.3, 0.4, 1.0]])
    d = distance_matrix(a)
    assert clustering_cost([[0, 1], [2]], d) == pytest.approx((0.2 + 0.0) / 2)
    assert clustering_cost([[0, 1, 2]], d) == pytest.approx(0.7)
    assert clustering_cost([[0], [1], [2]], d) == 0.0
    assert complexity_cost(3, 2) == 8.0 and complexity_cost(1, 5) == 0.0
    assert grouping_cost([[0, 1], [2]], d, 1, alpha=0.5) == pytest.approx(0.1 + 0.5 * 2)
    parts = [[[0, 1, 2]], [[0, 1], [2]]]
    expected = 0.7 + 0.5 * 0 + 0.1 + 0.5 * (1 * 2**0)
    assert tree_cost(parts, np.stack([a, a]), [3, 0], alpha=0.5) == pytest.approx(expected)


def test_pooling_steps_count_the_down_sampling_that_follows():
    cnn = create_space("small_cnn", input_shape=(1, 12, 24))  # pools after blocks 0 and 1
    assert pooling_steps(cnn) == [2, 1, 0, 0]
    assert pooling_steps(create_space("mlp", input_shape=(6,), widths=(8, 8))) == [0, 0]


# ----------------------------------------------------------------------------- searches
def test_set_partitions_and_refinement():
    assert sum(1 for _ in set_partitions(range(5))) == 52  # Bell(5)
    assert is_refinement([[0], [1, 2]], [[0, 1, 2]])
    assert is_refinement([[0], [1], [2]], [[0, 2], [1]])
    assert not is_refinement([[0, 1], [2]], [[0], [1, 2]])


def _all_chains(n: int, depths: int):
    parts = [_canonical(p) for p in set_partitions(range(n))]
    for chain in itertools.product(parts, repeat=depths):
        if all(is_refinement(chain[k + 1], chain[k]) for k in range(depths - 1)):
            yield chain


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.02, 0.2, 2.0])
def test_exhaustive_equals_brute_force(seed, alpha):
    a, pooling = _random_tensor(seed, 3, 4), [2, 1, 0]
    brute = min(tree_cost(c, a, pooling, alpha) for c in _all_chains(4, 3))
    found = exhaustive_search(a, pooling, alpha=alpha)
    assert found.cost == pytest.approx(brute)
    assert tree_cost(found.partitions, a, pooling, alpha) == pytest.approx(found.cost)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.3])
def test_wide_beam_equals_exhaustive(seed, alpha):
    a, pooling = _random_tensor(seed, 3, 5), [2, 1, 0]
    exact = exhaustive_search(a, pooling, alpha=alpha)
    wide = beam_search(a, pooling, alpha=alpha, beam_width=10**6, candidates="all")
    assert wide.cost == pytest.approx(exact.cost)
    assert wide.partitions == exact.partitions
    narrow = beam_search(a, pooling, alpha=alpha, beam_width=1)
    assert narrow.cost >= exact.cost - 1e-12


def _spectral_dfs(a, pooling, alpha, depth, deeper):
    """Hand-written reference: every tree the spectral candidates can build, recursively."""
    best = None
    for g in candidate_groupings(deeper, a[depth], candidates="spectral"):
        cost = grouping_cost(g, distance_matrix(a[depth]), pooling[depth], alpha)
        if depth > 0:
            cost += _spectral_dfs(a, pooling, alpha, depth - 1, g)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", [0, 1])
def test_wide_spectral_beam_equals_exhaustive_over_its_candidates(seed):
    a, pooling, alpha = _random_tensor(seed, 3, 5), [1, 0, 0], 0.05
    wide = beam_search(a, pooling, alpha=alpha, beam_width=10**6)
    assert wide.cost == pytest.approx(_spectral_dfs(a, pooling, alpha, 2, _singletons(5)))


def test_trees_are_valid_refinements_that_cluster_obvious_groups():
    block = np.full((6, 6), 0.1)
    block[:3, :3] = block[3:, 3:] = 0.95
    a = np.stack([np.full((6, 6), 0.9), block, block])
    for result in (
        exhaustive_search(a, [0, 0, 0], alpha=0.1),
        beam_search(a, [0, 0, 0], alpha=0.1, beam_width=2),
    ):
        assert result.partitions[0] == [[0, 1, 2, 3, 4, 5]]
        assert result.partitions[1] == result.partitions[2] == [[0, 1, 2], [3, 4, 5]]
        SharingGraph.from_partitions(list("abcdef"), result.named(list("abcdef")))
    assert exhaustive_search(a, [0, 0, 0], alpha=10.0).partitions == [[[0, 1, 2, 3, 4, 5]]] * 3


def test_search_errors_name_the_fix():
    with pytest.raises(MTLSearchError, match="shape"):
        exhaustive_search(np.ones((2, 3)), [0, 0], alpha=0.1)
    with pytest.raises(MTLSearchError, match="pooling has 1 entries"):
        beam_search(np.ones((2, 3, 3)), [0], alpha=0.1)
    with pytest.raises(MTLSearchError, match="beam_width"):
        beam_search(np.ones((2, 3, 3)), [0, 0], alpha=0.1, beam_width=0)
    with pytest.raises(MTLSearchError, match="unknown estimator"):
        AffinityTree(estimator="magic")
    with pytest.raises(MTLSearchError, match="alpha_range"):
        AffinityTree(alpha_range=(0.0, 1.0))


def test_agreement_measures():
    a = _random_tensor(0, 2, 4)
    assert pair_spearman(a, a * 2 + 1) == [pytest.approx(1.0)] * 2
    assert pair_spearman(a, -a)[0] == pytest.approx(-1.0)
    assert tree_ari([[[0, 1], [2, 3]]], [[[2, 3], [1, 0]]]) == 1.0
    assert tree_ari([[[0, 1], [2, 3]]], [[[0, 2], [1, 3]]]) < 0.5


# ----------------------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def cnn_ctx():
    gen = torch.Generator().manual_seed(0)
    from mtlsearch.data import from_arrays

    x = torch.randn(120, 1, 8, 8, generator=gen)
    targets = {"a": (x[:, 0, :4].mean((1, 2)) > 0).float(), "b": (x[:, 0, 4:].mean((1, 2)) > 0).float()}
    data = from_arrays(x, targets, seed=0, name="tiny_cnn")
    space = create_space("small_cnn", input_shape=(1, 8, 8), channels=(4, 4, 4), pool_after=(0,))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=2, batch_size=16), seed=0)


def test_recombined_networks_match_one_trained_alone(cnn_ctx):
    ctx = cnn_ctx
    single = train_single_task(ctx)
    losses, _ = est.recombination_losses(ctx, single, epochs=2)
    tasks, spec = ctx.task_names, ctx.tasks[0]
    # Reference: network "task a on the bottom 2 blocks of task b", built and trained alone.
    split, i, j = 2, 0, 1
    graph = SharingGraph.single_task([spec.name], ctx.space.num_blocks)
    with torch.random.fork_rng(devices=[]):
        model = materialize(graph, ctx.space, [spec])
    for d in range(ctx.space.num_blocks):
        source = tasks[j] if d < split else tasks[i]
        model.blocks[module_key(graph.route(spec.name)[d])].load_state_dict(est._block(single, source, d).state_dict())
    model.heads[module_key(spec.name)].load_state_dict(est._head(single, tasks[i]).state_dict())
    frozen = [model.blocks[module_key(graph.route(spec.name)[d])] for d in range(split)]
    before = [{k: v.clone() for k, v in b.state_dict().items()} for b in frozen]
    for b in frozen:
        est._freeze(b)
    alone = MultiTaskDataset(ctx.data.train.inputs, {spec.name: ctx.data.train.targets[spec.name]}, [spec])
    Trainer(ctx.budget.replace(epochs=2)).fit(model, alone)
    for b, old in zip(frozen, before):  # weights and BatchNorm statistics untouched
        for k, v in b.state_dict().items():
            assert torch.equal(v, old[k]), f"frozen {k} changed"
    model.eval()
    with torch.no_grad():
        out = model(ctx.data.val.inputs)[spec.name]
    expected = per_sample_losses(spec, out, ctx.data.val.targets[spec.name]).numpy()
    np.testing.assert_allclose(losses[split - 1, i, j], expected, rtol=1e-4, atol=1e-6)


def test_rsa_matches_a_hand_written_reference(cnn_ctx):
    from scipy.stats import spearmanr

    ctx = cnn_ctx
    single = train_single_task(ctx)
    values = est.rsa_affinity(ctx, single, samples=20)
    idx = torch.randperm(len(ctx.data.val), generator=torch.Generator().manual_seed(ctx.seed))[:20]
    x, k = ctx.data.val.inputs[idx], len(idx)
    rdms = {}
    for t in ctx.task_names:
        h = x
        for d in range(ctx.space.num_blocks):
            with torch.no_grad():
                h = est._block(single, t, d)(h)
            f = h.flatten(1).double().numpy()
            rdms[t, d] = [1 - np.corrcoef(f[p], f[q])[0, 1] for p in range(k) for q in range(p + 1, k)]
    for d in range(ctx.space.num_blocks):
        ref = spearmanr(rdms["a", d], rdms["b", d]).statistic
        assert values[d, 0, 1] == pytest.approx(ref, abs=1e-6)
        assert values[d, 0, 0] == 1.0


def test_affinity_is_cached_and_reused(monkeypatch):
    ctx = tiny_context()
    first = estimate_affinity(ctx, "full")
    assert ctx.cache.get(ctx.key("single_task_reference")) is not None  # the reference came free

    def fail(*args, **kwargs):
        raise AssertionError("the cached affinity tensor was not reused")

    monkeypatch.setattr(est, "train_single_task", fail)
    monkeypatch.setattr(est, "recombination_losses", fail)
    again = estimate_affinity(ctx, "full")
    np.testing.assert_array_equal(again.values, first.values)
    assert again.losses.shape == (2, 3, 3, len(ctx.data.val))
    with pytest.raises(MTLSearchError, match="unknown affinity estimator"):
        estimate_affinity(ctx, "magic")


def test_same_seed_same_affinity():
    a = estimate_affinity(tiny_context(), "subset").values
    b = estimate_affinity(tiny_context(), "subset").values
    np.testing.assert_array_equal(a, b)


def test_planted_groups_are_recovered():
    data = load_dataset("synthetic", group_sizes=[2, 2], relatedness=0.95, n_samples=900, input_dim=16, seed=0)
    space = create_space("mlp", input_shape=data.input_shape, widths=(32, 32))
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=4, batch_size=64), seed=0)
    tensor = estimate_affinity(ctx, "full")
    last = tensor.values[-1]
    within, between = (last[0, 1] + last[2, 3]) / 2, last[np.ix_([0, 1], [2, 3])].mean()
    assert within > between + 0.05
    # The paper's clustering step: spectral clustering into two groups finds the planted ones.
    assert ((0, 1), (2, 3)) in candidate_groupings(_singletons(4), last)


# ----------------------------------------------------------------------------- strategy
def test_strategy_reuses_a_tree_trained_before():
    ctx = tiny_context()
    strategy = create_strategy("affinity_tree", estimator="rsa", alpha_range=(1e-3, 100.0))
    first = run_strategy(strategy, ctx, params={"alpha": 5.0, "beam_width": 1})
    second = run_strategy(strategy, ctx, params={"alpha": 50.0, "beam_width": 2})
    assert first.info["tree"] == second.info["tree"] == [[["bin", "cls", "reg"]]] * 2  # hard sharing
    assert first.info["reused"] is False and second.info["reused"] is True
    assert second.delta_mtl == first.delta_mtl and second.metrics == first.metrics
    split = run_strategy(strategy, ctx, params={"alpha": 1e-3, "beam_width": 1})
    assert split.info["reused"] is False and split.info["branches"][-1] == 3
    assert split.delta_mtl == pytest.approx(0.0, abs=1e-9)  # all apart = the reference itself


def test_strategy_takes_a_saved_tensor(tmp_path):
    ctx = tiny_context()
    tensor = AffinityTensor(ctx.task_names, np.ones((2, 3, 3)), "hand-made")
    path = tensor.save(tmp_path / "aff.npz")
    strategy = AffinityTree(affinity=path, reuse_trained=False, search="exhaustive")
    result = run_strategy(strategy, ctx, params={"alpha": 0.01})
    assert result.info["tree"] == [[["bin", "cls", "reg"]]] * 2 and result.info["estimator"] == "hand-made"
    assert result.epochs_run == 1  # trained by the engine, not in propose
    wrong = AffinityTree(affinity=AffinityTensor(["x", "y", "z"], np.ones((2, 3, 3)), "hand-made"))
    with pytest.raises(MTLSearchError, match="recompute it"):
        run_strategy(wrong, ctx, params={"alpha": 0.01, "beam_width": 1})


def test_reference_and_affinity_share_one_single_task_training(monkeypatch):
    from collections import OrderedDict

    from mtlsearch import context as context_module
    from mtlsearch.testing import tiny_context

    monkeypatch.setattr(context_module, "_SINGLE_TASK_WEIGHTS", OrderedDict())  # no earlier test's
    ctx = tiny_context()
    calls = []
    train = SearchContext.train
    monkeypatch.setattr(SearchContext, "train", lambda self, g, **kw: calls.append(g) or train(self, g, **kw))
    reference = ctx.reference()
    est.estimate_affinity(ctx, "rsa")
    assert len(calls) == 1  # the affinity estimate reused the reference's trained networks
    # and a fresh context with the same key gets the same weights back, not a retrained model
    again = tiny_context().single_task_model()
    assert len(calls) == 1
    assert again.state_dict().keys() == ctx.single_task_model().state_dict().keys()
    assert reference["val"] == ctx.evaluate(again, "val")
