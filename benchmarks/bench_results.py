"""Results side by side on the vector datasets: every strategy, equal budgets, several seeds.

Drives :func:`mtlsearch.compare` (the code path of ``mtlsearch compare``) for every registered
strategy on ``multi_digits``, ``digits`` and ``synthetic`` with planted task groups in two
configurations, then writes one self-contained markdown section ("## Vector datasets": the
machine, the command, the settings, tables, Pareto plots and findings generated from the
numbers; rendered by ``benchmarks/render/results.py``, which ``benchmarks/run_all.py`` calls
on the JSON) and a JSON file with every raw number. Pareto plots (test Δ_MTL against
parameters, mean ± std over seeds) go to ``docs/images/results_<dataset>.png`` and ``.svg``.

Every strategy gets the same budget: the same cap on trials per search and the same compute
(``compare``'s ``6x``; strategies that sample nothing, ``single_task`` and ``hard_sharing``,
run one), epochs, batch size and learning rate; each seed keeps the trial with the best validation Δ_MTL, as ``compare`` does. For the
datasets with a known grouping (``multi_digits`` and the planted ``synthetic`` groups) the
adjusted Rand index of the discovered grouping is reported (see
:mod:`mtlsearch.graph.grouping`).

    python benchmarks/bench_results.py --quick --markdown vector.md --json vector.json
    python benchmarks/bench_results.py --markdown vector.md --json vector.json   # bigger budget
    python benchmarks/bench_results.py --quick --datasets synthetic_even --seeds 0 --markdown x.md
    python benchmarks/bench_results.py --report-only --out RUN --markdown vector.md  # re-render

``--quick`` is the budget of the one-command benchmark suite: 4 datasets x 7 strategies x 3
seeds took 8.5 min of CPU time (one torch thread per process; so about 8.5 min wall with the
default ``--jobs 1`` on an idle core, measured 8.9 min wall with ``--jobs 2`` on 2 cores that
other work shared). The default budget (``BUDGETS["full"]``: more trials and epochs, the
datasets at full size) costs several times more. Every search is deterministic on the CPU:
the same command gives the same numbers. The ``compare`` runs stay in ``--out`` (a temporary
folder by default); ``--report-only`` rewrites the plots, markdown and JSON from there. Image
links in the markdown are relative to ``docs/`` (``--image-link``), where the section goes.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from mtlsearch import TrainConfig, list_strategies, load_dataset
from mtlsearch.engine.scoring import metric_directions
from mtlsearch.graph.grouping import (
    ari_per_depth,
    discovered_grouping,
    grouping_ari,
    last_shared_depth,
    task_partition,
)
from mtlsearch.stats import nan_mean_std
from mtlsearch.study.comparison import compare, quick_settings
from mtlsearch.viz import save_figure

if __package__:  # imported as benchmarks.bench_results, or run with python -m
    from .common import cpu_model, json_ready, usable_cores
    from .render import results as render_results
else:  # run as a file (python benchmarks/bench_results.py): its folder is first on the path
    from common import cpu_model, json_ready, usable_cores
    from render import results as render_results

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the comparison: what ``compare`` gets in each budget."""

    key: str
    dataset: str
    space: str
    title: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    quick_kwargs: dict[str, Any] = field(default_factory=dict)
    full_kwargs: dict[str, Any] = field(default_factory=dict)

    def dataset_kwargs(self, quick: bool) -> dict[str, Any]:
        return {**self.kwargs, **(self.quick_kwargs if quick else self.full_kwargs)}


DATASETS: dict[str, DatasetConfig] = {
    c.key: c
    for c in (
        DatasetConfig(
            "multi_digits", "multi_digits", "small_cnn",
            "`multi_digits`: two digits side by side, 6 binary tasks in 3 known groups "
            "(left, right, both)",
            quick_kwargs={"n_train": 1200, "n_val": 400, "n_test": 400},
        ),
        DatasetConfig(
            "digits", "digits", "small_cnn",
            "`digits`: 8x8 handwritten digits, 10 binary tasks `is_0`..`is_9`, no known grouping",
        ),
        DatasetConfig(
            "synthetic_even", "synthetic", "mlp",
            "`synthetic`, 3 even groups of closely related tasks: group sizes [4, 4, 4], "
            "relatedness 0.9, between 0",
            kwargs={"group_sizes": [4, 4, 4], "relatedness": 0.9, "between": 0.0},
            quick_kwargs={"n_samples": 2000}, full_kwargs={"n_samples": 4000},
        ),
        DatasetConfig(
            "synthetic_uneven", "synthetic", "mlp",
            "`synthetic`, 4 uneven, looser groups that are related to each other: group sizes "
            "[6, 3, 2, 1], relatedness 0.7, between 0.3",
            kwargs={"group_sizes": [6, 3, 2, 1], "relatedness": 0.7, "between": 0.3},
            quick_kwargs={"n_samples": 2000}, full_kwargs={"n_samples": 4000},
        ),
    )
}

#: Budget of every search: trials per search, epochs and batch size of every candidate.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"trials": 2, "epochs": 4, "batch_size": 64, "lr": 3e-3, "compute": "6x"},
    "full": {"trials": 4, "epochs": 8, "batch_size": 64, "lr": 1e-3, "compute": "6x"},
}


# ------------------------------------------------------------------------------ numbers


def _primary_metrics(data: Any) -> dict[str, tuple[str, bool]]:
    """Each task's first Δ_MTL metric and whether higher is better (as compare ranks them)."""
    return {s.name: next(iter(metric_directions(s).items())) for s in data.tasks}


def structure(graph: Mapping[str, Any]) -> str | None:
    """``"single-task"`` (no block node shared), ``"hard sharing"`` (every task computes the same
    features at every depth) or ``None`` (anything in between)."""
    depths = range(int(graph["num_blocks"]))
    if all(all(len(g) == 1 for g in task_partition(graph, d, by="nodes")) for d in depths):
        return "single-task"
    if all(len(task_partition(graph, d)) == 1 for d in depths):
        return "hard sharing"
    return None


def summarise(board: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """Per-strategy figures (mean, std over seeds) and per-run ARIs of one ``compare`` run.

    Args:
        board: ``compare``'s ``leaderboard.json`` (``Leaderboard.to_dict()``).
        data: The dataset it ran on (task specs and, if known, ``info["groups"]``).
    """
    primary = _primary_metrics(data)
    planted = data.info.get("groups")
    runs_out, rows = [], []
    for run in board["runs"]:
        item = {k: run.get(k) for k in ("strategy", "seed", "trial", "delta_mtl",
                                        "delta_mtl_test", "params", "macs", "search_seconds",
                                        "n_trials", "error")}
        if "error" not in run:
            test = run["metrics"]["test"]
            item["task_metric"] = {t: test[t][m] for t, (m, _) in primary.items()}
            item["mean_task_metric"] = statistics.fmean(item["task_metric"].values())
            graph = run["graph"]
            item["last_shared_depth"] = last_shared_depth(graph)
            item["grouping"] = discovered_grouping(graph)
            item["structure"] = structure(graph)
            if planted:
                item["ari"] = grouping_ari(graph, planted)
                item["ari_per_depth"] = ari_per_depth(graph, planted)
        runs_out.append(item)
    for name in board["settings"]["strategies"]:
        mine = [r for r in runs_out if r["strategy"] == name]
        ok = [r for r in mine if r.get("error") is None]
        row = {
            "strategy": name, "n_runs": len(ok), "n_seeds": len(mine),
            "delta_mtl": nan_mean_std([r["delta_mtl"] for r in ok]),
            "delta_mtl_test": nan_mean_std([r["delta_mtl_test"] for r in ok]),
            "mean_task_metric": nan_mean_std([r["mean_task_metric"] for r in ok]),
            "params": nan_mean_std([r["params"] for r in ok]),
            "macs": nan_mean_std([r["macs"] for r in ok]),
            "search_seconds": nan_mean_std([r["search_seconds"] for r in mine]),
            "task_metric": {t: nan_mean_std([r["task_metric"][t] for r in ok]) for t in primary},
        }
        if planted:
            row["ari"] = nan_mean_std([r["ari"] for r in ok])
        rows.append(row)
    metrics = sorted({m for m, _ in primary.values()})
    return {"rows": rows, "runs": runs_out, "planted": planted,
            "primary_metric": {t: m for t, (m, _) in primary.items()},
            "metric_name": metrics[0] if len(metrics) == 1 else "primary metric",
            "higher_is_better": all(h for _, h in primary.values())}


# ------------------------------------------------------------------------------ machine
def machine() -> dict[str, Any]:
    """The machine, software and commit of the run (written into the JSON)."""
    cpu = cpu_model()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"cpu": cpu, "cores": usable_cores(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# ------------------------------------------------------------------------------ driver
def _budget(args: argparse.Namespace) -> dict[str, Any]:
    b = dict(BUDGETS["quick" if args.quick else "full"])
    if args.trials:
        b["trials"] = args.trials
    if args.epochs:
        b["epochs"] = args.epochs
    return b


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_one(key: str, args: argparse.Namespace, out: Path) -> float:
    """Run ``compare`` on one dataset into ``out/<key>``; returns its wall time in seconds.

    ``compare`` writes ``leaderboard.json`` there (settings and every run's best trial, graph
    included), which is all the report needs; the wall time goes to ``wall.json`` beside it.
    """
    config = DATASETS[key]
    b = _budget(args)
    strategies = args.strategies or list_strategies()
    print(f"[bench_results] {key}: {len(strategies)} strategies x {len(args.seeds)} seeds",
          file=sys.stderr, flush=True)
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    compare(
        strategies=strategies, dataset=config.dataset, space=config.space, seeds=args.seeds,
        trials=b["trials"], compute=b.get("compute"),
        budget=TrainConfig(epochs=b["epochs"], batch_size=b["batch_size"], lr=b["lr"],
                           device=args.device),
        out=out / key, dataset_kwargs=config.dataset_kwargs(args.quick), progress=False,
        show=False,
    )
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    (out / key / "wall.json").write_text(json.dumps({"wall_seconds": wall, "cpu_seconds": cpu}),
                                         encoding="utf-8")
    print(f"[bench_results] {key}: {wall:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr,
          flush=True)
    return wall


def _worker_argv(key: str, args: argparse.Namespace, out: Path) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-one", key, "--out", str(out),
            "--threads", str(args.threads), "--seeds", *map(str, args.seeds)]
    if args.quick:
        argv.append("--quick")
    if args.strategies:
        argv += ["--strategies", *args.strategies]
    for flag, value in (("--trials", args.trials), ("--epochs", args.epochs),
                        ("--device", args.device)):
        if value:
            argv += [flag, str(value)]
    return argv


def run_all(keys: Sequence[str], args: argparse.Namespace, out: Path) -> None:
    """Every dataset, ``args.jobs`` at a time (one process each, ``args.threads`` threads)."""
    if args.jobs <= 1:
        for key in keys:
            run_one(key, args, out)
        return
    waiting, running = list(keys), []
    while waiting or running:
        while waiting and len(running) < args.jobs:
            key = waiting.pop(0)
            running.append((key, subprocess.Popen(_worker_argv(key, args, out), cwd=ROOT)))
        time.sleep(0.5)
        for item in list(running):
            key, proc = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode:
                    for _, other in running:
                        other.kill()
                    raise SystemExit(f"bench_results: the run on {key} failed (exit status "
                                     f"{proc.returncode}); see its error above")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every dataset, then write the plots, ``--json`` and ``--markdown``."""
    strategies = args.strategies or list_strategies()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_results-"))
    images = Path(args.images)
    colors = {name: f"C{i % 10}" for i, name in enumerate(list_strategies())}
    report: dict[str, Any] = {
        "command": args.command,
        "machine": machine(),
        "settings": {"quick": args.quick, "strategies": strategies, "seeds": list(args.seeds),
                     "budget": _budget(args), "jobs": args.jobs, "threads": args.threads,
                     "strategy_kwargs": {k: quick_settings(k) for k in strategies
                                         if quick_settings(k)},
                     "out": str(out)},
        "datasets": {},
    }
    if args.report_only:  # rewrite the outputs from an earlier run's folder
        if not (out / "run.json").is_file():
            raise SystemExit(f"bench_results: --report-only needs --out, an earlier run's folder "
                             f"with run.json; {out} has none")
        report.update(json.loads((out / "run.json").read_text(encoding="utf-8")))
    else:
        start, cpu0 = time.perf_counter(), _cpu_seconds()
        # The image datasets (the slow ones) first, so that parallel jobs end close together.
        order = sorted(args.datasets, key=lambda k: DATASETS[k].dataset == "synthetic")
        run_all(order, args, out)
        report["wall_seconds"] = time.perf_counter() - start
        report["cpu_seconds"] = _cpu_seconds() - cpu0
        run_facts = {k: report[k] for k in ("command", "machine", "settings", "wall_seconds",
                                            "cpu_seconds")}
        (out / "run.json").write_text(json.dumps(run_facts, indent=1), encoding="utf-8")
    for key in args.datasets:
        config = DATASETS[key]
        board = json.loads((out / key / "leaderboard.json").read_text(encoding="utf-8"))
        times = json.loads((out / key / "wall.json").read_text(encoding="utf-8"))
        data = load_dataset(config.dataset, **board["settings"]["dataset_kwargs"])
        summary = summarise(board, data)
        title = f"{key}: test Δ_MTL against parameters ({len(args.seeds)} seeds)"
        fig = render_results.pareto_figure(summary, title, colors)
        save_figure(fig, images / f"results_{key}")
        report["datasets"][key] = {"quick": args.quick, "settings": board["settings"],
                                   "wall_seconds": times["wall_seconds"],
                                   "cpu_seconds": times.get("cpu_seconds"), "summary": summary,
                                   "leaderboard": board}
    if args.json:
        Path(args.json).write_text(json.dumps(json_ready(report), indent=1), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(render_results.markdown(report, args.image_link, DATASETS),
                                       encoding="utf-8")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"the benchmark suite's budget {BUDGETS['quick']} and smaller data")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="default: every registered strategy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=None, help="override the budget's trials")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: first available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the models are small, and one thread "
                             "is faster and steadier on a shared machine; 0: torch's default)")
    parser.add_argument("--out", default=None,
                        help="folder of the compare runs (default: a new temporary folder)")
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"),
                        help="where the Pareto plots go (default docs/images)")
    parser.add_argument("--image-link", default="images",
                        help="folder of the plots as linked from the markdown (default 'images', "
                             "i.e. relative to docs/)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="datasets run side by side, one process each (default 1, for "
                             "suites that already run two scripts at a time; 2 halves the wall "
                             "time on an otherwise idle 2-core machine)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run: rewrite the plots, markdown and JSON from --out")
    parser.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--markdown", default=None, help="write the '## Vector datasets' section here")
    parser.add_argument("--json", default=None, help="write every raw number here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command = "python benchmarks/bench_results.py " + " ".join(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    unknown = sorted(set(args.strategies or []) - set(list_strategies()))
    if unknown:
        build_parser().error(f"unknown strategies {unknown}; registered: {list_strategies()}")
    if args.run_one:  # a worker of run_all
        run_one(args.run_one, args, Path(args.out))
        return 0
    report = run(args)
    print(f"[bench_results] total {report['wall_seconds']:.0f} s"
          + (f"; markdown: {args.markdown}" if args.markdown else "")
          + (f"; json: {args.json}" if args.json else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
