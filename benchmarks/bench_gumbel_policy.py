"""gumbel_policy (AdaShare) against hard sharing, Random #2 and random_tree, plus its costs.

For each seed: hard sharing (one training), random_tree (best of N trials on validation, N =
the number of AdaShare candidates, so both get the same number of retrainings), AdaShare (policy
learning, then the best of its sampled candidates), Random #2 (the same candidates' per-task skip
counts at random blocks, reusing the cached policy). Costs, measured side by side in one run:
a policy alternation (weight pass on split A + policy pass on split B = one pass over the
training split) against a hard-sharing pass over the same samples (the warm-up epoch on split A,
doubled), and the retrained models' inference time against hard sharing.

Run (one dataset per process; two processes fit two cores):
    python benchmarks/bench_gumbel_policy.py --dataset multi_digits --seeds 0 1 2
    python benchmarks/bench_gumbel_policy.py --dataset synthetic --seeds 0 1 2 --ablations
    python benchmarks/bench_gumbel_policy.py --quick --json gumbel.json   # smoke run, JSON out
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mtlsearch import create_space, load_dataset, materialize, run_strategy
from mtlsearch.engine.train import TrainConfig
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.plugins.gumbel_policy import GumbelPolicy, draw_policy, draw_task_correlation
from mtlsearch.plugins.random_tree import RandomTree
from mtlsearch.registry import create_strategy
from mtlsearch.stats import mean_std
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import evaluate_proposal

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def setup(dataset: str, seed: int, epochs: int, n_train: int | None = None) -> SearchContext:
    if dataset == "multi_digits":
        sizes = {} if n_train is None else {"n_train": n_train, "n_val": n_train // 2, "n_test": n_train // 2}
        data = load_dataset("multi_digits", **sizes)
        space = create_space("resnet18", input_shape=data.input_shape, width=8, small_input=True)
    else:
        data = load_dataset("synthetic", n_tasks=6, n_groups=2, relatedness=0.9, n_samples=2000)
        space = create_space("mlp", input_shape=data.input_shape, widths=(32, 32, 32, 32, 32))
    return SearchContext(data=data, space=space, budget=TrainConfig(epochs=epochs), seed=seed)


def infer_seconds(model, x: torch.Tensor, repeats: int = 5) -> float:
    model.eval()
    times = []
    with torch.no_grad():
        model(x[:8])
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_of_trials(strategy, ctx: SearchContext, trials: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=ctx.seed), direction="maximize")
    best = None
    for _ in range(trials):
        trial = study.ask()
        result = evaluate_proposal(strategy.propose(trial, ctx), ctx)
        study.tell(trial, result.delta_mtl)
        if best is None or result.delta_mtl > best.delta_mtl:
            best = result
    return best


def mean_std_text(values: list[float]) -> str:
    """``+mean ± std`` over seeds; the value alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    mean, std = mean_std(values)
    return f"{mean:+.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=("multi_digits", "synthetic"), default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4, help="sampled architectures (+ most likely)")
    parser.add_argument("--policy-lr", type=float, default=0.05)
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--n-train", type=int, default=None, help="multi_digits: training samples")
    parser.add_argument("--out", "--json", dest="out", default=None,
                        help="write all results as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: seed 0, 2 epochs, 2+1 candidates, 600 training samples, "
                             "no pictures")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.samples = args.seeds[:1], 2, 2
        args.n_train = args.n_train or 600
    torch.set_num_threads(1)
    fixed = dict(lambda_sparsity=0.01, lambda_sharing=0.05, tau0=5.0, warmup_fraction=0.2, curriculum=0.5)
    common = dict(num_samples=args.samples, policy_lr=args.policy_lr, search_epochs=2 * args.epochs)
    variants: dict[str, GumbelPolicy] = {
        "adashare": GumbelPolicy(**fixed, **common),
        "random2": GumbelPolicy(**fixed, **common, ablation="random2"),
    }
    if args.ablations:
        variants.update({
            "random1": GumbelPolicy(**fixed, **common, ablation="random1"),
            "no_curriculum": GumbelPolicy(**{**fixed, "curriculum": 0.0}, **common),
            "no_sparsity": GumbelPolicy(**{**fixed, "lambda_sparsity": 0.0}, **common),
            "no_sharing": GumbelPolicy(**{**fixed, "lambda_sharing": 0.0}, **common),
            "stochastic_depth": GumbelPolicy(ablation="stochastic_depth"),
        })
    rows: dict[str, dict[str, list[float]]] = {}
    costs: dict[str, list[float]] = {"alternation_over_hard_epoch": [], "inference_ratio": [], "macs_ratio": []}

    def add(name: str, result) -> None:
        row = rows.setdefault(name, {"val": [], "test": [], "params": [], "seconds": []})
        row["val"].append(result.delta_mtl)
        row["test"].append(result.delta_mtl_test)
        row["params"].append(result.params)

    for seed in args.seeds:
        ctx = setup(args.dataset, seed, args.epochs, args.n_train)
        start = time.perf_counter()
        ctx.reference()
        print(f"[seed {seed}] single-task reference in {time.perf_counter() - start:.0f}s", flush=True)
        start = time.perf_counter()
        hard = run_strategy(create_strategy("hard_sharing"), ctx)
        add("hard_sharing", hard)
        rows["hard_sharing"]["seconds"].append(time.perf_counter() - start)
        n_candidates = args.samples + 1
        start = time.perf_counter()
        add("random_tree", best_of_trials(RandomTree(), ctx, n_candidates))
        rows["random_tree"]["seconds"].append(time.perf_counter() - start)
        for name, strategy in variants.items():
            start = time.perf_counter()
            result = run_strategy(strategy, ctx)
            add(name, result)
            rows[name]["seconds"].append(time.perf_counter() - start)
            print(f"[seed {seed}] {name}: val {result.delta_mtl:+.2f} test {result.delta_mtl_test:+.2f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
            if name != "adashare":
                continue
            info = result.info
            sec = info["policy_seconds"]
            costs["alternation_over_hard_epoch"].append(sec["alternation"] / (2 * sec["warmup_epoch"]))
            costs["macs_ratio"].append(result.macs / hard.macs)
            x = ctx.data.val.inputs
            hard_model = materialize(SharingGraph.from_dict(hard.graph), ctx.space, ctx.tasks)
            costs["inference_ratio"].append(infer_seconds(result.model, x) / infer_seconds(hard_model, x))
            rows.setdefault("adashare_chosen", {}).setdefault("skips", []).append(
                [info["candidates"][info["chosen"]]["skips_per_task"]])
            if seed == args.seeds[0] and not args.quick:  # a smoke run leaves the docs' pictures
                probs = np.array(info["probabilities"])
                chosen = np.array([[c == "1" for c in row] for row in info["candidates"][info["chosen"]]["decisions"]])
                stem = IMAGES / f"gumbel_policy_{args.dataset}"
                draw_policy(probs, info["tasks"], info["policy_blocks"], chosen, f"{stem}_policy",
                            title=f"{args.dataset}: execute probability α (● run, × skip; chosen architecture)")
                draw_task_correlation(probs, info["tasks"], f"{stem}_correlation",
                                      title=f"{args.dataset}: task correlation (cosine of α)")
                print("probabilities:", json.dumps(info["probabilities"]))
                print("candidates:", json.dumps(info["candidates"]))
                print("history:", json.dumps(info["policy_history"]))

    print(f"\n{args.dataset}: {args.epochs} epochs per training, seeds {args.seeds}, "
          f"{args.samples}+1 candidates, policy lr {args.policy_lr}, search epochs {2 * args.epochs}")
    print(f"{'strategy':<18} {'val Δ_MTL %':>16} {'test Δ_MTL %':>16} {'params':>10} {'seconds':>8}")
    for name, row in rows.items():
        if "val" not in row:
            continue
        print(f"{name:<18} {mean_std_text(row['val']):>16} {mean_std_text(row['test']):>16} "
              f"{statistics.fmean(row['params']):>10.0f} {statistics.fmean(row['seconds']):>8.0f}")
    for name, values in costs.items():
        print(f"{name}: {mean_std_text(values).lstrip('+')} (per seed: {[round(v, 2) for v in values]})")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "costs": costs}, indent=1))


if __name__ == "__main__":
    main()
