"""How discriminating is multi_digits? Good vs bad sharing structures over seeds.

Trains, for each seed, the single-task reference, hard sharing, the tree that groups the tasks
as the data was built (left digit, right digit, both digits) and trees that mix the groups, all
at the default budget, and prints Δ_MTL mean ± std and the gap between good and bad structures.

    python benchmarks/multi_digits_discrimination.py --seeds 0 1 2 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mtlsearch import (
    Proposal,
    SearchContext,
    TrainConfig,
    create_space,
    evaluate_proposal,
    load_dataset,
)
from mtlsearch.stats import mean_std

GOOD = [["left_even", "left_ge5"], ["right_even", "right_ge5"], ["left_gt_right", "sum_ge10"]]
BAD = [["left_even", "right_ge5"], ["right_even", "left_gt_right"], ["left_ge5", "sum_ge10"]]
WORSE = [["left_even", "right_even"], ["left_ge5", "right_ge5"], ["left_gt_right", "sum_ge10"]]


def structures(ctx: SearchContext, branch_depth: int) -> dict:
    tasks = ctx.task_names
    depth = ctx.space.num_blocks

    def tree(groups):
        return ctx.new_graph("partitions", partitions=[[tasks]] * branch_depth + [groups] * (depth - branch_depth))

    return {
        "hard_sharing": ctx.new_graph("hard_sharing"),
        "good_tree (left|right|both)": tree(GOOD),
        "mixed_tree_a": tree(BAD),
        "mixed_tree_b (by attribute)": tree(WORSE),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--branch-depth", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    scores: dict[str, list[float]] = {}
    start = time.perf_counter()
    for seed in args.seeds:
        data = load_dataset("multi_digits", seed=seed)
        space = create_space("small_cnn", input_shape=data.input_shape)
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=args.epochs), seed=seed)
        for name, graph in structures(ctx, args.branch_depth).items():
            result = evaluate_proposal(Proposal(graph), ctx)
            scores.setdefault(name, []).append(result.delta_mtl_test)
            print(f"seed {seed} {name:30s} Δ_MTL test {result.delta_mtl_test:+6.2f}  val {result.delta_mtl:+6.2f}  params {result.params}", flush=True)
    print(f"\n{'structure':30s} {'Δ_MTL test mean ± std':>24s}")
    summary = {}
    for name, values in scores.items():
        mean, std = mean_std(values)
        summary[name] = {"mean": mean, "std": std, "values": values}
        print(f"{name:30s} {mean:+10.2f} ± {std:.2f}")
    good = summary["good_tree (left|right|both)"]
    for bad in ("mixed_tree_a", "mixed_tree_b (by attribute)"):
        gap = good["mean"] - summary[bad]["mean"]
        spread = max(good["std"], summary[bad]["std"])
        print(f"gap good - {bad}: {gap:+.2f} (largest std {spread:.2f}; discriminating: {gap > spread})")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
