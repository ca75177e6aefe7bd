"""Section c of docs/benchmarks.md, gradient merging at many tasks, from
``bench_gradient_merge.py --part cost --json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import plots
from .markup import Target, decimal, table

#: gradient merging: an epoch with capture + factorisation + clustering / a plain epoch. The
#: paper's per-batch factorisation (window 1) costs up to about one more epoch of a small MLP.
MERGE_EPOCH_RATIO = 2.0
#: gradient merging: that overhead must not grow with the number of tasks: the ratio at the
#: largest task count / the ratio at the smallest.
MERGE_GROWTH = 1.25


def targets(data: Mapping[str, Any]) -> list[Target]:
    """Gradient merging: the worst epoch ratio, and its growth from the fewest to the most
    tasks."""
    rows = data.get("rows", [])
    if not rows:
        return []
    worst = max(rows, key=lambda r: r["ratio"])
    ordered = sorted(rows, key=lambda r: r["tasks"])
    growth = float(ordered[-1]["ratio"]) / float(ordered[0]["ratio"])
    return [
        Target("c", f"gradient merging, epoch with capture + clustering / plain epoch (worst: "
                    f"{worst['tasks']} tasks)", f"<= {MERGE_EPOCH_RATIO:.2f} at every task count",
               float(worst["ratio"]), worst["ratio"] <= MERGE_EPOCH_RATIO),
        Target("c", f"gradient merging, that ratio at {ordered[-1]['tasks']} tasks / at "
                    f"{ordered[0]['tasks']} tasks (the overhead does not grow with tasks)",
               f"<= {MERGE_GROWTH:.2f}", growth, growth <= MERGE_GROWTH),
    ]


def markdown(data: Mapping[str, Any], images: Path | None = None,
             rel_dir: str = "images") -> str:
    """Section c's gradient-merging table: plain epoch against an epoch with merging, per
    task count."""
    s = data.get("settings", {})
    rows = sorted(data.get("rows", []), key=lambda r: r["tasks"])
    body = [
        f"**Gradient merging** (`gradient_merge`) on `synthetic` ({s.get('n_samples')} samples), "
        f"mlp widths {s.get('widths')}, batch {s.get('batch_size')}: one epoch of the graph the "
        "strategy proposes (shared first half, one branch per task) with its hooks (gradient "
        "capture every batch, tensor-train factorisation, HDBSCAN clustering and merging at "
        "the epoch's end) against the same epoch without them, in turns; ratio = median over "
        f"{s.get('repeats')} repetitions of the per-repetition ratio. "
        f"Command: `{data.get('command')}`.",
        "",
        table(["tasks", "plain epoch s", "epoch with merging s", "ratio", "factorise s",
               "cluster s", "(factorise + cluster) / epoch"],
              [[r["tasks"], decimal(r["plain_s"]), decimal(r["merge_s"]), f"**{r['ratio']:.2f}**",
                decimal(r["factorise_s"], 3), decimal(r["cluster_s"], 4),
                decimal((r["factorise_s"] + r["cluster_s"]) / r["merge_s"], 3)] for r in rows]),
    ]
    if images is not None and rows:
        body.append(plots.image_link(rel_dir, plot(data, images), "gradient merging cost"))
    return "\n".join(body)


def plot(data: Mapping[str, Any], images: Path) -> str:
    """Epoch, factorisation and clustering seconds against tasks (log-log); returns the
    picture's file name."""
    rows = sorted(data["rows"], key=lambda r: r["tasks"])
    n = [r["tasks"] for r in rows]
    fig, ax = plots.figure(6.0, 3.2)
    for key, label, style in (("plain_s", "plain epoch", "o-"),
                              ("merge_s", "epoch with merging", "o-"),
                              ("factorise_s", "factorisation", "s--"),
                              ("cluster_s", "clustering", "^--")):
        ax.plot(n, [max(r[key], 1e-4) for r in rows], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    return plots.save(fig, images, "gradient_merge")
