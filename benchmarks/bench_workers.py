"""Parallel trials: one search, and the main job (``mtlsearch compare``), with 1 and 2 workers.

Each part runs the same work with each worker count, side by side in one process, and checks
the results are the same (the trials of the search: parameters, graphs, metrics; the
comparison's leaderboard and runs). Printed: wall seconds, speed-up over one worker.

    python benchmarks/bench_workers.py --json workers.json              # both parts
    python benchmarks/bench_workers.py --part search --workers 1 2 4    # a scaling table
    python benchmarks/bench_workers.py --quick                          # a smoke run
    python benchmarks/bench_workers.py --repeat 3                       # medians of 3

The search part is a 20-trial ``random_tree`` search of ``multi_digits``/``small_cnn`` (2
epochs) whose single-task reference is computed once beforehand (the same cache for every
worker count), so the figures time the trials. The compare part runs ``mtlsearch compare``
with its defaults (every strategy, seeds 0, 1, 2) in a fresh folder per worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info  # noqa: E402
from mtlsearch.study.worker_start import pin  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _trials(study: Any) -> list[dict[str, Any]]:
    """What must not depend on the worker count: each trial's state, parameters, graph,
    objectives and metrics."""
    return [{"number": t.number, "state": t.state.name, "params": t.params,
             "graph": t.user_attrs.get("graph"), "values": t.values,
             "metrics": t.user_attrs.get("metrics")}
            for t in sorted(study.get_trials(), key=lambda t: t.number)]


def search_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import optuna
    import torch

    from mtlsearch.engine.train import TrainConfig
    from mtlsearch.study import search

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.quick:
        setup = dict(dataset="synthetic", space="mlp", space_kwargs={"widths": [16, 16]},
                     dataset_kwargs={"n_tasks": 4, "n_samples": 600})
        trials, epochs = 8, 1
    else:
        setup = dict(dataset="multi_digits", space="small_cnn")
        trials, epochs = args.trials, args.epochs
    budget = TrainConfig(epochs=epochs)
    cache = work / "cache"
    common = dict(strategy="random_tree", budget=budget, seed=0, progress=False,
                  cache=str(cache), **setup)
    # The single-task reference once, into the shared cache: every run below times trials.
    search(trials=1, storage=None, **common)
    rows, reference_trials = [], None
    for repeat, workers in _schedule(args, pinned=args.pinned_baseline):
        folder = work / f"search-w{workers}-r{repeat}".replace(" ", "")
        start, cpu = time.perf_counter(), _cpu()
        with pin(_one_core() if workers == PINNED else None):
            result = search(trials=trials, storage=f"journal:{folder / 'study.log'}",
                            out=folder, workers=1 if workers == PINNED else workers, **common)
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        got = _trials(result.study)
        if reference_trials is None:
            reference_trials = got
        rows.append({"repeat": repeat, "workers": workers, "wall_s": wall, "cpu_s": cpu,
                     "trials": len(got), "same_trials": got == reference_trials})
        print(f"search, run {repeat + 1}, {workers} worker(s): {wall:.1f} s ({cpu:.1f} s CPU), "
              f"{len(got)} trials, same trials as the first run: {got == reference_trials}",
              flush=True)
    part = {"strategy": "random_tree", "trials": trials, "epochs": epochs, **setup,
            "repeats": args.repeat, "runs": rows, "rows": summarize(rows, "same_trials")}
    if args.pinned_baseline:
        part["over_pinned_serial"] = over_baseline(rows, PINNED)
    return part


def _one_core() -> list[int]:
    return [min(os.sched_getaffinity(0))]


def over_baseline(runs: list[dict[str, Any]], baseline: Any) -> dict[str, Any]:
    """Each worker count's speed-up over the ``baseline`` runs instead (paired by repeat)."""
    import statistics

    walls = {(r["repeat"], r["workers"]): r["wall_s"] for r in runs}
    out = {}
    for workers in dict.fromkeys(r["workers"] for r in runs):
        if workers == baseline or not isinstance(workers, int) or workers < 2:
            continue
        ratios = [walls[(rep, baseline)] / walls[(rep, workers)]
                  for rep, w in walls if w == workers and (rep, baseline) in walls]
        out[str(workers)] = {"speedups": ratios, "speedup": statistics.median(ratios)}
    return out


def _board(folder: Path) -> dict[str, Any]:
    board = json.loads((folder / "leaderboard.json").read_text())
    keep = ("strategy", "seed", "trial", "delta_mtl", "delta_mtl_test", "params", "macs",
            "graph", "hyperparams", "n_trials", "compute_macs", "error")
    runs = [{k: r.get(k) for k in keep} for r in board["runs"]]
    rows = [{k: r.get(k) for k in ("strategy", "delta_mtl", "delta_mtl_test", "params")}
            for r in board["leaderboard"]]
    return {"runs": runs, "rows": rows}


def compare_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from mtlsearch.cli.main import main

    extra = (["--strategies", "hard_sharing,random_tree", "--seeds", "0,1", "--trials", "3",
              "--dataset", "synthetic", "--space", "mlp", "--epochs", "1"]
             if args.quick else [])
    rows, reference = [], None
    for repeat, workers in _schedule(args):
        folder = work / f"compare-w{workers}-r{repeat}"
        argv = ["compare", "--out", str(folder), "--workers", str(workers), "--quiet",
                "--json", *extra]
        start, cpu = time.perf_counter(), _cpu()
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            try:
                code = main(argv)
            finally:
                sys.stdout = stdout
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        if code != 0:
            raise SystemExit(f"mtlsearch {' '.join(argv)} failed with status {code}")
        board = _board(folder)
        reference = board if reference is None else reference
        rows.append({"repeat": repeat, "workers": workers, "wall_s": wall, "cpu_s": cpu,
                     "same_leaderboard": board == reference,
                     "ranking": [r["strategy"] for r in board["rows"]]})
        print(f"compare, run {repeat + 1}, {workers} worker(s): {wall:.1f} s ({cpu:.1f} s CPU), "
              f"same leaderboard as the first run: {board == reference}", flush=True)
    summary = summarize(rows, "same_leaderboard")
    for row in summary:
        row["ranking"] = next(r["ranking"] for r in rows if r["workers"] == row["workers"])
    return {"command": "mtlsearch compare " + " ".join(extra) + " --workers N",
            "repeats": args.repeat, "runs": rows, "rows": summary}


#: The label of a one-worker search pinned to one core (``--pinned-baseline``).
PINNED = "1 (pinned)"


def _schedule(args: argparse.Namespace, pinned: bool = False) -> list[tuple[int, Any]]:
    """(repeat, workers) in run order: the worker counts side by side within each repeat, so
    a slow spell of the machine hits every count of that repeat alike (``pinned``: a
    one-worker run pinned to one core follows the first count)."""
    counts: list[Any] = list(args.workers)
    if pinned:
        counts.insert(1, PINNED)
    return [(repeat, workers) for repeat in range(args.repeat) for workers in counts]


def summarize(runs: list[dict[str, Any]], same_key: str) -> list[dict[str, Any]]:
    """One row per worker count: median wall and CPU seconds over the repeats, and the
    speed-up as the median of the repeats' own ratios (each repeat's first count over this
    one: paired, so the machine's drift between repeats cancels)."""
    import statistics

    counts = list(dict.fromkeys(r["workers"] for r in runs))
    base = counts[0]
    walls = {(r["repeat"], r["workers"]): r["wall_s"] for r in runs}
    rows = []
    for workers in counts:
        mine = [r for r in runs if r["workers"] == workers]
        ratios = [walls[(r["repeat"], base)] / r["wall_s"] for r in mine]
        rows.append({"workers": workers, "wall_s": statistics.median(r["wall_s"] for r in mine),
                     "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                     "walls": [r["wall_s"] for r in mine], "speedups": ratios,
                     "speedup": statistics.median(ratios),
                     same_key: all(r[same_key] for r in mine)})
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The script's options (run_all.py's declaration is checked against them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("search", "compare", "all"), default="all")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts, the first is the baseline (default 1 2)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1,
                   help="run every worker count this many times, interleaved; the figures "
                        "are medians (default 1)")
    p.add_argument("--pinned-baseline", action="store_true",
                   help="search part: also run one worker pinned to one core (as each of "
                        "several workers is), to show what pinning alone gives")
    p.add_argument("--quick", action="store_true", help="tiny data: a smoke run")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--keep", default=None, help="keep the studies in this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if any(w < 1 for w in args.workers):
        p.error("--workers counts must be at least 1")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-workers-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = list(os.getloadavg())
    data: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_workers.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick, "machine": machine_info("cpu"), "load_before": load_before,
    }
    try:
        if args.part in ("search", "all"):
            data["search"] = search_part(args, work)
        if args.part in ("compare", "all"):
            data["compare"] = compare_part(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    data["load_after"] = list(os.getloadavg())
    for part in ("search", "compare"):
        for r in data.get(part, {}).get("rows", []):
            print(f"{part}: {r['workers']} worker(s) {r['wall_s']:.1f} s, speed-up "
                  f"{r['speedup']:.2f}x")
    for workers, r in data.get("search", {}).get("over_pinned_serial", {}).items():
        print(f"search: {workers} worker(s) over one pinned worker: {r['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
