"""Render the benchmark suite's raw figures (JSON) as markdown sections, tables and plots.

``benchmarks/run_all.py`` runs the benchmark scripts, each writing JSON, then calls the
functions here to write ``docs/benchmarks.md`` and ``docs/results.md``. Everything in this
module is pure rendering: it measures nothing, so it can be tested on small hand-made inputs
and reused by any script that wants the same tables (``render_engine`` for
``bench_engine.py``'s JSON, and so on).

Every section states the targets it checks as :class:`Target` objects; whether a target is
met is computed here from the measured numbers, never written by hand.

Example:
    >>> t = Target("c", "one-task step, 312 vs 10 tasks", "<= 1.10", 1.02, 1.02 <= 1.10)
    >>> t.status
    '**met**'
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- targets

#: mtlsearch / hand-written, train step and inference (bench_engine.py writes its own per row).
ENGINE_RATIO = 1.05
#: a branched model's forward against the sum of its unique nodes: within this fraction.
PREFIX_TOLERANCE = 0.10
#: task routing: one-task training step at the largest task count / at the smallest.
ROUTING_STEP_RATIO = 1.10
#: gradient merging: an epoch with capture + factorisation + clustering / a plain epoch. The
#: paper's per-batch factorisation (window 1) costs up to about one more epoch of a small MLP.
MERGE_EPOCH_RATIO = 2.0
#: gradient merging: that overhead must not grow with the number of tasks: the ratio at the
#: largest task count / the ratio at the smallest.
MERGE_GROWTH = 1.25
#: search cost: a strategy's trial / a single_task trial (training every task alone) of the
#: same seed; a search trial should not cost more than the baseline it must beat.
SEARCH_TRIAL_VS_SINGLE = 1.0
#: affinity estimators: exponent of the RSA estimator's wall time against N (log-log slope).
AFFINITY_RSA_SLOPE = 1.2
#: the README's main job (`mtlsearch compare` with defaults): "about 5 minutes on 2 CPU cores".
MAIN_JOB_SECONDS = 360.0
#: search quality: mean adjusted Rand index of the discovered grouping (partition at the
#: deepest shared depth) over seeds, where grouping pays.
QUALITY_ARI = 0.9
#: search quality: each paper's claim must hold (beyond the paired noise) on this many datasets.
QUALITY_CLAIM_DATASETS = 2

#: The GPU figures kept in docs/benchmarks_gpu.md (measured by hand before the suite existed).
LAST_GPU = {
    "date": "2026-11-23",
    "device": "NVIDIA H100 80GB HBM3, PyTorch 2.11 + CUDA 13.0",
    "summary": (
        "engine overhead 1.002-1.036 for the train steps and 1.007-1.084 for inference "
        "(small CNN inference missed 1.05), branched tree 0.965-1.092 of its unique nodes, "
        "every GPU correctness check passed"
    ),
    "link": "benchmarks_gpu.md",
}

IMAGE_PREFIX = "bench_"


@dataclass
class Target:
    """One checked target: what, the target, the measured figure and whether it is met.

    Attributes:
        section: Section letter (``"a"``..``"f"``).
        what: What is measured, in words.
        target: The target, in words or as a comparison (``"<= 1.05"``).
        figure: The measured figure (a number, or text when several numbers make it).
        met: ``True``/``False`` computed from the figure, ``None`` when it was not measured.
    """

    section: str
    what: str
    target: str
    figure: float | str | None
    met: bool | None

    @property
    def status(self) -> str:
        """``**met**``, ``**not met**`` or ``not measured``."""
        return {True: "**met**", False: "**not met**", None: "not measured"}[self.met]

    def figure_text(self) -> str:
        if self.figure is None:
            return "—"
        if isinstance(self.figure, float):
            size = abs(self.figure)
            return f"{self.figure:.{3 if size < 10 else 2 if size < 100 else 0}f}"
        return str(self.figure)


@dataclass
class Section:
    """A section of the generated page: heading, markdown body, its targets."""

    key: str
    title: str
    body: str
    targets: list[Target] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [f"## {self.key}. {self.title}", "", self.body.strip(), ""]
        if self.targets:
            lines += ["**Targets of this section:**", ""]
            lines += [f"- {t.what}: target {t.target}, measured {t.figure_text()} — {t.status}"
                      for t in self.targets]
            lines.append("")
        return "\n".join(lines)


# --------------------------------------------------------------------------- markdown helpers


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: the
    first column left, the others right).

    Example:
        >>> print(table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---:|
        | 1 | 2 |
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns")
    sep = ["---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def not_generated(reason: str) -> str:
    """The line a section shows when its figures could not be produced."""
    return f"*Section not generated: {reason}.*"


def demote_headings(markdown: str, levels: int = 1) -> str:
    """Push every ATX heading of ``markdown`` down ``levels`` levels (``##`` -> ``###``),
    outside fenced code blocks, so an included file sits under the including heading."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) against log(x): the exponent of a power law."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in pts) / den


# --------------------------------------------------------------------------- machine, header


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int | None:
    """Cores this process may run on (its affinity), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def json_ready(value: Any) -> Any:
    """For ``json.dumps`` without NaN: NaN/inf -> None, tuples -> lists, numpy floats -> float."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if value != value or value in (math.inf, -math.inf) else value
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch and Python versions, the device, load average."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "device": device,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        info["torch"] = "not installed"
    if hasattr(os, "getloadavg"):
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    return info


def header(title: str, *, command: str, date: str, machine: Mapping[str, Any],
           total_seconds: float | None, note: str = "") -> str:
    """The opening lines every generated page starts with."""
    device = machine.get("gpu") or machine.get("device", "cpu")
    total = "—" if total_seconds is None else f"{total_seconds / 60:.1f} min ({total_seconds:.0f} s)"
    load = machine.get("load")
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command}` on {date}. Do not edit by hand: run the command again.",
        "",
        f"- machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('system')}"
        + (f" (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end)"
           if load else ""),
        f"- software: torch {machine.get('torch')}, Python {machine.get('python')}",
        f"- device: {device}",
        f"- total wall time of the run: {total}",
    ]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def targets_table(sections: Sequence[Section]) -> str:
    """Every target of the page in one table."""
    rows = [[t.section, t.what, t.target, t.figure_text(), t.status]
            for s in sections for t in s.targets]
    if not rows:
        return "No target was measured in this run."
    return table(["section", "what is checked", "target", "measured", "met?"], rows, "lllrl")


# --------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 3.2, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, cols)
    return fig, axes


def _save(fig: Any, images: Path, name: str) -> str:
    from mtlsearch.viz import save_figure

    stem = Path(images) / f"{IMAGE_PREFIX}{name}"
    save_figure(fig, stem)
    return f"{IMAGE_PREFIX}{name}.png"


def _image(rel_dir: str, file: str | None, alt: str) -> str:
    return "" if file is None else f"\n![{alt}]({rel_dir}/{file})\n"


# --------------------------------------------------------------------------- a, b: engine


def engine_targets(data: Mapping[str, Any]) -> list[Target]:
    """Targets of sections a and b from ``bench_engine.py --json`` output."""
    out = []
    for r in data.get("overhead", []):
        if r.get("target") is None:
            continue
        out.append(Target("a", f"{r['measure']}, {r['model']}: mtlsearch / hand-written",
                          f"<= {r['target']:.2f}", float(r["ratio"]), r["ratio"] <= r["target"]))
    for m in data.get("memory_format", []):
        out.append(Target("a", f"{m['measure']}, {m['model']}: speed-up of channels-last (the "
                               "trainer's automatic layout for images) over contiguous",
                          ">= 1.00", float(m["speedup"]), m["speedup"] >= 1.0))
    for p in data.get("shared_prefix", []):
        ratio = float(p["full_vs_unique_nodes"])
        out.append(Target("b", f"{p['model']}: one forward / sum of its unique nodes",
                          f"within {PREFIX_TOLERANCE:.0%} of 1", ratio,
                          abs(ratio - 1) <= PREFIX_TOLERANCE))
    return out


def render_engine(data: Mapping[str, Any], images: Path | None = None,
                  rel_dir: str = "images") -> tuple[str, str]:
    """Markdown bodies of sections a (engine overhead) and b (shared-prefix execution)."""
    s = data.get("settings", {})
    timing = (f"Median of {s.get('reps')} interleaved repetitions x {s.get('inner')} calls after "
              f"{s.get('warmup')} warm-up calls, device {data.get('device')} "
              f"({data.get('machine')}). Command: `{data.get('command')}`.")
    rows = []
    for r in data.get("overhead", []):
        target = "—" if r.get("target") is None else (
            f"<= {r['target']:.2f}: {'met' if r['ratio'] <= r['target'] else 'NOT MET'}")
        rows.append([r["model"], r["measure"], _f(r["materialized_ms"], 3),
                     _f(r["hand_written_ms"], 3), f"**{r['ratio']:.3f}**", target,
                     _f(r["vs_chained"], 3)])
    a = [
        "A hard-sharing graph over 6 binary tasks materialized by mtlsearch against a "
        "hand-written `nn.Sequential` trunk + `nn.ModuleList` of linear heads with the same "
        "weights (outputs checked equal): `small_cnn` (input 1x12x24) and ResNet-18 "
        "(`small_input=True`, width in the model name). Train step = forward + per-task BCE + "
        "backward + Adam step; \"engine losses\" uses `mtlsearch.engine.train.task_losses` instead; "
        "**ratio** = mtlsearch / hand-written; **vs chained** = mtlsearch / the model's own "
        "blocks and heads called in a plain loop (the executor's own cost).",
        "",
        timing,
        "",
        table(["model", "measure", "mtlsearch ms", "by hand ms", "ratio", "target",
               "vs chained"], rows, "llrrrlr"),
    ]
    if images is not None and rows:
        a.append(_image(rel_dir, plot_engine(data, images), "engine overhead ratios"))
    memory = data.get("memory_format", [])
    if memory:
        a += [
            "",
            "**Memory format.** The same materialized model and weights, contiguous (NCHW) "
            "against channels-last (NHWC), train step with the engine's losses and inference. "
            "The trainer uses channels-last for image inputs by default on CUDA; on the CPU it "
            "is opt-in (`TrainConfig(channels_last=True)`: a PyTorch CPU kernel crashes on some "
            "shapes, see docs/gpu.md); target: channels-last is not slower.",
            "",
            table(["model", "measure", "contiguous ms", "channels-last ms", "speed-up"],
                  [[m["model"], m["measure"], _f(m["contiguous_ms"], 3),
                    _f(m["channels_last_ms"], 3), f"**{m['speedup']:.2f}x**"] for m in memory],
                  "llrrr"),
        ]
    prow = []
    for p in data.get("shared_prefix", []):
        ok = abs(p["full_vs_unique_nodes"] - 1) <= PREFIX_TOLERANCE
        prow.append([p["model"], str([len(level) for level in p.get("partitions", [])]),
                     _f(p["full_ms"], 3), _f(p["unique_nodes_ms"], 3),
                     f"**{p['full_vs_unique_nodes']:.3f}** ({'met' if ok else 'NOT MET'})",
                     _f(p["per_task_ms"], 3), f"{p['speedup']:.2f}x", f"{p['mac_ratio']:.2f}x",
                     f"{p['node_time_ratio']:.2f}x"])
    b = [
        "A branched tree over the same 6 tasks (shared for the first half of the blocks, 3 "
        "groups for the next quarter, then one branch per task), inference: one forward over "
        "all tasks against the sum of every unique block node timed alone on the input it "
        "receives, plus the heads (target: within 10%); and against each task's route run "
        "alone (**speedup**), compared with the ratio of multiply-accumulates and with the "
        "same ratio computed from the measured node times.",
        "",
        timing,
        "",
        table(["model", "branches per depth", "one forward ms", "unique nodes ms", "ratio",
               "per task ms", "speedup", "MAC ratio", "from node times"], prow, "llrrlrrrr"),
    ]
    return "\n".join(a), "\n".join(b)


def plot_engine(data: Mapping[str, Any], images: Path) -> str:
    rows = [r for r in data.get("overhead", []) if r.get("target") is not None]
    fig, ax = _figure(7.0, 0.45 * len(rows) + 1.2)
    labels = [f"{r['model']}: {r['measure']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = ["tab:green" if r["ratio"] <= r["target"] else "tab:red" for r in rows]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(ENGINE_RATIO, color="tab:red", ls="--", lw=1, label=f"target {ENGINE_RATIO}")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlim(min(0.9, min(ratios) - 0.02), max(1.15, max(ratios) + 0.02))
    ax.set_xlabel("mtlsearch / hand-written (median of interleaved repetitions)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, images, "engine_overhead")


# --------------------------------------------------------------------------- c: many tasks


def routing_targets(data: Mapping[str, Any]) -> list[Target]:
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


def render_routing(data: Mapping[str, Any], images: Path | None = None,
                   rel_dir: str = "images") -> str:
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
              [[r["tasks"], _f(r["one_ms"]), _f(_step_ratio(r, rows[0])),
                _f(r["all_ms"], 1), _f(r["plan_ms"], 1), _f(r["batched_ms"], 1),
                _f(r["chunked_ms"], 1), _f(r["loop_ms"], 1),
                f"{_loop_vs_plan(r):.2f}x", _f(r["peak_mib"], 1),
                _f(r["estimate_mib"], 1)] for r in rows]),
    ]
    if images is not None and rows:
        body.append(_image(rel_dir, plot_routing(data, images), "task routing against tasks"))
    return "\n".join(body)


def plot_routing(data: Mapping[str, Any], images: Path) -> str:
    rows = sorted(data["rows"], key=lambda r: r["tasks"])
    n = [r["tasks"] for r in rows]
    fig, (ax1, ax2, ax3) = _figure(10.0, 3.0, cols=3)
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
    return _save(fig, images, "task_routing")


def merge_targets(data: Mapping[str, Any]) -> list[Target]:
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


def render_merge(data: Mapping[str, Any], images: Path | None = None,
                 rel_dir: str = "images") -> str:
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
              [[r["tasks"], _f(r["plain_s"]), _f(r["merge_s"]), f"**{r['ratio']:.2f}**",
                _f(r["factorise_s"], 3), _f(r["cluster_s"], 4),
                _f((r["factorise_s"] + r["cluster_s"]) / r["merge_s"], 3)] for r in rows]),
    ]
    if images is not None and rows:
        body.append(_image(rel_dir, plot_merge(data, images), "gradient merging cost"))
    return "\n".join(body)


def plot_merge(data: Mapping[str, Any], images: Path) -> str:
    rows = sorted(data["rows"], key=lambda r: r["tasks"])
    n = [r["tasks"] for r in rows]
    fig, ax = _figure(6.0, 3.2)
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
    return _save(fig, images, "gradient_merge")


# --------------------------------------------------------------------------- d, e: search cost


def search_targets(data: Mapping[str, Any]) -> list[Target]:
    rows = [r for r in data.get("strategies", [])
            if r["strategy"] != "single_task" and r.get("trial_vs_single_task") is not None]
    if not rows:
        return []
    worst = max(rows, key=lambda r: r["trial_vs_single_task"])
    return [Target("d", f"search cost, a strategy's trial / a single_task trial of the same "
                        f"seed (worst: {worst['strategy']})",
                   f"<= {SEARCH_TRIAL_VS_SINGLE:.1f} for every strategy",
                   float(worst["trial_vs_single_task"]),
                   worst["trial_vs_single_task"] <= SEARCH_TRIAL_VS_SINGLE)]


def render_search(data: Mapping[str, Any], images: Path | None = None,
                  rel_dir: str = "images") -> str:
    st = data.get("settings", {})
    budget = st.get("budget", {})
    rows = data.get("strategies", [])
    refs = data.get("reference_s", {})
    body = [
        f"Each strategy's wall time per trial and per study in one run of "
        f"`{data.get('compare_command')}` (dataset `{st.get('dataset')}`, space "
        f"`{st.get('space')}`, {st.get('trials')} trials, {budget.get('epochs')} epochs, "
        f"seeds {data.get('seeds')}; compare's quick settings for `affinity_tree` and "
        "`gumbel_policy`). A trial is everything the study does for it: the strategy's "
        "proposal (its own training, e.g. the affinity estimate or the policy), training, "
        "scoring and storing. Ratios compare each strategy's median trial with the "
        "`hard_sharing` and `single_task` trials of the same seed (all in the same process). "
        "The single-task reference of each seed is trained once before the studies: "
        + (", ".join(f"seed {k}: {v:.1f} s" for k, v in refs.items()) or "—") + ". "
        f"Command: `{data.get('command')}`.",
        "",
        table(["strategy", "trials per study", "s per trial", "s per study",
               "trial / hard_sharing", "trial / single_task"],
              [[r["strategy"], f"{r['trials_per_study']:g}", _f(r["trial_s"], 1),
                _f(r["study_s"], 1), _f(r.get("trial_vs_hard_sharing")),
                _f(r.get("trial_vs_single_task"))] for r in rows]),
    ]
    if images is not None and rows:
        body.append(_image(rel_dir, plot_search(data, images), "search cost per strategy"))
    return "\n".join(body)


def plot_search(data: Mapping[str, Any], images: Path) -> str:
    rows = sorted(data["strategies"], key=lambda r: r["trial_s"])
    fig, ax = _figure(6.5, 0.4 * len(rows) + 1.2)
    ax.barh([r["strategy"] for r in rows], [r["trial_s"] for r in rows], color="tab:blue")
    ax.set_xlabel("seconds per trial (median)")
    return _save(fig, images, "search_cost")


def affinity_targets(data: Sequence[Mapping[str, Any]]) -> list[Target]:
    rows = sorted(data, key=lambda r: r["n_tasks"])
    slope = _slope([r["n_tasks"] for r in rows], [r["rows"]["rsa"]["wall"] for r in rows])
    if slope is None:
        return []
    return [Target("d", f"affinity_tree, RSA estimator's wall time against N = "
                        f"{rows[0]['n_tasks']}..{rows[-1]['n_tasks']} tasks (log-log slope)",
                   f"<= {AFFINITY_RSA_SLOPE:.1f} (about linear)", slope,
                   slope <= AFFINITY_RSA_SLOPE)]


def render_affinity(data: Sequence[Mapping[str, Any]], command: str = "",
                    images: Path | None = None, rel_dir: str = "images") -> str:
    rows = sorted(data, key=lambda r: r["n_tasks"])
    names = list(rows[0]["rows"]) if rows else []
    slopes = {e: _slope([r["n_tasks"] for r in rows], [r["rows"][e]["wall"] for r in rows])
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
              [[r["n_tasks"], *(_f(r["rows"][e]["wall"], 1) for e in names),
                *(f"{r['rows']['full']['wall'] / r['rows'][e]['wall']:.1f}x"
                  for e in names if e != "full")] for r in rows]),
        "",
        "Growth with N (log-log slope of wall time; 1 = linear, 2 = quadratic): "
        + ", ".join(f"{e} {_f(v)}" for e, v in slopes.items()) + ".",
    ]
    if images is not None and rows:
        body.append(_image(rel_dir, plot_affinity(rows, images), "affinity estimators' cost"))
    return "\n".join(body)


def plot_affinity(rows: Sequence[Mapping[str, Any]], images: Path) -> str:
    fig, ax = _figure(5.5, 3.2)
    n = [r["n_tasks"] for r in rows]
    for e in rows[0]["rows"]:
        ax.plot(n, [r["rows"][e]["wall"] for r in rows], "o-", label=e)
    ax.set_xlabel("tasks N")
    ax.set_ylabel("seconds (single-task training included)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _save(fig, images, "affinity_cost")


def main_job_target(data: Mapping[str, Any]) -> Target:
    seeds, default = list(data.get("seeds", [])), list(data.get("default_seeds", [0, 1, 2]))
    wall = float(data["wall_s"])
    if seeds == default:
        return Target("e", "`mtlsearch compare` with defaults, end-to-end wall time (s)",
                      f"<= {MAIN_JOB_SECONDS:.0f} s (README: about 5 minutes on 2 CPU cores)",
                      wall, wall <= MAIN_JOB_SECONDS)
    estimate = wall * len(default) / max(len(seeds), 1)
    return Target("e", f"`mtlsearch compare` with defaults, wall time (s) estimated from "
                       f"{len(seeds)} of {len(default)} seeds (x{len(default) / len(seeds):g})",
                  f"<= {MAIN_JOB_SECONDS:.0f} s (README: about 5 minutes on 2 CPU cores)",
                  estimate, estimate <= MAIN_JOB_SECONDS)


def render_main_job(data: Mapping[str, Any]) -> str:
    seeds, default = list(data.get("seeds", [])), list(data.get("default_seeds", [0, 1, 2]))
    wall, cpu = data["wall_s"], data.get("cpu_s")
    lb, la = data.get("load_before"), data.get("load_after")
    text = [
        f"`{data.get('compare_command')}` from the command's start to its end (import, data, "
        "single-task references, every study, the report and its pictures), one torch thread, "
        f"in a fresh output folder: **{wall:.0f} s** ({wall / 60:.1f} min) of wall time, "
        f"{_f(cpu, 0)} s of CPU time"
        + (f"; load average {lb[0]:.1f} before, {la[0]:.1f} after" if lb and la else "") + ".",
    ]
    if seeds != default:
        text += ["", f"**Quick run: {len(seeds)} of the {len(default)} default seeds** "
                     f"(seeds {seeds}); the target is checked against "
                     f"{len(default)}/{len(seeds)} of this time, an estimate. Run the suite "
                     "without `--quick` to measure the main job itself."]
    return "\n".join(text)


# --------------------------------------------------------------------------- f: GPU


def render_gpu_placeholder(reason: str) -> str:
    g = LAST_GPU
    return (f"**Not run on a GPU in this generation of the document** ({reason}). "
            "`benchmarks/bench_gpu.py`, the GPU part of this suite (materialized vs hand-written "
            "ResNet-18 multi-task training throughput under fp32, bf16, bf16 + channels-last and "
            "+ `torch.compile`, target >= 0.95; the trainer's automatic GPU settings against all "
            "off; task routing at 10 and 312 tasks; an end-to-end search on 64x64 inputs with "
            "40 tasks) **has not yet run on a GPU**: it was written in a session that had none, "
            "and only its CPU smoke run (`--device cpu`, every code path, no figures) has run. "
            f"Last GPU figures, from the engine benchmarks before this suite existed: "
            f"{g['summary']} ({g['date']}, {g['device']}); they are kept in "
            f"[{g['link']}]({g['link']}). Run `python benchmarks/run_all.py --device cuda` on a "
            "machine with a GPU to measure it.")


#: What the figures revealed and what was made faster (measured before/after, side by side
#: with the same baseline in each run; the current figures are in the sections below).
SPEEDUPS = [
    "**Gradient merging at many tasks.** Capturing the branches' gradients asked for every "
    "task's route on every training step, and each route walk scans a node's out-edges: "
    "O(tasks^2) work per step, 38 s of a 48 s epoch at 312 tasks in a profile. "
    "`SharingGraph.routes()` now indexes the edges once and the recorder keeps the branch "
    "nodes per graph: at 312 tasks an epoch with merging went from **6.91x to 1.52x** a plain "
    "epoch (34.4 s to 7.3 s, 4.7x faster; `bench_gradient_merge.py --part cost --quick`, "
    "before and after the change, each ratio side by side with a plain epoch).",
    "**The single-task networks were trained twice.** The profile of the README's main job "
    "showed `affinity_tree`'s estimator training the very single-task networks the "
    "reference had just trained. `SearchContext.single_task_model()` now trains them once "
    "per context key and process: `affinity_tree`'s trial went from 1.30x to 0.65-0.72x a "
    "`single_task` trial of the same run (`bench_search_cost.py`, before and after; section "
    "d has the current figure).",
    "**Convolutions and max-pooling on the CPU.** In the same profile the small CNN's "
    "max-pool took almost as long as its convolutions: PyTorch's CPU max-pool is about 10x "
    "slower on contiguous (NCHW) tensors than on channels-last ones. Channels-last is the "
    "default on CUDA; on the CPU it is opt-in (`TrainConfig(channels_last=True)`, section a's "
    "memory-format table: train steps 1.2-1.5x faster) because a PyTorch 2.15 CPU kernel "
    "segfaults on a channels-last 1x1 stride-2 convolution's backward at 64x64 (docs/gpu.md). "
    "The main-job figures in section e are measured with the default (contiguous on the CPU).",
    "**Evaluation without host synchronisation.** Counting each task's valid labels read a "
    "number back from the device per task and batch (312 reads per batch for task "
    "routing); the counts now stay on the device until the end. This matters on a GPU only "
    "and has not been measured on one yet.",
]


def render_speedups() -> str:
    return "\n".join(["## What the figures revealed, and what was made faster", "",
                      *[f"* {s}" for s in SPEEDUPS], ""])


# --------------------------------------------------------------------------- results: search quality

#: How each contender of bench_search_quality.py is drawn and named in the tables.
QUALITY_STYLE = {  # colour, line style, marker
    "single_task": ("black", ":", "o"), "hard_sharing": ("tab:gray", "--", "o"),
    "oracle": ("tab:green", "--", "o"), "mixed": ("tab:olive", ":", "o"),
    "random_tree": ("tab:brown", "-.", "s"), "matched_random_tree": ("tab:pink", "-.", "v"),
    "affinity_tree": ("tab:blue", "-", "s"), "gradient_merge": ("tab:orange", "-", "s"),
    "gumbel_policy": ("tab:red", "-", "s"), "gumbel_policy_random2": ("tab:red", ":", "v"),
    "task_routing": ("tab:purple", "-", "s"), "task_routing_sigma0": ("tab:purple", ":", "v"),
    "task_routing_sigma1": ("tab:purple", "--", "^"),
}
#: The claims checked, in words (bench_search_quality.CLAIMS holds the pairs).
QUALITY_CLAIMS = {
    "task_routing": "task_routing's best σ in (0, 1) beats σ = 1 and σ = 0",
    "gumbel_policy": "gumbel_policy beats hard_sharing and its Random #2 ablation",
    "affinity_tree": "affinity_tree beats random trees of the same shape (matched branching)",
    "gradient_merge": "gradient_merge beats hard_sharing and single-task networks",
}
_PAPER = ("affinity_tree", "gradient_merge", "gumbel_policy", "task_routing")
#: Drawn as horizontal lines: one architecture each, nothing searched.
QUALITY_REFERENCE_LINES = ("single_task", "hard_sharing", "oracle", "mixed")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pm(pair: Sequence[Any] | None, digits: int = 2, sign: str = "+") -> str:
    """``+1.23 ± 0.45`` from ``(mean, std)``; ``—`` when the mean is missing."""
    if not pair or not _num(pair[0]):
        return "—"
    std = pair[1] if _num(pair[1]) else 0.0
    return f"{pair[0]:{sign}.{digits}f} ± {std:.{digits}f}"


def _diff(d: Mapping[str, Any] | None) -> str:
    """A paired difference: ``+1.20 ± 0.80 (3/3)`` (mean ± std, wins out of seeds)."""
    if not d or not d.get("n"):
        return "—"
    return f"{d['mean']:+.2f} ± {(d.get('std') or 0.0):.2f} ({d['wins']}/{d['n']})"


def _pays(summary: Mapping[str, Any]) -> bool | None:
    """Whether the planted tree beats hard sharing and the mixed tree beyond the paired
    noise (``None`` without a planted grouping)."""
    pairs = {(p["a"], p["b"]): p for p in summary.get("oracle", [])}
    need = [pairs.get(("oracle", "hard_sharing")), pairs.get(("oracle", "mixed"))]
    if not summary.get("planted") or any(p is None for p in need):
        return None
    return all(p.get("better") for p in need)


def _claim_holds(pairs: Sequence[Mapping[str, Any]], expected: int) -> bool | None:
    """All of a claim's comparisons on one dataset are wins beyond the noise (``None``: a
    contender is missing there)."""
    if not pairs or len(pairs) < expected or any(not p.get("n") for p in pairs):
        return None
    return all(p.get("better") for p in pairs)


def _structures(e: Mapping[str, Any] | None) -> str:
    """``hard sharing in 3 of 5 seeds, 4 groups at block 2 in 2``: what a contender returned."""
    counts = (e or {}).get("structures") or {}
    n = (e or {}).get("n") or sum(counts.values())
    parts = [f"{k} in {v}" + (f" of {n} seeds" if i == 0 else "")
             for i, (k, v) in enumerate(counts.items())]
    return ", ".join(parts) if parts else "no result"


def _same_results(s: Mapping[str, Any], a: str, b: str) -> int:
    """Seeds where ``a`` and ``b`` got exactly the same test Δ_MTL (the same network)."""
    ea, eb = s["entries"].get(a, {}).get("seeds", {}), s["entries"].get(b, {}).get("seeds", {})
    return sum(1 for k in ea if k in eb and _num(ea[k].get("test"))
               and ea[k].get("test") == eb[k].get("test"))


def _search_facts(s: Mapping[str, Any], name: str) -> str:
    """Trials, what the first one cost against the budget, and what the search returned."""
    e = s["entries"].get(name)
    if not e:
        return f"`{name}` did not run"
    first, trials = (e.get("first_compute") or [None])[0], (e.get("trials") or [None])[0]
    text = f"`{name}` returned {_structures(e)}"
    if _num(trials) and _num(first) and name != "single_task":
        text += (f"; {trials:.1f} trials on average, the first costing {first:.1f}x "
                 f"of the {s.get('budget', 0):g}x budget")
    return text


def quality_checks(data: Mapping[str, Any]) -> list[tuple[Target, str]]:
    """Every search-quality target with the reason behind its outcome (the figures that
    decide it, and what the strategies returned), from ``bench_search_quality.py --json``.

    * grouping pays on each dataset with a planted grouping (the oracle beats hard sharing and
      the mixed tree beyond the paired noise);
    * ``affinity_tree`` and ``gradient_merge`` recover the planted groups there (mean ARI
      >= :data:`QUALITY_ARI`);
    * each paper's claim holds on at least :data:`QUALITY_CLAIM_DATASETS` datasets;
    * on the main-job dataset no paper strategy's mean test Δ_MTL is below hard sharing's and
      a paper strategy has the best one.
    """
    sets = data.get("datasets", {})
    out: list[tuple[Target, str]] = []
    paying = []
    for key, s in sets.items():
        pays = _pays(s)
        if pays is None:
            continue
        pairs = {(p["a"], p["b"]): p for p in s["oracle"]}
        if pays:
            paying.append(key)
        weak = [b for b in ("hard_sharing", "mixed") if not pairs[("oracle", b)].get("better")]
        out.append((Target("quality", f"{key}: grouping pays (the planted tree minus hard "
                                      "sharing, and minus the same-shape mixed tree, test Δ_MTL "
                                      "paired per seed)",
                           "both > 0 beyond the paired noise",
                           f"{_diff(pairs[('oracle', 'hard_sharing')])}; "
                           f"{_diff(pairs[('oracle', 'mixed')])}", pays),
                    "" if pays else f"on {key} the planted tree does not beat "
                    + " nor ".join(f"`{b}` ({_diff(pairs[('oracle', b)])})" for b in weak)
                    + " beyond the paired noise"))
    for name in ("affinity_tree", "gradient_merge"):
        what = f"{name} recovers the planted groups where grouping pays (mean ARI over seeds)"
        figs = [(k, (sets[k]["entries"].get(name) or {}).get("ari")) for k in paying]
        figs = [(k, a) for k, a in figs if a and _num(a[0])]
        if not figs:
            out.append((Target("quality", what, f">= {QUALITY_ARI}", None, None),
                        "no dataset where grouping pays" if not paying else f"{name} did not run"))
            continue
        met = all(a[0] >= QUALITY_ARI for _, a in figs)
        why = "; ".join(
            f"on {k}: ARI per seed "
            + ", ".join(f"{(f.get('ari') if _num(f.get('ari')) else math.nan):.2f}"
                        for f in sets[k]["entries"][name]["seeds"].values())
            + f"; {_search_facts(sets[k], name)}" for k, a in figs if a[0] < QUALITY_ARI)
        out.append((Target("quality", what, f">= {QUALITY_ARI}",
                           "; ".join(f"{k} {_pm(a, 2, '')}" for k, a in figs), met), why))
    for name, words in QUALITY_CLAIMS.items():
        held, measured, why = [], [], []
        for key, s in sets.items():
            expected = len((s.get("claim_pairs") or {}).get(name, []))
            pairs = s.get("claims", {}).get(name, [])
            holds = _claim_holds(pairs, expected)
            if holds is None:
                continue
            measured.append(key)
            if holds:
                held.append(key)
                continue
            fails = []
            for p in pairs:
                if p.get("better"):
                    continue
                same = _same_results(s, p["a"], p["b"])
                fails.append(f"`{p['a']}` − `{p['b']}` {_diff(p)}"
                             + (f", the very same result in {same} seed{'s' * (same > 1)}"
                                if same else ""))
            why.append(f"on {key}: " + "; ".join(fails) + f" ({_search_facts(s, name)})")
        figure = (f"holds on {len(held)} of {len(measured)}"
                  + (f" ({', '.join(held)})" if held else "")) if measured else None
        met = None if not measured else len(held) >= QUALITY_CLAIM_DATASETS
        out.append((Target("quality", f"{words}, equal compute, beyond the paired noise",
                           f"on >= {QUALITY_CLAIM_DATASETS} datasets", figure, met),
                    "; ".join(why) if measured else "a contender of the claim did not run"))
    for key, s in sets.items():
        if not s.get("settings", {}).get("main_job"):
            continue
        e = s["entries"]
        if "hard_sharing" not in e:
            continue
        hard = e["hard_sharing"]["test"][0]
        below = [n for n in _PAPER if n in e and _num(e[n]["test"][0]) and e[n]["test"][0] < hard]
        # met by a tie is worth saying: the strategy returned hard sharing itself
        equal = [n for n in _PAPER if n in e and e[n]["test"][0] == hard]
        out.append((Target("quality", f"{key} at the README's main-job settings: no paper "
                                      "strategy's mean test Δ_MTL below hard_sharing's",
                           "none below", ("none below" + (
                               f" ({', '.join(equal)} equal to it: "
                               + "; ".join(_structures(e[n]) for n in equal) + ")"
                               if equal else "")) if not below else
                           "below: " + ", ".join(f"{n} {e[n]['test'][0]:+.2f}" for n in below)
                           + f" (hard_sharing {hard:+.2f})", not below),
                    "; ".join(_search_facts(s, n) for n in below)))
        board = s.get("leaderboard", [])
        if board:
            top = board[0]
            best_paper = next((n for n in board if n in _PAPER), None)
            out.append((Target("quality", f"{key} at the README's main-job settings: a search "
                                          "strategy (not a baseline) has the best mean test "
                                          "Δ_MTL", "a paper strategy first",
                               f"{top} {e[top]['test'][0]:+.2f}", top in _PAPER),
                        "" if top in _PAPER or best_paper is None else
                        f"the best paper strategy, `{best_paper}`, has "
                        f"{e[best_paper]['test'][0]:+.2f} ({_search_facts(s, best_paper)})"))
    return out


def quality_targets(data: Mapping[str, Any]) -> list[Target]:
    """The search-quality targets, met or not (see :func:`quality_checks`)."""
    return [t for t, _ in quality_checks(data)]


def _quality_row(label: str, e: Mapping[str, Any], planted: bool) -> list[str]:
    params = e.get("n_params")
    trials = "—" if label == "single_task" else _pm(e.get("trials"), 1, "")
    row = [f"`{label}`", e.get("role") or "—", trials,
           _pm(e.get("compute"), 1, "") + "x", _pm(e.get("val")), _pm(e.get("test")),
           "—" if not params or not _num(params[0]) else f"{params[0]:,.0f}"]
    if planted:
        row.append(_pm(e.get("ari"), 2, ""))
    return row


def plot_search_quality(key: str, s: Mapping[str, Any], images: Path, tag: str = "") -> str:
    """Anytime curves of one dataset: best validation Δ_MTL so far (left) and the test Δ_MTL
    of that trial (right) against compute, mean ± std over seeds; fixed architectures as
    horizontal reference lines."""
    from matplotlib.ticker import FuncFormatter

    fig, axes = _figure(11.0, 4.2, cols=2)
    budget = s.get("budget")
    entries = s["entries"]
    finals = sorted(e["test"][0] for e in entries.values() if _num((e.get("test") or [None])[0]))
    low = None
    if len(finals) >= 4:  # a far-off contender (sigma = 0, say) would flatten all the others
        q1, q3 = finals[len(finals) // 4], finals[(3 * len(finals)) // 4]
        low = min(q1 - 3 * max(q3 - q1, 1.0), min(0.0, q1) - 1.0)
    for label, e in entries.items():
        color, ls, marker = QUALITY_STYLE.get(label, ("tab:cyan", "-", "s"))
        curve = e.get("curve") or []
        for ax, split in zip(axes, ("val", "test")):
            final = (e.get(split) or [None])[0]
            name = label if low is None or not _num(final) or final >= low else \
                f"{label} (off scale: {final:+.1f})"
            if label in QUALITY_REFERENCE_LINES:
                if _num(final):
                    ax.axhline(final, color=color, ls=ls, lw=1.0, label=name)
                continue
            pts = [(p["compute"], p[split][0], p[split][1]) for p in curve
                   if p.get(split) and _num(p[split][0])]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            sd = [p[2] if _num(p[2]) else 0.0 for p in pts]
            lw = 2.2 if label == "random_tree" else 1.6
            # a dot where the search had its first result, an error bar where it stopped
            ax.step(xs, ys, where="post", color=color, ls=ls, lw=lw, marker=marker, ms=4,
                    markevery=[len(xs) - 1], label=name)
            ax.plot(xs[:1], ys[:1], marker=".", color=color, ls="none")
            ax.errorbar(xs[-1:], ys[-1:], yerr=sd[-1:], color=color, capsize=2, lw=0.8,
                        ls="none")
            if len(xs) > 1:
                ax.fill_between(xs, [y - d for y, d in zip(ys, sd)],
                                [y + d for y, d in zip(ys, sd)], step="post", color=color,
                                alpha=0.10)
    for ax, split in zip(axes, ("validation", "test")):
        if low is not None:
            ax.set_ylim(bottom=low)
        if _num(budget):
            ax.axvline(budget, color="black", lw=0.8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xlabel("compute spent, hard-sharing trainings (log scale)")
        ax.set_ylabel(f"{split} Δ_MTL % (best validation trial so far)")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{key}: best so far (mean ± std, {len(s.get('seeds', []))} seeds; "
                      "vertical line: the budget)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    return _save(fig, images, f"quality_{tag}{key}")


def _quality_dataset(key: str, s: Mapping[str, Any], images: Path | None, rel_dir: str,
                     tag: str = "") -> list[str]:
    st = s.get("settings", {})
    planted = bool(s.get("planted"))
    e = s["entries"]
    noise = s.get("label_noise")
    lines = [f"### {s.get('title') or key}", "",
             f"Space `{st.get('space')}` {json.dumps(st.get('space_kwargs') or {})}, dataset "
             f"arguments `{json.dumps(st.get('dataset_kwargs') or {})}`, every candidate "
             f"trained with `{json.dumps(st.get('budget') or {})}`; compute budget per search "
             f"**{st.get('compute')}** (one hard-sharing training = "
             f"{s.get('unit_macs', 0):.3g} training MACs), at most {st.get('trials')} trials; "
             f"seeds {s.get('seeds')}."
             + (f" Label noise: {noise:.1%} of the training labels differ from the noise-free "
                "ones." if _num(noise) else "")
             + (f" {s['note']}" if s.get("note") else ""), ""]
    versions = [json.loads(v) for v in s.get("code") or []]
    if len(versions) > 1:
        lines += [f"**The code changed during this run**: the (dataset, seed) processes saw "
                  f"{len(versions)} versions of the package and plugins ("
                  + ", ".join(f"commit {v.get('commit')} sources {v.get('sources')}"
                              for v in versions)
                  + "), so seeds may differ by more than their seed.", ""]
    elif versions:
        lines += [f"Code: commit {versions[0].get('commit')}, sources digest "
                  f"{versions[0].get('sources')} (the same in every seed).", ""]
    if planted:
        lines += [f"Planted groups: {' '.join('{' + ', '.join(g) + '}' for g in s['planted'])}; "
                  f"the oracle shares blocks 0..{(st.get('oracle_depth') or 0) - 1} and branches "
                  f"into them at block {st.get('oracle_depth')}.", ""]
        rows = [[f"`{p['a']}` − `{p['b']}`", _diff(p),
                 "**yes**" if p.get("better") else "no"] for p in s.get("oracle", [])]
        pays = _pays(s)
        lines += ["**Oracle row** (test Δ_MTL, paired per seed: mean ± std of the differences, "
                  "wins out of seeds):", "",
                  table(["comparison", "paired difference", "beyond the noise"], rows, "lrl"), "",
                  ("Grouping **pays** here: the planted tree beats hard sharing and the mixed "
                   "tree beyond the paired noise." if pays else
                   "Grouping does **not** pay beyond the paired noise here."), ""]
    header = ["contender", "role", "trials", "compute", "val Δ_MTL %", "test Δ_MTL %", "params"]
    if planted:
        header.append("ARI")
    order = sorted(e, key=lambda k: -(e[k]["test"][0] if _num(e[k]["test"][0]) else -math.inf))
    lines += ["Each search's best validation trial at the end of its budget (mean ± std over "
              "seeds; compute in hard-sharing trainings, what the search spent: its last trial "
              "may cross the budget):", "",
              table(header, [_quality_row(k, e[k], planted) for k in order],
                    "ll" + "r" * (len(header) - 2)), ""]
    if images is not None:
        lines.append(_image(rel_dir, plot_search_quality(key, s, images, tag),
                            f"{key}: anytime curves"))
    cps = s.get("checkpoints", [])
    if cps:
        searched = [k for k in order if k not in QUALITY_REFERENCE_LINES]
        def cell(k: str, c: float) -> str:
            at = e[k]["at"].get(f"{c:g}", {})
            done = at.get("defined", 0)
            if not done:
                return "—"
            return _pm(at.get("test")) + ("" if done == e[k]["n"] else f" ({done}/{e[k]['n']} seeds)")

        rows = [[f"`{k}`", *[cell(k, c) for c in cps]] for k in searched]
        if rows:
            lines += ["Anytime: test Δ_MTL of the best validation trial finished within each "
                      "compute (hard-sharing trainings; a search stopped at its budget keeps "
                      "its last value; seeds with no trial finished yet are left out, and "
                      "counted):", "",
                      table(["contender", *[f"<= {c:g}x" for c in cps]], rows), ""]
    claim_rows = []
    for name, pairs in s.get("claims", {}).items():
        for p in pairs:
            claim_rows.append([name, f"`{p['a']}` − `{p['b']}`", _diff(p),
                               "**yes**" if p.get("better") else "no"])
    if claim_rows:
        lines += ["Papers' claims at equal compute (test Δ_MTL, paired per seed):", "",
                  table(["claim", "comparison", "paired difference", "beats beyond the noise"],
                        claim_rows, "llrl"), ""]
    vs = [p for p in s.get("versus_random_tree", []) if p.get("n")]
    if vs:
        lines += ["Against `random_tree` (random search over trees, the floor), paired: "
                  + "; ".join(f"`{p['a']}` {_diff(p)}" for p in vs) + ".", ""]
    return lines


def render_search_quality(data: Mapping[str, Any], images: Path | None = None,
                          rel_dir: str = "images", image_tag: str = "",
                          note: str = "", intro: bool = True) -> str:
    """The ``## Search quality`` section of docs/results.md from
    ``bench_search_quality.py --json`` output: targets, then per dataset the oracle row, the
    contenders, the anytime curves (picture and table) and the paired comparisons.

    Args:
        data: The JSON; ``images``: where to draw the curves (``None``: no pictures).
        rel_dir: The pictures' folder as linked from the page.
        image_tag: Inserted in the pictures' names (``bench_quality_<tag><dataset>.png``), so
            two runs rendered on one page keep their own pictures.
        note: A paragraph under the heading (where the figures come from).
        intro: Explain the method (off for a second run on the same page).
    """
    checks = quality_checks(data)
    targets = [t for t, _ in checks]
    sets = data.get("datasets", {})
    m = data.get("machine", {})
    wall = data.get("wall_seconds")
    lines = ["## Search quality", ""] + ([note, ""] if note else [])
    explained = [
        "Does each strategy find what there is to find, and at what compute? Every contender "
        "searched each dataset with the **same compute budget** (training MACs, counted by "
        "`mtlsearch.engine.compute`: batch rows x forward MACs per sample over every optimizer step "
        "of every network a search trains — candidates, supernets, policy phases, affinity "
        "models; a search starts no trial once it has spent the budget, so its last trial may "
        "cross it). Each search keeps its best *validation* trial; the tables give that "
        "trial's validation and test Δ_MTL. All contenders of one seed share that seed's "
        "single-task reference, so they are compared **seed by seed**: a paired difference is "
        "the mean ± std of the per-seed differences of test Δ_MTL with the wins out of seeds, "
        "and it is *beyond the noise* when its mean is more than one standard error "
        "(std / √seeds) from zero (`mtlsearch.stats`). Reference contenders: `oracle` (the "
        "planted grouping tree), `mixed` (the same shape with the tasks dealt round-robin "
        "across groups), `single_task` (the reference itself: Δ_MTL 0, its compute that of "
        "training it), `hard_sharing`, `random_tree` (random search over trees) and "
        "`matched_random_tree` (random trees of exactly the shape `affinity_tree` found in that "
        "seed, given the compute it spent). Variants: `task_routing_sigma0` / `_sigma1` (σ "
        "fixed), `gumbel_policy_random2` (AdaShare's Random #2: the same number of skipped "
        "blocks per task, at random blocks).", ""]
    lines += explained if intro else []
    lines += [
        f"Command: `{data.get('command')}`; {m.get('cpu')}, torch {m.get('torch')}; "
        f"{data.get('jobs')} (dataset, seed) processes at a time, {data.get('threads')} torch "
        f"thread(s) each"
        + (f"; {wall / 60:.1f} min wall, {data.get('cpu_seconds', 0) / 60:.1f} min CPU"
           if _num(wall) else "") + "."
        + (" **Quick settings** (the suite's smoke run): smaller data and budgets, few seeds; "
           "the figures exercise the code, they do not settle the targets." if data.get("quick")
           else ""), "",
        "### Targets", "",
    ]
    lines += [f"- {t.what}: target {t.target}, measured {t.figure_text()} — {t.status}"
              for t in targets]
    unmet = [(t, why) for t, why in checks if t.met is False]
    if unmet:
        lines += ["", f"**{len(unmet)} of {len(targets)} targets are not met.** Why, from the "
                  "figures (all of them are in the tables below):", ""]
        lines += [f"- *{t.what}*: {why}." for t, why in unmet if why]
    lines.append("")
    for key, s in sets.items():
        lines += _quality_dataset(key, s, images, rel_dir, image_tag)
    if not sets:
        lines += [not_generated("no dataset finished"), ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- pages


def assemble_benchmarks(head: str, sections: Sequence[Section],
                        timings: Sequence[Sequence[Any]] = ()) -> str:
    """``docs/benchmarks.md``: header, targets table, every section, section timings."""
    met = [t.met for s in sections for t in s.targets]
    summary = (f"{sum(m is True for m in met)} of {len(met)} targets met"
               + (f", {sum(m is False for m in met)} not met" if any(m is False for m in met)
                  else "")
               + (f", {sum(m is None for m in met)} not measured" if None in met else "") + ".")
    parts = [
        head,
        "What the engine and the search strategies cost, measured side by side. Every speed "
        "figure is a ratio of timings taken in the same run (the contenders take turns after "
        "warm-up, and the figure is the median over repetitions), so it holds on a machine "
        "shared with other work even when absolute times do not. Every section states its "
        "targets; met / not met is computed from the figures. Scripts and their options: "
        "[benchmarks/README.md](../benchmarks/README.md).",
        "",
        "## Targets",
        "",
        summary,
        "",
        targets_table(sections),
        "",
        render_speedups(),
    ]
    parts += [s.to_markdown() for s in sections]
    if timings:
        parts += ["## How long each part took", "",
                  table(["part", "command", "status", "wall s"],
                        [[a, f"`{b}`", c, d] for a, b, c, d in timings], "lllr"), ""]
    return "\n".join(parts).rstrip() + "\n"


def assemble_results(head: str, parts: Sequence[tuple[str, str | None, str]]) -> str:
    """``docs/results.md``: header, then each part's markdown, or its heading and the reason it
    is missing. ``parts`` holds ``(heading, markdown or None, reason)``."""
    out = [head]
    for title, markdown, reason in parts:
        if markdown is None:
            out += [f"## {title}", "", not_generated(reason), ""]
        else:
            out += [markdown.strip(), ""]
    return "\n".join(out).rstrip() + "\n"

