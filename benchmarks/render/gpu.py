"""Section f of docs/benchmarks.md from ``bench_gpu.py --json`` (the GPU path), or, without a
GPU run, the placeholder that points to the last GPU figures."""

from __future__ import annotations

from typing import Any

#: bench_gpu.py: materialized / hand-written training throughput, under every setting.
TARGET_THROUGHPUT = 0.95
#: bench_gpu.py: the one-active-task routed step from the fewest to the most tasks.
TARGET_ROUTING_FLAT = 1.25


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


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def markdown(result: dict[str, Any]) -> str:
    """The GPU section of docs/benchmarks.md from ``bench_gpu.py --json`` (its ``run()``)."""
    s = result["settings"]
    lines = [
        "## GPU path",
        "",
        f"Device: **{result['device']}**, torch {result['torch']}, measured "
        f"{result['date']}. Command: `{result['command']}`.",
        "",
    ]
    if "throughput" in result:
        rows = result["throughput"]
        ok = all(r["ok"] for r in rows)
        lines += [
            f"### a. Multi-task ResNet-18 training throughput ({s['tasks']} tasks, width "
            f"{s['width']}, batch {s['batch']}, 32x32)",
            "",
            f"Target: materialized / hand-written throughput >= {TARGET_THROUGHPUT} under every "
            f"setting: {_met(ok)}.",
            "",
            "| setting | mtlsearch ms/step | by hand ms/step | throughput ratio | speed-up vs fp32 |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['setting']} | {r['mtlsearch_ms']:.3f} | {r['hand_ms']:.3f} | "
            f"{r['throughput_ratio']:.3f} | {r['speedup_vs_fp32']:.2f}x |" for r in rows
        ]
        lines.append("")
    if "trainer" in result:
        t = result["trainer"]
        lines += [
            "### b. The trainer's automatic settings",
            "",
            f"`Trainer.fit`, hard-sharing ResNet-18, 10 tasks, {t['n_train']} training images, "
            f"{t['epochs']} epochs, batch 256: defaults (bf16, channels-last, data kept on the "
            f"GPU) {t['samples_per_s_automatic']:.0f} samples/s against all off (fp32, "
            f"contiguous, host batches) {t['samples_per_s_off']:.0f} samples/s: "
            f"**{t['speedup']:.2f}x**.",
            "",
        ]
    if "routing" in result:
        rows = result["routing"]
        flat = rows[-1]["step_ms"] / rows[0]["step_ms"]
        lines += [
            "### c. Task routing at many tasks (routed-mask ResNet-18, σ = 0.4, bf16)",
            "",
            f"Target: the one-active-task step grows at most {TARGET_ROUTING_FLAT}x from "
            f"{rows[0]['tasks']} to {rows[-1]['tasks']} tasks: {flat:.2f}x, "
            f"{_met(flat <= TARGET_ROUTING_FLAT)}.",
            "",
            "| tasks | one-task step ms | all-task evaluation s | rows | peak MiB |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['tasks']} | {r['step_ms']:.3f} | {r['eval_s']:.3f} | {r['eval_rows']} | "
            f"{r['peak_mib']:.0f} |" for r in rows
        ]
        lines.append("")
    if "search" in result:
        rows = result["search"]
        lines += [
            f"### d. End-to-end search, 64x64 inputs, 40 tasks ({s['search_n']} generated "
            f"images, 4 planted attribute groups, ResNet-18 width 32, {s['search_epochs']} "
            "epochs per candidate)",
            "",
            "No target: the whole path (study, proposals, training, evaluation on the GPU).",
            "ARI compares the branches at the last block of the best architecture with the "
            "planted groups.",
            "",
            "| strategy | trials complete | wall s | s per trial | best Δ_MTL % | params | ARI |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            delta = "–" if r["best_delta_mtl"] is None else f"{r['best_delta_mtl']:+.2f}"
            params = "–" if r["best_params"] is None else f"{r['best_params']:,.0f}"
            ari = "–" if r["ari_last_block"] is None else f"{r['ari_last_block']:.2f}"
            lines.append(
                f"| {r['strategy']} | {r['complete']}/{r['trials']} | {r['wall_s']:.1f} | "
                f"{r['s_per_trial']:.1f} | {delta} | {params} | {ari} |"
            )
        lines.append("")
    return "\n".join(lines)


def placeholder(reason: str) -> str:
    """Section f when this run measured nothing on a GPU (``reason`` says why): what the GPU
    part measures and the last GPU figures."""
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
