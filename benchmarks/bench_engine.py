"""Engine benchmarks: what the sharing-graph engine costs, measured side by side in one run.

Run from the repository root::

    python benchmarks/bench_engine.py                 # CPU, full settings
    python benchmarks/bench_engine.py --quick         # fewer repetitions, smaller batches
    python benchmarks/bench_engine.py --device cuda --json bench_cuda.json

Two questions, each answered with ratios of timings taken interleaved in the same process
(on the CPU call by call: A, B, B, A, ...; on a GPU in bursts between synchronisations; after
warm-up; the figure is the median of the per-repetition ratios, so slow drift from other
processes cancels out):

a. **Engine overhead.** A hard-sharing graph materialized by mtlsearch against a hand-written
   ``nn.Module`` of the same layers (an ``nn.Sequential`` trunk plus an ``nn.ModuleList`` of
   linear heads, written out below, not built from the space) with the same weights, batch and
   optimizer. Rows: train step (forward, the same per-task BCE losses, backward, Adam step),
   train step with the engine's own loss function (``mtlsearch.engine.train.task_losses``, which masks
   missing labels), inference (forward only, ``eval()`` and ``no_grad``) and a forward on a
   batch of one (mostly Python overhead). Target: ratio <= 1.05. A third contender, the
   materialized model's own blocks and heads called in a plain loop ("chained"), splits the
   difference between the executor (plan walk) and the search space's block code.
b. **Shared-prefix execution.** A branched tree over 6 tasks: one forward over all tasks
   against (i) the sum of timing every unique block node on the input it receives, plus the
   heads (target: within 10%), and (ii) running each task's route alone,
   ``model(x, tasks=[t])`` for every task (the speedup should roughly equal the ratio of
   multiply-accumulates, ``sum over tasks of route MACs / summarize(...).macs``).
c. **Memory format.** The same materialized model and weights, contiguous (NCHW) against
   channels-last (NHWC, what the trainer uses for image inputs by default): train step with
   the engine's losses, and inference. The figure is the speed-up of channels-last.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize, summarize
from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.train import task_losses
from mtlsearch.graph.space import SearchSpace

N_TASKS = 6
TASKS = [f"t{i}" for i in range(N_TASKS)]


# ---------------------------------------------------------------------------------------------
# Hand-written equivalents (what a person would write without mtlsearch)
# ---------------------------------------------------------------------------------------------


class HandWritten(nn.Module):
    """A shared ``nn.Sequential`` trunk and one linear head per task.

    Each head pools its features globally and applies its linear layer, as mtlsearch's
    default head does, so both models compute exactly the same thing.
    """

    def __init__(self, trunk: nn.Sequential, features: int, n_tasks: int):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(features, 1) for _ in range(n_tasks))

    def forward(self, x: Tensor) -> list[Tensor]:
        h = self.trunk(x)
        return [head(h.flatten(2).mean(dim=2)) for head in self.heads]


def hand_small_cnn() -> HandWritten:
    """The small CNN of ``create_space("small_cnn", input_shape=(1, 12, 24))``, by hand."""
    trunk = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
    )
    return HandWritten(trunk, 32, N_TASKS)


def hand_resnet18(width: int, n_tasks: int = N_TASKS) -> HandWritten:
    """ResNet-18 with a CIFAR-style stem (3x3 conv, no max-pool), by hand."""

    def down(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    w = width
    trunk = nn.Sequential(
        nn.Conv2d(3, w, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(inplace=True),
        BasicBlock(w, w),
        BasicBlock(w, w),
        BasicBlock(w, 2 * w, stride=2, downsample=down(w, 2 * w)),
        BasicBlock(2 * w, 2 * w),
        BasicBlock(2 * w, 4 * w, stride=2, downsample=down(2 * w, 4 * w)),
        BasicBlock(4 * w, 4 * w),
        BasicBlock(4 * w, 8 * w, stride=2, downsample=down(4 * w, 8 * w)),
        BasicBlock(8 * w, 8 * w),
    )
    return HandWritten(trunk, 8 * w, n_tasks)


def copy_weights(model: MultiTaskModel, hand: HandWritten) -> None:
    """Give ``hand`` the materialized hard-sharing model's weights and BN statistics."""
    src: list[Tensor] = []
    for node in model.graph.route(model.tasks[0]):
        src.extend(model.blocks[model._block_keys[node]].state_dict().values())
    dst = list(hand.trunk.state_dict().values())
    if len(src) != len(dst):
        raise RuntimeError(f"the hand-written trunk has {len(dst)} tensors, the model {len(src)}")
    with torch.no_grad():
        for s, d in zip(src, dst):
            if s.shape != d.shape:
                raise RuntimeError(f"shape mismatch {tuple(s.shape)} vs {tuple(d.shape)}")
            d.copy_(s)
        for task, head in zip(model.tasks, hand.heads):
            linear = model.heads[model._head_keys[task]].linear
            head.weight.copy_(linear.weight)
            head.bias.copy_(linear.bias)


class Chained(nn.Module):
    """The materialized model's own blocks and heads called in a plain loop, no plan walk.

    Shares its modules with the model: ``materialized / chained`` is the cost of the engine's
    executor alone, ``chained / hand-written`` that of the search space's block code.
    """

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        route = model.graph.route(model.tasks[0])
        self.blocks = nn.ModuleList(model.blocks[model._block_keys[n]] for n in route)
        self.heads = nn.ModuleList(model.heads[model._head_keys[t]] for t in model.tasks)
        self.tasks = list(model.tasks)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        for block in self.blocks:
            x = block.activation(block.pre_activation(x))
        return {t: head(x) for t, head in zip(self.tasks, self.heads)}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    cases: dict[str, Callable[[], Any]],
    *,
    device: torch.device,
    reps: int,
    inner: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Seconds per call of every case, one entry per repetition.

    Each repetition runs every case ``inner`` times. On the CPU the cases take turns call by
    call (the order reversed every other call, so no case always runs first), so a burst of
    load from another process hits every case alike. On a GPU each turn is ``inner`` calls
    between two synchronisations, so the launch latency of one synchronisation is not counted
    once per call (it would inflate small kernels); the order is reversed every other
    repetition.
    """
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    _sync(device)
    burst = inner if device.type == "cuda" else 1
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        total = dict.fromkeys(names, 0.0)
        for i in range(inner // burst):
            order = names if (r + i) % 2 == 0 else names[::-1]
            for name in order:
                fn = cases[name]
                _sync(device)
                start = time.perf_counter()
                for _ in range(burst):
                    fn()
                _sync(device)
                total[name] += time.perf_counter() - start
        for name in names:
            times[name].append(total[name] / inner)
    return times


def ratio_of(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over repetitions of ``a[i] / b[i]``."""
    return statistics.median(x / y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# a. Engine overhead
# ---------------------------------------------------------------------------------------------


@dataclass
class OverheadRow:
    """One row of the engine-overhead table."""

    model: str
    measure: str
    materialized_ms: float
    hand_written_ms: float
    ratio: float
    vs_chained: float
    target: float | None = 1.05

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


def _bce(outputs: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    return sum(
        F.binary_cross_entropy_with_logits(o.reshape(-1), y) for o, y in zip(outputs, targets)
    )


def bench_overhead(
    name: str,
    space: SearchSpace,
    hand: HandWritten,
    batch: int,
    *,
    device: torch.device,
    reps: int,
    inner: int,
    warmup: int,
) -> list[OverheadRow]:
    """Materialized hard-sharing model against ``hand`` (same weights): train and inference."""
    specs = [TaskSpec(t) for t in TASKS]
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(TASKS, space.num_blocks), space, specs)
    copy_weights(model, hand)
    model.to(device)
    hand.to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *space.input_shape, generator=gen).to(device)
    ys = [torch.randint(0, 2, (batch,), generator=gen).float().to(device) for _ in TASKS]
    targets = dict(zip(TASKS, ys))

    model.eval()
    hand.eval()
    with torch.no_grad():
        got, want = model(x), hand(x)
        diff = max(float((got[t] - w).abs().max()) for t, w in zip(TASKS, want))
    if diff > 1e-4:
        raise RuntimeError(f"{name}: the hand-written model differs from the materialized one by {diff}")

    chained = Chained(model)
    opt_m = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_h = torch.optim.Adam(hand.parameters(), lr=1e-3)
    opt_c = torch.optim.Adam(chained.parameters(), lr=1e-3)

    def step_model() -> None:
        out = model(x)
        loss = _bce([out[t] for t in TASKS], ys)
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_m.step()

    def step_model_engine_loss() -> None:
        out = model(x)
        loss = sum(task_losses(model, out, targets).values())
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_m.step()

    def step_chained() -> None:
        out = chained(x)
        loss = _bce([out[t] for t in TASKS], ys)
        opt_c.zero_grad(set_to_none=True)
        loss.backward()
        opt_c.step()

    def step_hand() -> None:
        loss = _bce(hand(x), ys)
        opt_h.zero_grad(set_to_none=True)
        loss.backward()
        opt_h.step()

    rows: list[OverheadRow] = []
    model.train()
    hand.train()
    t = interleaved(
        {"m": step_model, "h": step_hand, "e": step_model_engine_loss, "c": step_chained},
        device=device, reps=reps, inner=inner, warmup=warmup,
    )
    rows.append(_row(name, "train step", t["m"], t["h"], t["c"]))
    rows.append(_row(name, "train step, engine losses", t["e"], t["h"], t["c"], target=None))

    model.eval()
    hand.eval()
    with torch.no_grad():
        t = interleaved(
            {"m": lambda: model(x), "h": lambda: hand(x), "c": lambda: chained(x)},
            device=device, reps=reps, inner=inner * 2, warmup=warmup,
        )
        rows.append(_row(name, "inference", t["m"], t["h"], t["c"]))
        one = x[:1]
        t = interleaved(
            {"m": lambda: model(one), "h": lambda: hand(one), "c": lambda: chained(one)},
            device=device, reps=reps, inner=max(20, inner * 5), warmup=warmup,
        )
        rows.append(_row(name, "inference, batch 1", t["m"], t["h"], t["c"], target=None))
    return rows


def _row(
    model: str,
    measure: str,
    a: Sequence[float],
    b: Sequence[float],
    c: Sequence[float],
    target: float | None = 1.05,
) -> OverheadRow:
    return OverheadRow(
        model,
        measure,
        statistics.median(a) * 1e3,
        statistics.median(b) * 1e3,
        ratio_of(a, b),
        ratio_of(a, c),
        target,
    )


# ---------------------------------------------------------------------------------------------
# c. Memory format: what the trainer's automatic channels-last buys
# ---------------------------------------------------------------------------------------------


@dataclass
class MemoryFormatRow:
    """Contiguous (NCHW) against channels-last (NHWC) for the same materialized model."""

    model: str
    measure: str
    contiguous_ms: float
    channels_last_ms: float
    speedup: float


def bench_memory_format(
    name: str,
    space: SearchSpace,
    batch: int,
    *,
    device: torch.device,
    reps: int,
    inner: int,
    warmup: int,
) -> list[MemoryFormatRow]:
    """Train step and inference of one hard-sharing model in both layouts (same weights)."""
    specs = [TaskSpec(t) for t in TASKS]
    graph = SharingGraph.hard_sharing(TASKS, space.num_blocks)
    torch.manual_seed(0)
    plain = materialize(graph, space, specs).to(device)
    last = materialize(graph, space, specs).to(device)
    last.load_state_dict(plain.state_dict())
    last.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *space.input_shape, generator=gen).to(device)
    x_last = x.contiguous(memory_format=torch.channels_last)
    targets = {t: torch.randint(0, 2, (batch,), generator=gen).float().to(device) for t in TASKS}
    opts = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3) for m in (plain, last)}

    def step(model: MultiTaskModel, inputs: Tensor) -> Callable[[], None]:
        opt = opts[id(model)]

        def run() -> None:
            loss = sum(task_losses(model, model(inputs), targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return run

    plain.train()
    last.train()
    t = interleaved({"p": step(plain, x), "l": step(last, x_last)},
                    device=device, reps=reps, inner=inner, warmup=warmup)
    rows = [MemoryFormatRow(name, "train step", statistics.median(t["p"]) * 1e3,
                            statistics.median(t["l"]) * 1e3, ratio_of(t["p"], t["l"]))]
    plain.eval()
    last.eval()
    with torch.no_grad():
        t = interleaved({"p": lambda: plain(x), "l": lambda: last(x_last)},
                        device=device, reps=reps, inner=inner * 2, warmup=warmup)
    rows.append(MemoryFormatRow(name, "inference", statistics.median(t["p"]) * 1e3,
                                statistics.median(t["l"]) * 1e3, ratio_of(t["p"], t["l"])))
    return rows


# ---------------------------------------------------------------------------------------------
# b. Shared-prefix execution
# ---------------------------------------------------------------------------------------------


@dataclass
class PrefixResult:
    """Shared-prefix execution of one branched tree."""

    model: str
    partitions: list[list[list[str]]]
    full_ms: float
    unique_nodes_ms: float
    full_vs_unique_nodes: float
    per_task_ms: float
    speedup: float
    mac_ratio: float
    node_time_ratio: float
    node_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok_nodes(self) -> bool:
        return abs(self.full_vs_unique_nodes - 1) <= 0.10

    @property
    def speedup_vs_macs(self) -> float:
        return self.speedup / self.mac_ratio


def route_macs(graph: SharingGraph, space: SearchSpace, spec: TaskSpec) -> int:
    """Multiply-accumulates per sample of ``spec.name``'s route alone (blocks and head)."""
    total = space.head_cost(spec).macs
    for step in graph.steps(spec.name):
        cost = space.skip_cost(step.index) if step.skip else space.block_cost(step.index)
        total += cost.macs
    return total


def tree_partitions(num_blocks: int) -> list[list[list[str]]]:
    """Shared for the first half of the blocks, 3 groups for the next quarter, then single."""
    groups = [TASKS[0:2], TASKS[2:4], TASKS[4:6]]
    singles = [[t] for t in TASKS]
    shared = max(1, num_blocks // 2)
    grouped = max(1, (num_blocks - shared) // 2)
    rest = num_blocks - shared - grouped
    return [[list(TASKS)]] * shared + [groups] * grouped + [singles] * rest


def bench_prefix(
    name: str,
    space: SearchSpace,
    batch: int,
    *,
    device: torch.device,
    reps: int,
    inner: int,
    warmup: int,
) -> PrefixResult:
    """Forward over all tasks of a branched tree vs its unique nodes and vs per-task routes."""
    specs = [TaskSpec(t) for t in TASKS]
    partitions = tree_partitions(space.num_blocks)
    graph = SharingGraph.from_partitions(TASKS, partitions)
    torch.manual_seed(0)
    model = materialize(graph, space, specs).to(device).eval()
    x = torch.randn(batch, *space.input_shape).to(device)

    # Every unique computation with the input it receives in the full forward.
    plan = model.plan()
    slots: dict[int, Tensor] = {0: x}
    cases: dict[str, Callable[[], Any]] = {}
    with torch.no_grad():
        for level in plan.levels:
            new: dict[int, Tensor] = {}
            for run in level:
                block = model.blocks[model._block_keys[run.node]]
                inp = torch.cat([slots[s] for s in run.run_inputs])
                out = block.activation(block.pre_activation(inp))
                for pos, slot, _ in run.run_outputs:
                    new[slot] = out.chunk(len(run.run_inputs))[pos]

                def node_case(block: nn.Module = block, inp: Tensor = inp) -> Tensor:
                    return block.activation(block.pre_activation(inp))

                cases[f"node {run.node}"] = node_case
            slots = new
        for task, slot in plan.head_slots.items():
            head = model.heads[model._head_keys[task]]
            cases[f"head {task}"] = lambda head=head, h=slots[slot]: head(h)
    parts = list(cases)

    def per_task() -> None:
        for t in TASKS:
            model(x, tasks=[t])

    cases["full"] = lambda: model(x)
    cases["per task"] = per_task
    with torch.no_grad():
        model(x, tasks=[TASKS[0]])  # build the per-task plans outside the timing
        for t in TASKS:
            model.plan([t])
        times = interleaved(cases, device=device, reps=reps, inner=inner, warmup=warmup)
    unique = [sum(times[p][r] for p in parts) for r in range(reps)]
    routes = [
        sum(times[f"node {n}"][r] for t in TASKS for n in graph.route(t))
        + sum(times[f"head {t}"][r] for t in TASKS)
        for r in range(reps)
    ]
    all_macs = summarize(graph, space, specs).macs
    per_route = sum(route_macs(graph, space, s) for s in specs)
    return PrefixResult(
        model=name,
        partitions=[[list(g) for g in p] for p in partitions],
        full_ms=statistics.median(times["full"]) * 1e3,
        unique_nodes_ms=statistics.median(unique) * 1e3,
        full_vs_unique_nodes=ratio_of(times["full"], unique),
        per_task_ms=statistics.median(times["per task"]) * 1e3,
        speedup=ratio_of(times["per task"], times["full"]),
        mac_ratio=per_route / all_macs,
        node_time_ratio=ratio_of(routes, unique),
        node_ms={p: statistics.median(times[p]) * 1e3 for p in parts},
    )


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _settings(device: torch.device, quick: bool) -> dict[str, Any]:
    gpu = device.type == "cuda"
    return {
        "reps": 7 if quick else (31 if gpu else 21),
        "warmup": 3 if quick else 10,
        "inner": 3 if quick else (20 if gpu else 10),
        "cnn_batch": 64 if quick else 128,
        "resnet_width": 64 if gpu else 16,
        "resnet_batch": (128 if gpu else 16) if quick else (256 if gpu else 32),
    }


def _flag(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller batches")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: steadier when other processes share the CPU)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 21, 31 on a GPU; 7 quick)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda was asked for but no CUDA GPU is available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    s = _settings(device, args.quick)
    if args.reps:
        s["reps"] = args.reps
    timing = {"device": device, "reps": s["reps"], "inner": s["inner"], "warmup": s["warmup"]}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"mtlsearch engine benchmark: device {device} ({machine}), torch {torch.__version__}")
    print(f"median of {s['reps']} interleaved repetitions x {s['inner']} calls after "
          f"{s['warmup']} warm-up calls\n")

    cnn = create_space("small_cnn", input_shape=(1, 12, 24))
    resnet = create_space(
        "resnet18", input_shape=(3, 32, 32), small_input=True, width=s["resnet_width"]
    )
    cnn_name = f"small_cnn b{s['cnn_batch']}"
    resnet_name = f"resnet18 w{s['resnet_width']} b{s['resnet_batch']}"

    rows = bench_overhead(cnn_name, cnn, hand_small_cnn(), s["cnn_batch"], **timing)
    rows += bench_overhead(
        resnet_name, resnet, hand_resnet18(s["resnet_width"]), s["resnet_batch"], **timing
    )
    print("a. Engine overhead: materialized hard sharing vs hand-written nn.Module, 6 tasks")
    print(f"{'model':<22} {'measure':<27} {'mtlsearch ms':>12} {'by hand ms':>11} "
          f"{'ratio':>7}  {'target':<14} {'vs chained':>10}")
    for r in rows:
        target = f"<= {r.target:.2f} {_flag(r.ok)}" if r.target else ""
        print(f"{r.model:<22} {r.measure:<27} {r.materialized_ms:>12.3f} "
              f"{r.hand_written_ms:>11.3f} {r.ratio:>7.3f}  {target:<14} {r.vs_chained:>10.3f}")
    print("ratio: mtlsearch / hand-written (median of per-repetition ratios); vs chained: "
          "mtlsearch / the same blocks and heads called in a plain loop (the executor's own "
          "cost)")

    prefix = [
        bench_prefix(cnn_name, cnn, s["cnn_batch"], **timing),
        bench_prefix(resnet_name, resnet, s["resnet_batch"], **timing),
    ]
    print("\nb. Shared-prefix execution: branched tree, 6 tasks, inference")
    for p in prefix:
        print(f"{p.model}: branches per depth "
              f"{[len(level) for level in p.partitions]}")
        print(f"  all tasks in one forward      {p.full_ms:9.3f} ms")
        print(f"  sum of unique nodes + heads   {p.unique_nodes_ms:9.3f} ms   "
              f"ratio {p.full_vs_unique_nodes:.3f}  (target within 10%: "
              f"{_flag(p.ok_nodes)})")
        print(f"  each task's route separately  {p.per_task_ms:9.3f} ms   "
              f"speedup {p.speedup:.2f}x, MAC ratio {p.mac_ratio:.2f}x "
              f"(speedup / MAC ratio {p.speedup_vs_macs:.2f}); from node times "
              f"{p.node_time_ratio:.2f}x")

    memory = bench_memory_format(cnn_name, cnn, s["cnn_batch"], **timing)
    memory += bench_memory_format(resnet_name, resnet, s["resnet_batch"], **timing)
    print("\nc. Memory format: the same model contiguous (NCHW) vs channels-last (NHWC)")
    for m in memory:
        print(f"  {m.model:<22} {m.measure:<12} contiguous {m.contiguous_ms:9.3f} ms   "
              f"channels-last {m.channels_last_ms:9.3f} ms   speed-up {m.speedup:.2f}x")

    if args.json:
        data = {
            "command": " ".join(["python", "benchmarks/bench_engine.py", *sys.argv[1:]]),
            "device": str(device),
            "machine": machine,
            "torch": torch.__version__,
            "settings": s,
            "overhead": [asdict(r) | {"ok": r.ok} for r in rows],
            "memory_format": [asdict(m) for m in memory],
            "shared_prefix": [
                asdict(p) | {"ok": p.ok_nodes, "speedup_vs_macs": p.speedup_vs_macs}
                for p in prefix
            ],
        }
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
