"""Search cost: the README's main job end to end, and each strategy's time per trial and study.

Runs ``mtlsearch compare`` (the README's main job: every registered strategy x 3 seeds, 2
trials, 3 epochs on the embedded ``multi_digits`` data with ``small_cnn``, the compare quick
settings of ``affinity_tree`` and ``gumbel_policy``) in this process, in a fresh output folder
so that nothing is reused, and times it from the command's start to its end (import, data,
single-task references, every study, the report and its pictures). Then it reads the studies
back and reports, per strategy, the wall time of each trial and of each study (the sum of its
trials), side by side with the ``hard_sharing`` and ``single_task`` trials of the same seeds:
all of them ran in the same process, one after another, seed by seed.

The single-task reference of each seed is trained once, before the first study of the seed,
outside every trial; it is timed apart (``reference_s``).

Run from the repository root::

    python benchmarks/bench_search_cost.py --json search.json            # the main job, 3 seeds
    python benchmarks/bench_search_cost.py --seeds 0 --json search.json  # one seed (--quick)
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports: the command's own start

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

DEFAULT_SEEDS = (0, 1, 2)


def _timed_references(log: dict[int, float]) -> None:
    """Record the seconds each seed's single-task reference takes (computed or loaded)."""
    from mtlsearch.strategy.context import SearchContext

    original = SearchContext.reference

    def reference(self: SearchContext) -> Any:
        start = time.perf_counter()
        try:
            return original(self)
        finally:
            log[self.seed] = log.get(self.seed, 0.0) + time.perf_counter() - start

    SearchContext.reference = reference  # type: ignore[method-assign]


def read_runs(storage: str) -> list[dict[str, Any]]:
    """Every study of a ``compare`` storage: strategy, seed and each trial's seconds."""
    import optuna

    runs = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        # finished trials: initial parameters queued beyond the compute budget never ran
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if not trials:
            continue
        attrs = trials[0].user_attrs
        strategy = attrs.get("strategy") or summary.study_name.split("-")[1]
        seed = int(summary.study_name.split("-seed")[1].split("-")[0])
        runs.append({
            "strategy": strategy,
            "seed": seed,
            "study": summary.study_name,
            "states": [t.state.name for t in trials],
            "trial_s": [float(t.user_attrs.get("trial_seconds", float("nan"))) for t in trials],
            "train_s": [float(t.user_attrs.get("train_seconds") or 0.0) for t in trials],
            "study_s": sum(float(t.user_attrs.get("trial_seconds", 0.0)) for t in trials),
        })
    runs.sort(key=lambda r: (r["seed"], r["strategy"]))
    return runs


def per_strategy(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: median trial seconds, mean study seconds, and both side by side with the
    ``hard_sharing`` and ``single_task`` trials of the same seeds (median over seeds of the
    per-seed ratio)."""
    by_seed: dict[tuple[str, int], dict[str, Any]] = {(r["strategy"], r["seed"]): r for r in runs}

    def trial(r: dict[str, Any]) -> float:
        return statistics.median(r["trial_s"])

    rows = []
    for name in sorted({r["strategy"] for r in runs}):
        mine = [r for r in runs if r["strategy"] == name]
        row: dict[str, Any] = {
            "strategy": name,
            "seeds": [r["seed"] for r in mine],
            "trials_per_study": statistics.median(len(r["trial_s"]) for r in mine),
            "trial_s": statistics.median(t for r in mine for t in r["trial_s"]),
            "study_s": statistics.fmean(r["study_s"] for r in mine),
        }
        for other in ("hard_sharing", "single_task"):
            pairs = [(trial(r), trial(by_seed[(other, r["seed"])]))
                     for r in mine if (other, r["seed"]) in by_seed]
            row[f"trial_vs_{other}"] = (
                statistics.median(a / b for a, b in pairs) if pairs else None)
        rows.append(row)
    return rows


def shown_command(seeds: Sequence[int], threads: int, device: str) -> str:
    """The ``mtlsearch compare`` command a reader would type for the same run."""
    words = ["mtlsearch", "compare"]
    if list(seeds) != list(DEFAULT_SEEDS):
        words += ["--seeds", ",".join(map(str, seeds))]
    if threads != 1:
        words += ["--threads", str(threads)]
    if device != "cpu":
        words += ["--device", device]
    return " ".join(words)


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="compare's seeds (default 0 1 2, the main job)")
    parser.add_argument("--quick", action="store_true", help="one seed (0) instead of three")
    parser.add_argument("--threads", type=int, default=1, help="compare's --threads (default 1)")
    parser.add_argument("--device", default="cpu", help="compare's --device (default cpu)")
    parser.add_argument("--out", default=None,
                        help="compare's output folder (default: a temporary one, removed after); "
                             "must not hold earlier studies, which compare would reuse")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds = [0] if args.quick else list(args.seeds)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mtlsearch-bench-"))
    if (out / "compare.db").exists():
        parser.error(f"{out} already holds a compare run (compare.db); give an empty folder")
    command = ["compare", "--seeds", ",".join(map(str, seeds)), "--out", str(out), "--quiet",
               "--threads", str(args.threads), "--device", args.device]
    references: dict[int, float] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    load_before = os.getloadavg()
    from mtlsearch import __version__
    from mtlsearch.cli import main as cli_main

    _timed_references(references)
    status = cli_main(command)
    wall = time.perf_counter() - START
    after = resource.getrusage(resource.RUSAGE_SELF)
    if status != 0:
        print(f"mtlsearch compare exited with status {status}", file=sys.stderr)
        return status
    runs = read_runs(f"sqlite:///{out.resolve() / 'compare.db'}")
    rows = per_strategy(runs)
    board = json.loads((out / "leaderboard.json").read_text())
    data = {
        "command": " ".join(["python", "benchmarks/bench_search_cost.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "compare_command": shown_command(seeds, args.threads, args.device),
        "mtlsearch": __version__,
        "seeds": seeds,
        "default_seeds": list(DEFAULT_SEEDS),
        "settings": board.get("settings", {}),
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "reference_s": {str(k): v for k, v in sorted(references.items())},
        "runs": runs,
        "strategies": rows,
    }
    print(f"\nmtlsearch compare, seeds {seeds}: {wall:.0f} s end to end "
          f"({data['cpu_s']:.0f} s CPU)")
    print("| strategy | trials/study | s per trial | s per study | trial / hard_sharing | "
          "trial / single_task |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['trials_per_study']:g} | {r['trial_s']:.1f} | "
              f"{r['study_s']:.1f} | {r['trial_vs_hard_sharing'] or float('nan'):.2f} | "
              f"{r['trial_vs_single_task'] or float('nan'):.2f} |")
    print("single-task reference per seed: "
          + ", ".join(f"seed {k} {v:.1f} s" for k, v in data["reference_s"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json}")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
