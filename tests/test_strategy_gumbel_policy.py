"""The gumbel_policy strategy (AdaShare): losses, curriculum, Gumbel decisions, soft forward,
sampling, ablations and the strategy's trial."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize, run_strategy
from mtlsearch.engine.compute import forward_macs, meter
from mtlsearch.engine.train import TrainConfig, task_losses
from mtlsearch.errors import MTLSearchError
from mtlsearch.plugins.gumbel_policy import (
    INITIAL_PARAMS,
    GumbelPolicy,
    PolicySettings,
    PolicySupernet,
    decisions_to_graph,
    draw_policy,
    draw_task_correlation,
    learn_policy,
    random_like,
    sample_decisions,
    task_correlation,
)
from mtlsearch.plugins.gumbel_policy.losses import (
    annealed_temperature,
    curriculum_count,
    depth_weights,
    execute_probability,
    learning_mask,
    sharing_loss,
    soft_decisions,
    sparsity_loss,
    temperature,
)
from mtlsearch.plugins.gumbel_policy.sampling import graph_decisions, most_likely
from mtlsearch.strategy.context import SearchContext
from mtlsearch.testing import tiny_context, tiny_dataset


def _logits_for(alpha: np.ndarray) -> torch.Tensor:
    """Logits whose execute probability is exactly ``alpha``."""
    a = torch.tensor(alpha, dtype=torch.float64)
    return torch.stack([a.log(), (1 - a).log()], dim=-1)


ALPHA = np.array([[0.9, 0.2, 0.6], [0.5, 0.5, 0.1], [0.3, 0.8, 0.7]])


# ------------------------------------------------------------------------------- losses
def test_execute_probability_and_sparsity_match_hand_computation():
    logits = _logits_for(ALPHA)
    assert torch.allclose(execute_probability(logits), torch.tensor(ALPHA, dtype=torch.float64))
    paper = sum(math.log(a) for a in ALPHA.ravel())
    code = sum(-math.log(1 - a) for a in ALPHA.ravel())
    assert float(sparsity_loss(logits)) == pytest.approx(paper, rel=1e-9)
    assert float(sparsity_loss(logits, kind="code")) == pytest.approx(code, rel=1e-9)


def test_sharing_loss_matches_hand_computation():
    T, L = ALPHA.shape
    paper_w = [(L - d) / L for d in range(1, L + 1)]  # 2/3, 1/3, 0
    code_w = [(d + 1) / L for d in range(L)]  # 1/3, 2/3, 1
    shifted_w = [(L - d + 1) / L for d in range(1, L + 1)]  # 1, 2/3, 1/3
    for kind, w in (("paper", paper_w), ("code", code_w), ("shifted", shifted_w)):
        expected = sum(
            w[d] * abs(ALPHA[k1, d] - ALPHA[k2, d])
            for k1 in range(T)
            for k2 in range(k1 + 1, T)
            for d in range(L)
        )
        assert float(sharing_loss(_logits_for(ALPHA), weights=kind)) == pytest.approx(expected, rel=1e-6)
    # the default is the shifted weighting
    assert float(sharing_loss(_logits_for(ALPHA))) == pytest.approx(
        float(sharing_loss(_logits_for(ALPHA), weights="shifted")))
    assert float(sharing_loss(_logits_for(np.full((4, 3), 0.3)))) == 0.0


@pytest.mark.parametrize(
    ("L", "shifted", "paper", "code"),
    [
        (1, [1.0], [0.0], [1.0]),
        (2, [1.0, 0.5], [0.5, 0.0], [0.5, 1.0]),
        (4, [1.0, 0.75, 0.5, 0.25], [0.75, 0.5, 0.25, 0.0], [0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_depth_weights_by_hand(L, shifted, paper, code):
    assert depth_weights(L).tolist() == pytest.approx(shifted)  # default
    assert depth_weights(L, kind="paper").tolist() == pytest.approx(paper)
    assert depth_weights(L, kind="code").tolist() == pytest.approx(code)
    assert min(shifted) > 0  # every block feels the sharing loss, whatever L
    # a difference in the last block: only the paper's weights ignore it
    alpha = np.full((2, L), 0.5)
    alpha[1, -1] = 0.9
    assert float(sharing_loss(_logits_for(alpha), weights="paper")) == pytest.approx(0.0, abs=1e-9)
    assert float(sharing_loss(_logits_for(alpha))) == pytest.approx(0.4 / L, rel=1e-6)


def test_losses_reject_unknown_variants():
    with pytest.raises(MTLSearchError, match="sparsity"):
        sparsity_loss(torch.zeros(2, 2, 2), kind="l1")
    with pytest.raises(MTLSearchError, match="depth weights"):
        depth_weights(3, kind="flat")
    with pytest.raises(MTLSearchError, match="temperature"):
        soft_decisions(torch.zeros(1, 1, 2), 0.0)


# --------------------------------------------------------------------------- schedules
def test_curriculum_opens_blocks_from_the_last():
    # paper schedule: fraction = L / P, so in epoch e (of P = 8) the last e + 1 blocks learn
    L, P = 4, 8
    assert [curriculum_count(e / P, L, L / P) for e in range(P)] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert learning_mask(0.0, L, 0.5).tolist() == [False, False, False, True]
    assert learning_mask(0.2, L, 0.5).tolist() == [False, False, True, True]
    assert learning_mask(0.0, L, 0.0).all()  # no curriculum
    with pytest.raises(MTLSearchError, match="curriculum"):
        curriculum_count(0.0, L, 1.5)


def test_temperature_schedule():
    assert temperature(0, tau0=5.0, decay=0.965) == 5.0
    assert temperature(3, tau0=5.0, decay=0.965) == pytest.approx(5.0 * 0.965**3)
    s = PolicySettings(tau0=5.0, policy_epochs=5, tau_final_ratio=0.1)
    assert temperature(4, tau0=s.tau0, decay=s.decay) == pytest.approx(0.5)
    assert PolicySettings(tau_decay=0.965).decay == 0.965
    # default: geometric per policy step, tau0 at the first step, tau0 * ratio at the last
    assert s.tau(0, 0.0) == 5.0 and s.tau(4, 1.0) == pytest.approx(0.5)
    assert s.tau(2, 0.5) == pytest.approx(5.0 * 0.1**0.5)
    assert annealed_temperature(2.0, tau0=5.0, final_ratio=0.1) == pytest.approx(0.5)  # clamped
    # the official per-alternation decay when tau_decay is given
    official = PolicySettings(tau0=5.0, tau_decay=0.965)
    assert official.tau(3, 0.9) == pytest.approx(5.0 * 0.965**3)


def test_policy_steps_per_alternation():
    s = PolicySettings(policy_epochs=4, min_policy_steps=30)
    assert s.steps_per_alternation(3) == 8  # ceil(30 / 4) > one pass of 3 batches
    assert s.steps_per_alternation(20) == 20  # a pass over split B is never cut short
    assert PolicySettings(min_policy_steps=0).steps_per_alternation(3) == 3  # the paper's


def test_gumbel_decisions_become_one_hot_and_follow_the_policy():
    torch.manual_seed(0)
    logits = _logits_for(np.full((2000, 1), 0.8)).float()
    hard = soft_decisions(logits, 1e-4)
    one_hot = (hard < 1e-6) | (hard > 1 - 1e-6)
    assert float(one_hot.float().mean()) > 0.995  # one-hot as τ -> 0 (a tie can stay soft)
    assert float(hard.mean()) == pytest.approx(0.8, abs=0.03)  # ... sampled from π
    soft = soft_decisions(logits, 5.0)
    assert float(((soft > 0.01) & (soft < 0.99)).float().mean()) > 0.9  # smooth at τ = 5


# ---------------------------------------------------------------------------- supernet
def _resnet_model(seed: int = 0):
    space = create_space("resnet18", input_shape=(1, 8, 8), width=4, small_input=True)
    tasks = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c", kind="regression")]
    torch.manual_seed(seed)
    model = materialize(SharingGraph.hard_sharing(["a", "b", "c"], space.num_blocks), space, tasks)
    return space, tasks, model


def test_all_execute_policy_reproduces_hard_sharing():
    _, _, model = _resnet_model()
    net = PolicySupernet(model)
    assert net.policy_blocks == list(range(1, 9))  # the stem cannot be skipped
    x = torch.randn(5, 1, 8, 8)
    ones = [None] + [torch.ones(3) for _ in net.policy_blocks]
    for train in (False, True):
        model.train(train)
        with torch.no_grad():
            ref = model(x)
            exact = net(x)
            soft = net(x, ones)
        for t in ref:
            assert torch.equal(exact[t], ref[t])
            assert torch.allclose(soft[t], ref[t], atol=1e-5), t


def test_hard_decisions_match_the_sampled_architecture():
    space, tasks, model = _resnet_model()
    net = PolicySupernet(model).eval()
    decisions = np.array(
        [[1, 0, 1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1, 0, 1]], dtype=bool
    )
    graph = decisions_to_graph(model.graph, decisions, net.policy_blocks)
    assert (graph_decisions(graph, net.policy_blocks) == decisions).all()
    discrete = materialize(graph, space, tasks)
    own = discrete.state_dict()
    # block 5 is skipped by every task: the executor keeps only its projection shortcut
    state = {k.replace("block.downsample", "projection") if k.startswith("blocks.b5_0") else k: v
             for k, v in model.state_dict().items()}
    discrete.load_state_dict({k: v for k, v in state.items() if k in own})
    discrete.eval()
    x = torch.randn(4, 1, 8, 8)
    hard = [None] + [torch.tensor(decisions[:, j], dtype=torch.float32) for j in range(8)]
    with torch.no_grad():
        soft, ref = net(x, hard), discrete(x)
    for t in ref:
        assert torch.allclose(soft[t], ref[t], atol=1e-5), t


def test_supernet_rejects_a_branched_model_and_bad_decisions():
    space, tasks, model = _resnet_model()
    tree = SharingGraph.single_task(["a", "b", "c"], space.num_blocks)
    with pytest.raises(MTLSearchError, match="hard-sharing"):
        PolicySupernet(materialize(tree, space, tasks))
    net = PolicySupernet(model)
    with pytest.raises(MTLSearchError, match="cannot be skipped"):
        net(torch.randn(2, 1, 8, 8), [torch.ones(3)] + [None] * 8)


def test_per_sample_decisions_mix_each_sample_with_its_own_decision():
    _, _, model = _resnet_model()
    net = PolicySupernet(model).eval()  # eval: batch norm does not couple the samples
    torch.manual_seed(1)
    x = torch.randn(4, 1, 8, 8)
    per_sample = [None] + [(torch.rand(3, 4) > 0.5).float() for _ in net.policy_blocks]
    with torch.no_grad():
        joint = net(x, per_sample)
        for j in range(4):
            alone = net(x[j : j + 1], [None] + [d[:, j] for d in per_sample[1:]])
            for t in joint:
                assert torch.allclose(joint[t][j : j + 1], alone[t], atol=1e-5), (t, j)
    torch.manual_seed(0)
    v = soft_decisions(torch.zeros(3, 8, 2), 1.0, samples=5)
    assert v.shape == (3, 8, 5) and v.std() > 0.05  # an independent draw per sample


def test_supernet_forward_macs_by_hand():
    _, _, model = _mlp_setup(widths=(8, 8, 8))  # blocks 6->8, 8->8, 8->8; heads 8x1, 8x3, 8x1
    net = PolicySupernet(model)
    hard = 48 + 64 + 64 + (8 + 24 + 8)
    assert net.forward_macs() == hard == forward_macs(model)
    assert net.forward_macs([False, True, False]) == 48 + 3 * (64 + 64) + 40  # stacked from block 1
    assert net.forward_macs([False, False, True]) == 48 + 64 + 3 * 64 + 40
    with pytest.raises(MTLSearchError, match="one entry per block"):
        net.forward_macs([True])


# ----------------------------------------------------------------------- policy phase
def _mlp_setup(n: int = 128, widths=(8, 8, 8, 8)):
    space = create_space("mlp", input_shape=(6,), widths=widths)
    data = tiny_dataset((6,), n=n)
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(data.task_names, space.num_blocks), space, data.tasks)
    return space, data, model


def test_curriculum_freezes_exactly_the_closed_blocks():
    _, data, model = _mlp_setup()
    assert PolicySupernet(model).policy_blocks == [1, 2, 3]
    a = data.train.subset(range(0, 16))
    b = data.train.subset(range(16, 32))
    # one alternation over 2 policy batches, curriculum over the whole phase: batch 0 trains
    # the last block, batch 1 the last two; the first policy block never learns
    settings = PolicySettings(warmup_epochs=0, policy_epochs=1, curriculum=1.0, policy_lr=0.1, min_policy_steps=0)
    result = learn_policy(model, a, b, settings, TrainConfig(epochs=1, batch_size=8))
    logits = result.logits
    assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))
    assert (logits[:, 1] != 0).any() and (logits[:, 2] != 0).any()
    assert result.history[0]["learning_blocks"] == 2


def test_policy_learning_is_seeded_and_moves_the_weights():
    _, data, model = _mlp_setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = data.train.subset(range(0, 30)), data.train.subset(range(30, 60))
    settings = PolicySettings(warmup_epochs=1, policy_epochs=2, curriculum=0.0)
    cfg = TrainConfig(epochs=1, batch_size=16, seed=3)
    first = learn_policy(model, a, b, settings, cfg)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    _, _, again = _mlp_setup()
    second = learn_policy(again, a, b, settings, cfg)
    assert torch.equal(first.logits, second.logits)
    assert set(first.seconds) >= {"warmup_epoch", "alternation"}


def test_sparsity_pushes_towards_skipping():
    _, data, model = _mlp_setup()
    a, b = data.train.subset(range(0, 30)), data.train.subset(range(30, 60))
    settings = PolicySettings(warmup_epochs=0, policy_epochs=3, curriculum=0.0, lambda_sparsity=5.0,
                              lambda_sharing=0.0, policy_lr=0.1)
    result = learn_policy(model, a, b, settings, TrainConfig(epochs=1, batch_size=16))
    assert result.probabilities().max() < 0.5


# A case with a known answer: block 2 of an MLP outputs zeros for everyone (executing it
# destroys the features) and the heads were trained on block 1's features with block 2
# skipped, so every task should execute block 1 and skip block 2. The weight optimizer's
# learning rate is negligible, so the policy is learned on a fixed network and the answer can
# be checked against an exhaustive search over all 2^(3*2) decision matrices.
FROZEN = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=1e-12, momentum=0.0)


@pytest.fixture(scope="module")
def clear_case():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the suite's one-thread fixture
    space = create_space("mlp", input_shape=(6,), widths=(8, 8, 8))
    data = tiny_dataset((6,), n=256)
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(data.task_names, 3), space, data.tasks)
    net = PolicySupernet(model).train()
    skip_last = [None, torch.ones(3), torch.zeros(3)]
    opt = torch.optim.Adam(net.weights(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        for x, y in data.train.batches(32, shuffle=True, generator=gen):
            loss = sum(task_losses(net, net(x, skip_last), y).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        for p in net._blocks[2].parameters():
            p.zero_()
    n = len(data.train) // 2
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.set_num_threads(threads)
    return space, data, state, data.train.subset(range(n)), data.train.subset(range(n, len(data.train)))


def _fresh(clear_case):
    space, data, state, a, b = clear_case
    model = materialize(SharingGraph.hard_sharing(data.task_names, 3), space, data.tasks)
    model.load_state_dict(state)
    return model, a, b


def _exhaustive_best(model, split) -> np.ndarray:
    net = PolicySupernet(model).train()
    losses = {}
    with torch.no_grad():
        for bits in itertools.product([0.0, 1.0], repeat=6):
            d = torch.tensor(bits).reshape(3, 2)
            out = net(split.inputs, [None, d[:, 0], d[:, 1]])
            losses[bits] = float(sum(task_losses(net, out, split.targets).values()))
    ranked = sorted(losses, key=losses.get)
    assert losses[ranked[1]] - losses[ranked[0]] > 0.05  # the answer is clear
    return np.array(ranked[0], dtype=bool).reshape(3, 2)


def test_policy_ends_decisively_on_a_clear_case(clear_case):
    model, a, b = _fresh(clear_case)
    best = _exhaustive_best(model, b)
    assert best.tolist() == [[True, False]] * 3
    settings = PolicySettings(warmup_epochs=0, policy_epochs=2, curriculum=0.0,
                              lambda_sparsity=0.01, lambda_sharing=0.01)
    result = learn_policy(model, a, b, settings, FROZEN)
    probs = result.probabilities()
    assert (most_likely(probs) == best).all()
    assert probs[:, 0].min() > 0.9 and probs[:, 1].max() < 0.1  # decisive, far from 0.5
    assert sum(h["policy_steps"] for h in result.history) >= settings.min_policy_steps


def test_moderate_sparsity_keeps_the_blocks_a_task_needs(clear_case):
    # λ_sp = 0.05: "cls" has random labels (nothing to learn, block 1 cannot help it), so
    # sparsity may drop its block 1; "bin" and "reg" need block 1 and keep it
    model, a, b = _fresh(clear_case)
    settings = PolicySettings(warmup_epochs=0, policy_epochs=2, curriculum=0.0,
                              lambda_sparsity=0.05, lambda_sharing=0.01)
    probs = learn_policy(model, a, b, settings, FROZEN).probabilities()
    tasks = model.tasks
    for task in ("bin", "reg"):
        assert probs[tasks.index(task), 0] > 0.9
    assert probs[:, 1].max() < 0.1 and most_likely(probs).any()


def test_paper_schedule_leaves_the_clear_case_undecided(clear_case):
    # one pass over split B per alternation (3 steps here), one Gumbel draw per batch: the
    # logits barely leave 0.5, which is what the minimum number of policy steps fixes
    model, a, b = _fresh(clear_case)
    settings = PolicySettings(warmup_epochs=0, policy_epochs=2, curriculum=0.0, lambda_sparsity=0.01,
                              lambda_sharing=0.01, min_policy_steps=0, noise="batch", sharing_weights="paper")
    result = learn_policy(model, a, b, settings, FROZEN)
    assert [h["policy_steps"] for h in result.history] == [3, 3]
    probs = result.probabilities()
    assert 0.4 < probs.min() and probs.max() < 0.6


def test_space_without_skippable_blocks_is_a_clear_error():
    space = create_space("mlp", input_shape=(6,), widths=(8, 16))
    data = tiny_dataset((6,), n=64)
    model = materialize(SharingGraph.hard_sharing(data.task_names, 2), space, data.tasks)
    with pytest.raises(MTLSearchError, match="no block a task may skip"):
        learn_policy(model, data.train, data.train, PolicySettings(), TrainConfig(epochs=1))


def test_bad_settings_name_the_field():
    with pytest.raises(MTLSearchError, match="policy_epochs"):
        PolicySettings(policy_epochs=0)
    with pytest.raises(MTLSearchError, match="ablation"):
        GumbelPolicy(ablation="dropout")
    with pytest.raises(MTLSearchError, match="tau0"):
        GumbelPolicy(tau0=-1.0)
    with pytest.raises(MTLSearchError, match="unknown training settings"):
        GumbelPolicy(weight_overrides={"learning_rate": 0.1})


# --------------------------------------------------------------------------- sampling
def test_sampling_and_random_policies_keep_the_counts():
    rng = np.random.default_rng(0)
    probs = np.array([[0.95, 0.05, 0.5], [0.5, 0.5, 0.5]])
    samples = np.array(sample_decisions(probs, 4000, rng))
    assert np.allclose(samples.mean(axis=0), probs, atol=0.03)
    assert most_likely(probs).tolist() == [[True, False, True], [True, True, True]]
    d = np.array([[1, 0, 0, 1], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    for _ in range(20):
        r1, r2 = random_like(d, "random1", rng), random_like(d, "random2", rng)
        assert (~r1).sum() == (~d).sum()
        assert ((~r2).sum(axis=1) == (~d).sum(axis=1)).all()
    with pytest.raises(MTLSearchError, match="random policy"):
        random_like(d, "random3", rng)


# --------------------------------------------------------------------------- strategy
FIXED = {"lambda_sparsity": 0.01, "lambda_sharing": 0.05, "tau0": 5.0, "warmup_fraction": 0.3, "curriculum": 0.5}


def _ctx(seed: int = 0) -> SearchContext:
    space = create_space("mlp", input_shape=(6,), widths=(8, 8, 8))
    return tiny_context(space, seed=seed)


def test_trial_retrains_candidates_and_proposes_the_best():
    ctx = _ctx()
    result = run_strategy(GumbelPolicy(num_samples=3, **FIXED), ctx)
    info = result.info
    records = info["candidates"]
    assert 1 <= len(records) <= 4 and records[0]["label"] == "most_likely"
    assert len({tuple(r["decisions"]) for r in records}) == len(records)  # no duplicates
    best = max(range(len(records)), key=lambda i: records[i]["delta_mtl"])
    assert info["chosen"] == best
    assert result.delta_mtl == pytest.approx(records[best]["delta_mtl"], abs=1e-6)
    graph = SharingGraph.from_dict(result.graph)
    assert graph_decisions(graph, info["policy_blocks"]).tolist() == [
        [c == "1" for c in row] for row in records[best]["decisions"]
    ]
    again = run_strategy(GumbelPolicy(num_samples=3, **FIXED), _ctx())
    assert again.info["probabilities"] == info["probabilities"]
    assert again.delta_mtl == result.delta_mtl


def test_trial_samples_the_hyper_parameters():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = GumbelPolicy(tau0=5.0).sample_params(trial)
    assert set(trial.params) == {"lambda_sparsity", "lambda_sharing", "warmup_fraction", "curriculum"}
    assert params["tau0"] == 5.0 and 1e-4 <= params["lambda_sparsity"] <= 1e-2
    settings = GumbelPolicy(search_epochs=10).settings_for(TrainConfig(epochs=3), {**FIXED, "warmup_fraction": 0.2})
    assert (settings.warmup_epochs, settings.policy_epochs) == (2, 8)
    small = GumbelPolicy().settings_for(TrainConfig(epochs=1), FIXED)
    assert (small.warmup_epochs, small.policy_epochs) == (1, 1)


def test_random2_ablation_reuses_the_policy_and_matches_counts():
    ctx = _ctx()
    ada = run_strategy(GumbelPolicy(num_samples=3, **FIXED), ctx)
    rnd = run_strategy(GumbelPolicy(num_samples=3, ablation="random2", **FIXED), ctx)
    assert rnd.info["probabilities"] == ada.info["probabilities"]  # cached policy
    assert all(r["label"].startswith("random2_of_") for r in rnd.info["candidates"])
    # each random twin keeps the per-task skip counts of the decision it was drawn for
    strategy = GumbelPolicy(num_samples=3, ablation="random2", **FIXED)
    policy = strategy.learn(ctx, strategy.settings_for(ctx.budget, FIXED))
    plain = GumbelPolicy(num_samples=3, **FIXED)
    seed = 123
    twins = dict(strategy.candidates(policy, seed))
    for label, d in plain.candidates(policy, seed):
        twin = twins.get(f"random2_of_{label}")
        if twin is not None:
            assert ((~twin).sum(axis=1) == (~d).sum(axis=1)).all()


def _step_rows(n: int, batch_size: int, steps: int) -> int:
    """Rows of ``steps`` batches going round a split of ``n`` samples."""
    one_pass = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    return sum(one_pass[i % len(one_pass)] for i in range(steps))


def test_trial_compute_counts_the_policy_phase_and_every_candidate():
    import optuna

    ctx = _ctx()
    ctx.reference()  # the shared single-task reference is not the trial's compute
    fixed = {**FIXED, "curriculum": 0.0}  # every block open at every step: one soft cost
    strategy = GumbelPolicy(num_samples=3, min_policy_steps=7, **fixed)
    with meter() as m:
        proposal = strategy.propose(optuna.trial.FixedTrial({}), ctx)
    settings = strategy.settings_for(ctx.budget, fixed)
    n, bs, T = len(ctx.data.train), ctx.budget.batch_size, len(ctx.tasks)
    n_a, n_b = n // 2, n - n // 2
    P = settings.policy_epochs
    steps = settings.steps_per_alternation(math.ceil(n_b / bs))
    assert steps == 7 and [h["policy_steps"] for h in proposal.info["policy_history"]] == [7] * P
    # mlp (8, 8, 8) on 6 inputs: blocks 48, 64, 64 MACs, heads 8 + 24 + 8; the soft forward
    # runs both policy blocks on the T tasks' stacked activations
    hard, soft = 48 + 64 + 64 + 40, 48 + T * (64 + 64) + 40
    policy_rows = P * _step_rows(n_b, bs, steps)
    policy_macs = settings.warmup_epochs * n_a * hard + P * n_a * soft + policy_rows * soft
    records = proposal.info["candidates"]
    base = ctx.new_graph("hard_sharing")
    candidate_macs = 0
    for r in records:
        decisions = np.array([[c == "1" for c in row] for row in r["decisions"]])
        graph = decisions_to_graph(base, decisions, proposal.info["policy_blocks"])
        model = materialize(graph, ctx.space, ctx.tasks)
        candidate_macs += ctx.budget.epochs * n * forward_macs(model)
    assert m.macs == pytest.approx(policy_macs + candidate_macs)
    assert m.networks == 1 + len(records)
    assert m.samples == settings.warmup_epochs * n_a + P * n_a + policy_rows + len(records) * ctx.budget.epochs * n


def test_stochastic_depth_is_charged():
    ctx = _ctx()
    ctx.reference()
    with meter() as m:
        GumbelPolicy(ablation="stochastic_depth").propose(None, ctx)
    n, T = len(ctx.data.train), len(ctx.tasks)
    assert m.macs == ctx.budget.epochs * n * (48 + T * (64 + 64) + 40)  # all policy blocks decided
    assert (m.networks, m.samples) == (1, ctx.budget.epochs * n)


def test_initial_params_are_enqueued_as_the_first_trials():
    import optuna

    strategy = GumbelPolicy()
    initial = strategy.initial_params(_ctx())
    assert initial == [dict(p) for p in INITIAL_PARAMS] and len(initial) == 2
    study = optuna.create_study()
    for params in initial:
        study.enqueue_trial(params)
    for params in initial:
        assert strategy.sample_params(study.ask()) == params  # inside the sampled ranges
    partly = GumbelPolicy(tau0=2.0, curriculum=0.0).initial_params(_ctx())
    assert all(set(p) == {"lambda_sparsity", "lambda_sharing", "warmup_fraction"} for p in partly)


def test_stochastic_depth_ablation_proposes_trained_hard_sharing():
    ctx = _ctx()
    result = run_strategy(GumbelPolicy(ablation="stochastic_depth"), ctx)
    graph = SharingGraph.from_dict(result.graph)
    assert graph.branches_per_depth() == [1, 1, 1] and not any(graph.skips().values())
    assert result.epochs_run == 0  # the weights came with the proposal
    assert result.info["survival"] == pytest.approx([0.75, 0.5])


# ----------------------------------------------------------------------------- plots
def test_pictures_are_written(tmp_path):
    probs = np.array([[0.9, 0.1, 0.6], [0.8, 0.2, 0.4]])
    draw_policy(probs, ["a", "b"], [1, 2, 3], most_likely(probs), tmp_path / "policy")
    draw_task_correlation(probs, ["a", "b"], tmp_path / "corr.png")
    for name in ("policy.png", "policy.svg", "corr.png", "corr.svg"):
        assert (tmp_path / name).stat().st_size > 0
    sim = task_correlation(probs)
    expected = probs[0] @ probs[1] / np.linalg.norm(probs[0]) / np.linalg.norm(probs[1])
    assert sim[0, 1] == pytest.approx(expected) and sim[0, 0] == pytest.approx(1.0)
