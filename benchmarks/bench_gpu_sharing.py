"""Trials per hour when several candidate trainings share one device.

Usage::

    python benchmarks/bench_gpu_sharing.py --device cuda --concurrent 1 2 4 8 --json F
    python benchmarks/bench_gpu_sharing.py --device cpu --concurrent 1 2 --trainings 2  # smoke

For each level N, N spawned processes each train ``--trainings`` small_cnn candidates (hard
sharing on multi_digits at compare's default budget, one torch thread each) on the same
device at the same time; the figure is all trainings over the wall time of the level, as
trials per hour, and its ratio to one training at a time. On a GPU it also prints what the
rule of :mod:`mtlsearch.engine.device_share` would choose for this candidate, so the rule can
be checked against the measured best level.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from .common import json_ready, machine_info
else:
    from common import json_ready, machine_info

DATA = {"n_train": 1200, "n_val": 400, "n_test": 400}
BUDGET = {"epochs": 3, "batch_size": 64, "lr": 1e-3}


def _worker(device: str, trainings: int, seed: int, start: Any, done: Any) -> None:
    import torch

    from mtlsearch import SharingGraph, TrainConfig, create_space, load_dataset
    from mtlsearch.engine.train import build_and_train

    torch.set_num_threads(1)
    data = load_dataset("multi_digits", seed=seed, **DATA)
    space = create_space("small_cnn", input_shape=data.input_shape)
    graph = SharingGraph.hard_sharing(data.task_names, space.num_blocks)
    start.wait()
    for i in range(trainings):
        build_and_train(graph, space, data.tasks, data.train, data.val,
                        TrainConfig(**BUDGET, device=device, seed=seed * 100 + i))
    done.put(trainings)


def run_level(device: str, concurrent: int, trainings: int) -> dict[str, float]:
    """N processes training at once: trainings per hour over the level's wall time."""
    ctx = mp.get_context("spawn")
    start, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(device, trainings, i, start, done))
             for i in range(concurrent)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every process import and load its data before the clock starts
    began = time.perf_counter()
    start.set()
    total = sum(done.get() for _ in procs)
    wall = time.perf_counter() - began
    for p in procs:
        p.join()
    return {"concurrent": concurrent, "trainings": total, "wall_s": wall,
            "trials_per_hour": total / wall * 3600}


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trainings", type=int, default=4, help="per process and level")
    parser.add_argument("--json", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report: dict[str, Any] = {"machine": machine_info(args.device), "levels": []}
    for n in args.concurrent:
        level = run_level(args.device, n, args.trainings)
        report["levels"].append(level)
        base = report["levels"][0]["trials_per_hour"]
        print(f"{n} concurrent: {level['trials_per_hour']:.0f} trials/h "
              f"({level['trials_per_hour'] / base:.2f}x one at a time)", flush=True)
    if args.device.startswith("cuda"):
        from mtlsearch import create_space, load_dataset
        from mtlsearch.engine.device_share import plan_device_share

        data = load_dataset("multi_digits", seed=0, **DATA)
        space = create_space("small_cnn", input_shape=data.input_shape)
        share = plan_device_share(space, data.train, batch_size=BUDGET["batch_size"],
                                  device=args.device)
        report["rule"] = share.describe()
        print("rule:", share.describe())
    if args.json:
        Path(args.json).write_text(json.dumps(json_ready(report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
