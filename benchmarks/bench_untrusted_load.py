"""How long ``load()`` takes, and how much memory it needs, against the size of an export.

Writes real exports of ``mlp`` single-task graphs (one block node per task and depth, the
shape with the most nodes per byte) at several sizes, then loads each in a fresh process and
prints: block nodes, tasks, depths, file sizes, load time, peak memory above the process
before loading, and seconds per MB. Also times the refusals of files over the limits (they
must be fast) and of a decompression bomb given to ``predict_npz``.

Used for docs/reliability.md ("Round II"); not part of ``run_all.py``.

    python benchmarks/bench_untrusted_load.py                 # the default sizes
    python benchmarks/bench_untrusted_load.py 500x2 1x2000    # depths x tasks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
from mtlsearch.export import load
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    load(sys.argv[1]); error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc)[:120]}"
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"seconds": seconds, "peak_kib": peak, "error": error}))
"""


def _export(depths: int, tasks: int, folder: Path) -> Path:
    import torch

    from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
    from mtlsearch.export import export_model

    torch.set_num_threads(1)
    names = [f"t{i}" for i in range(tasks)]
    space = create_space("mlp", input_shape=(2,), widths=(2,) * depths)
    graph = SharingGraph.single_task(names, depths) if tasks > 1 else SharingGraph.hard_sharing(
        names, depths)
    model = materialize(graph, space, [TaskSpec(t) for t in names])
    return export_model(model, folder / f"e{depths}x{tasks}", picture=False)


def _load_in_child(folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _over_limit(folder: Path, source: Path) -> list[tuple[str, float, str]]:
    """Edit a real export past each limit; time the refusal."""
    from mtlsearch.export import load
    from mtlsearch.graph.sharing import MAX_BLOCK_NODES, MAX_BLOCKS, MAX_TASKS

    record = json.loads((source / "architecture.json").read_text())
    cases = {
        f"tasks > {MAX_TASKS}": lambda g: g.update(tasks=[f"x{i}" for i in range(MAX_TASKS + 1)]),
        f"num_blocks > {MAX_BLOCKS}": lambda g: g.update(num_blocks=MAX_BLOCKS + 1),
        f"nodes > {MAX_BLOCK_NODES}": lambda g: g["graph"].update(nodes=[
            {"id": f"b0.{i}", "kind": "block", "index": 0, "masks": {}, "skips": []}
            for i in range(MAX_BLOCK_NODES + len(g["tasks"]) + 2)]),
    }
    results = []
    for label, change in cases.items():
        edited = json.loads(json.dumps(record))
        change(edited["graph"])
        target = folder / "over"
        target.mkdir(exist_ok=True)
        for name in ("weights.safetensors",):
            (target / name).write_bytes((source / name).read_bytes())
        (target / "architecture.json").write_text(json.dumps(edited))
        t0 = time.perf_counter()
        try:
            load(target)
            message = "LOADED (not refused)"
        except Exception as exc:
            message = f"{type(exc).__name__}: {str(exc).split(';')[0][-90:]}"
        results.append((label, time.perf_counter() - t0, message))
    return results


def _bomb(folder: Path, source: Path) -> tuple[float, int, str]:
    """A 1 GB array of zeros compressed into ~1 MB, given to predict_npz."""
    import resource

    from numpy.lib import format as npy

    from mtlsearch.export import predict_npz

    path = folder / "bomb.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**28 // 2, 2)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as fh:
            npy.write_array_header_1_0(fh, header)
            chunk = bytes(1 << 20)
            for _ in range(1024):
                fh.write(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        predict_npz(source, path, folder / "out.npz")
        message = "PREDICTED (not refused)"
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:100]}"
    seconds = time.perf_counter() - t0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return seconds, path.stat().st_size, f"{message} (peak +{grown / 1024:.0f} MiB)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", metavar="DEPTHSxTASKS",
                        help="graphs to export and load, e.g. 500x2 1x2000 (default: 5 sizes)")
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    sizes = [tuple(int(n) for n in a.split("x")) for a in args.sizes] or [
        (250, 2), (250, 6), (1, 2000), (2, 2000), (256, 16)]
    print(f"{'nodes':>6} {'tasks':>5} {'depths':>6} {'json MB':>8} {'weights MB':>10} "
          f"{'load s':>7} {'peak MiB':>8} {'s / MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = None
        for depths, tasks in sizes:
            export = _export(depths, tasks, folder)
            first = first or export
            js = (export / "architecture.json").stat().st_size / 2**20
            ws = (export / "weights.safetensors").stat().st_size / 2**20
            got = _load_in_child(export)
            note = f"  {got['error']}" if got["error"] else ""
            print(f"{depths * tasks:6d} {tasks:5d} {depths:6d} {js:8.2f} {ws:10.2f} "
                  f"{got['seconds']:7.2f} {got['peak_kib'] / 1024:8.0f} "
                  f"{got['seconds'] / (js + ws):7.2f}{note}", flush=True)
        print("\nover the limits (refused before anything is built):")
        for label, seconds, message in _over_limit(folder, first):
            print(f"  {label:<22} {seconds:6.3f} s  {message}")
        seconds, size, message = _bomb(folder, first)
        print(f"\npredict_npz, {size / 2**20:.1f} MB file inflating to 1 GiB: {seconds:.3f} s  "
              f"{message}")


if __name__ == "__main__":
    main(sys.argv[1:])
