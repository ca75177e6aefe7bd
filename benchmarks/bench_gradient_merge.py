"""Experiments of the ``gradient_merge`` strategy (Selective Sharing) for its docs page.

Prints, as mean ± std over seeds:

1. ``synthetic`` with planted groups: adjusted Rand index of the final groups per directive;
2. ``digits`` (10 one-vs-rest tasks, the paper's MNIST setting): accuracy of gradient_merge
   against hard sharing and single-task, the groups formed and parameter counts;
3. ``multi_digits``: gradient_merge against hard sharing and random_tree;
4. cost: a training epoch without and with gradient capture (ratios measured side by side),
   and the factorisation / clustering time against the number of tasks (10 to 312).

Pictures go to ``docs/images/gradient_merge_*.png``. Run from the repository root::

    python benchmarks/bench_gradient_merge.py            # the full run (about 10 minutes)
    python benchmarks/bench_gradient_merge.py --quick    # a smoke run
    python benchmarks/bench_gradient_merge.py --part cost --json cost.json   # part 5 alone

``--part cost`` (used by ``benchmarks/run_all.py``) measures only gradient merging's cost at
10 to 312 tasks: one training epoch with the strategy's capture, factorisation and clustering
against the same epoch without them, taken in turns (median of ``--repeats`` per-repetition
ratios), with the factorisation and clustering seconds of each epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch
from sklearn.metrics import adjusted_rand_score

from mtlsearch.engine.train import TrainConfig
from mtlsearch.plugins.gradient_merge import GradientMerge
from mtlsearch.plugins.gradient_merge.plots import plot_final_groups, plot_group_formation
from mtlsearch.registry import create_space, create_strategy, load_dataset
from mtlsearch.stats import mean_std
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import run_strategy

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
GM = {"min_cluster_size": 2, "min_samples": 1, "tt_rank": 4}


def ms(values: list[float], digits: int = 2) -> str:
    """``mean ± std`` over seeds; the value alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_acc(metrics: dict) -> float:
    return 100 * statistics.mean(m["accuracy"] for m in metrics.values())


def synthetic_ari(seeds: list[int], epochs: int) -> dict:
    print(f"\n## synthetic, 12 tasks in 3 planted groups, mlp (64,64,32,32), {epochs} epochs")
    print("| directive | ARI | final branches | lock epoch |\n|---|---|---|---|")
    out = {}
    for directive in ("similarity", "dissimilarity", "variance"):
        aris, nb, locks, records = [], [], [], []
        for seed in seeds:
            data = load_dataset("synthetic", n_tasks=12, n_groups=3, n_samples=2000, seed=seed)
            space = create_space("mlp", input_shape=data.input_shape, widths=(64, 64, 32, 32))
            ctx = SearchContext(data=data, space=space, seed=seed,
                                budget=TrainConfig(epochs=epochs, batch_size=64))
            rec = run_strategy(GradientMerge(directive=directive, start_epoch=0, **GM), ctx).info[
                "gradient_merge"]
            found = {t: i for i, g in enumerate(rec["final_groups"]) for t in g}
            aris.append(adjusted_rand_score(data.info["labels"], [found[t] for t in data.task_names]))
            nb.append(len(rec["final_groups"]))
            locks.append(rec["lock_epoch"] if rec["lock_epoch"] is not None else -1)
            records.append(rec)
        print(f"| {directive} | {ms(aris)} | {ms(nb, 1)} | {ms(locks, 1)} |")
        out[directive] = {"ari": aris, "records": records}
    return out


def run_three(dataset: str, space_kwargs: dict, seeds: list[int], epochs: int, others: list[str],
              gm_kwargs: dict) -> dict:
    rows: dict[str, dict[str, list]] = {}
    records = []
    for seed in seeds:
        data = load_dataset(dataset, seed=seed)
        space = create_space("small_cnn", input_shape=data.input_shape, **space_kwargs)
        ctx = SearchContext(data=data, space=space, seed=seed,
                            budget=TrainConfig(epochs=epochs, batch_size=64))
        ref = ctx.reference()
        single = rows.setdefault("single_task", {"acc": [], "params": [], "delta": []})
        single["acc"].append(mean_acc(ref["test"]))
        single["delta"].append(0.0)
        single["params"].append(None)
        for name in ["gradient_merge", *others]:
            strategy = GradientMerge(**gm_kwargs) if name == "gradient_merge" else create_strategy(name)
            start = time.perf_counter()
            result = run_strategy(strategy, ctx)
            row = rows.setdefault(name, {"acc": [], "params": [], "delta": [], "seconds": []})
            row["acc"].append(mean_acc(result.metrics["test"]))
            row["params"].append(result.params)
            row["delta"].append(result.delta_mtl_test)
            row["seconds"].append(time.perf_counter() - start)
            if name == "gradient_merge":
                records.append(result.info["gradient_merge"])
        from mtlsearch.graph.summary import summarize

        rows["single_task"]["params"][-1] = summarize(ctx.new_graph("single_task"), space, ctx.tasks).params
    print("| strategy | mean test accuracy (%) | Δ_MTL test (%) | parameters |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {ms(row['acc'])} | {ms(row['delta'])} | {ms(row['params'], 0)} |")
    for seed, rec in zip(seeds, records):
        sizes = [e["params"] for e in rec["epochs"] if e["merged"]]
        print(f"seed {seed}: groups {rec['final_groups']}; lock epoch {rec['lock_epoch']} "
              f"({rec['stop_reason']}); params {rec['initial_params']} -> {sizes}")
    return {"rows": rows, "records": records}


def epoch_cost(seeds: int, repeats: int) -> None:
    print("\n## cost of one training epoch on digits (small_cnn, 10 branches), median of "
          f"{repeats} interleaved runs")
    data = load_dataset("digits", seed=0)
    space = create_space("small_cnn", input_shape=data.input_shape)
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=64))
    trial = optuna.create_study().ask()
    variants = {
        "plain (no capture)": None,
        "capture, window 1 (paper)": GradientMerge(directive="similarity", start_epoch=0, window=1, **GM),
        "capture, window 10": GradientMerge(directive="similarity", start_epoch=0, window=10, **GM),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    graph = GradientMerge(start_epoch=0, directive="similarity", **GM).propose(trial, ctx).graph
    for _ in range(repeats):
        for name, strategy in variants.items():
            hooks = {}
            if strategy is not None:
                g = strategy.propose(trial, ctx).graph
                strategy._run.min_cluster_size = 99  # measure capture + clustering, no merge
                hooks = {"on_epoch_end": [strategy.on_epoch_end], "on_backward": [strategy.on_backward]}
            else:
                g = graph
            times[name].append(ctx.train(g, **hooks).seconds)
    base = statistics.median(times["plain (no capture)"])
    print("| variant | epoch seconds | ratio to plain |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.median(values) / base:.2f} |")


def clustering_cost(task_counts: list[int]) -> None:
    print("\n## factorisation and clustering time against the number of tasks (synthetic, "
          "mlp (32,32,16,16), 1000 samples, batch 128, one epoch, window 1, rank 4)")
    print("| tasks | epoch seconds | factorise seconds | cluster seconds |\n|---|---|---|---|")
    for n in task_counts:
        data = load_dataset("synthetic", n_tasks=n, n_groups=max(2, n // 4), n_samples=1000, seed=0)
        space = create_space("mlp", input_shape=data.input_shape, widths=(32, 32, 16, 16))
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=128))
        strategy = GradientMerge(directive="similarity", start_epoch=0, **GM)
        graph = strategy.propose(optuna.create_study().ask(), ctx).graph
        result = ctx.train(graph, on_epoch_end=[strategy.on_epoch_end],
                           on_backward=[strategy.on_backward])
        entry = strategy._run.record["epochs"][0]
        print(f"| {n} | {result.seconds:.2f} | {entry['factorise_seconds']:.2f} | "
              f"{entry['cluster_seconds']:.4f} |")


def scaling_cost(task_counts: list[int], repeats: int, n_samples: int) -> dict:
    """Gradient merging's cost at each task count, side by side with plain training.

    For every count: ``synthetic`` data, mlp (32, 32, 16, 16), batch 128, one epoch of the
    branched graph gradient_merge proposes (shared first half, one branch per task), trained
    ``repeats`` times with the strategy's hooks (capture every batch, factorisation, clustering
    and merging at the epoch's end) and ``repeats`` times without, in turns (the order swapped
    every repetition). Ratio = median over repetitions of (with / without).
    """
    print(f"\n## gradient merging's cost against the number of tasks (synthetic, {n_samples} "
          f"samples, mlp (32,32,16,16), batch 128, one epoch, window 1, rank 4), median of "
          f"{repeats} interleaved repetitions")
    print("| tasks | plain epoch s | epoch with merging s | ratio | factorise s | cluster s | "
          "(factorise + cluster) / plain epoch |\n|---|---|---|---|---|---|---|")
    rows = []
    for n in task_counts:
        data = load_dataset("synthetic", n_tasks=n, n_groups=max(2, n // 4), n_samples=n_samples,
                            seed=0)
        space = create_space("mlp", input_shape=data.input_shape, widths=(32, 32, 16, 16))
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=128))
        trial = optuna.create_study().ask()
        graph = GradientMerge(directive="similarity", start_epoch=0, **GM).propose(trial, ctx).graph
        ctx.train(graph)  # warm-up: allocator, plans, first-call costs
        if n == task_counts[0]:  # and once with merging: imports and compiled code of hdbscan
            warm = GradientMerge(directive="similarity", start_epoch=0, **GM)
            ctx.train(warm.propose(trial, ctx).graph, on_epoch_end=[warm.on_epoch_end],
                      on_backward=[warm.on_backward])
        plain, merged, factorise, cluster = [], [], [], []
        for r in range(repeats):
            for variant in (("plain", "merge") if r % 2 == 0 else ("merge", "plain")):
                if variant == "plain":
                    plain.append(ctx.train(graph).seconds)
                    continue
                strategy = GradientMerge(directive="similarity", start_epoch=0, **GM)
                g = strategy.propose(trial, ctx).graph
                merged.append(ctx.train(g, on_epoch_end=[strategy.on_epoch_end],
                                        on_backward=[strategy.on_backward]).seconds)
                entry = strategy._run.record["epochs"][0]
                factorise.append(entry["factorise_seconds"])
                cluster.append(entry["cluster_seconds"])
        row = {
            "tasks": n,
            "plain_s": statistics.median(plain),
            "merge_s": statistics.median(merged),
            "ratio": statistics.median(m / p for m, p in zip(merged, plain)),
            "factorise_s": statistics.median(factorise),
            "cluster_s": statistics.median(cluster),
            "clustering_share": statistics.median(
                (f + c) / p for f, c, p in zip(factorise, cluster, plain)),
            "samples": {"plain": plain, "merge": merged, "factorise": factorise,
                        "cluster": cluster},
        }
        rows.append(row)
        print(f"| {n} | {row['plain_s']:.2f} | {row['merge_s']:.2f} | {row['ratio']:.2f} | "
              f"{row['factorise_s']:.3f} | {row['cluster_s']:.4f} | "
              f"{row['clustering_share']:.3f} |", flush=True)
    settings = {"dataset": "synthetic", "n_samples": n_samples, "space": "mlp",
                "widths": [32, 32, 16, 16], "batch_size": 128, "epochs": 1, "window": 1,
                "repeats": repeats, "threads": 1, **GM}
    return {"settings": settings, "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer epochs")
    parser.add_argument("--part", choices=["all", "cost"], default="all",
                        help="cost: only gradient merging's cost against the number of tasks")
    parser.add_argument("--tasks", type=int, nargs="+", default=None,
                        help="task counts of --part cost (default 10 39 78 156 312)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions of --part cost (default 3; 1 with --quick)")
    parser.add_argument("--n-samples", type=int, default=1000,
                        help="synthetic samples of --part cost")
    parser.add_argument("--json", help="--part cost: write the figures as JSON here")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.part == "cost":
        start = time.perf_counter()
        counts = args.tasks or [10, 39, 78, 156, 312]
        repeats = args.repeats or (1 if args.quick else 3)
        data = scaling_cost(counts, repeats, args.n_samples)
        data["command"] = " ".join(["python", "benchmarks/bench_gradient_merge.py", *sys.argv[1:]])
        data["seconds"] = time.perf_counter() - start
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1))
            print(f"wrote {args.json}")
        return
    seeds = [0] if args.quick else [0, 1, 2]
    scale = 3 if args.quick else 1
    start = time.perf_counter()
    syn = synthetic_ari(seeds, epochs=6 // scale)
    print(f"\n## digits (10 one-vs-rest tasks), small_cnn (16,32,32,32), {12 // scale} epochs, "
          "gradient_merge similarity from epoch 1, branches from block 2")
    dig = run_three("digits", {}, seeds, 12 // scale, ["hard_sharing"],
                    dict(directive="similarity", start_epoch=1, **GM))
    print(f"\n## multi_digits (6 tasks), small_cnn default, {8 // scale} epochs")
    multi = run_three("multi_digits", {}, seeds, 8 // scale, ["hard_sharing", "random_tree"],
                      dict(directive="similarity", start_epoch=1, **GM))
    epoch_cost(seeds=1, repeats=1 if args.quick else 3)
    clustering_cost([10, 39] if args.quick else [10, 39, 78, 156, 312])
    IMAGES.mkdir(parents=True, exist_ok=True)
    plot_group_formation(dig["records"][0], IMAGES / "gradient_merge_formation_digits",
                         title="digits, seed 0: group formation (similarity)")
    plot_group_formation(syn["similarity"]["records"][0], IMAGES / "gradient_merge_formation_synthetic",
                         title="synthetic (3 planted groups of 4), seed 0")
    finals = {f"digits seed {s}": r["final_groups"] for s, r in zip(seeds, dig["records"])}
    finals.update({f"multi_digits seed {s}": r["final_groups"] for s, r in zip(seeds, multi["records"])})
    plot_final_groups(finals, IMAGES / "gradient_merge_final_groups",
                      title="final groups (similarity directive)")
    Path("/tmp/bench_gradient_merge.json").write_text(json.dumps(
        {"synthetic": {k: v["ari"] for k, v in syn.items()}, "digits": dig, "multi": multi},
        default=str))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
