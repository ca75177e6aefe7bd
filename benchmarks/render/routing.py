"""Section c of docs/benchmarks.md, task routing at many tasks, from
``bench_task_routing.py scale --json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import plots
from .markup import Target, decimal, table

#: task routing: one-task training step at the largest task count / at the smallest.
ROUTING_STEP_RATIO = 1.10


def targets(data: Mapping[str, Any]) -> list[Target]:
    """Task routing: the one-task step's growth, all-task evaluation against a per-task
    loop, peak memory against the estimate."""
    rows = sorted(data.get("rows", []), key=lambda r: r["tasks"])
    if not rows:
        return []
    lo, hi = rows[0], rows[-1]
    step = _step_ratio(hi, lo)
    speed = min(_loop_vs_plan(r) for r in rows)
    over = hi["peak_mib"] / hi["estimate_mib"]
    return [
        Target("c", f"task routing, one-task training step at {hi['tasks']} / at "
                    f"{lo['tasks']} tasks (paired steps)", f"<= {ROUTING_STEP_RATIO:.2f}", step,
               step <= ROUTING_STEP_RATIO),
        Target("c", "task routing, evaluating all tasks: per-task loop / one all-task pass "
                    "(worst task count)", "> 1 at every task count", speed, speed > 1.0),
        Target("c", f"task routing, peak memory of the all-task pass at {hi['tasks']} tasks / "
                    "the estimate chunking relies on", "<= 1", over, over <= 1.0),
    ]


def _step_ratio(row: Mapping[str, Any], first: Mapping[str, Any]) -> float:
    """The one-task step at ``row``'s task count over the first count's: the median of the
    paired per-step ratios when the JSON has them, else the ratio of the medians."""
    return float(row.get("one_ratio") or row["one_ms"] / first["one_ms"])


def _loop_vs_plan(row: Mapping[str, Any]) -> float:
    return float(row.get("loop_vs_plan") or row["loop_ms"] / row["plan_ms"])


def markdown(data: Mapping[str, Any], images: Path | None = None,
             rel_dir: str = "images") -> str:
    """Section c's task-routing table: steps, evaluation and memory per task count."""
    s = data.get("settings", {})
    rows = sorted(data.get("rows", []), key=lambda r: r["tasks"])
    body = [
        f"**Task routing** on `synthetic` ({s.get('n_samples')} samples), mlp widths "
        f"{s.get('widths')}, sigma {s.get('sigma')} masks, batch {s.get('train_batch')} "
        f"(train) / {s.get('eval_rows')} rows (evaluation), {s.get('threads')} CPU thread; "
        f"medians of {s.get('rounds')} rounds in which the task counts take turns. The "
        "training step with one active task per batch (the paper's setting) should not grow "
        "with the number of tasks: one-task steps alternate between task counts step by step, "
        "and the ratio is the median over steps of each step over the first count's step of "
        "the same sweep; evaluating all tasks runs one pass (the core plan, what `ctx.evaluate` runs), "
        "against `BatchedRouting` (batch x tasks in one tensor), the same in cache-sized task "
        f"chunks of {s.get('chunk_mib')} MiB, and a loop of one forward per task. Peak memory: "
        "of the core plan's all-task pass, in a fresh process per task count (VmHWM - VmRSS), "
        "against `routed_bytes_per_row(space, T) x rows`. "
        f"Command: `{data.get('command')}`.",
        "",
        table(["tasks", "step ms, one task", "ratio to first", "step ms, all tasks",
               "eval ms, all-task pass", "eval ms, BatchedRouting", "eval ms, chunked",
               "eval ms, per-task loop", "loop / all-task pass", "peak MiB", "estimate MiB"],
              [[r["tasks"], decimal(r["one_ms"]), decimal(_step_ratio(r, rows[0])),
                decimal(r["all_ms"], 1), decimal(r["plan_ms"], 1), decimal(r["batched_ms"], 1),
                decimal(r["chunked_ms"], 1), decimal(r["loop_ms"], 1),
                f"{_loop_vs_plan(r):.2f}x", decimal(r["peak_mib"], 1),
                decimal(r["estimate_mib"], 1)] for r in rows]),
    ]
    if images is not None and rows:
        body.append(plots.image_link(rel_dir, plot(data, images), "task routing against tasks"))
    return "\n".join(body)


def plot(data: Mapping[str, Any], images: Path) -> str:
    """Step time, evaluation time and memory against tasks; returns the picture's file name."""
    rows = sorted(data["rows"], key=lambda r: r["tasks"])
    n = [r["tasks"] for r in rows]
    fig, (ax1, ax2, ax3) = plots.figure(10.0, 3.0, cols=3)
    ax1.plot(n, [r["one_ms"] for r in rows], "o-", label="one active task")
    ax1.set_ylim(0, max(r["one_ms"] for r in rows) * 1.3)
    ax1.set_title("training step, one task (ms)", fontsize=9)
    for key, label in (("plan_ms", "all-task pass"), ("chunked_ms", "chunked"),
                       ("batched_ms", "BatchedRouting"), ("loop_ms", "per-task loop")):
        ax2.plot(n, [r[key] for r in rows], "o-", label=label)
    ax2.set_yscale("log")
    ax2.set_title("evaluation of all tasks (ms)", fontsize=9)
    ax2.legend(fontsize=7)
    ax3.plot(n, [r["peak_mib"] for r in rows], "o-", label="measured peak")
    ax3.plot(n, [r["estimate_mib"] for r in rows], "s--", label="estimate")
    ax3.set_title("memory of the all-task pass (MiB)", fontsize=9)
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("tasks")
    return plots.save(fig, images, "task_routing")
