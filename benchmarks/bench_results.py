"""Results side by side on the vector datasets: every strategy, equal budgets, several seeds.

Drives :func:`mtlsearch.compare` (the code path of ``mtlsearch compare``) for every registered
strategy on ``multi_digits``, ``digits`` and ``synthetic`` with planted task groups in two
configurations, then writes one self-contained markdown section ("## Vector datasets": the
machine, the command, the settings, tables, Pareto plots and findings generated from the
numbers) and a JSON file with every raw number. Pareto plots (test Δ_MTL against parameters,
mean ± std over seeds) go to ``docs/images/results_<dataset>.png`` and ``.svg``.

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
import math
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
from matplotlib.figure import Figure

from mtlsearch import TrainConfig, create_strategy, list_strategies, load_dataset
from mtlsearch.engine.scoring import metric_directions
from mtlsearch.graph.grouping import (
    ari_per_depth,
    discovered_grouping,
    grouping_ari,
    last_shared_depth,
    task_partition,
)
from mtlsearch.study.comparison import QUICK_STRATEGY_KWARGS, compare
from mtlsearch.viz import save_figure

if str(Path(__file__).resolve().parent) not in sys.path:  # `report` sits next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as report_helpers  # noqa: E402  (the scripts' own `report` is their results)

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Vector datasets"


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
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [float(v) for v in values if v is not None and v == v]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


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
            "delta_mtl": _mean_std([r["delta_mtl"] for r in ok]),
            "delta_mtl_test": _mean_std([r["delta_mtl_test"] for r in ok]),
            "mean_task_metric": _mean_std([r["mean_task_metric"] for r in ok]),
            "params": _mean_std([r["params"] for r in ok]),
            "macs": _mean_std([r["macs"] for r in ok]),
            "search_seconds": _mean_std([r["search_seconds"] for r in mine]),
            "task_metric": {t: _mean_std([r["task_metric"][t] for r in ok]) for t in primary},
        }
        if planted:
            row["ari"] = _mean_std([r["ari"] for r in ok])
        rows.append(row)
    metrics = sorted({m for m, _ in primary.values()})
    return {"rows": rows, "runs": runs_out, "planted": planted,
            "primary_metric": {t: m for t, (m, _) in primary.items()},
            "metric_name": metrics[0] if len(metrics) == 1 else "primary metric",
            "higher_is_better": all(h for _, h in primary.values())}


# ------------------------------------------------------------------------------ findings
def _noise(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The seed noise of a comparison: the larger of the two standard deviations."""
    return max(a[1], b[1])


def _fmt(pair: tuple[float, float], digits: int = 2, sign: str = "+") -> str:
    if pair[0] != pair[0]:
        return "-"
    return f"{pair[0]:{sign}.{digits}f} ± {pair[1]:.{digits}f}"


def _names(items: Sequence[str]) -> str:
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def dataset_findings(summary: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Plain-words findings on one dataset, and the facts the cross-dataset summary needs."""
    rows = [r for r in summary["rows"] if r["delta_mtl_test"][0] == r["delta_mtl_test"][0]]
    if not rows:
        return ["No strategy finished a trial."], {}
    by_test = sorted(rows, key=lambda r: -r["delta_mtl_test"][0])
    best = by_test[0]
    best_val = max(rows, key=lambda r: r["delta_mtl"][0])
    tied = [r["strategy"] for r in by_test[1:]
            if best["delta_mtl_test"][0] - r["delta_mtl_test"][0]
            <= _noise(best["delta_mtl_test"], r["delta_mtl_test"])]
    beaten = [r["strategy"] for r in by_test[1:] if r["strategy"] not in tied]
    above = [r["strategy"] for r in by_test if r["delta_mtl_test"][0] - r["delta_mtl_test"][1] > 0]
    below = [r["strategy"] for r in by_test if r["delta_mtl_test"][0] + r["delta_mtl_test"][1] < 0]
    lines = [f"Best test Δ_MTL: `{best['strategy']}` ({_fmt(best['delta_mtl_test'])} %)"
             + (f"; validation ranks `{best_val['strategy']}` first "
                f"({_fmt(best_val['delta_mtl'])} %)." if best_val is not best else
                ", also first on validation.")]
    if tied:
        lines.append(f"Within one standard deviation of it (not separable from the best at "
                     f"this number of seeds): {_names(tied)}.")
    if beaten:
        lines.append(f"Below it by more than the seed noise (the larger of the two standard "
                     f"deviations): {_names(beaten)}.")
    else:
        lines.append("No strategy is below the best by more than the seed noise.")
    lines.append("Better than single-task networks beyond one std (mean − std > 0): "
                 + (_names(above) if above else "none") + "; worse beyond one std "
                 "(mean + std < 0): " + (_names(below) if below else "none") + ".")
    contenders = [r for r in rows if r["strategy"] in tied or r is best]
    cheapest = min(contenders, key=lambda r: r["params"][0])
    if cheapest is not best:
        lines.append(f"Among the best and those tied with it, `{cheapest['strategy']}` has the "
                     f"fewest parameters ({cheapest['params'][0]:,.0f} against "
                     f"{best['params'][0]:,.0f}).")
    front = pareto_front([(r["strategy"], r["params"][0], r["delta_mtl_test"][0]) for r in rows])
    lines.append(f"On the Pareto front of test Δ_MTL against parameters (means): {_names(front)}.")
    for name in [r["strategy"] for r in by_test if r["strategy"] not in ("single_task",
                                                                        "hard_sharing")]:
        runs = [r for r in summary["runs"] if r["strategy"] == name and not r.get("error")]
        for kind in ("single-task", "hard sharing"):
            n = sum(r.get("structure") == kind for r in runs)
            if n:
                lines.append(f"`{name}` returned the {kind} architecture in {n} of its "
                             f"{len(runs)} seeds" + (" (so its Δ_MTL is 0 by construction)."
                                                     if kind == "single-task" and n == len(runs)
                                                     else "."))
    slow = max(rows, key=lambda r: r["search_seconds"][0])
    fast = min(rows, key=lambda r: r["search_seconds"][0])
    lines.append(f"Search time ranges from {fast['search_seconds'][0]:.1f} s "
                 f"(`{fast['strategy']}`) to {slow['search_seconds'][0]:.1f} s "
                 f"(`{slow['strategy']}`) per seed.")
    with_ari = [r for r in rows if r.get("ari") and r["ari"][0] == r["ari"][0]]
    if summary.get("planted") and with_ari:
        top = max(with_ari, key=lambda r: r["ari"][0])
        perfect = [r["strategy"] for r in with_ari if r["ari"][0] >= 1 - 1e-9]
        lines.append(f"Grouping: the highest adjusted Rand index is `{top['strategy']}`'s "
                     f"({_fmt(top['ari'], 2, '')})"
                     + (f"; {_names(perfect)} recover the planted groups in every seed"
                        if perfect else "; no strategy recovers the planted groups in every seed")
                     + ".")
    facts = {"best": best["strategy"], "tied": tied, "beaten": beaten, "above": above,
             "below": below, "rank": [r["strategy"] for r in by_test]}
    return lines, facts


def overall_findings(facts: Mapping[str, Mapping[str, Any]], strategies: Sequence[str]) -> list[str]:
    """Per strategy: where it wins (best or tied with the best) and where it loses."""
    lines = []
    for name in strategies:
        wins = [k for k, f in facts.items() if f and (f["best"] == name or name in f["tied"])]
        losses = [k for k, f in facts.items() if f and name in f["beaten"]]
        under = [k for k, f in facts.items() if f and name in f["below"]]
        over = [k for k, f in facts.items() if f and name in f["above"]]
        ranks = [f["rank"].index(name) + 1 for f in facts.values() if f and name in f["rank"]]
        text = (f"`{name}` (mean rank {statistics.fmean(ranks):.1f} of "
                f"{len(strategies)} on test Δ_MTL): " if ranks else f"`{name}`: ")
        parts = [("best or tied with the best on " + _names(wins)) if wins
                 else "never best or tied with the best"]
        if losses:
            parts.append("beaten beyond the seed noise on " + _names(losses))
        if over:
            parts.append("above single-task networks beyond noise on " + _names(over))
        if under:
            parts.append("below single-task networks beyond noise on " + _names(under))
        lines.append(text + "; ".join(parts) + ".")
    return lines


# ------------------------------------------------------------------------------ pictures
def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points ``(name, params, delta)`` that no other point dominates (at most as
    many parameters and at least as high Δ_MTL, one of them strictly)."""
    return [n for n, x, y in points
            if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for _, x2, y2 in points)]


def pareto_figure(summary: Mapping[str, Any], title: str, colors: Mapping[str, Any]) -> Figure:
    """Test Δ_MTL against parameters, one point per strategy with std error bars.

    Strategies with the same mean parameter count (e.g. every strategy that keeps the hard-
    sharing trunk) are spread by a few percent sideways so that their bars stay visible; the
    dotted step line joins the Pareto front of the means.
    """
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.axhline(0.0, color="#999999", lw=0.8, ls="--", zorder=0)
    rows = [r for r in summary["rows"]
            if r["delta_mtl_test"][0] == r["delta_mtl_test"][0] and r["params"][0] == r["params"][0]]
    seen: dict[float, int] = {}
    for r in rows:
        (y, dy), (x, dx) = r["delta_mtl_test"], r["params"]
        k = seen.get(round(math.log10(max(x, 1.0)), 2), 0)
        seen[round(math.log10(max(x, 1.0)), 2)] = k + 1
        shown = x * (1.0 + 0.03 * k)  # same-size architectures side by side
        ax.errorbar(shown, y, xerr=dx, yerr=dy, fmt="o", ms=7, capsize=4,
                    color=colors[r["strategy"]], label=r["strategy"])
        ax.annotate(r["strategy"], (shown, y), xytext=(6, 4 - 9 * k), textcoords="offset points",
                    fontsize=7, color=colors[r["strategy"]])
    front = set(pareto_front([(r["strategy"], r["params"][0], r["delta_mtl_test"][0])
                              for r in rows]))
    pts = sorted((r["params"][0], r["delta_mtl_test"][0]) for r in rows if r["strategy"] in front)
    if len(pts) > 1:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", ls=":", color="#444444",
                lw=1, zorder=0, label="Pareto front (means)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (mean ± std over seeds; log scale)")
    ax.set_ylabel("test Δ_MTL % (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


# ------------------------------------------------------------------------------ markdown
def _count(pair: tuple[float, float]) -> str:
    return "-" if pair[0] != pair[0] else f"{pair[0]:,.0f}"


def _times(item: Mapping[str, Any], scale: float = 1.0, unit: str = "s") -> str:
    text = f"{item['wall_seconds'] / scale:.1f} {unit} wall"
    if item.get("cpu_seconds") is not None:
        text += f", {item['cpu_seconds'] / scale:.1f} {unit} CPU"
    return text


def dataset_section(key: str, config: DatasetConfig, result: Mapping[str, Any],
                    image_link: str) -> list[str]:
    summary = result["summary"]
    settings = result["settings"]
    metric = summary["metric_name"]
    planted = bool(summary["planted"])
    kwargs = {k: v for k, v in settings["dataset_kwargs"].items()
              if k in config.dataset_kwargs(result["quick"]) or k in ("seed",)}
    lines = [f"### {key}", "", f"{config.title}. Space `{settings['space']}`; dataset options "
             f"`{json.dumps(kwargs)}`; {_times(result)} for this dataset.", "",
             f"| strategy | Δ_MTL val % | Δ_MTL test % | mean test {metric} | params | MACs | "
             "search s" + (" | ARI |" if planted else " |"),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if planted else "")]
    for r in sorted(summary["rows"], key=lambda r: -(r["delta_mtl_test"][0]
                                                   if r["delta_mtl_test"][0] == r["delta_mtl_test"][0]
                                                   else -math.inf)):
        cells = [f"`{r['strategy']}`", _fmt(r["delta_mtl"]), _fmt(r["delta_mtl_test"]),
                 _fmt(r["mean_task_metric"], 3, ""), _count(r["params"]), _count(r["macs"]),
                 f"{r['search_seconds'][0]:.1f}"]
        if planted:
            cells.append(_fmt(r["ari"], 2, ""))
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in summary["runs"] if r.get("error")]
    if failed:
        lines += ["", "Runs without a complete trial: "
                  + "; ".join(f"`{r['strategy']}` seed {r['seed']} ({r['error']})" for r in failed)
                  + "."]
    findings, _ = dataset_findings(summary)
    lines += ["", f"![Test Δ_MTL against parameters on {key}]({image_link}/results_{key}.png)", ""]
    lines += [f"- {f}" for f in findings]
    return lines


def details_section(key: str, result: Mapping[str, Any]) -> list[str]:
    summary = result["summary"]
    tasks = list(summary["primary_metric"])
    lines = [f"#### {key}: test {summary['metric_name']} per task (mean ± std over seeds)", "",
             "| strategy | " + " | ".join(f"`{t}`" for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
    for r in summary["rows"]:
        lines.append(f"| `{r['strategy']}` | "
                     + " | ".join(_fmt(r["task_metric"][t], 3, "") for t in tasks) + " |")
    if summary["planted"]:
        lines += ["", f"Discovered groupings on {key} (planted: "
                  + " ".join("{" + ", ".join(g) + "}" for g in summary["planted"]) + "):", "",
                  "| strategy | seed | last shared depth | grouping | ARI | ARI per depth |",
                  "|---|---:|---:|---|---:|---|"]
        for r in summary["runs"]:
            if r.get("error"):
                continue
            grouping = " ".join("{" + ", ".join(g) + "}" for g in r["grouping"])
            depth = "-" if r["last_shared_depth"] is None else str(r["last_shared_depth"])
            per_depth = ", ".join(f"{a:.2f}" for a in r["ari_per_depth"])
            lines.append(f"| `{r['strategy']}` | {r['seed']} | {depth} | {grouping} | "
                         f"{r['ari']:.2f} | {per_depth} |")
    return lines


def ari_table(results: Mapping[str, Mapping[str, Any]], strategies: Sequence[str]) -> list[str]:
    keys = [k for k, r in results.items() if r["summary"]["planted"]]
    if not keys:
        return []
    lines = ["| strategy | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name in strategies:
        cells = []
        for k in keys:
            row = next((r for r in results[k]["summary"]["rows"] if r["strategy"] == name), None)
            cells.append("-" if row is None else _fmt(row["ari"], 2, ""))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def budget_notes(strategies: Sequence[str]) -> list[str]:
    """What "equal budget" means for strategies whose training differs, read from their settings."""
    notes = []
    if "task_routing" in strategies:
        kwargs = QUICK_STRATEGY_KWARGS.get("task_routing", {})
        sampling = getattr(create_strategy("task_routing", **kwargs), "task_sampling", None)
        if sampling == "one":
            notes.append("`task_routing` trains one randomly chosen task per batch (its default "
                         "`task_sampling=\"one\"`, the paper's Algorithm 1), so at the same "
                         "number of epochs each of T tasks gets about 1/T of the updates the "
                         "other strategies give it: its gap measures that budget as much as its "
                         "masks (`--strategy-arg task_routing.task_sampling=all` in "
                         "`mtlsearch compare` lifts it).")
    return notes


def ari_findings(results: Mapping[str, Mapping[str, Any]], strategies: Sequence[str]) -> list[str]:
    """Plain words on the groupings: who finds the planted groups, who returns trivial ones."""
    keys = [k for k, r in results.items() if r["summary"]["planted"]]
    lines = []
    for key in keys:
        rows = [r for r in results[key]["summary"]["rows"] if r.get("ari") and r["ari"][0] == r["ari"][0]]
        if not rows:
            continue
        top = max(rows, key=lambda r: r["ari"][0])
        clear = [r["strategy"] for r in rows if r["ari"][0] - r["ari"][1] > 0]
        lines.append(f"`{key}`: highest ARI `{top['strategy']}` ({_fmt(top['ari'], 2, '')}); "
                     "above chance beyond one std: " + (_names(clear) if clear else "none") + ".")
    for name in strategies:
        runs = [r for k in keys for r in results[k]["summary"]["runs"]
                if r["strategy"] == name and not r.get("error")]
        if not runs:
            continue
        singles = sum(all(len(g) == 1 for g in r["grouping"]) for r in runs)
        whole = sum(len(r["grouping"]) == 1 for r in runs)
        parts = []
        if singles:
            parts.append(f"single tasks (no two tasks computing the same features) in {singles}")
        if whole:
            parts.append(f"all tasks in one group in {whole}")
        if parts:
            lines.append(f"`{name}` returned a trivial grouping (ARI 0) in {singles + whole} of "
                         f"its {len(runs)} runs: " + "; ".join(parts) + ".")
    if "random_tree" in strategies and keys:
        lines.append("`random_tree` draws its partitions at random, so its ARI shows how far "
                     "chance alone reaches at this number of seeds.")
    return lines


def machine() -> dict[str, Any]:
    cpu = report_helpers.cpu_model()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"cpu": cpu, "cores": report_helpers.usable_cores(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def to_markdown(report: Mapping[str, Any], image_link: str) -> str:
    s = report["settings"]
    m = report["machine"]
    results = report["datasets"]
    strategies = s["strategies"]
    budget = s["budget"]
    device = m["cuda"] or f"CPU ({m['cpu']}, {m['cores']} cores)"
    lines = [
        HEADING, "",
        f"Every registered strategy ({_names(strategies)}) searched each dataset through "
        "`mtlsearch.compare` (the code path of `mtlsearch compare`) with the same budget: "
        f"at most {budget['trials']} trials per search and at most "
        f"{budget.get('compute') or 'unlimited'} compute (compare's rule: a search starts no "
        "trial once it has spent that many hard-sharing trainings, counting everything it "
        "trains; see *Search quality* below for equal-compute comparisons in depth; "
        "`single_task` and `hard_sharing` sample nothing "
        f"and run one), {budget['epochs']} epochs per candidate, batch {budget['batch_size']}, "
        f"Adam lr {budget['lr']}, seeds {s['seeds']} (seeds vary weights, shuffling and "
        "sampling; the data split is the same). Each seed keeps the trial with the best "
        "validation Δ_MTL; figures are mean ± std over seeds. Strategy settings: "
        f"`{json.dumps(s['strategy_kwargs'])}` (compare's quick defaults), the others at their "
        "defaults.", "",
        f"Machine: {device}; torch {m['torch']}, Python {m['python']}, commit "
        f"`{m['commit']}`; {s.get('jobs', 1)} dataset(s) at a time, one process each with "
        f"{s.get('threads', 1)} torch thread(s). Total: {_times(report, 60, 'min')}"
        + (" (the `--quick` budget of the benchmark suite)" if s["quick"] else "")
        + ". Wall time depends on what else the machine runs; CPU time much less.", "",
        "```", report["command"], "```", "",
        "Columns: Δ_MTL is the mean relative gain over single-task networks of the same seed "
        "(percent, higher is better); *mean test metric* averages each task's primary metric "
        "(accuracy for binary tasks) over tasks; params and MACs (multiply-accumulates per "
        "sample) are means over seeds; *search s* is the summed trial time of one search "
        "(mean over seeds), including what the strategy trains of its own (policy phases, "
        "affinity models). The single-task networks that Δ_MTL compares with are trained once "
        f"per seed, inside that seed's first search (`{strategies[0]}`'s), and reused by the "
        "others, whose search time leaves them out. "
        "A difference is called beyond the seed noise when it exceeds the larger of the two "
        "standard deviations."
        + (" **With a single seed every standard deviation is 0, so every difference counts "
           "as beyond the noise: these findings need at least 3 seeds to mean anything.**"
           if len(s["seeds"]) < 2 else ""), "",
        "**Grouping (ARI).** The discovered grouping of an architecture is its task partition "
        "at the *last shared depth*: the deepest block where some tasks still compute the same "
        "features (same block nodes, skips and channel masks up to that block; "
        "`mtlsearch.graph.grouping.discovered_grouping`). The table gives the adjusted Rand index "
        "(`sklearn.metrics.adjusted_rand_score`) of that partition against the planted one: 1 "
        "is the planted grouping, 0 is chance level. `hard_sharing` (one group) and "
        "`single_task` (no two tasks share) get exactly 0: trivial partitions carry no "
        "information about the groups. For `task_routing` (per-task channel masks) and "
        "`gumbel_policy` (per-task skipped blocks) the same definition groups tasks whose "
        "masks or skip policies agree.", "",
    ]
    facts = {}
    for key, result in results.items():
        lines += dataset_section(key, DATASETS[key], result, image_link) + [""]
        facts[key] = dataset_findings(result["summary"])[1]
    lines += ["### Where each strategy wins and loses", ""]
    lines += [f"- {f}" for f in overall_findings(facts, strategies)]
    lines += [f"- {f}" for f in budget_notes(strategies)]
    ari = ari_table(results, strategies)
    if ari:
        lines += ["", "Adjusted Rand index of the discovered grouping (mean ± std over seeds):",
                  ""] + ari + [""] + [f"- {f}" for f in ari_findings(results, strategies)]
    lines += ["", "### Details", ""]
    for key, result in results.items():
        lines += details_section(key, result) + [""]
    lines.append("Raw numbers (every run, its graph, metrics and ARI per depth): the JSON "
                 "written with `--json`.")
    return "\n".join(lines).rstrip() + "\n"


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
                     "strategy_kwargs": {k: v for k, v in QUICK_STRATEGY_KWARGS.items()
                                         if k in strategies},
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
        fig = pareto_figure(summary, f"{key}: test Δ_MTL against parameters "
                                     f"({len(args.seeds)} seeds)", colors)
        save_figure(fig, images / f"results_{key}")
        report["datasets"][key] = {"quick": args.quick, "settings": board["settings"],
                                   "wall_seconds": times["wall_seconds"],
                                   "cpu_seconds": times.get("cpu_seconds"), "summary": summary,
                                   "leaderboard": board}
    if args.json:
        Path(args.json).write_text(json.dumps(report_helpers.json_ready(report), indent=1), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(report, args.image_link), encoding="utf-8")
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
