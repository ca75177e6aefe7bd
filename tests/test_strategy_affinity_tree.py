"""Strategy ``affinity_tree``: tournaments, costs, tree searches, estimators, reuse of trees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtlsearch import MTLSearchError, SharingGraph, TrainConfig, Trainer, create_space, load_dataset
from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.model import materialize, module_key
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
    CLUSTERING_COSTS,
    _beam,
    _canonical,
    _exhaustive,
    _Memo,
    _singletons,
    _Tables,
    build_tree,
    candidate_groupings,
    distance_matrix,
    enumerate_trees,
    grouping_cost,
    is_refinement,
    is_single_task,
    set_partitions,
    tree_cost_parts,
)
from mtlsearch.registry import create_strategy
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import run_strategy
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind
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
    # the paper: plain mean over groups of the largest distance
    assert clustering_cost([[0, 1], [2]], d, "paper") == pytest.approx((0.2 + 0.0) / 2)
    # size-weighted: group {0, 1} holds 2 of the 3 tasks
    assert clustering_cost([[0, 1], [2]], d) == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.0)
    assert clustering_cost([[0, 2], [1]], d) == pytest.approx(2 / 3 * 0.7)
    for kind in CLUSTERING_COSTS:
        assert clustering_cost([[0, 1, 2]], d, kind) == pytest.approx(0.7)
        assert clustering_cost([[0], [1], [2]], d, kind) == 0.0
    assert complexity_cost(3, 2) == 8.0 and complexity_cost(1, 5) == 0.0
    assert grouping_cost([[0, 1], [2]], d, 1, alpha=0.5, clustering="paper") == pytest.approx(0.1 + 0.5 * 2)
    assert grouping_cost([[0, 1], [2]], d, 1, alpha=0.5) == pytest.approx(0.4 / 3 + 0.5 * 2)
    parts = [[[0, 1, 2]], [[0, 1], [2]]]
    expected = 0.7 + 0.5 * 0 + 0.1 + 0.5 * (1 * 2**0)
    assert tree_cost(parts, np.stack([a, a]), [3, 0], alpha=0.5, clustering="paper") == pytest.approx(expected)
    c, k = tree_cost_parts(parts, np.stack([a, a]), [3, 0])
    assert (c, k) == (pytest.approx(0.7 + 0.4 / 3), 1.0)
    assert tree_cost(parts, np.stack([a, a]), [3, 0], alpha=0.5) == pytest.approx(c + 0.5 * k)
    with pytest.raises(MTLSearchError, match="unknown clustering cost"):
        clustering_cost([[0]], d, "median")


def _planted_pairs() -> np.ndarray:
    """One depth, 6 tasks in planted pairs {0,1}, {2,3}, {4,5} with distances 0.3, 0.2, 0.1
    inside the pairs and 0.9 between them."""
    a = np.full((6, 6), 0.1)
    for (i, j), aff in {(0, 1): 0.7, (2, 3): 0.8, (4, 5): 0.9}.items():
        a[i, j] = a[j, i] = aff
    np.fill_diagonal(a, 1.0)
    return a[None]


PAIRS = [[0, 1], [2, 3], [4, 5]]
LOPSIDED = [[0], [1], [2, 3], [4, 5]]  # two groups + singletons


def test_planted_pairs_beat_two_groups_plus_singletons_under_the_size_weighted_cost():
    d = distance_matrix(_planted_pairs()[0])
    alpha = 0.11  # one depth, p = 0: the complexity cost is (b - 1) * alpha
    # The paper's mean: the two singletons dilute it, (0.2 + 0.1) / 4, below the planted 0.6 / 3.
    assert grouping_cost(PAIRS, d, 0, alpha, "paper") == pytest.approx(0.6 / 3 + 2 * alpha)  # 0.42
    assert grouping_cost(LOPSIDED, d, 0, alpha, "paper") == pytest.approx(0.3 / 4 + 3 * alpha)  # 0.405
    # Size-weighted: each pair weighs 2/6 whatever the rest is: 0.6/3 against 0.3/3.
    assert grouping_cost(PAIRS, d, 0, alpha) == pytest.approx(2 / 6 * 0.6 + 2 * alpha)  # 0.42
    assert grouping_cost(LOPSIDED, d, 0, alpha) == pytest.approx(2 / 6 * 0.3 + 3 * alpha)  # 0.43
    # ... and over every one of the Bell(6) = 203 groupings:
    for kind, winner in (("size_weighted", PAIRS), ("paper", LOPSIDED)):
        best = min(set_partitions(range(6)), key=lambda g: grouping_cost(g, d, 0, alpha, kind))
        assert _canonical(best) == _canonical(winner), kind


@pytest.mark.parametrize(
    "clustering, expected",
    [
        # breakpoints where two cost lines C + alpha * K cross (worked out in the comments)
        ("size_weighted", [  # 5a | 1/30 + 4a | 0.1 + 3a | 0.2 + 2a | 0.9
            ([[0], [1], [2], [3], [4], [5]], 0.01, 1 / 30),
            ([[0], [1], [2], [3], [4, 5]], 1 / 30, 1 / 15),
            ([[0], [1], [2, 3], [4, 5]], 1 / 15, 0.1),
            (PAIRS, 0.1, 0.35),
            ([[0, 1, 2, 3, 4, 5]], 0.35, 1.0),
        ]),
        # paper: a singleton beside all the rest costs (0 + 0.9) / 2: it beats the pairs too
        ("paper", [  # 5a | 0.02 + 4a | 0.075 + 3a | 0.2 + 2a | 0.45 + a | 0.9
            ([[0], [1], [2], [3], [4], [5]], 0.01, 0.02),
            ([[0], [1], [2], [3], [4, 5]], 0.02, 0.055),
            ([[0], [1], [2, 3], [4, 5]], 0.055, 0.125),
            (PAIRS, 0.125, 0.25),
            ([[0], [1, 2, 3, 4, 5]], 0.25, 0.45),
            ([[0, 1, 2, 3, 4, 5]], 0.45, 1.0),
        ]),
    ],
)
def test_enumerated_trees_and_alpha_intervals_by_hand(clustering, expected):
    found = enumerate_trees(_planted_pairs(), [0], alpha_range=(0.01, 1.0), clustering=clustering)
    assert [_canonical(c.partitions[0]) for c in found] == [_canonical(g) for g, _, _ in expected]
    for cand, (_, lo, hi) in zip(found, expected):
        assert len(cand.intervals) == 1
        assert cand.intervals[0] == (pytest.approx(lo), pytest.approx(hi))
    # (the planted window is wider under the size-weighted cost: 0.1..0.35 against 0.125..0.25)
    # The beam finds the same trees (to the bisection's tolerance)
    beam = enumerate_trees(_planted_pairs(), [0], alpha_range=(0.01, 1.0), clustering=clustering,
                           search="beam", beam_width=3, candidates="all")
    assert [c.partitions for c in beam] == [c.partitions for c in found]
    for b, e in zip(beam, found):
        np.testing.assert_allclose(b.intervals, e.intervals, rtol=1e-3)


def _key(partitions) -> tuple:
    return tuple(_canonical(p) for p in partitions)


def _check_tiling(found, low: float, high: float) -> None:
    spans = sorted(iv for c in found for iv in c.intervals)
    assert spans[0][0] == pytest.approx(low) and spans[-1][1] == pytest.approx(high)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start == pytest.approx(end)  # no gap, no overlap
    assert len({_key(c.partitions) for c in found}) == len(found)  # distinct trees


def _check_against_sweep(found, solve, grid) -> None:
    """Every tree a fine log grid of alpha finds is enumerated, in an interval holding that alpha;
    every enumerated tree is found by the grid unless its interval is narrower than two grid
    steps, and the search returns it at its representative alpha."""
    swept = {x: _key(solve(x).partitions) for x in grid}
    assert set(swept.values()) <= {_key(c.partitions) for c in found}
    for x, key in swept.items():
        owners = [c for c in found if any(lo * (1 + 1e-6) < x < hi * (1 - 1e-6) for lo, hi in c.intervals)]
        if owners:  # (a grid value within 1e-6 of a breakpoint may go either way)
            assert [_key(c.partitions) for c in owners] == [key]
    step = grid[1] / grid[0]
    for c in found:
        assert _key(solve(c.alpha).partitions) == _key(c.partitions)
        if c.widest[1] / c.widest[0] > step**2:
            assert _key(c.partitions) in set(swept.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("clustering", CLUSTERING_COSTS)
def test_exact_enumeration_equals_a_fine_alpha_sweep(seed, clustering):
    a, pooling, low, high = _random_tensor(seed, 3, 4), [2, 1, 0], 1e-3, 1.0
    found = enumerate_trees(a, pooling, alpha_range=(low, high), search="exhaustive", clustering=clustering)
    _check_tiling(found, low, high)
    tables = _Tables(a, pooling, clustering)  # the exhaustive search with its alpha-free tables kept
    assert _exhaustive(tables, 0.05) == exhaustive_search(a, pooling, alpha=0.05, clustering=clustering)
    _check_against_sweep(found, lambda x: _exhaustive(tables, x), np.geomspace(low, high, 600))
    assert len(found) >= 4
    for c in found:  # the recorded line is the tree's cost
        assert c.cost(c.alpha) == pytest.approx(tree_cost(c.partitions, a, pooling, c.alpha, clustering))


@pytest.mark.parametrize("seed", [0, 1])
def test_beam_enumeration_equals_a_fine_alpha_sweep(seed):
    a, pooling, low, high = _random_tensor(seed, 3, 6), [1, 0, 0], 1e-3, 1.0
    found = enumerate_trees(a, pooling, alpha_range=(low, high), search="beam", beam_width=2, seed=0)
    _check_tiling(found, low, high)
    memo = _Memo(a, "size_weighted", "spectral", 0)  # the beam with its alpha-free parts kept
    assert _beam(memo, pooling, 0.05, 2) == beam_search(a, pooling, alpha=0.05, beam_width=2)
    _check_against_sweep(found, lambda x: _beam(memo, pooling, x, 2), np.geomspace(low, high, 3000))


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
    from mtlsearch.data.dataset import from_arrays

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
def test_paper_sampling_reuses_a_tree_trained_before():
    ctx = tiny_context()
    strategy = create_strategy("affinity_tree", estimator="rsa", alpha_range=(1e-3, 100.0),
                               alpha_sampling="log_uniform", clustering="paper")
    first = run_strategy(strategy, ctx, params={"alpha": 5.0, "beam_width": 1})
    second = run_strategy(strategy, ctx, params={"alpha": 50.0, "beam_width": 2})
    assert first.info["tree"] == second.info["tree"] == [[["bin", "cls", "reg"]]] * 2  # hard sharing
    assert first.info["reused"] is False and second.info["reused"] is True
    assert second.delta_mtl == first.delta_mtl and second.metrics == first.metrics
    split = run_strategy(strategy, ctx, params={"alpha": 1e-3, "beam_width": 1})
    assert split.info["reused"] is False and split.info["branches"][-1] == 3
    assert split.delta_mtl == pytest.approx(0.0, abs=1e-9)  # all apart = the reference itself
    assert strategy.initial_params(ctx) == []  # the paper's blind sampling queues nothing


def test_strategy_takes_a_saved_tensor(tmp_path):
    ctx = tiny_context()
    tensor = AffinityTensor(ctx.task_names, np.ones((2, 3, 3)), "hand-made")
    path = tensor.save(tmp_path / "aff.npz")
    strategy = AffinityTree(affinity=path, reuse_trained=False, search="exhaustive")
    # all distances 0: hard sharing is the cheapest tree for every alpha > 0, the only candidate
    assert strategy.initial_params(ctx) == [{"tree": 0}]
    result = run_strategy(strategy, ctx, params={"tree": 0})
    assert result.info["tree"] == [[["bin", "cls", "reg"]]] * 2 and result.info["estimator"] == "hand-made"
    assert result.info["n_candidates"] == 1 and result.info["prior_share"] == pytest.approx(1.0)
    assert result.epochs_run == 1  # trained by the engine, not in propose
    wrong = AffinityTree(affinity=AffinityTensor(["x", "y", "z"], np.ones((2, 3, 3)), "hand-made"))
    with pytest.raises(MTLSearchError, match="recompute it"):
        run_strategy(wrong, ctx, params={"tree": 0})


def _hand_tensor(tasks) -> AffinityTensor:
    """Tasks bin, cls, reg; bin and cls related (distance 0.1 after block 0, 0.25 after block 1),
    reg apart (0.9). Size-weighted per-depth costs: singletons 2a; P = {bin, cls}, {reg}:
    2/3 * d + a (1/15 + a, then 1/6 + a); one group 0.9. Trees (block 0, block 1):
    (S, S) = 4a, (P, S) = 1/15 + 3a, (P, P) = 7/30 + 2a, (H, H) = 1.8 ((H, S), (H, P) never
    win): breakpoints at a = 1/15, 1/6 and 47/60."""
    values = np.full((2, 3, 3), 0.1)
    values[0, 0, 1] = values[0, 1, 0] = 0.9
    values[1, 0, 1] = values[1, 1, 0] = 0.75
    for d in range(2):
        np.fill_diagonal(values[d], 1.0)
    return AffinityTensor(list(tasks), values, "hand-made")


SINGLE = [[["bin"], ["cls"], ["reg"]]] * 2
PAIR_SINGLES = [[["bin", "cls"], ["reg"]], [["bin"], ["cls"], ["reg"]]]
PAIR_PAIR = [[["bin", "cls"], ["reg"]]] * 2
HARD = [[["bin", "cls", "reg"]]] * 2


def test_candidates_are_the_distinct_trees_without_the_single_task_one():
    ctx = tiny_context()
    strategy = AffinityTree(affinity=_hand_tensor(ctx.task_names), search="exhaustive", alpha_range=(1e-3, 10.0))
    found = strategy.tree_candidates(ctx)
    assert [c.named(ctx.task_names) for c in found] == [PAIR_SINGLES, PAIR_PAIR, HARD]  # not SINGLE
    expected = [(1 / 15, 1 / 6), (1 / 6, 47 / 60), (47 / 60, 10.0)]
    for c, (lo, hi) in zip(found, expected):
        assert c.intervals == [(pytest.approx(lo), pytest.approx(hi))]
        assert not is_single_task(c.partitions)
        # the representative alpha builds this very tree
        built = build_tree(strategy.affinity_tensor(ctx).values, [0, 0], alpha=c.alpha, search="exhaustive")
        assert built.named(ctx.task_names) == c.named(ctx.task_names)
    # the single-task tree, 1e-3..1/15, is a candidate only when it is the only tree
    only = AffinityTree(affinity=_hand_tensor(ctx.task_names), search="exhaustive", alpha_range=(1e-4, 0.05))
    assert [c.named(ctx.task_names) for c in only.tree_candidates(ctx)] == [SINGLE]
    assert only.initial_params(ctx) == [{"tree": 0}]
    result = run_strategy(only, ctx, params={"tree": 0})
    assert result.info["tree"] == SINGLE and result.delta_mtl == pytest.approx(0.0, abs=1e-9)


def test_initial_params_put_the_widest_inner_interval_first():
    ctx = tiny_context()
    strategy = AffinityTree(affinity=_hand_tensor(ctx.task_names), search="exhaustive", alpha_range=(1e-3, 10.0))
    widths = [c.log_width for c in strategy.tree_candidates(ctx)]
    assert widths == pytest.approx([np.log10(2.5), np.log10(4.7), np.log10(600 / 47)])
    # inner trees by width (P, P: 0.67 decades, then P, S: 0.40); hard sharing, whose interval
    # only ends where the range does (1.11 decades, the widest), last
    assert strategy.initial_params(ctx) == [{"tree": 1}, {"tree": 0}, {"tree": 2}]


def test_a_study_tries_the_queued_trees_first_and_records_their_intervals():
    from mtlsearch.study import search
    from mtlsearch.testing import tiny_dataset

    ctx = tiny_context()
    strategy = AffinityTree(affinity=_hand_tensor(ctx.task_names), search="exhaustive", alpha_range=(1e-3, 10.0))
    result = search(strategy=strategy, dataset=tiny_dataset(), space=ctx.space, trials=4,
                    budget=ctx.budget, objectives=("delta_mtl",), progress=False)
    trials = result.study.get_trials()
    assert [t.params["tree"] for t in trials[:3]] == [1, 0, 2]
    infos = [t.user_attrs["info"] for t in trials]
    assert [i["tree"] for i in infos[:3]] == [PAIR_PAIR, PAIR_SINGLES, HARD]
    assert infos[0]["alpha_interval"] == [pytest.approx(1 / 6), pytest.approx(47 / 60)]
    assert infos[0]["prior_share"] == pytest.approx(np.log10(4.7) / 4)
    assert infos[0]["alpha"] == pytest.approx(np.sqrt(47 / 360))
    assert infos[3]["tree"] in (PAIR_PAIR, PAIR_SINGLES, HARD) and infos[3]["reused"] is True


def test_strategy_options_are_checked():
    with pytest.raises(MTLSearchError, match="alpha_sampling"):
        AffinityTree(alpha_sampling="grid")
    with pytest.raises(MTLSearchError, match="clustering cost"):
        AffinityTree(clustering="median")


def test_reference_and_affinity_share_one_single_task_training(monkeypatch):
    from collections import OrderedDict

    from mtlsearch.strategy import context as context_module
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


def test_another_process_on_the_cache_folder_loads_the_single_task_weights(monkeypatch,
                                                                          tmp_path):
    """A comparison's workers share the cache folder: the single-task networks one trained
    (for the reference) are loaded by another (for an affinity estimate), not trained again,
    with the same weights and charged the same compute."""
    from collections import OrderedDict
    from dataclasses import replace

    import torch

    from mtlsearch.engine.compute import meter
    from mtlsearch.strategy import context as context_module
    from mtlsearch.strategy.context import ResultCache
    from mtlsearch.testing import tiny_context

    def fresh_process():  # what a new process has in memory: nothing
        monkeypatch.setattr(context_module, "_SINGLE_TASK_WEIGHTS", OrderedDict())
        monkeypatch.setattr(context_module, "_SINGLE_TASK_COST", {})
        return replace(tiny_context(), cache=ResultCache(tmp_path / "cache"))

    calls = []
    train = SearchContext.train
    monkeypatch.setattr(SearchContext, "train",
                        lambda self, g, **kw: calls.append(g) or train(self, g, **kw))
    first = fresh_process()
    with meter() as trained:
        mine = first.single_task_model()
    assert len(calls) == 1 and list((tmp_path / "cache").glob("*.safetensors"))
    other = fresh_process()
    with meter() as loaded:
        theirs = other.single_task_model()
    assert len(calls) == 1  # loaded from the folder, not trained again
    assert trained.macs > 0 and loaded.macs == pytest.approx(trained.macs)
    for name, tensor in mine.state_dict().items():
        assert torch.equal(tensor, theirs.state_dict()[name]), name
    (next((tmp_path / "cache").glob("*.safetensors"))).write_bytes(b"not safetensors")
    fresh_process().single_task_model()  # a damaged file: trained again, with a warning
    assert len(calls) == 2
