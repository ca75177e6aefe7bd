"""Every strategy on the generated dense dataset (segmentation, depth, normals, edges).

For each seed: one search context (``dense_shapes`` scenes, DeepLab-ResNet-18 with ASPP
heads), then one trial of each strategy with its default settings through ``run_strategy``
(``affinity_tree`` with the RSA estimator); the single-task reference is trained once per
seed and shared (the cache). Prints Δ_MTL (validation and test, mean ± std over seeds),
parameters, test metrics per task and wall time; ``--markdown`` writes a self-contained
section ("## Dense prediction on `dense_shapes`": settings, command, table, reference
levels and findings computed from the numbers); ``--picture`` draws input / ground truth /
prediction maps of the hard-sharing model of the first seed
(:func:`mtlsearch.viz.dense.draw_dense_predictions`).

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
import math
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
from mtlsearch.viz.dense import draw_dense_predictions

if str(Path(__file__).resolve().parent) not in sys.path:  # `report` sits next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as report_helpers  # noqa: E402  (the scripts' own `report` is their results)

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "images" / "dense_predictions"
HEADING = "## Dense prediction on `dense_shapes`"
STRATEGIES = ("single_task", "hard_sharing", "random_tree", "task_routing", "affinity_tree",
              "gumbel_policy", "gradient_merge")
STRATEGY_KWARGS = {"affinity_tree": {"estimator": "rsa"}}  # "full" retrains 2·L·N models
# Columns of the table: (task, metric, higher is better, label).
SHOWN = (("segment", "miou", True, "segment mIoU ↑"), ("depth", "abs_err", False, "depth abs. err ↓"),
         ("normals", "mean_angle", False, "normals mean angle ↓"), ("edges", "f1", True, "edges F1 ↑"),
         ("edges", "mae", False, "edges MAE ↓"))
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
def _values(rs: Sequence[Mapping[str, Any]], task: str, metric: str) -> list[float | None]:
    return [r["test"][task].get(metric) for r in rs if task in r["test"]]


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std, leaving out missing values (NaN, or None from JSON)."""
    values = [v for v in values if v is not None and v == v]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(pair: tuple[float, float], digits: int = 2) -> str:
    if pair[0] != pair[0]:
        return "-"
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def _names(items: Sequence[str]) -> str:
    items = [f"`{i}`" for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def table(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Markdown table, mean ± std over the seeds of each strategy's rows."""
    tasks = {t for rs in rows.values() for r in rs for t in r["test"]}
    shown = [c for c in SHOWN if c[0] in tasks]
    header = ["strategy", "Δ_MTL val %", "Δ_MTL test %", "params", "MMACs"]
    header += [c[3] for c in shown] + ["s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rs in rows.items():
        cells = [f"`{name}`", _fmt(mean_std([r["delta_val"] for r in rs])),
                 _fmt(mean_std([r["delta_test"] for r in rs])),
                 f"{statistics.fmean(r['params'] for r in rs):,.0f}",
                 f"{statistics.fmean(r['macs'] for r in rs) / 1e6:.2f}"]
        cells += [_fmt(mean_std(_values(rs, t, m)), 3 if m in ("miou", "f1", "mae") else 2)
                  for t, m, _, _ in shown]
        cells.append(f"{statistics.fmean(r['seconds'] for r in rs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def findings(rows: Mapping[str, Sequence[Mapping[str, Any]]], levels: Mapping[str, float]) -> list[str]:
    """Plain-words findings computed from the numbers (one bullet each)."""
    out: list[str] = []
    n_seeds = max(len(rs) for rs in rows.values())
    test = {name: mean_std([r["delta_test"] for r in rs]) for name, rs in rows.items()}
    others = {k: v for k, v in test.items() if k != "single_task" and v[0] == v[0]}
    if n_seeds < 2:
        order = sorted(others, key=lambda k: -others[k][0])
        out.append("One seed only: no standard deviation, so no difference below can be told "
                   "from seed noise. Test Δ_MTL order: "
                   + ", ".join(f"`{k}` {others[k][0]:+.1f} %" for k in order) + ".")
        others = {}
    above = [k for k, (m, s) in others.items() if m - s > 0]
    below = [k for k, (m, s) in others.items() if m + s < 0]
    within = [k for k in others if k not in above and k not in below]
    parts = []
    if above:
        parts.append("better than single-task networks beyond one std (mean − std > 0): "
                     + _names(above))
    if below:
        parts.append("worse beyond one std (mean + std < 0): " + _names(below))
    if within:
        parts.append("within one std of single-task networks: " + _names(within))
    if parts:
        out.append("Test Δ_MTL: " + "; ".join(parts) + ".")
    if others:
        best = max(others, key=lambda k: others[k][0])
        tied = [k for k in others if k != best
                and others[best][0] - others[k][0] <= max(others[best][1], others[k][1])]
        params = {k: statistics.fmean(r["params"] for r in rows[k]) for k in others}
        line = f"Highest mean test Δ_MTL: `{best}` ({_fmt(others[best])} %)"
        line += (f"; not separable from it (difference within the larger std): {_names(tied)}."
                 if tied else ", ahead of every other strategy by more than the seed noise.")
        cheapest = min([best, *tied], key=lambda k: params[k])
        if cheapest != best:
            line += (f" Of these, `{cheapest}` has the fewest parameters ({params[cheapest]:,.0f} "
                     f"against {params[best]:,.0f}).")
        out.append(line)
    if "background_miou" in levels:
        mious = {k: mean_std(_values(rs, "segment", "miou")) for k, rs in rows.items()}
        mious = {k: v for k, v in mious.items() if v[0] == v[0]}
        if mious:
            lo, hi = min(mious, key=lambda k: mious[k][0]), max(mious, key=lambda k: mious[k][0])
            base = levels["background_miou"]
            verdict = ("segmentation is learned" if mious[lo][0] >= base + 0.1 else
                       "segmentation is barely learned by some strategies" if mious[hi][0] >= base + 0.1
                       else "segmentation is barely learned")
            out.append(f"Segmentation: test mIoU from {mious[lo][0]:.3f} (`{lo}`) to "
                       f"{mious[hi][0]:.3f} (`{hi}`) against {base:.3f} for predicting background "
                       f"everywhere: {verdict}.")
    if "all_edges_f1" in levels:
        f1s = {k: mean_std(_values(rs, "edges", "f1")) for k, rs in rows.items()}
        f1s = {k: v for k, v in f1s.items() if v[0] == v[0]}
        if f1s:
            lo, hi = min(f1s, key=lambda k: f1s[k][0]), max(f1s, key=lambda k: f1s[k][0])
            base = levels["all_edges_f1"]
            verdict = ("edges are found" if f1s[lo][0] > base + 0.1 else
                       "edges are found by some strategies" if f1s[hi][0] > base + 0.1
                       else "edges are hardly found")
            out.append(f"Edges ({100 * levels['edge_share']:.1f} % of the test pixels): F1 at "
                       f"threshold 0.5 from {f1s[lo][0]:.3f} (`{lo}`) to {f1s[hi][0]:.3f} "
                       f"(`{hi}`) against {base:.3f} for marking every pixel an edge and 0 for "
                       f"marking none: {verdict}.")
    per_task = {} if n_seeds < 2 else {
                t: {k: mean_std([r["per_task_delta_test"][t] for r in rs])
                    for k, rs in rows.items() if k != "single_task"}
                for t in next(iter(rows.values()))[0]["per_task_delta_test"]}
    gains = []
    for task, by in per_task.items():
        up = [k for k, (m, s) in by.items() if m - s > 0]
        down = [k for k, (m, s) in by.items() if m + s < 0]
        gains.append(f"`{task}` gains beyond one std with {_names(up) if up else 'none'}, "
                     f"loses with {_names(down) if down else 'none'}")
    if gains:
        out.append("Per task (test Δ against its single-task network): " + "; ".join(gains) + ".")
    seconds = {k: statistics.fmean(r["seconds"] for r in rs) for k, rs in rows.items()}
    fast, slow = min(seconds, key=seconds.get), max(seconds, key=seconds.get)
    out.append(f"Time per seed from {seconds[fast]:.0f} s (`{fast}`) to {seconds[slow]:.0f} s "
               f"(`{slow}`, which includes the training of its own phases).")
    return out


def machine(settings: Mapping[str, Any]) -> str:
    if str(settings["device"]).startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}" + (", bf16 autocast" if settings["amp"] else "")
    return (f"CPU ({report_helpers.cpu_model()}, {report_helpers.usable_cores()} cores, "
            f"{settings['threads']} torch thread(s) per process)")


def to_markdown(report: Mapping[str, Any], image_link: str = "images") -> str:
    s, rows = report["settings"], report["rows"]
    size, n = s["size"], s["n_samples"]
    feat = size * 4 // s["output_stride"] if s["small_input"] else size // s["output_stride"]
    lines = [
        HEADING + (": smoke run (`--quick`)" if s["preset"] == "quick" else ""), "",
        f"Every strategy ({_names(list(rows))}) with its default settings, one trial each "
        "through `run_strategy` (`affinity_tree` with `estimator=\"rsa\"`, since the default "
        "`full` estimator retrains 2·L·N models), on the generated dense dataset: four tasks "
        "(`segment` 4 classes, `depth`, `normals`, `edges`), "
        f"{n} scenes of {size}x{size} (70 % train, 15 % validation, 15 % test), "
        f"DeepLab-ResNet-18 (`dilated_resnet18`, width {s['width']}, "
        f"{'`small_input` stem, ' if s['small_input'] else ''}output stride {s['output_stride']}, "
        f"so {feat}x{feat} feature maps) with ASPP heads; Adam lr {s['lr']}, batch "
        f"{s['batch_size']}, {s['epochs']} epochs; the edge loss is "
        + ("the class-balanced L1 (`balance=\"hed\"`)" if s["edge_balance"] == "hed" else "plain L1")
        + ". Δ_MTL is AdaShare's eq. 6 over all metrics of each task (edges: MAE, RMSE, F1), "
        "against the single-task networks of the same seed. Mean ± std over seeds "
        f"{s['seeds']}; `s` is the wall time per seed of one strategy (single_task: its four "
        "networks).", "",
        f"Machine: {report['machine']}; wall time {report['wall_seconds'] / 60:.1f} min "
        "(the longest process, when seeds ran in parallel)"
        + (" (the `--quick` configuration: a smoke test, not a result)." if s["preset"] == "quick"
           else "."), "",
        "```", *report["commands"], "```", "",
        *table(rows), "",
    ]
    levels = report.get("levels", {})
    if levels:
        lines += [f"Reference levels on the test split: mIoU of predicting background everywhere "
                  f"{levels.get('background_miou', math.nan):.3f}; edges F1 of marking every pixel "
                  f"an edge {levels.get('all_edges_f1', math.nan):.3f}.", ""]
    lines += [f"- {f}" for f in findings(rows, levels)]
    if report.get("picture"):
        stem = Path(report["picture"]).name
        lines += ["", f"![input, ground truth and prediction per task]({image_link}/{stem}.png)", "",
                  "*Test scenes, their ground truth and the predictions of the hard-sharing model "
                  f"(seed {s['seeds'][0]}). White marks ignored labels and missing depth; depth "
                  "truth and prediction share one colour scale per scene; normals are drawn as RGB "
                  "= (n + 1) / 2; edges dark.*"]
    return "\n".join(lines).rstrip() + "\n"


def print_table(report: Mapping[str, Any]) -> None:
    print()
    print("\n".join(table(report["rows"])))
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
        args.json.write_text(json.dumps(report_helpers.json_ready(report), indent=1))
    print_table(report)
    if args.markdown:
        args.markdown.write_text(to_markdown(report, args.image_link))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
