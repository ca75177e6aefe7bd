"""The dense-prediction section of docs/results.md ("## Dense prediction on `dense_shapes`")
from ``bench_dense.py --json`` (one run, or several merged with ``--merge``): settings,
commands, the strategies' table (mean ± std over seeds), reference levels and findings
computed from the numbers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtlsearch.stats import nan_mean_std

from .markup import names

HEADING = "## Dense prediction on `dense_shapes`"
# Columns of the table: (task, metric, higher is better, label).
SHOWN = (("segment", "miou", True, "segment mIoU ↑"), ("depth", "abs_err", False, "depth abs. err ↓"),
         ("normals", "mean_angle", False, "normals mean angle ↓"), ("edges", "f1", True, "edges F1 ↑"),
         ("edges", "mae", False, "edges MAE ↓"))


def _values(rs: Sequence[Mapping[str, Any]], task: str, metric: str) -> list[float | None]:
    return [r["test"][task].get(metric) for r in rs if task in r["test"]]


def _fmt(pair: tuple[float, float], digits: int = 2) -> str:
    if pair[0] != pair[0]:
        return "-"
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def strategy_table(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The strategies' markdown table, mean ± std over the seeds of each strategy's rows."""
    tasks = {t for rs in rows.values() for r in rs for t in r["test"]}
    shown = [c for c in SHOWN if c[0] in tasks]
    header = ["strategy", "Δ_MTL val %", "Δ_MTL test %", "params", "MMACs"]
    header += [c[3] for c in shown] + ["s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rs in rows.items():
        cells = [f"`{name}`", _fmt(nan_mean_std([r["delta_val"] for r in rs])),
                 _fmt(nan_mean_std([r["delta_test"] for r in rs])),
                 f"{statistics.fmean(r['params'] for r in rs):,.0f}",
                 f"{statistics.fmean(r['macs'] for r in rs) / 1e6:.2f}"]
        cells += [_fmt(nan_mean_std(_values(rs, t, m)), 3 if m in ("miou", "f1", "mae") else 2)
                  for t, m, _, _ in shown]
        cells.append(f"{statistics.fmean(r['seconds'] for r in rs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def findings(rows: Mapping[str, Sequence[Mapping[str, Any]]], levels: Mapping[str, float]) -> list[str]:
    """Plain-words findings computed from the numbers (one bullet each)."""
    out: list[str] = []
    n_seeds = max(len(rs) for rs in rows.values())
    test = {name: nan_mean_std([r["delta_test"] for r in rs]) for name, rs in rows.items()}
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
                     + names(above))
    if below:
        parts.append("worse beyond one std (mean + std < 0): " + names(below))
    if within:
        parts.append("within one std of single-task networks: " + names(within))
    if parts:
        out.append("Test Δ_MTL: " + "; ".join(parts) + ".")
    if others:
        best = max(others, key=lambda k: others[k][0])
        tied = [k for k in others if k != best
                and others[best][0] - others[k][0] <= max(others[best][1], others[k][1])]
        params = {k: statistics.fmean(r["params"] for r in rows[k]) for k in others}
        line = f"Highest mean test Δ_MTL: `{best}` ({_fmt(others[best])} %)"
        line += (f"; not separable from it (difference within the larger std): {names(tied)}."
                 if tied else ", ahead of every other strategy by more than the seed noise.")
        cheapest = min([best, *tied], key=lambda k: params[k])
        if cheapest != best:
            line += (f" Of these, `{cheapest}` has the fewest parameters ({params[cheapest]:,.0f} "
                     f"against {params[best]:,.0f}).")
        out.append(line)
    if "background_miou" in levels:
        mious = {k: nan_mean_std(_values(rs, "segment", "miou")) for k, rs in rows.items()}
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
        f1s = {k: nan_mean_std(_values(rs, "edges", "f1")) for k, rs in rows.items()}
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
                t: {k: nan_mean_std([r["per_task_delta_test"][t] for r in rs])
                    for k, rs in rows.items() if k != "single_task"}
                for t in next(iter(rows.values()))[0]["per_task_delta_test"]}
    gains = []
    for task, by in per_task.items():
        up = [k for k, (m, s) in by.items() if m - s > 0]
        down = [k for k, (m, s) in by.items() if m + s < 0]
        gains.append(f"`{task}` gains beyond one std with {names(up) if up else 'none'}, "
                     f"loses with {names(down) if down else 'none'}")
    if gains:
        out.append("Per task (test Δ against its single-task network): " + "; ".join(gains) + ".")
    seconds = {k: statistics.fmean(r["seconds"] for r in rs) for k, rs in rows.items()}
    fast, slow = min(seconds, key=seconds.get), max(seconds, key=seconds.get)
    out.append(f"Time per seed from {seconds[fast]:.0f} s (`{fast}`) to {seconds[slow]:.0f} s "
               f"(`{slow}`, which includes the training of its own phases).")
    return out


def markdown(report: Mapping[str, Any], image_link: str = "images") -> str:
    """The section from a ``bench_dense.py --json`` report; the predictions picture is linked
    from ``image_link`` (the page's images folder)."""
    s, rows = report["settings"], report["rows"]
    size, n = s["size"], s["n_samples"]
    feat = size * 4 // s["output_stride"] if s["small_input"] else size // s["output_stride"]
    lines = [
        HEADING + (": smoke run (`--quick`)" if s["preset"] == "quick" else ""), "",
        f"Every strategy ({names(list(rows))}) with its default settings, one trial each "
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
        *strategy_table(rows), "",
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
