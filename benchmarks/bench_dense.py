"""Every strategy on the generated dense dataset (segmentation, depth, normals, edges).

For each seed: one search context (``dense_shapes`` scenes, DeepLab-ResNet-18 with output
stride 8 and ASPP heads), then one trial of each strategy with its default settings through
``run_strategy``; the single-task reference is trained once per seed and shared (the cache).
Prints Δ_MTL (validation and test, mean ± std over seeds), parameters, test metrics per task
and wall time, and draws input / ground truth / prediction maps of the hard-sharing model.

Run:
    python benchmarks/bench_dense.py --seeds 0 1 2
    python benchmarks/bench_dense.py --seeds 0 --n-samples 120 --epochs 1   # smoke run
    # one process per seed, then one table:
    for s in 0 1 2; do python benchmarks/bench_dense.py --seeds $s --threads 1 --json s$s.json & done; wait
    python benchmarks/bench_dense.py --merge s0.json s1.json s2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mtlsearch.context import ResultCache, SearchContext
from mtlsearch.pipeline import run_strategy
from mtlsearch.registry import create_space, create_strategy, list_strategies, load_dataset
from mtlsearch.train import TrainConfig

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
STRATEGIES = ("single_task", "hard_sharing", "random_tree", "task_routing", "affinity_tree",
              "gumbel_policy", "gradient_merge")
SHOWN = {"segment": "miou", "depth": "abs_err", "normals": "mean_angle", "edges": "mae"}
STRATEGY_KWARGS = {"affinity_tree": {"estimator": "rsa"}}  # "full" retrains 2·L·N models


def setup(seed: int, args: argparse.Namespace) -> SearchContext:
    data = load_dataset("dense_shapes", seed=seed, n_samples=args.n_samples, size=args.size)
    space = create_space(
        "dilated_resnet18", input_shape=(3, args.size, args.size), width=args.width
    )
    budget = TrainConfig(epochs=args.epochs, batch_size=32, lr=2e-3)
    return SearchContext(data=data, space=space, budget=budget, seed=seed, cache=ResultCache())


def draw_predictions(model: torch.nn.Module, ctx: SearchContext, path: Path, n: int = 3) -> None:
    """Input, ground truth and prediction of every task for ``n`` test scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtlsearch.export import predict

    x = ctx.data.test.inputs[:n]
    pred = predict(model, x.numpy())
    truth = {t: v[:n].numpy() for t, v in ctx.data.test.targets.items()}
    tasks = ctx.data.task_names
    fig, axes = plt.subplots(n, 1 + 2 * len(tasks), figsize=(1.6 * (1 + 2 * len(tasks)), 1.7 * n))

    def show(ax, task: str, arr: np.ndarray, row: int) -> None:
        if task == "segment":
            ax.imshow(np.where(arr < 0, np.nan, arr), cmap="tab10", vmin=0, vmax=9,
                      interpolation="nearest")
        elif task == "normals":
            ax.imshow(np.nan_to_num(np.moveaxis(arr, 0, -1) * 0.5 + 0.5).clip(0, 1))
        elif task == "depth":  # one colour scale per scene: the ground truth's range
            ax.imshow(arr[0], cmap="viridis", vmin=np.nanmin(truth[task][row]),
                      vmax=np.nanmax(truth[task][row]))
        else:
            ax.imshow(arr[0], cmap="gray", vmin=0, vmax=1)

    for i in range(n):
        axes[i, 0].imshow(x[i].numpy().transpose(1, 2, 0).clip(0, 1))
        for j, t in enumerate(tasks):
            show(axes[i, 1 + 2 * j], t, truth[t][i], i)
            show(axes[i, 2 + 2 * j], t, pred[t][i], i)
            if i == 0:
                axes[0, 1 + 2 * j].set_title(f"{t}\ntruth", fontsize=8)
                axes[0, 2 + 2 * j].set_title(f"{t}\nprediction", fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def print_table(rows: dict[str, list[dict]], args: argparse.Namespace) -> None:
    """Markdown table: mean ± std over the seeds of each strategy's rows."""
    metric_cols = [f"{t}.{m}" for t, m in SHOWN.items()]
    header = ["strategy", "Δ_MTL val %", "Δ_MTL test %", "params", "MMACs"] + metric_cols + ["s"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, rs in rows.items():
        cells = [name, _ms([r["delta_val"] for r in rs]), _ms([r["delta_test"] for r in rs]),
                 f"{statistics.mean(r['params'] for r in rs):,.0f}",
                 f"{statistics.mean(r['macs'] for r in rs) / 1e6:.2f}"]
        cells += [_ms([r[c] for r in rs]) if c in rs[0] else "-" for c in metric_cols]
        cells.append(f"{statistics.mean(r['seconds'] for r in rs):.0f}")
        print("| " + " | ".join(cells) + " |")
    print(f"\nseeds {args.seeds}; n_samples {args.n_samples}, size {args.size}, width {args.width}, "
          f"epochs {args.epochs}; test metrics: segment mIoU ↑, depth abs_err ↓, normals mean "
          "angle ↓ (degrees), edges MAE ↓")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-samples", type=int, default=300)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only print the table of --json files written by earlier runs")
    parser.add_argument("--picture", action="store_true", help="draw docs/images/dense_predictions.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unknown = set(args.strategies) - set(list_strategies())
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}")

    rows: dict[str, list[dict]] = {s: [] for s in args.strategies}
    if args.merge:  # runs of one seed each, e.g. in parallel processes
        for path in args.merge:
            for name, rs in json.loads(path.read_text()).items():
                rows.setdefault(name, []).extend(rs)
        args.seeds = sorted({r["seed"] for rs in rows.values() for r in rs})
        print_table({k: v for k, v in rows.items() if v}, args)
        return
    for seed in args.seeds:
        ctx = setup(seed, args)
        start = time.perf_counter()
        ctx.reference()
        ref_seconds = time.perf_counter() - start
        for name in args.strategies:
            torch.manual_seed(seed)
            start = time.perf_counter()
            result = run_strategy(create_strategy(name, **STRATEGY_KWARGS.get(name, {})), ctx)
            seconds = time.perf_counter() - start + (ref_seconds if name == "single_task" else 0)
            test = result.metrics["test"]
            rows[name].append({
                "seed": seed,
                "delta_val": result.delta_mtl,
                "delta_test": result.delta_mtl_test,
                "params": result.params,
                "macs": result.macs,
                "seconds": seconds,
                **{f"{t}.{m}": test[t][m] for t, m in SHOWN.items() if t in test},
            })
            print(f"seed {seed} {name:15s} Δval {result.delta_mtl:7.2f} Δtest "
                  f"{result.delta_mtl_test:7.2f} {seconds:6.1f}s", flush=True)
            if args.picture and seed == args.seeds[0] and name == "hard_sharing" and result.model:
                draw_predictions(result.model, ctx, IMAGES / "dense_predictions")

    print_table(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
