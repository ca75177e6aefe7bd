"""The GPU path, measured side by side in one run: what mtlsearch gets out of one accelerator.

Run from the repository root on a machine with a CUDA GPU::

    python benchmarks/bench_gpu.py --json gpu.json --markdown gpu.md
    python benchmarks/bench_gpu.py --quick            # fewer repetitions, smaller sizes

Four parts, each figure a ratio of timings taken interleaved in the same process (the
contenders take turns in bursts between synchronisations, after warm-up; the figure is the
median of the per-repetition ratios):

a. **Multi-task ResNet-18 training throughput**: a materialized hard-sharing ResNet-18 over
   40 binary tasks against a hand-written ``nn.Module`` with the same layers and weights, under
   the same settings, for fp32, bf16 autocast, bf16 + channels-last, and bf16 + channels-last
   + ``torch.compile``. Target: materialized / hand-written throughput >= 0.95 for each.
   The same rows give the effect of each setting (throughput against fp32).
b. **The trainer's automatic settings**: ``Trainer.fit`` epochs with the defaults (bf16,
   channels-last, the dataset kept on the GPU) against the same fit with all of them off
   (fp32, contiguous, batches copied from the host).
c. **Task routing at 312 tasks**: a routed-mask ResNet-18 (σ = 0.4): one-active-task train
   step and all-task evaluation at 10 and at 312 tasks, and peak memory. Target: the
   one-task step within 1.25x from 10 to 312 tasks.
d. **End-to-end search on 64x64 inputs with 40 tasks** (CelebA-sized, generated images with
   attributes planted in 4 groups): ``mtlsearch.search`` with ``random_tree`` and
   ``gradient_merge``, wall time per trial and Δ_MTL. No target: it shows the whole path runs.

Without CUDA it prints that it needs a GPU and exits 0 (so the CPU suite can call it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlsearch import create_space
from mtlsearch.data.dataset import from_arrays
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import TrainConfig, Trainer
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.tasks.kinds import TaskSpec

if __package__:  # imported as benchmarks.bench_gpu, or run with python -m
    from .bench_engine import copy_weights, hand_resnet18, interleaved
    from .render import gpu as render_gpu
    from .render.gpu import TARGET_THROUGHPUT
else:  # run as a file (python benchmarks/bench_gpu.py): its folder is first on the path
    from bench_engine import copy_weights, hand_resnet18, interleaved
    from render import gpu as render_gpu
    from render.gpu import TARGET_THROUGHPUT

DEVICE = torch.device("cuda")  # --device cpu: a smoke run of the code paths, no figures


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# a. Throughput against hand-written, per setting
# ---------------------------------------------------------------------------------------------


def _train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, ys: Sequence[Tensor], amp: bool,
    as_list: Callable[[Any], Sequence[Tensor]],
) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp):
            outputs = as_list(model(x))
        loss = sum(
            F.binary_cross_entropy_with_logits(o.float().reshape(-1), y) for o, y in zip(outputs, ys)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_throughput(
    n_tasks: int, width: int, batch: int, *, reps: int, inner: int, warmup: int, compile_ok: bool
) -> list[dict[str, Any]]:
    """Rows: setting, ms per step of both, throughput ratio, speed-up against fp32."""
    device = DEVICE
    tasks = [f"t{i}" for i in range(n_tasks)]
    space = create_space("resnet18", input_shape=(3, 32, 32), small_input=True, width=width)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    ys = [torch.randint(0, 2, (batch,), generator=g).float().to(device) for _ in tasks]
    settings = [("fp32", False, False, False), ("bf16", True, False, False),
                ("bf16 + channels-last", True, True, False)]
    if compile_ok:
        settings.append(("bf16 + channels-last + compile", True, True, True))
    rows: list[dict[str, Any]] = []
    for label, amp, channels_last, compiled in settings:
        torch.manual_seed(0)
        model = materialize(SharingGraph.hard_sharing(tasks, space.num_blocks), space,
                            [TaskSpec(t) for t in tasks]).to(device)
        hand = hand_resnet18(width, n_tasks)
        copy_weights(model, hand)
        hand.to(device)
        xin = x
        if channels_last:
            model.to(memory_format=torch.channels_last)
            hand.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last)
        m_fwd = torch.compile(model) if compiled else model
        h_fwd = torch.compile(hand) if compiled else hand
        cases = {
            "mtlsearch": _train_step(m_fwd, torch.optim.Adam(model.parameters()), xin, ys, amp,
                                     lambda out: [out[t] for t in tasks]),
            "hand": _train_step(h_fwd, torch.optim.Adam(hand.parameters()), xin, ys, amp, list),
        }
        times = interleaved(cases, device=device, reps=reps, inner=inner, warmup=warmup)
        ratio = statistics.median(h / m for m, h in zip(times["mtlsearch"], times["hand"]))
        rows.append({
            "setting": label,
            "mtlsearch_ms": 1e3 * statistics.median(times["mtlsearch"]),
            "hand_ms": 1e3 * statistics.median(times["hand"]),
            "throughput_ratio": ratio,
            "ok": ratio >= TARGET_THROUGHPUT,
        })
        print(f"  {label:<32} mtlsearch {rows[-1]['mtlsearch_ms']:8.3f} ms  by hand "
              f"{rows[-1]['hand_ms']:8.3f} ms  throughput ratio {ratio:.3f}", flush=True)
    base = rows[0]["mtlsearch_ms"]
    for row in rows:
        row["speedup_vs_fp32"] = base / row["mtlsearch_ms"]
    return rows


# ---------------------------------------------------------------------------------------------
# b. Trainer: automatic GPU settings against all off
# ---------------------------------------------------------------------------------------------


def _image_data(n: int, size: int, n_tasks: int, seed: int = 0, groups: int = 4):
    """Smooth random images; each attribute thresholds a planted group template plus noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, size // 8, size // 8, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.1 * torch.randn(n, 3, size, size, generator=g)
    base = torch.randn(groups, 3, size // 8, size // 8, generator=g)
    pooled = F.adaptive_avg_pool2d(x, size // 8)
    targets = {}
    for t in range(n_tasks):
        template = base[t % groups] + 0.5 * torch.randn(3, size // 8, size // 8, generator=g)
        score = (pooled * template).sum((1, 2, 3))
        targets[f"attr{t:02d}"] = (score > score.median()).float().numpy()
    return from_arrays(x.numpy(), targets, seed=seed, name=f"generated{size}x{size}"), [
        [f"attr{t:02d}" for t in range(n_tasks) if t % groups == k] for k in range(groups)
    ]


def bench_trainer(n: int, width: int, epochs: int, reps: int) -> dict[str, Any]:
    data, _ = _image_data(n, 32, 10)
    space = create_space("resnet18", input_shape=data.input_shape, small_input=True, width=width)
    graph = SharingGraph.hard_sharing([s.name for s in data.tasks], space.num_blocks)
    off = TrainConfig(epochs=epochs, batch_size=256, device=DEVICE.type, amp=False,
                      channels_last=False, data_on_device=False)
    auto = TrainConfig(epochs=epochs, batch_size=256, device=DEVICE.type)
    times: dict[str, list[float]] = {"automatic": [], "all off": []}
    for r in range(reps + 1):
        order = [("automatic", auto), ("all off", off)]
        for label, cfg in order if r % 2 else order[::-1]:
            torch.manual_seed(0)
            model = materialize(graph, space, data.tasks)
            start = time.perf_counter()
            Trainer(cfg).fit(model, data.train, None)
            _sync()
            if r:  # the first round warms up cuDNN and the allocator
                times[label].append(time.perf_counter() - start)
    ratio = statistics.median(o / a for a, o in zip(times["automatic"], times["all off"]))
    samples = len(data.train) * epochs
    return {
        "samples_per_s_automatic": samples / statistics.median(times["automatic"]),
        "samples_per_s_off": samples / statistics.median(times["all off"]),
        "speedup": ratio,
        "n_train": len(data.train),
        "epochs": epochs,
    }


# ---------------------------------------------------------------------------------------------
# c. Task routing at 312 tasks
# ---------------------------------------------------------------------------------------------


def _routing_step(model: Any, opt: torch.optim.Optimizer, x: Tensor, ys: dict) -> Callable:
    """One optimizer step on one active task (the i-th in a fixed scrambled order)."""
    from mtlsearch.engine.train import task_losses

    tasks = model.tasks
    amp = x.device.type == "cuda"

    def step(i: int) -> None:
        t = tasks[i * 7919 % len(tasks)]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x, [t])
        loss = task_losses(model, out, {t: ys[t]})[t]
        groups = opt.param_groups
        opt.param_groups = [groups[0], groups[1 + tasks.index(t)]]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt.param_groups = groups

    return step


def bench_routing(
    task_counts: Sequence[int], width: int, batch: int, steps: int, n: int
) -> list[dict]:
    from mtlsearch.engine.scoring import evaluate
    from mtlsearch.engine.train import _param_groups
    from mtlsearch.plugins.task_routing import routed_graph

    device = DEVICE
    rows = []
    for n_tasks in task_counts:
        data, _ = _image_data(n, 32, n_tasks)
        space = create_space("resnet18", input_shape=data.input_shape, small_input=True, width=width)
        hard = SharingGraph.hard_sharing([s.name for s in data.tasks], space.num_blocks)
        graph = routed_graph(hard, space, sigma=0.4, seed=0)
        torch.manual_seed(0)
        model = materialize(graph, space, data.tasks).to(device)
        model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(_param_groups(model), lr=1e-3)
        x = data.train.inputs[:batch].to(device).contiguous(memory_format=torch.channels_last)
        ys = {t: v[:batch].to(device) for t, v in data.train.targets.items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        step = _routing_step(model, opt, x, ys)
        model.train()
        for i in range(10):
            step(i)
        _sync()
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        _sync()
        step_ms = 1e3 * (time.perf_counter() - start) / steps
        start = time.perf_counter()
        evaluate(model, data.val, batch_size=256, amp=device.type == "cuda")
        _sync()
        eval_s = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
        rows.append({
            "tasks": n_tasks, "step_ms": step_ms, "eval_s": eval_s, "eval_rows": len(data.val),
            "peak_mib": peak,
        })
        print(f"  {n_tasks:4d} tasks: one-task step {step_ms:7.3f} ms, all-task evaluation of "
              f"{len(data.val)} rows {eval_s:6.3f} s, peak {rows[-1]['peak_mib']:8.1f} MiB",
              flush=True)
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------------
# d. End-to-end search, 64x64 inputs, 40 tasks
# ---------------------------------------------------------------------------------------------


def bench_search(n: int, epochs: int, trials: int, strategies: Sequence[str]) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    from mtlsearch.study import search

    data, groups = _image_data(n, 64, 40)
    planted = {t: k for k, g in enumerate(groups) for t in g}
    rows = []
    for name in strategies:
        start = time.perf_counter()
        result = search(
            strategy=name, dataset=data, space="resnet18", trials=trials, seed=0,
            budget=TrainConfig(epochs=epochs, batch_size=256, device=DEVICE.type),
            space_kwargs={"width": 32}, progress=False, pruner="none",
        )
        wall = time.perf_counter() - start
        study = result.study
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = max(done, key=lambda t: t.user_attrs["delta_mtl"]) if done else None
        ari = None
        if best is not None:
            graph = SharingGraph.from_dict(best.user_attrs["graph"])
            depth = graph.num_blocks - 1
            names = sorted(planted)
            branch = {t: graph.route(t)[depth] for t in names}
            ari = adjusted_rand_score([planted[t] for t in names], [str(branch[t]) for t in names])
        rows.append({
            "strategy": name, "trials": len(study.trials), "complete": len(done),
            "wall_s": wall, "s_per_trial": wall / max(len(study.trials), 1),
            "best_delta_mtl": best.user_attrs["delta_mtl"] if best else None,
            "best_params": best.user_attrs.get("params") if best else None,
            "ari_last_block": ari,
        })
        print(f"  {name:<16} {len(done)}/{len(study.trials)} trials complete, {wall:7.1f} s "
              f"({rows[-1]['s_per_trial']:.1f} s/trial), best Δ_MTL "
              f"{rows[-1]['best_delta_mtl']}, ARI at the last block {ari}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# The run (its section of docs/benchmarks.md is rendered by benchmarks/render/gpu.py)
# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part of ``args.only`` (default all): the JSON the section is rendered from."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.backends.cudnn.benchmark = True
    q = args.quick
    settings = {
        "tasks": 40, "width": 32 if q else 64, "batch": 128 if q else 256,
        "reps": 5 if q else 15, "inner": 5 if q else 10, "warmup": 3 if q else 10,
        "search_n": 2000 if q else 8000, "search_epochs": 1 if q else 3,
        "search_trials": 2 if q else 4, "trainer_n": 4096 if q else 16384,
        "routing_tasks": [10, 312], "routing_steps": 50 if q else 200, "routing_n": 2048,
    }
    if DEVICE.type == "cpu":  # smoke run: every code path, tiny sizes
        settings.update(width=4, batch=8, reps=2, inner=1, warmup=1, search_n=200,
                        search_epochs=1, search_trials=1, trainer_n=256, routing_tasks=[3, 12],
                        routing_steps=3, routing_n=256)
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "cpu (smoke run)",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "settings": settings,
    }
    parts = args.only or ["throughput", "trainer", "routing", "search"]
    if "throughput" in parts:
        print("a. multi-task ResNet-18 training throughput, mtlsearch vs hand-written", flush=True)
        result["throughput"] = bench_throughput(
            settings["tasks"], settings["width"], settings["batch"], reps=settings["reps"],
            inner=settings["inner"], warmup=settings["warmup"], compile_ok=not args.no_compile,
        )
    if "trainer" in parts:
        print("b. Trainer: automatic GPU settings vs all off", flush=True)
        result["trainer"] = bench_trainer(settings["trainer_n"], settings["width"],
                                          epochs=2, reps=2 if q else 3)
        print(f"  speed-up {result['trainer']['speedup']:.2f}x", flush=True)
    if "routing" in parts:
        print("c. task routing, one-task step and evaluation", flush=True)
        result["routing"] = bench_routing(settings["routing_tasks"], settings["width"], 64,
                                          settings["routing_steps"], settings["routing_n"])
    if "search" in parts:
        print("d. end-to-end search, 64x64, 40 tasks", flush=True)
        result["search"] = bench_search(settings["search_n"], settings["search_epochs"],
                                        settings["search_trials"], args.strategies)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The options of this script (``benchmarks/run_all.py`` passes some of them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    parser.add_argument("--only", nargs="+", choices=["throughput", "trainer", "routing", "search"])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--strategies", nargs="+", default=["random_tree", "gradient_merge"])
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--markdown", type=Path, help="write the docs/benchmarks.md section")
    parser.add_argument("--from-json", type=Path, help="only render --markdown from this JSON")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a tiny smoke run of every code path (figures meaningless)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    elif DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU; none here, nothing measured")
        return 0
    else:
        result = run(args)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(render_gpu.markdown(result) + "\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
