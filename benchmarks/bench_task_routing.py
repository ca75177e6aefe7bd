"""Task routing benchmarks: the σ sweep on multi_digits and the many-task scaling on synthetic.

Usage::

    python benchmarks/bench_task_routing.py sweep   [--epochs 10] [--seeds 0 1 2] [--scheme paper]
    python benchmarks/bench_task_routing.py scale   [--tasks 10 50 100 200 312]
    python benchmarks/bench_task_routing.py images  # the pictures of docs/strategies/task_routing.md

``sweep`` prints the per-σ accuracy / precision / recall tables (mean ± std over seeds) and
saves docs/images/task_routing_sweep.png. ``scale`` prints, side by side for each task count:
the training step time with one active task per batch (and with all tasks, for contrast), the
evaluation time of all tasks in one batched pass against a loop of one forward per task, and
the peak memory of that pass (measured in a fresh process per task count, VmHWM - VmRSS).
``scale --json PATH`` also writes the figures (the medians and every round's samples) for
``benchmarks/run_all.py``; ``scale --quick`` runs 3 rounds. The one-task step ratio is the median over steps of each step
at T tasks over the step at the first task count taken in the same sweep.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mtlsearch import create_space, load_dataset
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import TrainConfig, _param_groups, task_losses
from mtlsearch.plugins.task_routing import (
    BatchedRouting,
    routed_bytes_per_row,
    routed_forward,
    routed_graph,
)
from mtlsearch.plugins.task_routing.sweep import sigma_sweep
from mtlsearch.strategy.context import SearchContext

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
WIDTHS = (64, 64, 64)
CHUNK_BYTES = 4 << 20  # about a CPU cache's worth: large tensors cost page faults on the CPU


def run_sweep(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    budget = TrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3)
    start = time.perf_counter()
    sizes = {"n_train": args.n_train, "n_val": args.n_train // 3, "n_test": args.n_train // 3}
    result = sigma_sweep(
        "multi_digits",
        dataset_kwargs=sizes,
        space="small_cnn",
        seeds=args.seeds,
        scheme=args.scheme,
        budget=budget,
        plot=IMAGES / f"task_routing_sweep{'' if args.scheme == 'paper' else '_' + args.scheme}",
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(f"multi_digits {sizes}, small_cnn, {args.scheme} masks, {args.epochs} epochs, one active task per batch, "
          f"validation split, seeds {args.seeds} ({time.perf_counter() - start:.0f} s)")
    for metric in ("accuracy", "precision", "recall"):
        print(f"\n{metric} (%, validation)\n{result.table(metric)}")
    mean, std = result.test_overall("accuracy")
    print(f"\nsigma chosen on validation accuracy: {result.chosen_sigma}; its test accuracy "
          f"{100 * mean:.1f} ± {100 * std:.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))


def _model(n_tasks: int, sigma: float = 0.4):
    data = load_dataset("synthetic", n_tasks=n_tasks, n_groups=min(8, n_tasks), n_samples=3000)
    space = create_space("mlp", input_shape=data.input_shape, widths=WIDTHS)
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1))
    graph = routed_graph(ctx.new_graph("hard_sharing"), space, sigma=sigma, seed=0)
    torch.manual_seed(0)
    return data, space, materialize(graph, space, ctx.tasks)


def _step_timer(model, data, sampling: str):
    """A function timing one optimizer step (seconds) with one active task or all tasks."""
    # As in Trainer.fit: one parameter group per head, and a one-task step visits only the
    # trunk's group and the active head's.
    opt = torch.optim.Adam(_param_groups(model), lr=1e-3)
    head_group = {t: i + 1 for i, t in enumerate(model.tasks)}
    batches = list(data.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))
    tasks, counter = model.tasks, [0]
    # Once, as the Trainer does per epoch: train() walks every module (two per task head),
    # which at 312 tasks costs more than the step itself if repeated per batch.
    model.train()

    def step() -> float:
        i = counter[0] = counter[0] + 1
        x, y = batches[i % len(batches)]
        active = [tasks[i * 7919 % len(tasks)]] if sampling == "one" else None
        t0 = time.perf_counter()
        out = model(x, active)
        loss = sum(task_losses(model, out, y).values())
        groups = opt.param_groups
        if active is not None:
            opt.param_groups = [groups[0], groups[head_group[active[0]]]]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt.param_groups = groups
        return time.perf_counter() - t0

    return step


def _eval_timers(model, data) -> dict[str, object]:
    """Functions timing all tasks on 512 rows: BatchedRouting whole / in cache-sized task
    chunks, the core plan model(x), and a loop of one forward per task."""
    x = data.test.inputs[:512]
    runner = BatchedRouting(model)
    ways = {
        "batched": lambda: runner(x),
        "chunked": lambda: routed_forward(model, x, max_bytes=CHUNK_BYTES, runner=runner),
        "plan": lambda: model(x),
        "loop": lambda: [model(x, [t]) for t in model.tasks],
    }

    def timer(way):
        def run() -> float:
            model.eval()
            with torch.no_grad():
                t0 = time.perf_counter()
                way()
                return time.perf_counter() - t0

        return run

    return {k: timer(w) for k, w in ways.items()}


def _memory_child(n_tasks: int) -> None:
    """In a fresh process: peak memory of one batched no-grad pass over all tasks (512 rows)."""

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    torch.set_num_threads(1)
    data, space, model = _model(n_tasks)
    x = data.test.inputs[:512]
    model.eval()
    with torch.no_grad():
        model(x[:2])
    base = status("VmRSS:")
    with torch.no_grad():
        model(x)
    peak = status("VmHWM:") - base
    print(json.dumps({"peak": max(peak, 0), "estimate": routed_bytes_per_row(space, n_tasks) * 512,
                      "params": sum(p.numel() for p in model.parameters())}))


def run_scale(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    timers: dict[int, dict[str, object]] = {}
    for n in args.tasks:
        data, _, model = _model(n)
        timers[n] = {"one": _step_timer(model, data, "one"), "all": _step_timer(model, data, "all"),
                     **_eval_timers(model, data)}
        for _ in range(n):  # warm-up: every task's one-task plan is built and cached
            timers[n]["one"]()
        for timer in timers[n].values():
            timer()
    # As in Trainer.fit: the long-lived objects are frozen out of the garbage collector.
    gc.collect()
    gc.freeze()
    # Round-robin over task counts and ways, so a change of machine load hits all alike.
    samples: dict[int, dict[str, list[float]]] = {n: {k: [] for k in timers[n]} for n in timers}
    rounds, steps = (3, 40) if args.quick else (args.rounds, 40)
    first = args.tasks[0]
    # Side by side: each one-task step at T tasks over the step at the first count taken in
    # the same sweep (milliseconds apart), and each round's loop / all-task pass.
    paired: dict[int, list[float]] = {n: [] for n in timers}
    for _ in range(rounds):
        # One-task steps alternate between task counts step by step: the ratio we report
        # compares steps taken within milliseconds of each other.
        one_step = {n: [] for n in timers}
        for _ in range(steps):
            for n, ways in timers.items():
                one_step[n].append(ways["one"]())
        for n in timers:
            paired[n] += [a / b for a, b in zip(one_step[n], one_step[first])]
        for n, ways in timers.items():
            samples[n]["one"].append(statistics.median(one_step[n]) * 1e3)
            for name, timer in ways.items():
                if name != "one":
                    samples[n][name].append(timer() * 1e3)
    mems = {}
    for n in args.tasks:
        child = subprocess.run(
            [sys.executable, __file__, "memory-child", str(n)], capture_output=True, text=True, check=True
        )
        mems[n] = json.loads(child.stdout.strip().splitlines()[-1])
    med = {n: {k: statistics.median(v) for k, v in samples[n].items()} for n in samples}
    print(f"synthetic (3000 samples, 32 features), mlp widths {list(WIDTHS)}, sigma 0.4 paper masks, "
          f"batch 64 (train) / 512 (eval), 1 CPU thread; medians of {rounds} interleaved rounds; "
          f"chunked = BatchedRouting in task chunks of at most {CHUNK_BYTES >> 20} MiB")
    print(f"| tasks | train step ms, one active task | ratio to T={first} (paired steps) | train step ms, all tasks | "
          "eval ms, BatchedRouting | eval ms, chunked | eval ms, core plan | eval ms, per-task loop | "
          "loop / chunked | peak MiB, core plan pass | estimate MiB | params |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.tasks:
        m, mem = med[n], mems[n]
        print(f"| {n} | {m['one']:.2f} | {statistics.median(paired[n]):.2f} | {m['all']:.1f} | {m['batched']:.1f} | "
              f"{m['chunked']:.1f} | {m['plan']:.1f} | {m['loop']:.1f} | {m['loop'] / m['chunked']:.2f}x | "
              f"{mem['peak'] / 2**20:.1f} | {mem['estimate'] / 2**20:.1f} | {mem['params']} |")
    if args.json:
        rows = [{"tasks": n, "one_ms": med[n]["one"], "one_ratio": statistics.median(paired[n]),
                 "loop_vs_plan": statistics.median(
                     lo / pl for lo, pl in zip(samples[n]["loop"], samples[n]["plan"])),
                 "all_ms": med[n]["all"], "batched_ms": med[n]["batched"],
                 "chunked_ms": med[n]["chunked"], "plan_ms": med[n]["plan"],
                 "loop_ms": med[n]["loop"], "peak_mib": mems[n]["peak"] / 2**20,
                 "estimate_mib": mems[n]["estimate"] / 2**20, "params": mems[n]["params"]}
                for n in args.tasks]
        settings = {"dataset": "synthetic", "n_samples": 3000, "space": "mlp",
                    "widths": list(WIDTHS), "sigma": 0.4, "train_batch": 64, "eval_rows": 512,
                    "rounds": rounds, "one_task_steps_per_round": steps,
                    "chunk_mib": CHUNK_BYTES >> 20, "threads": 1}
        command = ["python", "benchmarks/bench_task_routing.py", *sys.argv[1:]]
        Path(args.json).write_text(json.dumps(
            {"command": " ".join(command), "settings": settings, "rows": rows,
             "samples": {str(n): samples[n] for n in samples}}, indent=1))
        print(f"wrote {args.json}")


def run_images(args: argparse.Namespace) -> None:
    from mtlsearch.viz import draw_architecture

    data = load_dataset("multi_digits", n_train=300, n_val=100, n_test=100)
    space = create_space("small_cnn", input_shape=data.input_shape)
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1))
    for sigma, scheme in ((0.4, "paper"), (0.0, "paper"), (0.4, "official")):
        graph = routed_graph(ctx.new_graph("hard_sharing"), space, sigma=sigma, seed=0, scheme=scheme)
        stem = IMAGES / f"task_routing_masks_{scheme}_s{int(sigma * 10):02d}"
        draw_architecture(graph, stem, title=f"Task routing, {scheme} masks, sigma = {sigma}")
        print(f"wrote {stem}.png")


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--n-train", type=int, default=3000)
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--scheme", default="paper", choices=("paper", "official"))
    s.add_argument("--json")
    c = sub.add_parser("scale")
    c.add_argument("--tasks", type=int, nargs="+", default=[10, 50, 100, 200, 312])
    c.add_argument("--rounds", type=int, default=5)
    c.add_argument("--quick", action="store_true", help="3 rounds instead of --rounds")
    c.add_argument("--json", help="also write the figures as JSON")
    sub.add_parser("images")
    m = sub.add_parser("memory-child")
    m.add_argument("n", type=int)
    return p


def main() -> None:
    args = build_parser().parse_args()
    if args.part == "sweep":
        run_sweep(args)
    elif args.part == "scale":
        run_scale(args)
    elif args.part == "images":
        run_images(args)
    else:
        _memory_child(args.n)


if __name__ == "__main__":
    main()
