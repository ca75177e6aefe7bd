"""Streaming image folders: loader throughput, training step against in memory, peak memory.

Usage::

    python benchmarks/bench_streaming.py --json streaming.json            # the full run
    python benchmarks/bench_streaming.py --json streaming.json --quick    # a smoke-size run

Three measurements, on fake CelebA-style folders of 64x64 JPEGs with a label CSV written under
a temporary folder (smooth random images, two binary tasks):

1. **throughput**: images/s of one shuffled pass of a streaming ``folder`` dataset's training
   split, decoded by 2 DataLoader workers (and, for reference, by none);
2. **step time**: the Trainer's time per step (small_cnn, hard sharing, batch 64) with the
   streaming loader (2 workers) against the same images in memory as float32, side by side:
   the two alternate over ``--reps`` rounds, each timed over its epochs after the first
   (workers start in the first), and the ratio is streaming / in memory of the medians;
3. **peak memory**: a search (hard sharing, 1 trial, ``max_steps`` training, its single-task
   references included) over a 50 000-image folder (``--quick``: 3 000), run in a fresh
   subprocess that reports its peak RSS (``resource.getrusage``; its DataLoader workers'
   peak too), against the inputs' in-memory float32 size; the same search over 600 images
   streamed gives the baseline (the process without most of the data: torch, optuna, the
   models, the same batch sizes), and ``--quick`` also runs its small folder in memory,
   side by side.

One torch thread for training; the timing figures are ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import json_ready, machine_info  # noqa: E402

SIZE = 64


def make_folder(root: Path, n: int, size: int = SIZE, seed: int = 0) -> Path:
    """``n`` smooth random ``size``x``size`` JPEGs and ``labels.csv`` (tasks ``a``, ``b``)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    rows = ["file,a,b"]
    for i in range(n):
        colour = rng.uniform(0, 255, 3)
        tilt = rng.uniform(-80, 80, 2)
        img = colour + tilt[0] * ramp[:, None, None] + tilt[1] * ramp[None, :, None]
        img = np.clip(img + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
        name = f"{i:06d}.jpg"
        Image.fromarray(img).save(root / name, quality=90)
        rows.append(f"{name},{int(colour[0] > 127)},{int(tilt[0] > 0)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def throughput(folder: Path, workers: int, batch: int = 64) -> float:
    """Images per second of one shuffled pass over the training split."""
    import torch

    from mtlsearch.data.sources import load_folder

    data = load_folder(folder, streaming=True, num_workers=workers)
    train = data.train
    next(train.batches(batch))  # start the workers outside the timing
    start = time.perf_counter()
    seen = 0
    for x, _ in train.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(0)):
        seen += len(x)
    return seen / (time.perf_counter() - start)


def _step_time(data: Any, epochs: int) -> float:
    """Seconds per training step over the epochs after the first."""
    import torch

    from mtlsearch.engine.model import materialize
    from mtlsearch.engine.train import TrainConfig, Trainer
    from mtlsearch.graph.sharing import SharingGraph
    from mtlsearch.registry import create_space

    space = create_space("small_cnn", input_shape=data.input_shape)
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(data.task_names, space.num_blocks), space,
                        data.tasks)
    marks: list[float] = []
    trainer = Trainer(TrainConfig(epochs=epochs, batch_size=64, seed=0, device="cpu"),
                      on_epoch_end=[lambda state: marks.append(time.perf_counter())])
    result = trainer.fit(model, data.train, None)
    steps_per_epoch = result.steps / epochs
    return (marks[-1] - marks[0]) / (steps_per_epoch * (epochs - 1))


def step_times(folder: Path, reps: int, epochs: int) -> dict[str, Any]:
    """In memory vs streaming (2 workers) step times, alternating, and their ratio."""
    from mtlsearch.data.sources import load_folder

    memory = load_folder(folder, streaming=False)
    stream = load_folder(folder, streaming=True, num_workers=2)
    rows: dict[str, list[float]] = {"memory": [], "streaming": []}
    for r in range(reps):
        order = ("memory", "streaming") if r % 2 == 0 else ("streaming", "memory")
        for name in order:
            rows[name].append(_step_time(memory if name == "memory" else stream, epochs))
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {"memory_s": med["memory"], "streaming_s": med["streaming"],
            "ratio": med["streaming"] / med["memory"], "reps": reps, "epochs": epochs,
            "train_images": len(memory.train), "raw": rows}


def child(folder: str, streaming: str, max_steps: int) -> None:
    """Run one search over ``folder`` and print its peak RSS as JSON (the subprocess)."""
    import gc

    import torch

    torch.set_num_threads(1)
    from mtlsearch.data.sources import load_folder
    from mtlsearch.engine.train import TrainConfig
    from mtlsearch.study import search

    start = time.perf_counter()
    mode: Any = {"true": True, "false": False}.get(streaming, streaming)
    data = load_folder(folder, streaming=mode, num_workers=2)
    result = search(strategy="hard_sharing", dataset=data, space="small_cnn", trials=1,
                    budget=TrainConfig(epochs=1, max_steps=max_steps, batch_size=64,
                                       eval_batch_size=64, device="cpu"),
                    storage=None, progress=False)
    n_images = len(data.train) + len(data.val) + len(data.test)
    streamed = bool(data.info.get("streaming"))
    estimate = int(data.info["estimated_float32_bytes"])
    complete = len(result.study.trials)
    del data, result
    gc.collect()  # the persistent DataLoader workers end here, so RUSAGE_CHILDREN sees them
    time.sleep(0.5)
    print(json.dumps({
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "worker_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "images": n_images, "streaming": streamed, "float32_estimate_bytes": estimate,
        "trials": complete, "seconds": time.perf_counter() - start,
    }))


def peak_memory(folder: Path, streaming: str, max_steps: int) -> dict[str, Any]:
    """The child's report, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), "--streaming", streaming,
         "--max-steps", str(max_steps)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["ratio_to_estimate"] = report["peak_rss_bytes"] / report["float32_estimate_bytes"]
    return report


def build_parser() -> argparse.ArgumentParser:
    """The script's options (run_all.py's declaration is checked against them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--quick", action="store_true", help="smoke size (minutes -> seconds)")
    p.add_argument("--images", type=int, help="images of the peak-memory folder "
                   "(default 50000, --quick 3000)")
    p.add_argument("--reps", type=int, help="step-time rounds (default 3, --quick 1)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--streaming", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--max-steps", type=int, default=20, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.streaming, args.max_steps)
        return 0
    import torch

    torch.set_num_threads(1)
    q = args.quick
    n_big = args.images or (3000 if q else 50_000)
    reps = args.reps or (1 if q else 3)
    with tempfile.TemporaryDirectory(prefix="mtlsearch-bench-streaming-") as tmp:
        small = make_folder(Path(tmp) / "small", 256 if q else 1024)
        figures: dict[str, Any] = {"machine": machine_info("cpu"), "quick": q,
                                   "image_size": SIZE}
        figures["throughput"] = {
            "workers_2": throughput(small, 2), "workers_0": throughput(small, 0),
            "images": 256 if q else 1024,
        }
        print(f"throughput: {figures['throughput']['workers_2']:.0f} images/s with 2 workers, "
              f"{figures['throughput']['workers_0']:.0f} with none", flush=True)
        figures["step"] = step_times(small, reps, epochs=2 if q else 3)
        print(f"step: {figures['step']['memory_s'] * 1e3:.1f} ms in memory, "
              f"{figures['step']['streaming_s'] * 1e3:.1f} ms streaming "
              f"({figures['step']['ratio']:.2f}x)", flush=True)
        t0 = time.perf_counter()
        big = make_folder(Path(tmp) / "big", n_big, seed=1)
        figures["folder_write_s"] = time.perf_counter() - t0
        # the full size streams by itself ("auto"); the smoke size is below the threshold
        figures["memory"] = peak_memory(big, "true" if q else "auto", 5 if q else 20)
        if q:  # small enough to hold in memory as well: the same search, side by side
            figures["memory_in_memory"] = peak_memory(big, "false", 5)
        # the same streamed search over 600 images: the process without (most of) the data
        # (torch, optuna, the models, same batch sizes): what grows with the folder is above it
        figures["memory_baseline"] = peak_memory(make_folder(Path(tmp) / "tiny", 600, seed=2),
                                                 "true", 5 if q else 20)
        base = figures["memory_baseline"]["peak_rss_bytes"]
        for key in ("memory", "memory_in_memory"):
            if key in figures:
                figures[key]["above_baseline_bytes"] = figures[key]["peak_rss_bytes"] - base
        m = figures["memory"]
        print(f"search over {m['images']} images: peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB, "
              f"{m['above_baseline_bytes'] / 2**20:.0f} MiB above the baseline (workers "
              f"{m['worker_peak_rss_bytes'] / 2**20:.0f} MiB), against "
              f"{m['float32_estimate_bytes'] / 2**20:.0f} MiB as float32", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_ready(figures), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
