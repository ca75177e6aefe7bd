"""Loss weighting and gradient aggregation: each method against a hand computation on a toy,
the torchjd-backed ones against torchjd's own output, the shared/specific split, the trainer's
rules (one-task sampling, DDP, bf16, compute), determinism, export and the joint search."""

from __future__ import annotations

import math
import sys
import types

import optuna
import pytest
import torch
from torch import nn

import mtlsearch
from mtlsearch import MTLSearchError, SharingGraph, TaskSpec, TrainConfig, create_space
from mtlsearch.engine.compute import meter
from mtlsearch.engine.model import materialize, module_key
from mtlsearch.engine.train import Trainer, build_and_train
from mtlsearch.engine.weighting import (
    BACKWARD_SHARE,
    DynamicWeightAverage,
    GradNorm,
    ParameterSplit,
    RandomLossWeighting,
    UncertaintyWeighting,
    WeightingStep,
    split_parameters,
)
from mtlsearch.engine.weighting.builtin import dwa_weights
from mtlsearch.errors import TrainingError
from mtlsearch.graph.space import from_modules
from mtlsearch.registry import (
    create_weighting,
    get_weighting_class,
    list_weightings,
    tiny_settings,
)
from mtlsearch.study.weighting_search import sample_weighting, weighting_choices
from mtlsearch.testing import tiny_dataset

CPU = torch.device("cpu")
DATA = tiny_dataset((6,), n=64)
NAMES = [t.name for t in DATA.tasks]
SPACE = create_space("mlp", input_shape=(6,), widths=(8, 8))
HARD = SharingGraph.hard_sharing(NAMES, 2)


def _train(graph: SharingGraph = HARD, **settings):
    config = TrainConfig(epochs=2, batch_size=32, device="cpu", **settings)
    return build_and_train(graph, SPACE, DATA.tasks, DATA.train, DATA.val, config)


def _losses(*values: float, grad: bool = False) -> dict[str, torch.Tensor]:
    return {t: torch.tensor(v, requires_grad=grad) for t, v in zip("abc", values)}


# ------------------------------------------------------------------ uncertainty weighting
def test_uncertainty_weighting_loss_is_the_papers_with_its_half_factors():
    uw = UncertaintyWeighting()
    uw.setup(["a", "b"], device=CPU)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))
    loss = uw.combine(_losses(2.0, 4.0), None)
    # ½ e^0 · 2 + ½ · 0  +  ½ · ¼ · 4 + ½ log 4
    assert float(loss.detach()) == pytest.approx(1.0 + 0.5 + 0.5 * math.log(4.0))
    loss.backward()
    # ∂/∂s = ½ - ½ e^{-s} L: zero where e^s = L (task b), -½ for task a (e^0 = 1 < L = 2)
    assert uw.log_var.grad.tolist() == pytest.approx([-0.5, 0.0])
    assert uw.weights() == pytest.approx({"a": 0.5, "b": 0.125})


def test_uncertainty_weighting_matches_torchjd_and_weighs_a_single_task():
    from torchjd.scalarization import UW

    uw = UncertaintyWeighting(init=0.3)
    uw.setup(["a", "b", "c"], device=CPU)
    theirs = UW(3)
    with torch.no_grad():
        theirs.log_var.fill_(0.3)
    values = torch.tensor([0.7, 1.9, 0.2])
    assert float(uw.combine(dict(zip("abc", values)), None).detach()) == pytest.approx(
        float(theirs(values).detach()))
    alone = uw.combine({"b": torch.tensor(1.9)}, None)  # one-task sampling: its own term only
    assert float(alone.detach()) == pytest.approx(0.5 * math.exp(-0.3) * 1.9 + 0.15)


# ------------------------------------------------------------------ dynamic weight average
def test_dwa_weights_from_the_last_two_epochs_of_losses():
    dwa = DynamicWeightAverage(temperature=2.0)
    dwa.setup(["a", "b"], device=CPU)
    epochs = [[(4.0, 2.0), (2.0, 2.0)], [(2.0, 1.0)], [(1.0, 1.0)]]  # per epoch: per-step losses
    seen = []
    for steps in epochs:
        for a, b in steps:
            seen.append(float(dwa.combine(_losses(a, b), None)))
        dwa.end_epoch(len(seen))
    # epochs 0 and 1 weigh 1 and 1: the first steps' losses are plain sums
    assert seen[:3] == [6.0, 4.0, 3.0]
    # epoch 2: ratios of epoch means, epoch 1 / epoch 0 = (2/3, 1/2)
    r = torch.tensor([2.0 / 3.0, 0.5])
    want = 2 * torch.exp(r / 2) / torch.exp(r / 2).sum()
    assert seen[3] == pytest.approx(float(want[0] * 1.0 + want[1] * 1.0))
    # after epoch 2: ratios (1/2, 1)
    r = torch.tensor([0.5, 1.0])
    assert list(dwa.weights().values()) == pytest.approx(
        (2 * torch.softmax(r / 2, dim=0)).tolist())


def test_dwa_matches_torchjd_over_epochs():
    from torchjd.scalarization import DWA

    ours, theirs = DynamicWeightAverage(temperature=1.5), DWA(temperature=1.5)
    ours.setup(["a", "b", "c"], device=CPU)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        for _ in range(3):
            values = torch.rand(3, generator=gen) + 0.1
            assert float(ours.combine(dict(zip("abc", values)), None)) == pytest.approx(
                float(theirs(values)), rel=1e-6)
        ours.end_epoch(0)
        theirs.step()


def test_dwa_weights_need_two_epochs_and_keep_missing_tasks_at_one():
    assert dwa_weights([torch.tensor([1.0, 2.0])], 2.0).tolist() == [1.0, 1.0]
    older = torch.tensor([1.0, math.nan])  # task b had no step in that epoch
    w = dwa_weights([older, torch.tensor([2.0, 1.0])], 1.0)
    assert w.tolist() == pytest.approx((2 * torch.softmax(torch.tensor([2.0, 1.0]), 0)).tolist())


# ------------------------------------------------------------------------------ GradNorm
def test_gradnorm_weight_update_by_hand():
    gn = GradNorm(alpha=1.0, lr=0.1)
    gn.setup(["a", "b"], device=CPU)
    gn.initial = torch.tensor([4.0, 4.0])
    gn.update(torch.tensor([2.0, 1.0]), norms=torch.tensor([3.0, 1.0]))
    # L̃ = (0.5, 0.25), r = (4/3, 2/3); G = (3, 1), mean 2, target (8/3, 4/3): G_a is above
    # its target, G_b below; w = (1 - 0.1·3, 1 + 0.1·1) = (0.7, 1.1), rescaled to sum to 2
    assert gn.w.tolist() == pytest.approx([0.7 * 2 / 1.8, 1.1 * 2 / 1.8])


def test_gradnorm_on_a_linear_model_takes_the_norms_at_the_shared_layer():
    space = from_modules([nn.Linear(2, 2, bias=False)], input_shape=(2,))
    tasks = [TaskSpec("a", kind="regression"), TaskSpec("b", kind="regression")]
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(["a", "b"], 1), space, tasks)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = {"a": torch.tensor([[1.0], [0.0], [2.0]]), "b": torch.tensor([[0.0], [1.0], [-1.0]])}
    out = model(x)
    losses = {t: ((out[t] - y[t]) ** 2).mean() for t in "ab"}
    (W,) = split_parameters(model).last_shared
    hand = []
    with torch.no_grad():  # ∇_W L_t = (2/n) h_t ⊗ Σ_i e_ti x_i for pred = h_t·(W x) + c_t
        for t in "ab":
            head = model.heads[t].linear
            err = (out[t] - y[t]).reshape(-1)
            grad = (2 / len(x)) * head.weight.reshape(-1, 1) * (err @ x).reshape(1, -1)
            hand.append(float(grad.norm()))
    gn = GradNorm(alpha=0.5, lr=0.05)
    gn.setup(["a", "b"], device=CPU)
    loss = gn.combine(losses, WeightingStep(0, 0, ["a", "b"], model))
    assert float(loss.detach()) == pytest.approx(float(losses["a"] + losses["b"]))  # w = 1
    g = torch.tensor(hand)  # first step: L̃ = 1, r = 1, target = mean(G)
    want = torch.ones(2) - 0.05 * torch.sign(g - g.mean()) * g
    assert gn.w.tolist() == pytest.approx((want * 2 / want.sum()).tolist(), rel=1e-5)


def test_gradnorm_needs_a_block_every_task_shares():
    single = SharingGraph.single_task(NAMES, 2)
    with pytest.raises(TrainingError, match="no block common to all"):
        _train(single, weighting="gradnorm")


# ------------------------------------------------------------------ random loss weighting
def test_random_weighting_is_a_softmax_of_seeded_normal_draws_as_torchjds():
    from torchjd.scalarization import Random

    rlw = RandomLossWeighting()
    rlw.setup(["a", "b", "c"], device=CPU, seed=5)
    gen = torch.Generator().manual_seed(7)  # seed + 2
    for _ in range(2):
        values = _losses(1.0, 2.0, 4.0)
        lam = torch.softmax(torch.randn(3, generator=gen), dim=0)
        assert float(rlw.combine(values, None)) == pytest.approx(float(lam @ torch.tensor(
            [1.0, 2.0, 4.0])))
        assert list(rlw.weights().values()) == pytest.approx(lam.tolist())
    torch.manual_seed(7)  # torchjd draws the same from the global generator seeded alike
    check = RandomLossWeighting()
    check.setup(["a", "b", "c"], device=CPU, seed=5)
    assert float(Random()(torch.tensor([1.0, 2.0, 4.0]))) == pytest.approx(
        float(check.combine(_losses(1.0, 2.0, 4.0), None)))
    assert float(rlw.combine({"a": torch.tensor(3.0)}, None)) == 3.0  # one task: weight 1


# ------------------------------------------------------------------- torchjd aggregators
def _toy_step(jacobian: torch.Tensor):
    """Losses linear in one shared vector p (their Jacobian is ``jacobian``) plus one own
    parameter per task (gradient 2 each)."""
    p = nn.Parameter(torch.zeros(jacobian.shape[1]))
    own = [nn.Parameter(torch.zeros(())) for _ in range(len(jacobian))]
    tasks = [f"t{i}" for i in range(len(jacobian))]
    losses = {t: jacobian[i] @ p + 2 * own[i] for i, t in enumerate(tasks)}
    split = ParameterSplit(tasks=tuple(tasks), shared=(p,),
                           specific={t: (own[i],) for i, t in enumerate(tasks)})
    step = types.SimpleNamespace(split=split, tasks=tasks, parallel_chunk_size=None)
    return p, own, losses, step


def _aggregate(name: str, jacobian: torch.Tensor, **kwargs):
    weighting = create_weighting(name, **kwargs)
    p, own, losses, step = _toy_step(jacobian)
    weighting.setup(step.tasks, device=CPU, seed=0)
    weighting.backward(losses, step)
    assert [float(q.grad) for q in own] == [2.0] * len(own)  # each task's own gradient only
    return p.grad, weighting


def test_pcgrad_projects_two_conflicting_gradients():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1·g2 = -1 < 0
    grad, _ = _aggregate("pcgrad", torch.stack([g1, g2]))
    pc1 = g1 - (g1 @ g2) / (g2 @ g2) * g2  # (0.5, 0.5)
    pc2 = g2 - (g2 @ g1) / (g1 @ g1) * g1  # (0, 1)
    assert grad.tolist() == pytest.approx((pc1 + pc2).tolist())
    same, _ = _aggregate("pcgrad", torch.stack([g1, torch.tensor([1.0, 1.0])]))  # no conflict
    assert same.tolist() == pytest.approx([2.0, 1.0])


@pytest.mark.parametrize("name", ["upgrad", "mgda", "dualproj", "imtl_g", "aligned_mtl"])
def test_aggregators_give_torchjds_own_output(name):
    import torchjd.aggregation as agg

    jacobian = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 1.0, 2.0], [0.3, 0.0, -1.0, 1.0]])
    grad, weighting = _aggregate(name, jacobian)
    theirs = getattr(agg, weighting.aggregator)()(jacobian)
    assert grad.tolist() == pytest.approx(theirs.tolist(), abs=1e-6)
    assert sorted(weighting.weights()) == ["t0", "t1", "t2"]


def test_aggregator_arguments_go_to_torchjd():
    import torchjd.aggregation as agg

    jacobian = torch.tensor([[1.0, 0.0], [-0.5, 1.0]])
    grad, _ = _aggregate("upgrad", jacobian, pref_vector=[1.0, 3.0])  # a list becomes a tensor
    want = agg.UPGrad(pref_vector=torch.tensor([1.0, 3.0]))(jacobian)
    assert grad.tolist() == pytest.approx(want.tolist(), abs=1e-6)
    with pytest.raises(MTLSearchError, match="weighting 'mgda' cannot take .*epsilonn"):
        create_weighting("mgda", epsilonn=0.1)


# ------------------------------------------------------------------ shared / specific split
def test_split_of_a_small_tree_by_hand():
    graph = SharingGraph.from_partitions(NAMES, [[NAMES], [["bin", "cls"], ["reg"]],
                                                 [["bin"], ["cls"], ["reg"]]])
    space = create_space("mlp", input_shape=(6,), widths=(8, 8, 8))
    model = materialize(graph, space, DATA.tasks)
    block = {n: set(map(id, model.blocks[module_key(n)].parameters()))
             for n in graph.block_nodes()}
    head = {t: set(map(id, model.heads[t].parameters())) for t in NAMES}
    node = {t: graph.route(t) for t in NAMES}  # [depth 0, depth 1, depth 2]
    ids = lambda params: set(map(id, params))  # noqa: E731

    split = split_parameters(model)
    assert ids(split.shared) == block[node["bin"][0]] | block[node["bin"][1]]
    assert ids(split.specific["bin"]) == block[node["bin"][2]] | head["bin"]
    assert ids(split.specific["reg"]) == block[node["reg"][1]] | block[node["reg"][2]] | head["reg"]
    assert ids(split.last_shared) == block[node["bin"][0]]  # the root is the last common block
    assert split.shared_macs == space.block_cost(0).macs + space.block_cost(1).macs

    pair = split_parameters(model, ["bin", "reg"])  # the {bin, cls} branch is bin's alone now
    assert ids(pair.shared) == block[node["bin"][0]]
    assert ids(pair.specific["bin"]) == block[node["bin"][1]] | block[node["bin"][2]] | head["bin"]
    assert "cls" not in pair.specific
    single = split_parameters(materialize(SharingGraph.single_task(NAMES, 3), space, DATA.tasks))
    assert single.shared == () and single.last_shared == ()


def test_aggregators_train_a_tree_where_only_the_prefix_is_shared():
    graph = SharingGraph.from_partitions(NAMES, [[NAMES], [["bin"], ["cls"], ["reg"]]])
    result = _train(graph, weighting="upgrad")
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert sorted(result.weighting["weights"]) == sorted(NAMES)


@pytest.mark.parametrize("name", ["mgda", "upgrad"])
def test_a_block_some_tasks_reach_is_aggregated_over_their_gradients_only(name):
    """In a tree, the {bin, cls} branch gets torchjd's aggregation of bin's and cls's
    gradients alone, the root that of all three: reg's zero row would make MGDA's min-norm
    point the zero vector and the branch would never train."""
    import torchjd.aggregation

    from mtlsearch.engine.train import task_losses
    from mtlsearch.engine.weighting.base import WeightingStep

    graph = SharingGraph.from_partitions(NAMES, [[NAMES], [["bin", "cls"], ["reg"]],
                                                 [["bin"], ["cls"], ["reg"]]])
    space = create_space("mlp", input_shape=(6,), widths=(8, 8, 8))
    torch.manual_seed(0)
    model = materialize(graph, space, DATA.tasks)
    x, y = next(iter(DATA.train.batches(32)))
    split = split_parameters(model)
    assert [g for g, _ in split.shared_groups] == [tuple(NAMES), ("bin", "cls")]

    def grads(tasks, params):  # each task's gradient on params, flattened: one row per task
        losses = task_losses(model, model(x), {t: y[t] for t in NAMES})
        return torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            losses[t], params, retain_graph=True)]) for t in tasks])

    root, branch = (list(ps) for _, ps in split.shared_groups)
    cls = getattr(torchjd.aggregation, {"mgda": "MGDA", "upgrad": "UPGrad"}[name])
    expected_root = cls()(grads(NAMES, root))
    expected_branch = cls()(grads(["bin", "cls"], branch))
    assert expected_branch.abs().sum() > 0

    weighting = create_weighting(name)
    weighting.setup(NAMES, device=CPU, seed=0)
    model.zero_grad()
    losses = task_losses(model, model(x), {t: y[t] for t in NAMES})
    weighting.backward(losses, WeightingStep(0, 0, list(NAMES), model))
    got_root = torch.cat([p.grad.reshape(-1) for p in root])
    got_branch = torch.cat([p.grad.reshape(-1) for p in branch])
    assert torch.allclose(got_root, expected_root, atol=1e-5)
    assert torch.allclose(got_branch, expected_branch, atol=1e-5)


# ---------------------------------------------------------------------- the trainer's rules
def test_one_task_sampling_refuses_gradient_methods_and_weighs_one_task_otherwise():
    for name in ("pcgrad", "gradnorm"):
        with pytest.raises(MTLSearchError, match="set task_sampling='all'"):
            TrainConfig(task_sampling="one", weighting=name)
    config = TrainConfig(epochs=1, max_steps=1, batch_size=32, device="cpu",
                         task_sampling="one", weighting="uw")
    trainer = Trainer(config)
    seen = []
    trainer.on_backward.append(lambda state: seen.append(state.active_tasks))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = materialize(HARD, SPACE, DATA.tasks)
    result = trainer.fit(model, DATA.train)
    w = result.weighting["weights"]  # only the active task's log-variance moved from 0
    moved = [t for t, v in w.items() if v != pytest.approx(0.5, abs=0)]
    assert moved == seen[0]


def test_uncertainty_parameters_train_with_the_model_and_survive_a_rewire():
    calls = []

    def rewire(state):  # a dynamic strategy changing the graph after epoch 0
        opt = state.optimizer
        (log_var,) = opt.param_groups[-1]["params"]  # its own group, without weight decay
        assert opt.param_groups[-1]["weight_decay"] == 0.0 and log_var.shape == (3,)
        trunk = next(state.model.blocks.parameters())
        # Adam's state of the log-variances goes on across the rewire, as the trunk's does
        calls.append((int(opt.state[log_var]["step"]), int(opt.state[trunk]["step"])))
        return HARD.copy() if state.epoch == 0 else None

    config = TrainConfig(epochs=3, batch_size=32, device="cpu", weighting="uw", weight_decay=0.1)
    result = build_and_train(HARD, SPACE, DATA.tasks, DATA.train, DATA.val, config,
                             on_epoch_end=[rewire])
    per_epoch = calls[0][0]
    assert calls == [(per_epoch * (e + 1),) * 2 for e in range(3)] and len(result.graphs) == 2
    weights = result.weighting["weights"]
    assert all(v != 0.5 for v in weights.values())  # s moved away from 0 in every task


def test_weightings_other_than_equal_and_uw_and_rlw_are_refused_under_ddp():
    class FakeDDP:  # the trainer refuses before it calls anything of it
        world = 2

    for name in ("pcgrad", "gradnorm", "dwa"):
        trainer = Trainer(TrainConfig(epochs=1, device="cpu", weighting=name),
                          distributed=FakeDDP())
        with pytest.raises(MTLSearchError, match="does not run under DistributedDataParallel"):
            trainer.fit(materialize(HARD, SPACE, DATA.tasks), DATA.train)
    assert all(get_weighting_class(n).distributed for n in ("equal", "uw", "rlw"))


DDP_CHILD = r'''
import json, sys
from pathlib import Path

import torch

from mtlsearch.engine.distributed import DDPTraining, torchrun_session
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import Trainer, TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import create_space, load_dataset

torch.set_num_threads(1)
with torchrun_session("cpu") as session:
    data = load_dataset("synthetic", n_tasks=3, n_samples=171)  # last batch 11: shards 6 + 5
    space = create_space("mlp", input_shape=data.input_shape, widths=[8, 8])
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], space.num_blocks)
    report = {}

    def fresh():
        torch.manual_seed(0)
        return materialize(graph, space, data.tasks)

    for name in ("uw", "rlw"):
        config = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, device="cpu",
                             weighting=name)
        run = DDPTraining(session, config)
        model = fresh()
        result = Trainer(config, distributed=run).fit(model, data.train, None)
        run.release()
        entry = {"weights": result.weighting["weights"]}
        if session.rank == 0:
            alone = Trainer(config).fit(fresh(), data.train, None)
            entry["alone"] = alone.weighting["weights"]
            mine, theirs = model.state_dict(), alone.model.state_dict()
            entry["max_weight_diff"] = max(
                float((mine[k].double() - theirs[k].double()).abs().max()) for k in mine)
        report[name] = entry
    try:  # refused on every rank before any collective
        Trainer(TrainConfig(weighting="pcgrad", device="cpu"),
                distributed=DDPTraining(session, TrainConfig())).fit(fresh(), data.train)
    except MTLSearchError as exc:
        report["refused"] = str(exc)
    Path(sys.argv[1], f"rank{session.rank}.json").write_text(json.dumps(report))
    if session.rank != 0:
        assert session.receive()["op"] == "stop"
'''


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                    reason="needs torch.distributed with gloo")
def test_uncertainty_and_random_weighting_on_two_ranks_are_one_process(tmp_path):
    import json
    import os
    import subprocess

    (tmp_path / "child.py").write_text(DDP_CHILD)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(tmp_path / "child.py"), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lead, follower = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for name in ("uw", "rlw"):
        assert lead[name]["max_weight_diff"] < 1e-5, name
        # the log-variances' gradients are averaged over the ranks: as in one process
        assert lead[name]["weights"] == pytest.approx(lead[name]["alone"], rel=1e-5)
        assert follower[name]["weights"] == pytest.approx(lead[name]["weights"], rel=1e-6)
    assert "does not run under DistributedDataParallel" in lead["refused"]
    assert follower["refused"] == lead["refused"]


def test_losses_reach_the_weighting_in_float32(monkeypatch):
    from mtlsearch import hookimpl
    from mtlsearch.engine import train as train_module
    from mtlsearch.engine.weighting import Weighting
    from mtlsearch.plugin_manager import register_plugin, unregister_plugin

    dtypes = []

    class Recorder(Weighting):
        name = "recorder"

        def combine(self, losses, step):
            dtypes.extend(v.dtype for v in losses.values())
            return sum(losses.values())

    real = train_module.task_losses
    monkeypatch.setattr(train_module, "task_losses", lambda *a: {  # what bf16 autocast gives
        t: v.to(torch.bfloat16) for t, v in real(*a).items()})
    register_plugin(types.SimpleNamespace(register_weightings=hookimpl(
        lambda register: register("recorder", Recorder))), name="recorder-plugin")
    try:
        _train(weighting="recorder")
    finally:
        unregister_plugin("recorder-plugin")
    assert dtypes and set(dtypes) == {torch.float32}


@pytest.mark.parametrize("name", ["uw", "gradnorm", "pcgrad", "upgrad"])
def test_real_bf16_autocast_trains_with_each_kind_of_method(name, monkeypatch):
    """bf16 autocast (the GPU's default), here on the CPU, where the trainer turns it off for
    speed: forced on, the model runs in bf16, the weighting gets float32 losses, and training
    moves the weights with finite losses."""
    import dataclasses

    from mtlsearch.engine import train as train_module

    real = train_module.resolve
    monkeypatch.setattr(train_module, "resolve", lambda *a, **k: dataclasses.replace(
        real(*a, **k), amp=True))
    model = materialize(HARD, SPACE, DATA.tasks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[torch.dtype] = []
    handle = next(m for m in model.modules() if isinstance(m, nn.Linear)).register_forward_hook(
        lambda mod, inp, out: seen.append(out.dtype))
    info = Trainer(TrainConfig(epochs=1, batch_size=32, device="cpu",
                               weighting=name)).fit(model, DATA.train)
    handle.remove()
    assert torch.bfloat16 in seen  # autocast really ran the layers in bf16
    assert info.history and all(math.isfinite(e["train_loss"]) for e in info.history)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_methods_charge_one_backward_pass_per_task_through_the_shared_part():
    split = split_parameters(materialize(HARD, SPACE, DATA.tasks))
    with meter() as plain:
        _train()
    with meter() as aggregated:
        _train(weighting="pcgrad")
    assert aggregated.samples == plain.samples
    extra = plain.samples * (len(NAMES) - 1) * BACKWARD_SHARE * split.shared_macs
    assert aggregated.macs - plain.macs == pytest.approx(extra)
    with meter() as uw:
        _train(weighting="uw")
    assert uw.macs == plain.macs  # a loss weighting adds no pass


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ["uw", "dwa", "gradnorm", "rlw", "pcgrad", "upgrad", "graddrop"])
def test_same_seed_same_weights_and_the_callers_generator_is_untouched(name):
    state = torch.get_rng_state()
    a, b = _train(weighting=name), _train(weighting=name)
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    if name == "rlw":  # and another seed draws other weights
        other = _train(weighting=name, seed=1)
        assert other.weighting["weights"] != a.weighting["weights"]


# -------------------------------------------------------------------------- export / load
@pytest.mark.parametrize("name", ["equal", "uw", "dwa", "gradnorm", "rlw", "upgrad", "mgda",
                                  "pcgrad", "nash_mtl"])
def test_export_and_load_of_a_model_trained_with_each_weighting(name, tmp_path):
    if get_weighting_class(name).missing():
        pytest.skip(f"{name} needs {get_weighting_class(name).missing()}")
    kwargs = tiny_settings("weighting", name) or {}
    model = _train(weighting=name, weighting_kwargs=kwargs).model
    assert model.train_info == {"weighting": name, "weighting_kwargs": kwargs}
    folder = mtlsearch.export_model(model, tmp_path / name, picture=False)
    loaded = mtlsearch.load(folder)
    assert set(loaded.state_dict()) == set(model.state_dict())  # the model's weights only
    x = DATA.test.inputs[:8]
    model.eval()
    with torch.no_grad():
        want, got = model(x), loaded(x)
    for task in NAMES:
        assert torch.equal(want[task], got[task]), task


# ------------------------------------------------------------------ configuration, registry
def test_default_config_keys_are_unchanged_and_others_are_recorded():
    assert "weighting" not in TrainConfig().to_dict()
    assert "weighting_kwargs" not in TrainConfig(weighting="uw").to_dict()
    config = TrainConfig(weighting="dwa", weighting_kwargs={"temperature": 3.0})
    data = config.to_dict()
    assert data["weighting"] == "dwa" and data["weighting_kwargs"] == {"temperature": 3.0}
    assert TrainConfig(**data) == config
    with pytest.raises(TypeError, match="read-only"):
        config.weighting_kwargs["temperature"] = 1.0
    with pytest.raises(MTLSearchError, match="JSON-ready"):
        TrainConfig(weighting="dwa", weighting_kwargs={"temperature": object()})
    with pytest.raises(MTLSearchError, match="weighting 'dwa' cannot take.*temprature"):
        TrainConfig(weighting="dwa", weighting_kwargs={"temprature": 3.0})
    from mtlsearch.strategy.context import SearchContext

    plain = SearchContext(data=DATA, space=SPACE, budget=TrainConfig(epochs=1))
    weighed = SearchContext(data=DATA, space=SPACE, budget=TrainConfig(epochs=1, weighting="uw"))
    assert plain.key("x") != weighed.key("x")


def test_the_registry_lists_every_builtin_weighting():
    names = list_weightings()
    for name in ("equal", "uw", "dwa", "gradnorm", "rlw", "upgrad", "mgda", "pcgrad", "cagrad",
                 "nash_mtl", "imtl_g", "dualproj", "aligned_mtl"):
        assert name in names
        assert get_weighting_class(name).name == name
    assert list_weightings("*mtl") == ["aligned_mtl", "excess_mtl", "nash_mtl"]
    assert tiny_settings("weighting", "nash_mtl") == {"optim_niter": 2}
    assert create_weighting("gradnorm", alpha=0.5).alpha == 0.5
    with pytest.raises(mtlsearch.UnknownNameError, match="unknown weighting 'gradnrom'"):
        TrainConfig(weighting="gradnrom")


# --------------------------------------------------------------------------- joint search
def test_a_fixed_weighting_samples_nothing_and_auto_samples_name_and_settings():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert sample_weighting(trial, None).overrides == {}
    fixed = sample_weighting(trial, "uw")
    assert fixed.overrides == {"weighting": "uw", "weighting_kwargs": {}} and not fixed.sampled
    assert trial.params == {}
    names = set()
    for _ in range(12):
        trial = study.ask()
        choice = sample_weighting(trial, "auto")
        names.add(choice.facts["weighting"])
        assert trial.params["weighting"] == choice.facts["weighting"]
        again = sample_weighting(optuna.trial.FixedTrial(trial.params), "auto")
        assert again.overrides == choice.overrides  # how a recorded trial is retrained
        TrainConfig(**choice.overrides)  # what it samples builds
    assert len(names) > 3


def test_choices_follow_task_sampling_and_refuse_what_cannot_run():
    everything = weighting_choices("auto")
    one = weighting_choices("auto", task_sampling="one")
    assert {"equal", "uw", "dwa", "rlw"} <= set(one) and "pcgrad" not in one
    assert set(one) < set(everything)
    assert set(weighting_choices("auto", distributed=True)) == {"equal", "uw", "rlw"}
    assert weighting_choices("uw, dwa") == ["uw", "dwa"]
    with pytest.raises(MTLSearchError, match="'pcgrad' needs every task"):
        weighting_choices(["uw", "pcgrad"], task_sampling="one")
    with pytest.raises(mtlsearch.UnknownNameError, match="unknown weighting 'nope'"):
        weighting_choices("uw,nope")
