"""GPU checks of the engine: CUDA, bf16 autocast and torch.compile on every kind of graph.

Run from the repository root::

    python benchmarks/check_gpu.py              # on a CUDA machine; skips (exit 0) without one
    python benchmarks/check_gpu.py --no-compile # leave out the torch.compile checks
    python benchmarks/check_gpu.py --device cpu # the same checks on the CPU (no CUDA-vs-CPU)
    python benchmarks/check_gpu.py --only tree  # only the graphs whose name contains "tree"

For four graphs, a hard-sharing small CNN, a branched ResNet-18 tree, a task-routing
ResNet-18 with a random channel mask on every route step, and an AdaShare-like ResNet-18 whose
tasks skip some blocks (identity and projection shortcuts), it checks:

1. ``forward/backward``: a training step on the device gives finite losses and gradients
   for every parameter that is used;
2. ``device == cpu``: outputs on the device match the CPU's with the same weights (TF32 off);
3. ``bf16 autocast``: outputs under ``torch.autocast(dtype=torch.bfloat16)`` are close to
   fp32 (loose tolerance) and the backward pass works;
4. ``compile == eager``: ``torch.compile(model)`` gives the eager outputs, and a training
   step of the compiled model works; eager and compiled step times are printed.

Prints one line per check and exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.train import task_losses
from mtlsearch.graph.space import SearchSpace

TASKS = [
    TaskSpec("bin_a"),
    TaskSpec("bin_b"),
    TaskSpec("digit", kind="multiclass", num_classes=10),
    TaskSpec("parity", kind="multiclass", num_classes=2),
    TaskSpec("size", kind="regression"),
    TaskSpec("pos", kind="regression", out_dim=2),
]
NAMES = [t.name for t in TASKS]


@dataclass
class Case:
    """A graph to check: its name, search space, graph and batch size."""

    name: str
    space: SearchSpace
    graph: SharingGraph
    batch: int


def build_cases(width: int, seed: int = 0) -> list[Case]:
    """The four graphs: hard sharing, tree, task routing (masks everywhere), skips."""
    rng = np.random.default_rng(seed)
    cnn = create_space("small_cnn", input_shape=(1, 12, 24))
    resnet = create_space("resnet18", input_shape=(3, 32, 32), small_input=True, width=width)
    n = resnet.num_blocks

    hard = SharingGraph.hard_sharing(NAMES, cnn.num_blocks)

    groups = [NAMES[:2], NAMES[2:4], NAMES[4:]]
    tree = SharingGraph.from_partitions(
        NAMES, [[NAMES]] * 3 + [groups] * 3 + [[[t] for t in NAMES]] * (n - 6)
    )

    routing = SharingGraph.hard_sharing(NAMES, n)
    for node in routing.block_nodes():
        channels = resnet.blocks[routing.node_index(node)].channels
        for task in NAMES:
            mask = rng.random(channels) < 0.7
            mask[rng.integers(channels)] = True  # never an all-zero mask
            routing.set_mask(task, node, mask.astype(int))

    skips = SharingGraph.hard_sharing(NAMES, n)
    kinds = [b.skip for b in resnet.blocks]
    projection = [i for i, k in enumerate(kinds) if k == "projection"]
    identity = [i for i, k in enumerate(kinds) if k == "identity"]
    plan = {
        NAMES[0]: [projection[0]],
        NAMES[1]: [identity[0], projection[1]],
        NAMES[2]: [identity[1]],
        NAMES[3]: [projection[0], identity[2]],
        NAMES[4]: [],
        NAMES[5]: [identity[-1]],
    }
    for task, indices in plan.items():
        for i in indices:
            skips.set_skip(task, f"b{i}.0")
    return [
        Case("hard sharing (small_cnn)", cnn, hard, 64),
        Case("tree (resnet18)", resnet, tree, 32),
        Case("task routing (resnet18, masks on every step)", resnet, routing, 32),
        Case("skips (resnet18, identity + projection)", resnet, skips, 32),
    ]


# ------------------------------------------------------------------------------------ helpers


def make_batch(case: Case, device: torch.device, seed: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
    """A random input batch and targets of every task."""
    g = torch.Generator().manual_seed(seed)
    b = case.batch
    x = torch.randn(b, *case.space.input_shape, generator=g)
    y = {
        "bin_a": torch.randint(0, 2, (b,), generator=g).float(),
        "bin_b": torch.randint(0, 2, (b,), generator=g).float(),
        "digit": torch.randint(0, 10, (b,), generator=g),
        "parity": torch.randint(0, 2, (b,), generator=g),
        "size": torch.randn(b, 1, generator=g),
        "pos": torch.randn(b, 2, generator=g),
    }
    return x.to(device), {k: v.to(device) for k, v in y.items()}


def rel_error(got: dict[str, Tensor], want: dict[str, Tensor]) -> float:
    """Largest ``max|got - want| / max(max|want|, 1e-6)`` over tasks."""
    worst = 0.0
    for task, w in want.items():
        g = got[task].detach().float().cpu()
        w = w.detach().float().cpu()
        worst = max(worst, float((g - w).abs().max()) / max(float(w.abs().max()), 1e-6))
    return worst


def train_step(
    model: Callable[..., dict[str, Tensor]],
    owner: MultiTaskModel,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: dict[str, Tensor],
    autocast: bool = False,
) -> float:
    """Forward, losses, backward, optimizer step; returns the (synchronised) loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    loss = sum(task_losses(owner, out, y).values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class NoTF32:
    """Turn TF32 off for exact comparisons (restored on exit)."""

    def __enter__(self) -> None:
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


# ------------------------------------------------------------------------------------- checks


class Report:
    """Collects pass/fail lines."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.results: list[tuple[str, str, bool, str]] = []

    def run(self, case: str, check: str, fn: Callable[[], str]) -> None:
        try:
            detail, ok = fn(), True
        except Exception as exc:  # a check that raises fails, with the reason
            detail, ok = f"{type(exc).__name__}: {exc}", False
            if self.verbose:
                traceback.print_exc()
        self.results.append((case, check, ok, detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {check:<18} {detail}", flush=True)

    @property
    def failed(self) -> list[tuple[str, str, bool, str]]:
        return [r for r in self.results if not r[2]]


def check_case(
    case: Case, device: torch.device, report: Report, *, compile_: bool, reps: int
) -> None:
    """Every check on one graph."""
    torch.manual_seed(0)
    base = materialize(case.graph, case.space, TASKS)
    x, y = make_batch(case, device)

    def forward_backward() -> str:
        model = copy.deepcopy(base).to(device).train()
        out = model(x)
        losses = task_losses(model, out, y)
        loss = sum(losses.values())
        loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise AssertionError(f"loss is {value}")
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        if missing:
            raise AssertionError(f"no gradient for {missing[:4]}")
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
        if bad:
            raise AssertionError(f"non-finite gradients in {bad[:4]}")
        shapes = {t: tuple(v.shape) for t, v in out.items()}
        return f"loss {value:.3f}, outputs {shapes['digit']} .. {shapes['pos']}"

    report.run(case.name, "forward/backward", forward_backward)

    if device.type == "cuda":

        def same_as_cpu() -> str:
            cpu = copy.deepcopy(base).eval()
            dev = copy.deepcopy(base).to(device).eval()
            with torch.no_grad(), NoTF32():
                err = rel_error(dev(x), cpu(x.cpu()))
            if err > 1e-4:
                raise AssertionError(f"relative difference {err:.2e} > 1e-4")
            return f"relative difference {err:.1e}"

        report.run(case.name, "device == cpu", same_as_cpu)

    def bf16() -> str:
        model = copy.deepcopy(base).to(device).eval()
        with torch.no_grad():
            want = model(x)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                got = model(x)
        err = rel_error(got, want)
        if err > 0.1:
            raise AssertionError(f"bf16 outputs differ from fp32 by {err:.2e} (> 0.1)")
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = train_step(model, model, opt, x, y, autocast=True)
        if not math.isfinite(loss):
            raise AssertionError(f"bf16 training loss is {loss}")
        return f"relative difference {err:.1e}, train loss {loss:.3f}"

    report.run(case.name, "bf16 autocast", bf16)

    if not compile_:
        return

    def compiled() -> str:
        torch._dynamo.reset()
        eager = copy.deepcopy(base).to(device).eval()
        fast = torch.compile(copy.deepcopy(eager))
        start = time.perf_counter()
        with torch.no_grad(), NoTF32():
            got = fast(x)
            want = eager(x)
        first = time.perf_counter() - start
        err = rel_error(got, want)
        if err > 1e-3:
            raise AssertionError(f"compiled outputs differ by {err:.2e} (> 1e-3)")
        # A training step of the compiled model (and of the eager one, for timing).
        eager.train()
        inner = copy.deepcopy(eager)
        fast = torch.compile(inner)
        opt_e = torch.optim.Adam(eager.parameters(), lr=1e-3)
        opt_c = torch.optim.Adam(inner.parameters(), lr=1e-3)
        start = time.perf_counter()
        loss_c = train_step(fast, inner, opt_c, x, y)
        compile_train = time.perf_counter() - start
        loss_e = train_step(eager, eager, opt_e, x, y)
        if not math.isfinite(loss_c) or abs(loss_c - loss_e) > 1e-2 * max(1.0, abs(loss_e)):
            raise AssertionError(f"compiled train loss {loss_c} vs eager {loss_e}")
        t_e = step_time(lambda: train_step(eager, eager, opt_e, x, y), device, reps, 3)
        t_c = step_time(lambda: train_step(fast, inner, opt_c, x, y), device, reps, 3)
        return (
            f"relative difference {err:.1e}; train step eager {t_e * 1e3:.2f} ms, "
            f"compiled {t_c * 1e3:.2f} ms ({t_e / t_c:.2f}x); compile "
            f"{first:.0f} s + {compile_train:.0f} s"
        )

    report.run(case.name, "compile == eager", compiled)


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default) or cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile checks")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 base width")
    parser.add_argument("--reps", type=int, default=20, help="timed steps for eager vs compile")
    parser.add_argument(
        "--only", default=None, help="check only the graphs whose name contains this text"
    )
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)

    if args.device is None and not torch.cuda.is_available():
        print("check_gpu: no CUDA GPU on this machine: GPU checks SKIPPED (use --device cpu to "
              "run the same checks on the CPU)")
        return 0
    device = torch.device(args.device or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("check_gpu: --device cuda was asked for but no CUDA GPU is available")
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    width = args.width or (32 if device.type == "cuda" else 8)
    print(f"mtlsearch GPU checks on {device} ({name}), torch {torch.__version__}, "
          f"resnet18 width {width}")
    report = Report(args.verbose)
    for case in build_cases(width):
        if args.only and args.only not in case.name:
            continue
        print(f"\n{case.name}: branches per depth {case.graph.branches_per_depth()}")
        check_case(case, device, report, compile_=not args.no_compile, reps=args.reps)
    failed = report.failed
    print(f"\n{len(report.results) - len(failed)} passed, {len(failed)} failed")
    for case, check, _, detail in failed:
        print(f"FAILED {case} / {check}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
