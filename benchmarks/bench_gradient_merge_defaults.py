"""The measurements behind ``gradient_merge``'s sampled ranges and defaults (its docs page).

Two parts, each printing markdown tables (run from the repository root, one torch thread):

``grid``
    On ``synthetic`` data with planted groups, trains the per-task-branch network for two
    epochs *without merging* and stores every branch's per-batch first-layer gradient; then
    clusters the epoch's normalised factors under every (directive, ``min_cluster_size``,
    ``min_samples``) setting a trial used to sample, for TT ranks 1, 2, 4 and 8, with and
    without synchronised heads, and reports the adjusted Rand index against the planted
    groups, how often nothing merged and how often everything merged.
``final``
    Whole runs (merging included) on planted data and on ``multi_digits``: the ARI of the
    final grouping (partition at the deepest shared depth, :func:`mtlsearch.graph.grouping.grouping_ari`)
    and validation / test Δ_MTL, for this plugin and, with ``--before DIR``, for an earlier copy
    of it (a folder holding the plugin's files as a package, e.g. extracted with ``git show``).

Commands::

    python benchmarks/bench_gradient_merge_defaults.py grid
    python benchmarks/bench_gradient_merge_defaults.py final --before /tmp/gm_old/gm_old

Example:
    >>> partition_labels([0, -1, 0, -1])
    [0, 1, 0, 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["partition_labels", "PLANTED", "collect_gradients", "grid", "final"]

#: The planted-group datasets measured: name -> (synthetic kwargs, samples, learning rate).
PLANTED: dict[str, tuple[dict[str, Any], int, float]] = {
    "even_2000": ({"group_sizes": [4, 4, 4], "relatedness": 0.9, "between": 0.0}, 2000, 3e-3),
    "even_6000": ({"group_sizes": [4, 4, 4], "relatedness": 0.9, "between": 0.0}, 6000, 1e-3),
    "uneven_2000": ({"group_sizes": [6, 3, 2, 1], "relatedness": 0.7, "between": 0.3}, 2000, 3e-3),
}
SEEDS = (0, 1, 2)
#: Clusterings of the grid: label -> (directive, extra arguments of ``cluster_branches``).
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "similarity": ("similarity", {}),
    "variance": ("variance", {}),
    "variance, single cluster allowed (before)": ("variance", {"allow_single_cluster": True}),
    "dissimilarity": ("dissimilarity", {}),
}


def partition_labels(labels: Sequence[int]) -> list[int]:
    """HDBSCAN labels as a partition: every noise point (``-1``) becomes its own group."""
    out, fresh = [], max([int(v) for v in labels] + [-1]) + 1
    for v in labels:
        if int(v) == -1:
            out.append(fresh)
            fresh += 1
        else:
            out.append(int(v))
    return out


def _synthetic(name: str, seed: int) -> tuple[Any, Any, Any]:
    from mtlsearch.engine.train import TrainConfig
    from mtlsearch.registry import create_space, load_dataset
    from mtlsearch.strategy.context import SearchContext

    kwargs, samples, lr = PLANTED[name]
    data = load_dataset("synthetic", n_samples=samples, seed=seed, **kwargs)
    space = create_space("mlp", input_shape=data.input_shape)
    return data, space, lambda epochs: SearchContext(
        data=data, space=space, seed=seed,
        budget=TrainConfig(epochs=epochs, batch_size=64, lr=lr),
    )  # fmt: skip


def collect_gradients(ctx: Any, *, sync_heads: bool, epochs: int = 2) -> dict[int, dict[str, np.ndarray]]:
    """``{epoch: {branch: (batches, *weight shape)}}``: per-batch first-layer gradients of the
    per-task branches, trained ``epochs`` epochs with the strategy's synchronisation and no
    merging."""
    from mtlsearch.plugins.gradient_merge.capture import branch_gradients
    from mtlsearch.plugins.gradient_merge.strategy import GradientMerge
    from mtlsearch.strategy.pipeline import run_strategy

    class _Record(GradientMerge):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.grads: dict[int, dict[str, list[np.ndarray]]] = {}

        def on_backward(self, state: Any) -> None:
            assert self._run is not None
            first = not self._run.synced
            super().on_backward(state)
            if not first:  # the sync step's gradients were dropped
                for node, g in branch_gradients(state.model, self._run.depth).items():
                    by_node = self.grads.setdefault(state.epoch, {})
                    by_node.setdefault(node, []).append(g.numpy().astype(np.float32).copy())

        def on_epoch_end(self, state: Any) -> None:
            return None  # never merge

    # start_epoch past the run: no capture or factorisation cost, training unchanged
    strategy = _Record(min_cluster_size=2, min_samples=1, tt_rank=1, start_epoch=epochs,
                       sync_heads=sync_heads)
    run_strategy(strategy, ctx(epochs))
    return {e: {n: np.stack(v) for n, v in d.items()} for e, d in strategy.grads.items()}


def _points(grads: dict[str, np.ndarray], rank: int, seed: int) -> np.ndarray:
    from mtlsearch.plugins.gradient_merge.factors import (
        factor_vector,
        normalise_rows,
        sketch_projections,
    )

    names = list(grads)  # branch order = task order
    probes = sketch_projections(grads[names[0]].shape[1:], size=64, seed=seed)
    rows = [
        np.concatenate([factor_vector(g.astype(np.float64), rank=rank, projections=probes) for g in grads[n]])
        for n in names
    ]
    return normalise_rows(np.stack(rows))


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.2f}"


def grid(datasets: Sequence[str] = tuple(PLANTED), seeds: Sequence[int] = SEEDS) -> dict[str, Any]:
    """Print and return the clustering grid (see the module docstring)."""
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    from mtlsearch.plugins.gradient_merge.clustering import (
        cluster_branches,
        groups_from_labels,
        pairwise_distances,
    )

    results: dict[tuple, list[tuple[float, bool, bool]]] = {}
    gaps: dict[tuple, list[float]] = {}
    for name in datasets:
        for seed in seeds:
            data, _, ctx = _synthetic(name, seed)
            truth = np.asarray(data.info["labels"])
            same = truth[:, None] == truth[None, :]
            upper = np.triu_indices(len(truth), 1)
            for sync in (False, True):
                start = time.perf_counter()
                grads = collect_gradients(ctx, sync_heads=sync)
                with threadpool_limits(limits=1, user_api="blas"):
                    for epoch, by_node in grads.items():
                        for rank in (1, 2, 4, 8):
                            pts = _points(by_node, rank, seed)
                            if rank == 4:
                                d = pairwise_distances(pts)[upper]
                                gap = d[~same[upper]].mean() - d[same[upper]].mean()
                                gaps.setdefault((name, sync, epoch), []).append(float(gap))
                            n = len(truth)
                            for setting, (directive, extra) in SETTINGS.items():
                                for mcs in range(2, n // 2 + 1):
                                    for k in range(1, mcs + 1):
                                        labels = cluster_branches(
                                            pts, directive=directive, min_cluster_size=mcs,
                                            min_samples=k, **extra,
                                        )  # fmt: skip
                                        groups = groups_from_labels(labels)
                                        ari = adjusted_rand_score(truth, partition_labels(labels))
                                        key = (name, sync, epoch, setting, mcs, k)
                                        results.setdefault(key, []).append(
                                            (float(ari), not groups,
                                             len(groups) == 1 and len(groups[0]) == n)
                                        )  # fmt: skip
                print(f"[{name} seed {seed} sync_heads={sync}: {time.perf_counter() - start:.1f}s]",
                      file=sys.stderr)  # fmt: skip
    print("\n### Within/between gap of the factors (rank 4; mean between-group minus mean "
          "within-group distance)\n")  # fmt: skip
    print("| data | epoch | heads as engine | heads synchronised | ratio |\n|---|---|---|---|---|")
    for name in datasets:
        for epoch in (0, 1):
            a, b = gaps[(name, False, epoch)], gaps[(name, True, epoch)]
            print(f"| {name} | {epoch} | {_ms(a)} | {_ms(b)} | "
                  f"{statistics.fmean(b) / statistics.fmean(a):.1f}x |")  # fmt: skip
    print("\n### Epoch-0 clustering, heads synchronised: mean ARI / share merging nothing / "
          "share merging everything (3 seeds x 4 ranks)\n")  # fmt: skip
    print("| directive | mcs | ms | " + " | ".join(datasets) + " |")
    print("|---|---|---|" + "---|" * len(datasets))
    n = len(np.asarray(_synthetic(datasets[0], seeds[0])[0].info["labels"]))
    for setting in SETTINGS:
        for mcs in range(2, n // 2 + 1):
            for k in range(1, mcs + 1):
                cells = []
                for name in datasets:
                    r = np.asarray(results[(name, True, 0, setting, mcs, k)])
                    cells.append(f"{r[:, 0].mean():.2f} / {r[:, 1].mean():.2f} / {r[:, 2].mean():.2f}")
                print(f"| {setting} | {mcs} | {k} | " + " | ".join(cells) + " |")
    print("\n### similarity (2, 1): mean ARI by epoch and head synchronisation\n")
    print("| data | heads | epoch 0 | epoch 1 |\n|---|---|---|---|")
    for name in datasets:
        for sync in (False, True):
            cells = [_ms([v[0] for v in results[(name, sync, e, "similarity", 2, 1)]]) for e in (0, 1)]
            print(f"| {name} | {'synchronised' if sync else 'as engine'} | " + " | ".join(cells) + " |")
    return {"results": results, "gaps": gaps}


def _load_before(folder: str) -> Any:
    """Import an earlier copy of the plugin from ``folder`` (a package directory)."""
    path = Path(folder)
    spec = importlib.util.spec_from_file_location(
        path.name, path / "__init__.py", submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"{folder} is not a package directory")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.name] = module
    spec.loader.exec_module(module)
    return module


def _run(label: str, strategy: Any, ctx: Any, data: Any, *, first: bool) -> dict[str, Any]:
    from mtlsearch.graph.grouping import grouping_ari
    from mtlsearch.strategy.pipeline import run_strategy

    start = time.perf_counter()
    params = strategy.initial_params(ctx)[0] if first else None
    result = run_strategy(strategy, ctx, params)
    record = result.info.get("gradient_merge", {})
    row = {
        "label": label, "seed": ctx.seed, "params": record.get("params"),
        "final_groups": record.get("final_groups"), "stop": record.get("stop_reason"),
        "merges": [m["epoch"] for m in record.get("merges", [])], "delta_val": result.delta_mtl,
        "delta_test": result.delta_mtl_test, "n_params": result.params,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    if data.name == "synthetic":
        row["ari"] = grouping_ari(result.graph, data.info["groups"])
    return row


def final(before: str | None = None, seeds: Sequence[int] = SEEDS, md_seeds: Sequence[int] = (0, 1)) -> list[dict[str, Any]]:
    """Print and return whole-run figures (see the module docstring)."""
    from mtlsearch.engine.train import TrainConfig
    from mtlsearch.plugins.gradient_merge.strategy import GradientMerge
    from mtlsearch.registry import create_space, create_strategy, load_dataset
    from mtlsearch.strategy.context import SearchContext

    old = _load_before(before) if before else None
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for name in ("even_2000", "uneven_2000"):
            data, _, ctx = _synthetic(name, seed)
            runs: list[tuple[str, Any, bool]] = []
            if old is not None:
                runs += [
                    ("before, sampled trial", old.GradientMerge(), False),
                    ("before, similarity 2/1 rank 4", old.GradientMerge(
                        directive="similarity", min_cluster_size=2, min_samples=1, tt_rank=4,
                        start_epoch=0), False),
                ]  # fmt: skip
            runs += [
                ("after, sampled trial", GradientMerge(), False),
                ("after, first initial_params", GradientMerge(), True),
                ("after, first initial_params, max_rounds=None", GradientMerge(max_rounds=None), True),
            ]
            for label, strategy, first in runs:
                rows.append({"data": name, **_run(label, strategy, ctx(4), data, first=first)})
    data = load_dataset("multi_digits") if md_seeds else None
    space = create_space("small_cnn", input_shape=data.input_shape) if data is not None else None
    for seed in md_seeds:
        ctx = SearchContext(data=data, space=space, seed=seed, budget=TrainConfig(epochs=3))
        runs = [("before, sampled trial", old.GradientMerge(), False)] if old is not None else []
        runs += [("after, first initial_params", GradientMerge(), True),
                 ("hard_sharing", create_strategy("hard_sharing"), False)]  # fmt: skip
        for label, strategy, first in runs:
            rows.append({"data": "multi_digits", **_run(label, strategy, ctx, data, first=first)})
    print("\n| data | run | ARI per seed | mean ARI | final branches | Δ_MTL val % | Δ_MTL test % |")
    print("|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((r["data"], r["label"]) for r in rows))
    for data_name, label in keys:
        mine = [r for r in rows if r["data"] == data_name and r["label"] == label]
        aris = [r["ari"] for r in mine if "ari" in r]
        branches = [len(r["final_groups"]) for r in mine if r["final_groups"]]
        cells = [
            " / ".join(f"{a:.2f}" for a in aris) or "-",
            _ms(aris) if aris else "-",
            f"{statistics.fmean(branches):.1f}" if branches else "-",
            " / ".join(f"{r['delta_val']:+.2f}" for r in mine),
            " / ".join(f"{r['delta_test']:+.2f}" for r in mine),
        ]
        print(f"| {data_name} | {label} | " + " | ".join(cells) + " |")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("grid", "final"))
    parser.add_argument("--before", help="folder of an earlier copy of the plugin (final)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--datasets", nargs="+", default=list(PLANTED), choices=list(PLANTED))
    parser.add_argument("--md-seeds", type=int, nargs="*", default=[0, 1],
                        help="multi_digits seeds of the final part (none: skip it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.part == "grid":
        grid(args.datasets, seeds=args.seeds)
    else:
        final(args.before, seeds=args.seeds, md_seeds=args.md_seeds)


if __name__ == "__main__":
    main()
