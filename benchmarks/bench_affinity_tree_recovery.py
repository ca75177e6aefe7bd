"""Does ``affinity_tree`` find planted task groups? The measurement behind its documentation.

For each seed: a ``synthetic`` dataset with planted groups, one
:func:`~mtlsearch.study.runner.search` of ``affinity_tree`` (its queued
:meth:`~mtlsearch.plugins.affinity_tree.strategy.AffinityTree.initial_params` first), and for
``k = 1..trials`` the trial with the best validation Δ_MTL among the first ``k``, scored by the
adjusted Rand index of its discovered grouping (the partition at the deepest shared depth,
:func:`mtlsearch.graph.grouping.grouping_ari`) against the planted groups. Deterministic on the
CPU. Run from the repository root:

    python benchmarks/bench_affinity_tree_recovery.py --estimator rsa --trials 4
    python benchmarks/bench_affinity_tree_recovery.py --paper          # the paper's options
    python benchmarks/bench_affinity_tree_recovery.py \\
        --data '{"relatedness": 0.99, "noise": 0.5, "n_samples": 1000}'

Example:
    >>> rows = recovery(seeds=[0], trials=1, data={"n_samples": 300})  # doctest: +SKIP
    >>> rows[0]["picks"][0]["ari"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mtlsearch.stats import mean_std

#: ``benchmarks/bench_results.py``'s ``synthetic_even`` at its ``--quick`` size and budget.
DATA = {"group_sizes": [4, 4, 4], "relatedness": 0.9, "between": 0.0, "n_samples": 2000}
BUDGET = {"epochs": 4, "batch_size": 64, "lr": 3e-3}
#: The paper's choice of tree: log-uniform alpha, mean-over-groups clustering cost.
PAPER = {"alpha_sampling": "log_uniform", "clustering": "paper"}

__all__ = ["DATA", "BUDGET", "PAPER", "recovery", "summary_lines"]


def recovery(
    *,
    estimator: str = "rsa",
    seeds: Sequence[int] = (0, 1, 2),
    trials: int = 4,
    data: Mapping[str, Any] | None = None,
    data_seed: int | None = None,
    strategy_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One search per seed; per trial its tree, Δ_MTL and ARI; per ``k`` the validation pick.

    Args:
        estimator: The affinity estimator (``rsa``, ``subset``, ``full``).
        seeds: Search seeds (training, sampler and, unless ``data_seed``, the data).
        trials: Trials per search.
        data: ``synthetic`` arguments over :data:`DATA`.
        data_seed: One data seed for every search (``compare`` loads the data once);
            ``None`` draws new planted directions per seed.
        strategy_kwargs: Further :class:`~mtlsearch.plugins.affinity_tree.strategy.AffinityTree` arguments (e.g. :data:`PAPER`).
    """
    import torch

    from mtlsearch import TrainConfig, load_dataset
    from mtlsearch.graph.grouping import grouping_ari
    from mtlsearch.plugins.affinity_tree.strategy import AffinityTree
    from mtlsearch.study import search

    torch.set_num_threads(1)
    rows = []
    for seed in seeds:
        kwargs = {**DATA, **dict(data or {})}
        splits = load_dataset("synthetic", seed=seed if data_seed is None else data_seed, **kwargs)
        strategy = AffinityTree(estimator=estimator, **dict(strategy_kwargs or {}))
        result = search(strategy=strategy, dataset=splits, space="mlp", trials=trials,
                        budget=TrainConfig(**BUDGET), seed=seed, objectives=("delta_mtl",),
                        progress=False)
        done = []
        for t in result.study.get_trials():
            if t.state.name != "COMPLETE":
                continue
            info = t.user_attrs["info"]
            done.append({
                "params": dict(t.params), "branches": info["branches"],
                "alpha": info["alpha"], "prior_share": info.get("prior_share"),
                "val": t.user_attrs["delta_mtl"], "test": t.user_attrs["delta_mtl_test"],
                "ari": grouping_ari(t.user_attrs["graph"], splits.info["groups"]),
            })
        picks = [max(done[:k], key=lambda r: r["val"]) for k in range(1, len(done) + 1)]
        rows.append({"seed": seed, "trials": done, "picks": picks})
    return rows


def summary_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A markdown table: per ``k``, the picks' ARI (mean and per seed) and Δ_MTL."""
    lines = ["| first k trials | ARI mean | ARI per seed | val Δ_MTL | test Δ_MTL | branches per block |",
             "|---:|---:|---|---:|---:|---|"]
    for k in range(min(len(r["picks"]) for r in rows)):
        picks = [r["picks"][k] for r in rows]
        aris = [p["ari"] for p in picks]
        tests = [p["test"] for p in picks]
        mean, std = mean_std(tests)
        lines.append(
            f"| {k + 1} | {statistics.fmean(aris):.2f} | {', '.join(f'{a:.2f}' for a in aris)} | "
            f"{statistics.fmean(p['val'] for p in picks):+.2f} | "
            f"{mean:+.2f} ± {std:.2f} | "
            f"{'; '.join(str(p['branches']) for p in picks)} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--estimator", default="rsa")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--data", default="{}", help="synthetic arguments (JSON) over DATA")
    parser.add_argument("--data-seed", type=int, default=None)
    parser.add_argument("--paper", action="store_true", help="the paper's alpha sampling and cost")
    parser.add_argument("--json", default=None, help="write every trial here")
    args = parser.parse_args(argv)
    rows = recovery(estimator=args.estimator, seeds=args.seeds, trials=args.trials,
                    data=json.loads(args.data), data_seed=args.data_seed,
                    strategy_kwargs=PAPER if args.paper else None)
    for r in rows:
        for n, t in enumerate(r["trials"]):
            print(f"seed {r['seed']} trial {n}: {t['params']} branches {t['branches']} "
                  f"val {t['val']:+.2f} test {t['test']:+.2f} ARI {t['ari']:.2f}")
    print("\n".join(summary_lines(rows)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
