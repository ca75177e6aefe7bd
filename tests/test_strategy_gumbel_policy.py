"""The gumbel_policy strategy (AdaShare): losses, curriculum, Gumbel decisions, soft forward,
sampling, ablations and the strategy's trial."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize, run_strategy
from mtlsearch.context import SearchContext
from mtlsearch.errors import MTLSearchError
from mtlsearch.plugins.gumbel_policy import (
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
from mtlsearch.testing import tiny_context, tiny_dataset
from mtlsearch.train import TrainConfig


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
    for kind, w in (("paper", paper_w), ("code", code_w)):
        expected = sum(
            w[d] * abs(ALPHA[k1, d] - ALPHA[k2, d])
            for k1 in range(T)
            for k2 in range(k1 + 1, T)
            for d in range(L)
        )
        assert float(sharing_loss(_logits_for(ALPHA), weights=kind)) == pytest.approx(expected, rel=1e-6)
    assert depth_weights(3).tolist() == pytest.approx(paper_w)
    assert float(sharing_loss(_logits_for(np.full((4, 3), 0.3)))) == 0.0


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
    settings = PolicySettings(warmup_epochs=0, policy_epochs=1, curriculum=1.0, policy_lr=0.1)
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
    assert params["tau0"] == 5.0 and 1e-3 <= params["lambda_sparsity"] <= 0.1
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
