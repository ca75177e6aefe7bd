"""One candidate on several processes: DistributedDataParallel under torchrun (gloo, CPU).

The real thing runs as subprocesses launched by ``python -m torch.distributed.run
--nproc-per-node 2``; their studies are compared with the same search run in this process.
Unit tests check the JSON messages, the shards, the synchronised batch norm (against
PyTorch's) and the settings check.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from mtlsearch.engine.distributed import (
    TorchrunEnv,
    decode_json,
    encode_json,
    shard_bounds,
    sync_batchnorm,
    torchrun_env,
    unsync_batchnorm,
)
from mtlsearch.engine.distributed.session import check_same_search
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.study import search

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or sys.platform == "win32",
    reason="needs torch.distributed with gloo",
)

DATA = {"n_tasks": 3, "n_samples": 160}
TOL = 1e-5  # metrics: DDP and one process differ only by floating-point summation order

# Strategies imported by the ranks (and by this process). SplitThenMerge is dynamic: its
# first backward pass edits weights (copies task 0's first block into the others), and the end
# of epoch 0 changes the graph (the first block becomes shared), so every rank must re-wrap.
STRATEGIES = '''
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.engine.model import module_key
from mtlsearch.strategy.base import Proposal, Strategy


class SplitThenMerge(Strategy):
    name = "split_then_merge"

    def propose(self, trial, ctx):
        trial.suggest_int("unused", 0, 0)
        self.edited = False
        return Proposal(ctx.new_graph("single_task"))

    def on_backward(self, state):
        if self.edited:
            return
        graph, blocks = state.model.graph, state.model.blocks
        source = blocks[module_key(graph.route(graph.tasks[0])[0])]
        for task in graph.tasks[1:]:
            blocks[module_key(graph.route(task)[0])].load_state_dict(source.state_dict())
        self.edited = True

    def on_epoch_end(self, state):
        if state.epoch != 0:
            return None
        graph = state.model.graph
        tasks = list(graph.tasks)
        rest = [[[t] for t in tasks]] * (graph.num_blocks - 1)
        return SharingGraph.from_partitions(tasks, [[tasks], *rest], space=graph.space,
                                            task_specs=graph.task_specs)


class NaNOnce(Strategy):
    """Trial 1 trains with an absurd learning rate: a NaN loss that every rank sees."""

    name = "nan_once"

    def propose(self, trial, ctx):
        trial.suggest_int("unused", 0, 0)
        overrides = {"lr": 1e30} if trial.number == 1 else {}
        return Proposal(ctx.new_graph("hard_sharing"), train_overrides=overrides)
'''

# What the ranks run (one torchrun launch, to keep the test short): a search through the
# command line, JSON messages, one DDP fit against one process, the dynamic strategy's search
# and a search whose trials are pruned by rank 0.
CHILD = r'''
import json, math, sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from mtlsearch.cli import main
from mtlsearch.engine.distributed import DDPTraining, broadcast_json, torchrun_session
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.engine.model import materialize
from mtlsearch.registry import create_space, load_dataset
from mtlsearch.study import search
from mtlsearch.engine.train import Trainer, TrainConfig

out = Path(sys.argv[1])
sys.path.insert(0, str(out))
from ddp_strategies import NaNOnce, SplitThenMerge

torch.set_num_threads(1)
MESSAGES = [{"op": "x", "é": "ü", "nested": [1, 2.5, None, {"a": []}]}, "x" * 100_000, [],
            float("nan"), 7]
BUDGET = dict(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, device="cpu")

with torchrun_session("cpu") as session:
    rank, report = session.rank, {}
    # the command line (what `torchrun ... -m mtlsearch search` runs)
    report["cli_status"] = main(["search", *json.loads(sys.argv[2]), "--storage",
                                 f"sqlite:///{out / 'cli.db'}", "--study", "s",
                                 "--out", str(out / "out")])
    got = [broadcast_json(m if rank == 0 else None) for m in MESSAGES]
    report["messages"] = [
        "nan" if isinstance(g, float) and math.isnan(g) else g for g in got
    ]

    # one fit: 171 samples = 5 batches of 32 and one of 11 (shards 6 and 5)
    data = load_dataset("synthetic", n_tasks=3, n_samples=171)
    space = create_space("mlp", input_shape=data.input_shape, widths=[8, 8])
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], space.num_blocks)
    config = TrainConfig(**BUDGET)

    def fresh():
        torch.manual_seed(0)
        return materialize(graph, space, data.tasks)

    run = DDPTraining(session, config)
    model = fresh()
    history = Trainer(config, distributed=run).fit(model, data.train, None).history
    run.release()
    report["history"] = history
    report["classes"] = sorted({type(m).__name__ for m in model.modules()})
    if rank == 0:
        alone = fresh()
        report["alone_history"] = Trainer(config).fit(alone, data.train, None).history
        mine, theirs = model.state_dict(), alone.state_dict()
        report["max_weight_diff"] = max(
            float((mine[k].double() - theirs[k].double()).abs().max()) for k in mine)

    common = dict(dataset="synthetic", space="mlp", dataset_kwargs={"n_tasks": 3,
                  "n_samples": 160}, space_kwargs={"widths": [8, 8]}, progress=False,
                  budget=TrainConfig(**BUDGET), storage=f"sqlite:///{out / 'studies.db'}",
                  cache=out / "cache")  # one single-task reference for both searches
    dynamic = search(strategy=SplitThenMerge(), trials=1, study_name="dynamic", **common)
    pruned = search(strategy="hard_sharing", trials=2, study_name="pruned",
                    objectives=("delta_mtl",), pruner=optuna.pruners.ThresholdPruner(lower=1e9),
                    **common)
    search(strategy=NaNOnce(), trials=3, study_name="nan", **common)
    report["followers_have_no_study"] = dynamic.study is None and pruned.study is None
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if rank != 0:
        assert session.receive()["op"] == "stop"  # what rank 0's session sends on leaving
'''


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _torchrun(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start 2 ranks; their output goes to files (a full pipe would stall them)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", *args]
    with open(cwd / "torchrun.out", "w") as out, open(cwd / "torchrun.err", "w") as err:
        return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=out, stderr=err, text=True)


def _wait(proc: subprocess.Popen, cwd: Path, timeout: float) -> str:
    """Wait for the ranks; their standard output (the failure's output if one failed)."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout = (cwd / "torchrun.out").read_text()
    assert proc.returncode == 0, stdout[-3000:] + (cwd / "torchrun.err").read_text()[-5000:]
    return stdout


def _metric_diff(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> float:
    worst = 0.0
    for split in ("val", "test"):
        for task, values in a.user_attrs["metrics"][split].items():
            for name, value in values.items():
                worst = max(worst, abs(value - b.user_attrs["metrics"][split][task][name]))
    return worst


def _same_trials(single: list, ranks: list) -> float:
    assert [t.state for t in ranks] == [t.state for t in single]
    assert [t.params for t in ranks] == [t.params for t in single]
    worst = 0.0
    for a, b in zip(single, ranks):
        assert b.user_attrs["graph"] == a.user_attrs["graph"]
        assert b.values == pytest.approx(a.values, abs=1e-3)  # Δ_MTL in percent, parameters
        worst = max(worst, _metric_diff(a, b))
    return worst


# --------------------------------------------------------------------------- real processes
CLI_ARGS = ["--strategy", "random_tree", "--dataset", "synthetic", "--space", "mlp",
            "--dataset-arg", "n_tasks=3", "--dataset-arg", "n_samples=160",
            "--space-arg", "widths=[8,8]", "--space-arg", "norm=false",
            "--epochs", "2", "--batch-size", "32", "--trials", "2", "--seed", "0",
            "--device", "cpu", "-q"]
SGD = dict(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, device="cpu")


@dataclass
class Launch:
    folder: Path
    stdout: str
    lead: dict
    follower: dict
    single_cli: optuna.Study  # the command line's search, in this process
    single_dynamic: optuna.Study  # SplitThenMerge's search, in this process


@pytest.fixture(scope="module")
def launch(tmp_path_factory) -> Launch:
    """One ``torchrun --nproc-per-node 2`` launch (gloo); meanwhile the same searches here."""
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "ddp_strategies.py").write_text(STRATEGIES)
    (folder / "child.py").write_text(CHILD)
    proc = _torchrun([str(folder / "child.py"), str(folder), json.dumps(CLI_ARGS)], folder)
    try:
        single_cli = search(strategy="random_tree", dataset="synthetic", space="mlp", trials=2,
                            dataset_kwargs=DATA, space_kwargs={"widths": [8, 8], "norm": False},
                            budget=TrainConfig(epochs=2, batch_size=32, device="cpu"),
                            progress=False).study
        spec = importlib.util.spec_from_file_location("ddp_strategies",
                                                      folder / "ddp_strategies.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        single_dynamic = search(strategy=module.SplitThenMerge(), trials=1, dataset="synthetic",
                                space="mlp", dataset_kwargs=DATA, space_kwargs={"widths": [8, 8]},
                                budget=TrainConfig(**SGD), progress=False).study
    finally:
        stdout = _wait(proc, folder, timeout=300)
    return Launch(folder, stdout, json.loads((folder / "rank0.json").read_text()),
                  json.loads((folder / "rank1.json").read_text()), single_cli, single_dynamic)


def test_torchrun_cli_search_matches_one_process(launch):
    """The command line under torchrun: rank 0 reports and writes, results as one process."""
    assert launch.lead["cli_status"] == launch.follower["cli_status"] == 0
    assert launch.stdout.count("study 's': 2 trials (2 complete)") == 1  # rank 0 reports alone
    ranks = optuna.load_study(study_name="s", storage=f"sqlite:///{launch.folder / 'cli.db'}")
    assert _same_trials(launch.single_cli.get_trials(), ranks.get_trials()) <= TOL
    assert len(list((launch.folder / "out" / "artifacts").iterdir())) == 2  # by rank 0 only


def test_json_messages_between_ranks(launch):
    expected = [{"op": "x", "é": "ü", "nested": [1, 2.5, None, {"a": []}]}, "x" * 100_000, [],
                "nan", 7]
    assert launch.lead["messages"] == launch.follower["messages"] == expected


def test_one_fit_on_two_ranks_is_one_fit_in_one_process(launch):
    # 171 samples: the last batch of 11 rows splits 6 + 5. SGD: no Adam noise on the biases
    # before batch norm (their true gradient is 0), so the weights must agree.
    lead, follower = launch.lead, launch.follower
    assert lead["max_weight_diff"] < 1e-5
    for rank in (lead, follower):
        assert [h["train_loss"] for h in rank["history"]] == pytest.approx(
            [h["train_loss"] for h in lead["alone_history"]], rel=1e-6)
        assert "BatchNorm1d" in rank["classes"]  # synchronised during the fit only
        assert not any(c.startswith("Sync") for c in rank["classes"])
    assert follower["followers_have_no_study"] and not lead["followers_have_no_study"]


def test_a_strategy_that_changes_the_graph_is_rewrapped_on_every_rank(launch):
    # Weights edited on rank 0 in on_backward, graph changed at the end of epoch 0 and
    # re-wrapped on every rank: the same graph and metrics as one process.
    storage = f"sqlite:///{launch.folder / 'studies.db'}"
    ranks = optuna.load_study(study_name="dynamic", storage=storage).get_trials()
    assert _same_trials(launch.single_dynamic.get_trials(), ranks) <= TOL
    graph = ranks[0].user_attrs["graph"]
    first = [n for n in graph["graph"]["nodes"] if n.get("kind") == "block" and n["index"] == 0]
    assert len(first) == 1  # the first block ended shared: the graph changed mid-training


def test_rank_0_prunes_and_the_other_rank_follows(launch):
    storage = f"sqlite:///{launch.folder / 'studies.db'}"
    pruned = optuna.load_study(study_name="pruned", storage=storage).get_trials()
    assert [t.state.name for t in pruned] == ["PRUNED", "PRUNED"]  # Δ_MTL < 1e9 at epoch 0
    assert all(list(t.intermediate_values) == [0] for t in pruned)


def test_a_nan_loss_fails_the_trial_on_every_rank_and_the_search_goes_on(launch):
    storage = f"sqlite:///{launch.folder / 'studies.db'}"
    trials = optuna.load_study(study_name="nan", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[1].user_attrs["fail_reason"].startswith("TrainingError: the training loss")


@pytest.mark.skipif(os.environ.get("MTLSEARCH_DDP_ALL") != "1",
                    reason="every strategy under torchrun takes 4-6 min: MTLSEARCH_DDP_ALL=1")
@pytest.mark.parametrize("strategy, kwargs", [
    ("single_task", {}), ("hard_sharing", {}), ("random_tree", {}), ("task_routing", {}),
    ("affinity_tree", {"estimator": "full"}), ("gumbel_policy", {"num_samples": 1}),
    ("gradient_merge", {"directive": "similarity", "min_cluster_size": 2, "min_samples": 1,
                        "start_epoch": 0, "tt_rank": 2}),
])
def test_every_strategy_under_torchrun(tmp_path, strategy, kwargs):
    data = {"n_tasks": 6, "n_groups": 2, "n_samples": 400} if strategy == "gradient_merge" else DATA
    widths = [16, 16, 8, 8] if strategy == "gradient_merge" else [8, 8]
    epochs, trials = (4, 1) if strategy == "gradient_merge" else (2, 2)
    args = ["--strategy", strategy, "--dataset", "synthetic", "--space", "mlp",
            *[a for k, v in data.items() for a in ("--dataset-arg", f"{k}={v}")],
            "--space-arg", f"widths={json.dumps(widths)}", "--space-arg", "norm=false",
            *[a for k, v in kwargs.items() for a in ("--strategy-arg", f"{k}={json.dumps(v)}")],
            "--epochs", str(epochs), "--batch-size", "32", "--trials", str(trials),
            "--device", "cpu", "-q", "--storage", "sqlite:///ddp.db", "--study", "s"]
    _wait(_torchrun(["-m", "mtlsearch", "search", *args], tmp_path), tmp_path, timeout=600)
    ranks = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'ddp.db'}")
    single = search(strategy=strategy, dataset="synthetic", space="mlp", trials=trials,
                    dataset_kwargs=data, space_kwargs={"widths": widths, "norm": False},
                    strategy_kwargs=kwargs, progress=False,
                    budget=TrainConfig(epochs=epochs, batch_size=32, device="cpu"))
    assert _same_trials(single.study.get_trials(), ranks.get_trials()) <= TOL
    if strategy == "gradient_merge":
        assert ranks.get_trials()[0].user_attrs["info"]["gradient_merge"]["merges"]


# --------------------------------------------------------------------------- units
def test_json_messages_round_trip_through_uint8_tensors():
    message = {"op": "train", "graph": {"tasks": ["a", "ß"]}, "lr": 0.001, "nan": math.inf}
    tensor = encode_json(message)
    assert tensor.dtype == torch.uint8 and tensor.dim() == 1
    assert bytes(tensor.tolist()) == json.dumps(message, separators=(",", ":")).encode()
    assert decode_json(tensor) == message
    assert decode_json(encode_json({"path": Path("/x")})) == {"path": "/x"}  # str() of the rest
    with pytest.raises(MTLSearchError, match="not valid JSON"):
        decode_json(torch.tensor([123, 34], dtype=torch.uint8))


def test_shards_cover_the_batch_in_order():
    # 11 rows over 2 ranks: 6 + 5; 5 rows over 3: 2 + 2 + 1; 1 row over 2: 1 + 0
    assert [shard_bounds(11, 2, r) for r in range(2)] == [(0, 6), (6, 11)]
    assert [shard_bounds(5, 3, r) for r in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert [shard_bounds(1, 2, r) for r in range(2)] == [(0, 1), (1, 1)]


def test_torchrun_environment():
    assert torchrun_env({}) is None
    assert torchrun_env({"WORLD_SIZE": "1", "RANK": "0"}) is None  # one process: no DDP
    assert torchrun_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == TorchrunEnv(3, 4, 1)
    with pytest.raises(MTLSearchError, match="RANK=4 is outside"):
        torchrun_env({"WORLD_SIZE": "4", "RANK": "4"})
    with pytest.raises(MTLSearchError, match="must be integers"):
        torchrun_env({"WORLD_SIZE": "two"})


def test_ranks_started_with_other_settings_are_named():
    lead = {"strategy": "random_tree", "budget": {"lr": 0.01}, "seed": 0, "version": "1"}
    check_same_search(lead, dict(lead, version="2"), 1)  # another version is no mismatch
    with pytest.raises(MTLSearchError, match=r"rank 1 .*budget: \{'lr': 0.01\} \(rank 0\) vs "
                                             r"\{'lr': 0.1\} \(rank 1\)"):
        check_same_search(lead, dict(lead, budget={"lr": 0.1}), 1)


def test_synchronised_batch_norm_on_one_rank_is_batch_norm(tmp_path):
    """With one rank the synchronised layer must equal PyTorch's: output, input and weight
    gradients, running statistics (the two-rank case is in test_ranks_train_like_one_process)."""
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        torch.manual_seed(0)
        for plain in (nn.BatchNorm1d(5), nn.BatchNorm2d(3, momentum=None)):
            synced = type(plain)(plain.num_features, momentum=plain.momentum)
            synced.load_state_dict(plain.state_dict())
            with torch.no_grad():
                plain.weight.uniform_(0.5, 1.5)
                plain.bias.uniform_(-1, 1)
                synced.weight.copy_(plain.weight)
                synced.bias.copy_(plain.bias)
            assert sync_batchnorm(synced) == 1
            assert type(synced).__name__.startswith("Sync") and isinstance(synced, type(plain))
            shape = (8, 5) if isinstance(plain, nn.BatchNorm1d) else (4, 3, 5, 5)
            for _ in range(2):
                x = (torch.randn(shape) * 3 + 1).requires_grad_()
                x2 = x.detach().clone().requires_grad_()
                upstream = torch.randn(shape)
                ref = plain(x)
                (ref * upstream).sum().backward()
                out = synced(x2)
                (out * upstream).sum().backward()
                assert torch.allclose(out, ref.detach(), atol=1e-5)
                assert torch.allclose(x2.grad, x.grad, atol=1e-5)
                assert torch.allclose(synced.weight.grad, plain.weight.grad, atol=1e-5)
                assert torch.allclose(synced.bias.grad, plain.bias.grad, atol=1e-5)
                for p in (plain.weight, plain.bias, synced.weight, synced.bias):
                    p.grad = None
            assert torch.allclose(synced.running_mean, plain.running_mean, atol=1e-6)
            assert torch.allclose(synced.running_var, plain.running_var, atol=1e-5)
            assert int(synced.num_batches_tracked) == int(plain.num_batches_tracked) == 2
            synced.eval()
            plain.eval()
            x = torch.randn(shape)
            assert torch.allclose(synced(x), plain(x), atol=1e-6)
            unsync_batchnorm(synced)
            assert type(synced) is type(plain)
        with pytest.raises(Exception, match="batch of 1 sample"):
            one = nn.BatchNorm1d(2)
            sync_batchnorm(one)
            one(torch.randn(1, 2))
    finally:
        dist.destroy_process_group()

