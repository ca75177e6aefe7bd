"""The streaming section of docs/benchmarks.md, from ``bench_streaming.py --json``: loader
throughput, the training step streaming against in memory, and a search's peak memory over a
large image folder against its float32 size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .markup import Target, decimal, table

#: Streaming's training step over the in-memory one (small_cnn, 64x64, CPU).
STEP_RATIO = 1.10
#: Peak memory a streaming search may take above the process's baseline, as a share of the
#: images' float32 size (they must never be materialised as float32).
MEMORY_SHARE = 0.5


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def targets(data: Mapping[str, Any]) -> list[Target]:
    """The step-time ratio and the search's memory above its baseline against float32."""
    out = []
    step = data.get("step") or {}
    ratio = step.get("ratio")
    out.append(Target("j", "training step, streaming folder (2 workers) / in memory, "
                                   "small_cnn at 64x64, CPU",
                      f"<= {STEP_RATIO:.2f}", ratio,
                      None if ratio is None else ratio <= STEP_RATIO))
    mem = data.get("memory") or {}
    above, estimate = mem.get("above_baseline_bytes"), mem.get("float32_estimate_bytes")
    share = None if above is None or not estimate else above / estimate
    out.append(Target("j", f"search over {mem.get('images', '?'):,} images: peak RSS "
                                   "above the baseline / the images' float32 size"
                      if isinstance(mem.get("images"), int) else
                      "search over a large folder: peak RSS above the baseline / float32 size",
                      f"<= {MEMORY_SHARE:.2f}", share,
                      None if share is None else share <= MEMORY_SHARE))
    return out


def markdown(data: Mapping[str, Any], command: str = "") -> str:
    """Three small tables: throughput, step time, peak memory."""
    thr = data.get("throughput") or {}
    step = data.get("step") or {}
    size = data.get("image_size", 64)
    body = [
        f"**Streaming image folders** (`folder:` datasets, {size}x{size} JPEGs with a label "
        "CSV, written to a temporary folder): images decoded by DataLoader workers a batch at a "
        "time against the same images held in memory as float32."
        + (" *Smoke size (`--quick`).*" if data.get("quick") else "")
        + (f" Command: `{command}`." if command else ""),
        "",
        table(["loader", "images/s"],
              [["streaming, 2 workers", decimal(thr.get("workers_2"), 0)],
               ["streaming, no worker (decoded in the training process)",
                decimal(thr.get("workers_0"), 0)]]),
        "",
        f"Training step (small_cnn, hard sharing, batch 64, one torch thread, "
        f"{step.get('train_images', '?')} training images; median of {step.get('reps', '?')} "
        "alternating rounds, each timed after its first epoch):",
        "",
        table(["data", "ms / step", "ratio"],
              [["in memory (float32)", decimal((step.get("memory_s") or 0) * 1e3, 1), "1.00x"],
               ["streaming (2 workers)", decimal((step.get("streaming_s") or 0) * 1e3, 1),
                f"{step['ratio']:.2f}x" if step.get("ratio") else "-"]]),
        "",
    ]
    rows = []
    for key, label in (("memory", "streaming"), ("memory_in_memory", "in memory"),
                       ("memory_baseline", "baseline: 600 images streamed")):
        m = data.get(key)
        if not m:
            continue
        rows.append([label, f"{m['images']:,}", _mib(m["peak_rss_bytes"]),
                     _mib(m.get("above_baseline_bytes")), _mib(m["worker_peak_rss_bytes"]),
                     _mib(m["float32_estimate_bytes"]), decimal(m.get("seconds"), 0)])
    if rows:
        body += [
            "Peak memory of a search (hard sharing, 1 trial and its single-task references, a "
            "few training steps, full evaluation) in a fresh process, from "
            "`resource.getrusage`; the workers' peak counts pages they share with the "
            "training process:",
            "",
            table(["images held", "images", "peak RSS", "above baseline", "workers' peak",
                   "float32 size", "s"], rows),
        ]
    return "\n".join(body)
