"""Section d of docs/benchmarks.md, the affinity estimators' cost against the number of
tasks, from ``bench_affinity_tree.py --part synthetic --json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtlsearch.stats import log_log_slope

from . import plots
from .markup import Target, decimal, table

#: affinity estimators: exponent of the RSA estimator's wall time against N (log-log slope).
AFFINITY_RSA_SLOPE = 1.2


def targets(data: Sequence[Mapping[str, Any]]) -> list[Target]:
    """The RSA estimator's growth with N (log-log slope of its wall time), from the list of
    per-N rows."""
    rows = sorted(data, key=lambda r: r["n_tasks"])
    slope = log_log_slope([r["n_tasks"] for r in rows], [r["rows"]["rsa"]["wall"] for r in rows])
    if slope is None:
        return []
    return [Target("d", f"affinity_tree, RSA estimator's wall time against N = "
                        f"{rows[0]['n_tasks']}..{rows[-1]['n_tasks']} tasks (log-log slope)",
                   f"<= {AFFINITY_RSA_SLOPE:.1f} (about linear)", slope,
                   slope <= AFFINITY_RSA_SLOPE)]


def markdown(data: Sequence[Mapping[str, Any]], command: str = "",
             images: Path | None = None, rel_dir: str = "images") -> str:
    """Section d's estimator table: wall time per estimator and N, ratios to ``full``,
    growth with N."""
    rows = sorted(data, key=lambda r: r["n_tasks"])
    names = list(rows[0]["rows"]) if rows else []
    slopes = {e: log_log_slope([r["n_tasks"] for r in rows], [r["rows"][e]["wall"] for r in rows])
              for e in names}
    body = [
        "**Affinity estimators** of `affinity_tree` on `synthetic` (two planted groups, 1,200 "
        "samples, mlp widths (32, 32, 32)): wall time of each estimator, the single-task "
        "training they need included, at each number of tasks N; `full` retrains 2·L·N "
        "recombined networks, `subset` the same on half the data, `rsa` compares the "
        "single-task networks' representations. Ratios are full / estimator in the same run. "
        + (f"Command: `{command}`." if command else ""),
        "",
        table(["N", *(f"{e} s" for e in names), *(f"full / {e}" for e in names if e != "full")],
              [[r["n_tasks"], *(decimal(r["rows"][e]["wall"], 1) for e in names),
                *(f"{r['rows']['full']['wall'] / r['rows'][e]['wall']:.1f}x"
                  for e in names if e != "full")] for r in rows]),
        "",
        "Growth with N (log-log slope of wall time; 1 = linear, 2 = quadratic): "
        + ", ".join(f"{e} {decimal(v)}" for e, v in slopes.items()) + ".",
    ]
    if images is not None and rows:
        body.append(plots.image_link(rel_dir, plot(rows, images), "affinity estimators' cost"))
    return "\n".join(body)


def plot(rows: Sequence[Mapping[str, Any]], images: Path) -> str:
    """Wall time of each estimator against N (log scale); returns the picture's file name."""
    fig, ax = plots.figure(5.5, 3.2)
    n = [r["n_tasks"] for r in rows]
    for e in rows[0]["rows"]:
        ax.plot(n, [r["rows"][e]["wall"] for r in rows], "o-", label=e)
    ax.set_xlabel("tasks N")
    ax.set_ylabel("seconds (single-task training included)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return plots.save(fig, images, "affinity_cost")
