"""affinity_tree: estimator cost and agreement, planted groups, and Δ_MTL on multi_digits.

Two parts (run side by side in two processes to halve the wall time):

    python benchmarks/bench_affinity_tree.py --part synthetic --json /tmp/at_syn.json
    python benchmarks/bench_affinity_tree.py --part multi_digits --seeds 0 1 2 --json /tmp/at_md.json

``synthetic``: for N tasks in two planted groups, the wall time of each estimator (single-task
training included), its agreement with the full estimator (Spearman over task pairs per depth,
adjusted Rand index of the trees over an alpha grid) and the ARI between the planted groups and
spectral clustering of each estimate after the last block. ``multi_digits``: the same
agreement figures, then a small search (an alpha grid, the paper's beam with n = 2) picked by
validation Δ_MTL, against hard sharing and three random_tree trees per seed (test Δ_MTL).
``--quick`` keeps N <= 8 (synthetic) or seed 0 (multi_digits); ``benchmarks/run_all.py`` runs
``--part synthetic`` for the estimators' cost against N.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from mtlsearch import (
    Proposal,
    SearchContext,
    TrainConfig,
    create_space,
    evaluate_proposal,
    load_dataset,
)
from mtlsearch.plugins.affinity_tree import (
    AffinityTree,
    build_tree,
    estimate_affinity,
    pair_spearman,
    pooling_steps,
    train_single_task,
    tree_ari,
)
from mtlsearch.plugins.affinity_tree.tree import _singletons, candidate_groupings
from mtlsearch.plugins.random_tree import random_partition
from mtlsearch.stats import mean_std
from mtlsearch.viz import draw_architecture

ESTIMATORS = ("full", "subset", "rsa")
ALPHAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def _tree(values, space, alpha, width=2):
    return build_tree(values, pooling_steps(space), alpha=alpha, beam_width=width, search="beam",
                      clustering="paper")  # the recorded figures use the paper's cost


def _estimates(ctx):
    start = time.perf_counter()
    single = train_single_task(ctx)
    single_s = time.perf_counter() - start
    out = {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        out[name] = estimate_affinity(ctx, name, single_task_model=single)
        out[name].meta["wall"] = single_s + time.perf_counter() - start
    return out


def _agreement(tensors, space):
    full = tensors["full"].values
    rows = {}
    for name, t in tensors.items():
        rho = pair_spearman(full, t.values)
        aris = [
            tree_ari(_tree(full, space, a).partitions, _tree(t.values, space, a).partitions)
            for a in ALPHAS
        ]
        rows[name] = {"wall": t.meta["wall"], "spearman": rho, "tree_ari": float(np.mean(aris))}
    return rows


def _planted_ari(values, groups, tasks):
    m = len(groups)
    from sklearn.metrics import adjusted_rand_score

    from mtlsearch.plugins.affinity_tree.agreement import partition_labels

    for g in candidate_groupings(_singletons(len(tasks)), values[-1]):
        if len(g) == m:
            named = [[tasks[i] for i in grp] for grp in g]
            return adjusted_rand_score(partition_labels(named, tasks), partition_labels(groups, tasks))
    return float("nan")


def _synthetic_ctx(n, epochs):
    data = load_dataset("synthetic", n_tasks=n, n_groups=2, n_samples=1200, input_dim=16, relatedness=0.95, seed=0)
    space = create_space("mlp", input_shape=data.input_shape, widths=(32, 32, 32))
    return data, space, SearchContext(data=data, space=space, budget=TrainConfig(epochs=epochs), seed=0)


def part_synthetic(args):
    results = []
    # Warm-up, untimed: the first estimate of a process pays imports and first-call costs,
    # which would otherwise land on the smallest N and bend the growth with N.
    _estimates(_synthetic_ctx(min(args.tasks), 1)[2])
    for n in args.tasks:
        data, space, ctx = _synthetic_ctx(n, args.epochs)
        tensors = _estimates(ctx)
        rows = _agreement(tensors, space)
        for name, t in tensors.items():
            rows[name]["planted_ari"] = _planted_ari(t.values, data.info["groups"], data.task_names)
        results.append({"n_tasks": n, "rows": rows})
        print(f"N={n}: " + "  ".join(f"{k} {v['wall']:.1f}s rho {np.nanmean(v['spearman']):.2f} ari {v['tree_ari']:.2f} planted {v['planted_ari']:.2f}" for k, v in rows.items()), flush=True)
    print("\n| N | " + " | ".join(f"{e} s" for e in ESTIMATORS) + " | full/subset | full/rsa | planted ARI (full, subset, rsa) |")
    for r in results:
        w = [r["rows"][e]["wall"] for e in ESTIMATORS]
        p = [r["rows"][e]["planted_ari"] for e in ESTIMATORS]
        print(f"| {r['n_tasks']} | " + " | ".join(f"{x:.1f}" for x in w) + f" | {w[0] / w[1]:.1f}x | {w[0] / w[2]:.1f}x | " + ", ".join(f"{x:.2f}" for x in p) + " |")
    print("\n| N | estimator | Spearman vs full per depth | tree ARI vs full (mean over alphas) |")
    for r in results:
        for e in ("subset", "rsa"):
            v = r["rows"][e]
            print(f"| {r['n_tasks']} | {e} | " + ", ".join(f"{x:.2f}" for x in v["spearman"]) + f" | {v['tree_ari']:.2f} |")
    return results


def _random_trees(ctx, k, seed):
    rng = random.Random(seed)
    tasks, depth = ctx.task_names, ctx.space.num_blocks
    out = []
    for _ in range(k):
        branch = rng.randrange(depth)
        groups = rng.randint(2, len(tasks))
        part = random_partition(tasks, groups, random.Random(rng.randrange(2**31)))
        graph = ctx.new_graph("partitions", partitions=[[tasks]] * branch + [part] * (depth - branch))
        out.append(evaluate_proposal(Proposal(graph), ctx))
    return out


def part_multi_digits(args):
    per_seed = []
    for seed in args.seeds:
        data = load_dataset("multi_digits", seed=seed)
        space = create_space("small_cnn", input_shape=data.input_shape)
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=args.epochs), seed=seed)
        tensors = _estimates(ctx)
        agree = _agreement(tensors, space)
        if seed == args.seeds[0]:
            tensors["full"].draw(IMAGES / "affinity_tree_heatmap_full", title=f"multi_digits affinity, full estimator (seed {seed})")
            tensors["rsa"].draw(IMAGES / "affinity_tree_heatmap_rsa", title=f"multi_digits affinity, RSA estimator (seed {seed})")
            tensors["full"].save(Path(args.out_dir) / f"affinity_multi_digits_seed{seed}.json")
        # the paper's method (blind alpha, eq. 1 cost): the recorded figures are its
        strategy = AffinityTree(estimator="full", search="beam", alpha_sampling="log_uniform",
                                clustering="paper")
        trials = []
        for alpha in ALPHAS:
            study = optuna.create_study()
            study.enqueue_trial({"alpha": alpha, "beam_width": 2})
            trial = study.ask()
            result = evaluate_proposal(strategy.propose(trial, ctx), ctx)
            trials.append(result)
            print(f"seed {seed} alpha {alpha}: {result.info['branches']} val {result.delta_mtl:+.2f} test {result.delta_mtl_test:+.2f} params {result.params} reused {result.info['reused']}", flush=True)
        best = max(trials, key=lambda r: r.delta_mtl)
        if seed == args.seeds[0]:
            draw_architecture(best.graph, IMAGES / "affinity_tree_tree", title=f"affinity_tree on multi_digits (seed {seed}, alpha {best.info['alpha']:g})")
        hard = evaluate_proposal(Proposal(ctx.new_graph("hard_sharing")), ctx)
        rand = _random_trees(ctx, 3, seed)
        row = {
            "seed": seed,
            "agreement": agree,
            "best": {"alpha": best.info["alpha"], "tree": best.info["tree"], "params": best.params, "val": best.delta_mtl, "test": best.delta_mtl_test},
            "alpha_grid": [{"alpha": r.info["alpha"], "branches": r.info["branches"], "val": r.delta_mtl, "test": r.delta_mtl_test, "params": r.params, "reused": r.info["reused"]} for r in trials],
            "distinct_trees": sum(not r.info["reused"] for r in trials),
            "hard": {"params": hard.params, "test": hard.delta_mtl_test},
            "random": {"params": statistics.mean(r.params for r in rand), "test": statistics.mean(r.delta_mtl_test for r in rand)},
        }
        per_seed.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "best", "hard", "random", "distinct_trees")}), flush=True)

    def ms(values):
        mean, std = mean_std(values)
        return f"{mean:+.2f} ± {std:.2f}"

    print("\n| structure | parameters (mean) | Δ_MTL test, mean ± std |")
    print(f"| affinity_tree (best val over alpha grid) | {statistics.mean(r['best']['params'] for r in per_seed):,.0f} | {ms([r['best']['test'] for r in per_seed])} |")
    print(f"| hard sharing | {statistics.mean(r['hard']['params'] for r in per_seed):,.0f} | {ms([r['hard']['test'] for r in per_seed])} |")
    print(f"| random_tree (3 trees per seed) | {statistics.mean(r['random']['params'] for r in per_seed):,.0f} | {ms([r['random']['test'] for r in per_seed])} |")
    print("\n| alpha | branches per block (seed by seed) | parameters (mean) | Δ_MTL test, mean ± std |")
    for k, alpha in enumerate(ALPHAS):
        rows = [r["alpha_grid"][k] for r in per_seed]
        branches = "; ".join(str(r["branches"]) for r in rows)
        print(f"| {alpha:g} | {branches} | {statistics.mean(r['params'] for r in rows):,.0f} | {ms([r['test'] for r in rows])} |")
    print("\n| estimator | wall s (mean) | full / estimator | Spearman vs full per depth (mean over seeds) | tree ARI vs full |")
    for e in ESTIMATORS:
        walls = [r["agreement"][e]["wall"] for r in per_seed]
        full = [r["agreement"]["full"]["wall"] for r in per_seed]
        rho = np.nanmean([r["agreement"][e]["spearman"] for r in per_seed], axis=0)
        ari = [r["agreement"][e]["tree_ari"] for r in per_seed]
        print(f"| {e} | {statistics.mean(walls):.1f} | {statistics.mean(full) / statistics.mean(walls):.1f}x | " + ", ".join(f"{x:.2f}" for x in rho) + f" | {ms(ari)} |")
    return per_seed


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "multi_digits"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8, 12])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default="/tmp")
    parser.add_argument("--json", default=None)
    parser.add_argument("--quick", action="store_true",
                        help="synthetic: N = 4 and 8 only; multi_digits: seed 0 only")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.quick:
        args.tasks = [n for n in args.tasks if n <= 8] or args.tasks[:1]
        args.seeds = args.seeds[:1]
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    result = part_synthetic(args) if args.part == "synthetic" else part_multi_digits(args)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
