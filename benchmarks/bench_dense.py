"""Every strategy on the generated dense dataset (segmentation, depth, normals, edges).

For each seed: one search context (``dense_shapes`` scenes, DeepLab-ResNet-18 with ASPP
heads), then one trial of each strategy with its default settings through ``run_strategy``
(``affinity_tree`` with the RSA estimator); the single-task reference is trained once per
seed and shared (the cache). Prints Δ_MTL (validation and test, mean ± std over seeds),
parameters, test metrics per task and wall time; ``--markdown`` writes a self-contained
section ("## Dense prediction on `dense_shapes`": settings, command, table, reference
levels and findings computed from the numbers); ``--picture`` draws input / ground truth /
prediction maps of the hard-sharing model of the first seed
(:func:`mtlsearch.viz.draw_dense_predictions`). The markdown is rendered by
``benchmarks/render/dense.py`` (``benchmarks/run_all.py`` renders it from ``--json``).

Configurations (``--preset``; any option given explicitly overrides the preset's value):

- ``quick`` (also ``--quick``): the benchmark suite's size, 1 seed, under 3 minutes on 2
  CPU cores; a smoke test that every strategy runs, not a result.
- ``small``: the former default, 32x32 scenes with 4x4 features; segmentation is barely
  learned there.
- ``meaningful``: 64x64 scenes, ``small_input`` stem and output stride 16 (16x16 feature
  maps), 600 scenes, 15 epochs, 3 seeds: segmentation is learned well above the
  predict-background level and edges are found. Meant for a GPU
  (``--device cuda --amp``); see docs/dense.md for its CPU time.

Run:
    python benchmarks/bench_dense.py --quick --markdown dense.md
    python benchmarks/bench_dense.py --preset meaningful --device cuda --amp \\
        --markdown dense.md --json dense.json --picture
    # on CPUs, one process per seed, then one table:
    for s in 0 1 2; do python benchmarks/bench_dense.py --preset meaningful --seeds $s \\
        --threads 1 --json d$s.json & done; wait
    python benchmarks/bench_dense.py --merge d0.json d1.json d2.json --markdown dense.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtlsearch.engine.scoring import delta_mtl
from mtlsearch.engine.train import TrainConfig
from mtlsearch.registry import create_space, create_strategy, list_strategies, load_dataset
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import run_strategy
from mtlsearch.tasks.dense.kinds import confusion_metrics, detection_scores
from mtlsearch.viz import draw_dense_predictions

if __package__:  # imported as benchmarks.bench_dense, or run with python -m
    from .common import cpu_model, json_ready, usable_cores
    from .render import dense as render_dense
else:  # run as a file (python benchmarks/bench_dense.py): its folder is first on the path
    from common import cpu_model, json_ready, usable_cores
    from render import dense as render_dense

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "images" / "dense_predictions"
STRATEGIES = ("single_task", "hard_sharing", "random_tree", "task_routing", "affinity_tree",
              "gumbel_policy", "gradient_merge")
STRATEGY_KWARGS = {"affinity_tree": {"estimator": "rsa"}}  # "full" retrains 2·L·N models
SETTINGS = ("seeds", "n_samples", "size", "width", "small_input", "output_stride", "epochs",
            "batch_size", "lr", "edge_balance")
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": [0], "n_samples": 80, "size": 16, "width": 4, "small_input": False,
              "output_stride": 8, "epochs": 2, "batch_size": 16, "lr": 2e-3},
    "small": {"seeds": [0, 1, 2], "n_samples": 300, "size": 32, "width": 8, "small_input": False,
              "output_stride": 8, "epochs": 4, "batch_size": 32, "lr": 2e-3},
    "meaningful": {"seeds": [0, 1, 2], "n_samples": 600, "size": 64, "width": 8,
                   "small_input": True, "output_stride": 16, "epochs": 15, "batch_size": 32,
                   "lr": 2e-3},
}


# ------------------------------------------------------------------------------ running
def setup(seed: int, s: Mapping[str, Any]) -> SearchContext:
    data = load_dataset("dense_shapes", seed=seed, n_samples=s["n_samples"], size=s["size"],
                        edge_balance=s["edge_balance"])
    space = create_space("dilated_resnet18", input_shape=(3, s["size"], s["size"]), width=s["width"],
                         small_input=s["small_input"], output_stride=s["output_stride"])
    # Channels-last stays off on the CPU: with torch 2.15 the backward pass of a strided 1x1
    # convolution on a channels-last 64x64 map (the ResNet projection) crashes (SIGSEGV).
    channels_last = False if str(s["device"]).startswith("cpu") else None
    budget = TrainConfig(epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                         device=s["device"], amp=s["amp"], channels_last=channels_last)
    return SearchContext(data=data, space=space, budget=budget, seed=seed, cache=ResultCache())


def reference_levels(ctx: SearchContext) -> dict[str, float]:
    """What trivial predictions score on the test split: every pixel background (segment
    mIoU), every pixel an edge (edges F1; predicting no edge scores 0)."""
    test = ctx.data.test.targets
    out: dict[str, float] = {}
    if "segment" in test:
        labels = test["segment"][test["segment"] >= 0]
        k = ctx.data.tasks[ctx.data.task_names.index("segment")].num_classes or 0
        confusion = torch.zeros(k, k, dtype=torch.long)
        confusion[:, 0] = torch.bincount(labels, minlength=k)
        out["background_miou"] = confusion_metrics(confusion)["miou"]
    if "edges" in test:
        edges = test["edges"][~torch.isnan(test["edges"])]
        positives = float((edges >= 0.5).sum())
        out["all_edges_f1"] = detection_scores(positives, edges.numel() - positives, 0)["f1"]
        out["edge_share"] = positives / edges.numel()
    return out


def run(settings: dict[str, Any]) -> dict[str, Any]:
    """Every strategy for every seed; returns ``{"rows": {strategy: [row per seed]}, ...}``."""
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in settings["strategies"]}
    levels: list[dict[str, float]] = []
    picture = None
    for seed in settings["seeds"]:
        ctx = setup(seed, settings)
        levels.append(reference_levels(ctx))
        start, cpu = time.perf_counter(), time.process_time()
        reference = ctx.reference()
        ref_seconds, ref_cpu = time.perf_counter() - start, time.process_time() - cpu
        for name in settings["strategies"]:
            torch.manual_seed(seed)
            start, cpu = time.perf_counter(), time.process_time()
            result = run_strategy(create_strategy(name, **STRATEGY_KWARGS.get(name, {})), ctx)
            seconds = time.perf_counter() - start + (ref_seconds if name == "single_task" else 0)
            cpu = time.process_time() - cpu + (ref_cpu if name == "single_task" else 0)
            test = result.metrics["test"]
            per_task = delta_mtl(test, reference["test"], ctx.tasks).per_task
            rows[name].append({
                "seed": seed, "delta_val": result.delta_mtl, "delta_test": result.delta_mtl_test,
                "params": result.params, "macs": result.macs, "seconds": seconds,
                "cpu_seconds": cpu,
                "per_task_delta_test": per_task,
                "test": {t: {m: v for m, v in ms.items()} for t, ms in test.items()},
            })
            print(f"seed {seed} {name:15s} Δval {result.delta_mtl:7.2f} Δtest "
                  f"{result.delta_mtl_test:7.2f} {seconds:6.1f}s (CPU time {cpu:.1f}s)", flush=True)
            if (settings["picture"] and seed == settings["seeds"][0] and name == "hard_sharing"
                    and result.model is not None):
                picture = Path(settings["picture"])
                draw_dense_predictions(result.model, ctx.data.test, [0, 1, 2], picture)
                print(f"drew {picture}.png and .svg", flush=True)
    mean_levels = {k: statistics.fmean(lv[k] for lv in levels) for k in levels[0]} if levels else {}
    return {"rows": rows, "levels": mean_levels,
            "picture": None if picture is None else str(picture)}


# ------------------------------------------------------------------------------ reporting
def machine(settings: Mapping[str, Any]) -> str:
    """The device the figures were taken on, in words (written into the JSON)."""
    if str(settings["device"]).startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}" + (", bf16 autocast" if settings["amp"] else "")
    return (f"CPU ({cpu_model()}, {usable_cores()} cores, "
            f"{settings['threads']} torch thread(s) per process)")


def print_table(report: Mapping[str, Any]) -> None:
    """The strategies' table and the settings, on the console."""
    print()
    print("\n".join(render_dense.strategy_table(report["rows"])))
    s = report["settings"]
    print(f"\nseeds {s['seeds']}; " + ", ".join(f"{k} {s[k]}" for k in SETTINGS if k != "seeds"))


# ------------------------------------------------------------------------------ driver
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="configuration; explicit options override its values (default small)")
    parser.add_argument("--quick", action="store_true", help="same as --preset quick")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--n-samples", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--small-input", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--edge-balance", choices=("hed", "none"), default="hed")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, ... (default: cuda when available, else cpu)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest for these small models on a "
                             "shared machine)")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the self-contained markdown section here")
    parser.add_argument("--image-link", default="images",
                        help="folder the markdown links the picture from (default images, "
                             "as seen from docs/)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only report the --json files written by earlier runs (with --json: "
                             "also write the merged report there)")
    parser.add_argument("--picture", nargs="?", const=str(PICTURE), default=None, metavar="PATH",
                        help=f"draw the predictions picture (default path {PICTURE.relative_to(ROOT)})")
    return parser


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: the preset, overridden by the options given explicitly."""
    preset = "quick" if args.quick else args.preset
    settings = dict(PRESETS[preset])
    for key in SETTINGS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings.update(preset=preset, strategies=list(args.strategies), device=device,
                    amp=bool(args.amp), threads=args.threads, picture=args.picture)
    return settings


def merge(paths: Sequence[Path], command: str) -> dict[str, Any]:
    """One report from several ``--json`` files (e.g. one process per seed)."""
    reports = [json.loads(p.read_text()) for p in paths]
    first = reports[0]
    fixed = [k for k in SETTINGS if k != "seeds"]
    for p, r in zip(paths, reports, strict=True):
        differ = [k for k in fixed if r["settings"][k] != first["settings"][k]]
        if differ:
            raise SystemExit(f"{p} was run with other settings ({differ}) than {paths[0]}")
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        for name, rs in r["rows"].items():
            rows.setdefault(name, []).extend(rs)
    settings = dict(first["settings"])
    settings["seeds"] = sorted({row["seed"] for rs in rows.values() for row in rs})
    levels = {k: statistics.fmean(r["levels"][k] for r in reports) for k in first.get("levels", {})}
    return {"settings": settings, "rows": rows, "levels": levels, "machine": first["machine"],
            "wall_seconds": max(r["wall_seconds"] for r in reports),
            "commands": [c for r in reports for c in r["commands"]] + [command],
            "picture": next((r["picture"] for r in reports if r.get("picture")), None)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_dense.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    if args.merge:
        report = merge(args.merge, command)
    else:
        torch.set_num_threads(args.threads)
        unknown = set(args.strategies) - set(list_strategies())
        if unknown:
            parser.error(f"unknown strategies {sorted(unknown)}")
        settings = resolve(args)
        start = time.perf_counter()
        report = run(settings)
        report.update(settings=settings, machine=machine(settings), commands=[command],
                      wall_seconds=time.perf_counter() - start)
    if args.json:  # raw results, or with --merge the merged report (e.g. to record it)
        args.json.write_text(json.dumps(json_ready(report), indent=1))
    print_table(report)
    if args.markdown:
        args.markdown.write_text(render_dense.markdown(report, args.image_link))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
