"""The vector-datasets section of docs/results.md ("## Vector datasets") from
``bench_results.py --json``: settings, per dataset the strategies' table, its Pareto plot and
findings, where each strategy wins and loses, the groupings found, and per-task details."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from matplotlib.figure import Figure

from mtlsearch import create_strategy
from mtlsearch.study.comparison import quick_settings

from .markup import names

HEADING = "## Vector datasets"


class DatasetInfo(Protocol):
    """What the section says of one dataset (``bench_results.DATASETS`` holds them): its
    title, and the dataset options the benchmark gave it (the others are the defaults)."""

    title: str

    def dataset_kwargs(self, quick: bool) -> dict[str, Any]: ...


def _noise(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The seed noise of a comparison: the larger of the two standard deviations."""
    return max(a[1], b[1])


def _fmt(pair: tuple[float, float], digits: int = 2, sign: str = "+") -> str:
    if pair[0] != pair[0]:
        return "-"
    return f"{pair[0]:{sign}.{digits}f} ± {pair[1]:.{digits}f}"


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
                     f"this number of seeds): {names(tied)}.")
    if beaten:
        lines.append(f"Below it by more than the seed noise (the larger of the two standard "
                     f"deviations): {names(beaten)}.")
    else:
        lines.append("No strategy is below the best by more than the seed noise.")
    lines.append("Better than single-task networks beyond one std (mean − std > 0): "
                 + (names(above) if above else "none") + "; worse beyond one std "
                 "(mean + std < 0): " + (names(below) if below else "none") + ".")
    contenders = [r for r in rows if r["strategy"] in tied or r is best]
    cheapest = min(contenders, key=lambda r: r["params"][0])
    if cheapest is not best:
        lines.append(f"Among the best and those tied with it, `{cheapest['strategy']}` has the "
                     f"fewest parameters ({cheapest['params'][0]:,.0f} against "
                     f"{best['params'][0]:,.0f}).")
    front = pareto_front([(r["strategy"], r["params"][0], r["delta_mtl_test"][0]) for r in rows])
    lines.append(f"On the Pareto front of test Δ_MTL against parameters (means): {names(front)}.")
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
                     + (f"; {names(perfect)} recover the planted groups in every seed"
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
        parts = [("best or tied with the best on " + names(wins)) if wins
                 else "never best or tied with the best"]
        if losses:
            parts.append("beaten beyond the seed noise on " + names(losses))
        if over:
            parts.append("above single-task networks beyond noise on " + names(over))
        if under:
            parts.append("below single-task networks beyond noise on " + names(under))
        lines.append(text + "; ".join(parts) + ".")
    return lines


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


def _count(pair: tuple[float, float]) -> str:
    return "-" if pair[0] != pair[0] else f"{pair[0]:,.0f}"


def _times(item: Mapping[str, Any], scale: float = 1.0, unit: str = "s") -> str:
    text = f"{item['wall_seconds'] / scale:.1f} {unit} wall"
    if item.get("cpu_seconds") is not None:
        text += f", {item['cpu_seconds'] / scale:.1f} {unit} CPU"
    return text


def dataset_section(key: str, config: DatasetInfo, result: Mapping[str, Any],
                    image_link: str) -> list[str]:
    """One dataset: settings, the strategies' table, its Pareto plot, findings."""
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
    """One dataset's per-task metrics and, with planted groups, every run's grouping."""
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
    """Mean ± std ARI per strategy and dataset with planted groups (nothing without any)."""
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
        kwargs = quick_settings("task_routing")
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
                     "above chance beyond one std: " + (names(clear) if clear else "none") + ".")
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


def markdown(report: Mapping[str, Any], image_link: str,
             datasets: Mapping[str, DatasetInfo]) -> str:
    """The section from a ``bench_results.py --json`` report; the Pareto plots are linked from
    ``image_link`` (``results_<dataset>.png``, drawn by :func:`pareto_figure`), ``datasets``
    gives each dataset's title and own options (``bench_results.DATASETS``)."""
    s = report["settings"]
    m = report["machine"]
    results = report["datasets"]
    strategies = s["strategies"]
    budget = s["budget"]
    device = m["cuda"] or f"CPU ({m['cpu']}, {m['cores']} cores)"
    lines = [
        HEADING, "",
        f"Every registered strategy ({names(strategies)}) searched each dataset through "
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
        lines += dataset_section(key, datasets[key], result, image_link) + [""]
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
