"""Parallel trials, from ``bench_workers.py --json``: one search and the main job
(``mtlsearch compare``) with 1 and 2 (or more) worker processes, side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .markup import Target, decimal, table

#: A 20-trial random_tree search with 2 workers against 1 (issue 19).
SEARCH_SPEEDUP = 1.8
#: The main job (``mtlsearch compare`` with its defaults) with 2 workers against 1.
COMPARE_SPEEDUP = 1.7
#: bench_workers.py's label of the one-worker search pinned to one core.
PINNED_LABEL = "1 (pinned)"


def _at(rows: list[Mapping[str, Any]], workers: int) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["workers"] == workers), None)


def targets(data: Mapping[str, Any]) -> list[Target]:
    """Speed-ups at 2 workers, and the same results whatever the worker count."""
    found: list[Target] = []
    search = data.get("search", {}).get("rows", [])
    compare = data.get("compare", {}).get("rows", [])
    two = _at(search, 2)
    if two is not None:
        found.append(Target("h", f"search --workers 2 / --workers 1, "
                                 f"{data['search']['trials']}-trial random_tree search",
                            f">= {SEARCH_SPEEDUP:.1f}x", float(two["speedup"]),
                            two["speedup"] >= SEARCH_SPEEDUP))
    two = _at(compare, 2)
    if two is not None:
        found.append(Target("h", "compare --workers 2 / --workers 1 (the main job)",
                            f">= {COMPARE_SPEEDUP:.1f}x", float(two["speedup"]),
                            two["speedup"] >= COMPARE_SPEEDUP))
    if search:
        same = all(r["same_trials"] for r in search)
        found.append(Target("h", "the search's trials with every worker count (params, graphs, "
                                 "metrics)", "identical", "identical" if same else "differ",
                            same))
    if compare:
        same = all(r["same_leaderboard"] for r in compare)
        found.append(Target("h", "the comparison's leaderboard and runs with every worker count",
                            "identical", "identical" if same else "differ", same))
    return found


def _walls(row: Mapping[str, Any]) -> str:
    walls = row.get("walls") or [row["wall_s"]]
    return ", ".join(f"{w:.1f}" for w in walls)


def _ratios(row: Mapping[str, Any]) -> str:
    ratios = row.get("speedups") or [row["speedup"]]
    return ", ".join(f"{r:.2f}" for r in ratios)


def _repeats(part: Mapping[str, Any]) -> str:
    n = int(part.get("repeats", 1))
    return ("" if n == 1 else
            f" Each worker count ran {n} times, the counts side by side within each repeat; "
            "wall and CPU seconds are medians, the speed-up is the median of the repeats' own "
            "ratios (paired: the machine's drift between repeats cancels).")


def markdown(data: Mapping[str, Any]) -> str:
    """The scaling tables of the search and of the comparison."""
    body: list[str] = []
    quick = " (quick run: tiny data, not the figures the targets are about)" if data.get(
        "quick") else ""
    if "search" in data:
        s = data["search"]
        body += [
            f"**One search, several workers**{quick}: `{s['strategy']}`, {s['trials']} trials, "
            f"`{s['dataset']}`/`{s['space']}`, {s['epochs']} epoch(s), one torch thread per "
            "worker process, the single-task reference computed beforehand (the same cache "
            "for every run). Same trials: parameters, graphs, objectives and metrics of every "
            "trial equal to those of the first run." + _repeats(s) +
            f" Command: `{data.get('command')}`.", "",
            table(["workers", "wall s", "CPU s (all processes)", "speed-up", "same trials",
                   "wall s of each run", "speed-up of each run"],
                  [[r["workers"], decimal(r["wall_s"], 1), decimal(r.get("cpu_s"), 1),
                    f"**{r['speedup']:.2f}x**",
                    "yes" if r["same_trials"] else "**no**", _walls(r), _ratios(r)]
                   for r in s["rows"]]), "",
        ]
        for workers, r in s.get("over_pinned_serial", {}).items():
            ratios = ", ".join(f"{x:.2f}" for x in r["speedups"])
            body += [f"Over the one-worker search pinned to one core (`{PINNED_LABEL}`: what "
                     f"pinning alone gives a serial run), {workers} workers give "
                     f"**{r['speedup']:.2f}x** (each run: {ratios}). Several workers are "
                     "pinned each to its own core on the CPU "
                     "(`mtlsearch.study.worker_start`); one worker is not (it may share the "
                     "machine).", ""]
    if "compare" in data:
        c = data["compare"]
        body += [
            f"**The main job** (`{c['command']}`){quick}: the (strategy, seed) searches spread "
            "over the workers; same leaderboard: every run's best trial, its graph, Δ_MTL, "
            "parameters and trial count equal to those of the first run." + _repeats(c), "",
            table(["workers", "wall s", "CPU s (all processes)", "speed-up", "same leaderboard",
                   "wall s of each run", "speed-up of each run", "ranking"],
                  [[r["workers"], decimal(r["wall_s"], 1), decimal(r.get("cpu_s"), 1),
                    f"**{r['speedup']:.2f}x**",
                    "yes" if r["same_leaderboard"] else "**no**", _walls(r), _ratios(r),
                    ", ".join(r["ranking"])]
                   for r in c["rows"]]), "",
        ]
    load = data.get("load_before")
    if load:
        body.append(f"Load average before the run: {load[0]:.2f} (1 min).")
    return "\n".join(body).rstrip() + "\n"
