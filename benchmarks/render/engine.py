"""Sections a and b of docs/benchmarks.md from ``bench_engine.py --json``: the engine's
overhead against hand-written PyTorch, and shared-prefix execution of a branched tree."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import plots
from .markup import Target, decimal, table

#: mtlsearch / hand-written, train step and inference (bench_engine.py writes its own per row).
ENGINE_RATIO = 1.05
#: a branched model's forward against the sum of its unique nodes: within this fraction.
PREFIX_TOLERANCE = 0.10


def targets(data: Mapping[str, Any]) -> list[Target]:
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


def markdown(data: Mapping[str, Any], images: Path | None = None,
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
        rows.append([r["model"], r["measure"], decimal(r["materialized_ms"], 3),
                     decimal(r["hand_written_ms"], 3), f"**{r['ratio']:.3f}**", target,
                     decimal(r["vs_chained"], 3)])
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
        a.append(plots.image_link(rel_dir, plot(data, images), "engine overhead ratios"))
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
                  [[m["model"], m["measure"], decimal(m["contiguous_ms"], 3),
                    decimal(m["channels_last_ms"], 3), f"**{m['speedup']:.2f}x**"] for m in memory],
                  "llrrr"),
        ]
    prow = []
    for p in data.get("shared_prefix", []):
        ok = abs(p["full_vs_unique_nodes"] - 1) <= PREFIX_TOLERANCE
        prow.append([p["model"], str([len(level) for level in p.get("partitions", [])]),
                     decimal(p["full_ms"], 3), decimal(p["unique_nodes_ms"], 3),
                     f"**{p['full_vs_unique_nodes']:.3f}** ({'met' if ok else 'NOT MET'})",
                     decimal(p["per_task_ms"], 3), f"{p['speedup']:.2f}x", f"{p['mac_ratio']:.2f}x",
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


def plot(data: Mapping[str, Any], images: Path) -> str:
    """The checked overhead ratios as bars against the target; returns the picture's file
    name."""
    rows = [r for r in data.get("overhead", []) if r.get("target") is not None]
    fig, ax = plots.figure(7.0, 0.45 * len(rows) + 1.2)
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
    return plots.save(fig, images, "engine_overhead")
