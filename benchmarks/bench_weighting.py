"""Loss weighting and gradient aggregation: what each method costs per step, and what it gives.

Usage::

    python benchmarks/bench_weighting.py steps   [--tasks 6 40] [--rounds 3] [--steps 3]
    python benchmarks/bench_weighting.py results [--seeds 0 1 2]
    python benchmarks/bench_weighting.py all     [--json PATH]      # both, as in docs/
    python benchmarks/bench_weighting.py --joint [--seeds 0 1 2]    # needs search(weighting=)

``steps`` times the training step of every registered weighting against ``equal``, side by
side in one run: hard sharing at each task count (6 and 40) on ``mlp`` (vector inputs) and
``small_cnn`` (1x12x24 images, multi_digits' shape), random binary tasks (a step's cost does
not depend on what the labels mean), batches of 64. After one untimed pass over every
method, each round trains every method in turn (a round starts one method later than the
one before) for ``--steps`` timed steps (four times as many on the mlp) after a warm-up
step (the real :class:`~mtlsearch.engine.train.Trainer`, step durations taken between
consecutive ``on_backward`` calls); a method's ratio is its median step over ``equal``'s
median step *of the same round*, and the table shows the median over rounds.
"growth" is a method's step at the largest task count over its step at the smallest, and the
log-log slope says how it grows with the number of tasks (1: linearly).

``results`` trains hard sharing with each method on ``multi_digits`` (small_cnn) and the
planted ``synthetic`` tasks (mlp, 3 groups of 4 related tasks) at ``mtlsearch compare``'s
default budget (3 epochs, batch 64, lr 1e-3) on smaller data, for each seed, and reports
Δ_MTL (validation and test, against the single-task networks of the same seed) as mean ± std
over the seeds, with the test Δ_MTL paired per seed against ``equal`` (wins out of seeds).

``--joint`` runs, once ``mtlsearch.search`` takes ``weighting=`` (the runner integration),
the question the issue asks: at equal compute (``compare``'s ``6x``), does sampling the
weighting with the architecture (``weighting="auto"``) beat an architecture-only search of
the default strategy? Paired per seed on the best trial's test Δ_MTL.

One torch thread; every number is deterministic on the CPU except the step times.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from mtlsearch import SharingGraph, TrainConfig, create_space, from_arrays, load_dataset
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import Trainer
from mtlsearch.errors import TrainingError
from mtlsearch.registry import get_weighting_class, list_weightings
from mtlsearch.stats import log_log_slope, mean_std, paired_difference
from mtlsearch.strategy.base import Proposal
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import evaluate_proposal

if __package__:  # imported as benchmarks.bench_weighting, or run with python -m
    from .common import json_ready, machine_info
    from .render.weighting import results_markdown, steps_markdown
else:  # run as a file: its folder is first on the path
    from common import json_ready, machine_info
    from render.weighting import results_markdown, steps_markdown

#: Input shape and timed steps per ``--steps`` of each space (an mlp step is short: more of them).
SPACES = {"mlp": ((32,), 4), "small_cnn": ((1, 12, 24), 1)}
#: ``mtlsearch compare``'s default training of every candidate.
COMPARE_BUDGET = {"epochs": 3, "batch_size": 64, "lr": 1e-3}
DATASETS = {
    "multi_digits": ("multi_digits", "small_cnn", {"n_train": 1200, "n_val": 400, "n_test": 400}),
    "synthetic": ("synthetic", "mlp", {"group_sizes": [4, 4, 4], "relatedness": 0.9,
                                      "between": 0.0, "n_samples": 2000}),
}


def method_kinds() -> dict[str, str]:
    """Each registered weighting's kind: ``loss`` (weights the losses) or ``gradient``."""
    return {n: "gradient" if get_weighting_class(n).gradient else "loss"
            for n in list_weightings()}


def _methods(names: list[str] | None) -> list[str]:
    """Every registered weighting that can run here, ``equal`` first."""
    names = names or [n for n in list_weightings() if not get_weighting_class(n).missing()]
    return ["equal", *[n for n in names if n != "equal"]]


# ----------------------------------------------------------------------------- step time
def _random_tasks(n_tasks: int, shape: tuple[int, ...], rows: int) -> Any:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, *shape, generator=gen)
    targets = {f"t{i:02d}": (torch.rand(rows, generator=gen) > 0.5).float() for i in range(n_tasks)}
    return from_arrays(x, targets, seed=0, name="random")


def _step_times(method: str, space: Any, data: Any, steps: int, batch: int) -> list[float]:
    """Durations of ``steps`` training steps (after one warm-up) of hard sharing."""
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], space.num_blocks)
    marks: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = materialize(graph, space, data.tasks)
    config = TrainConfig(epochs=1, max_steps=steps + 2, batch_size=batch, device="cpu",
                         weighting=method)
    Trainer(config, on_backward=[lambda state: marks.append(time.perf_counter())]).fit(
        model, data.train)
    times = [b - a for a, b in zip(marks[1:], marks[2:])]  # from the end of the warm-up step
    assert len(times) == steps, f"{len(times)} steps timed, {steps} asked for: more rows needed"
    return times


def run_steps(args: argparse.Namespace) -> dict[str, Any]:
    """Median step ratio of every method over ``equal``, per space and task count."""
    torch.set_num_threads(1)
    methods = _methods(args.methods)
    out: dict[str, Any] = {"tasks": args.tasks, "rounds": args.rounds,
                           "steps": {n: args.steps * m for n, (_, m) in SPACES.items()},
                           "batch_size": args.batch, "methods": methods, "spaces": {}}
    for space_name, (shape, more) in SPACES.items():
        space = create_space(space_name, input_shape=shape)
        steps = args.steps * more
        per_count: dict[str, Any] = {}
        for n_tasks in args.tasks:
            data = _random_tasks(n_tasks, shape, rows=2 * args.batch * (steps + 3))
            if n_tasks == args.tasks[0]:  # once per space, untimed: imports, caches, allocator
                for m in methods:
                    _step_times(m, space, data, 1, args.batch)
            rounds: list[dict[str, float]] = []
            for r in range(args.rounds):  # methods side by side, each round in another order
                order = methods[r % len(methods):] + methods[:r % len(methods)]
                rounds.append({m: statistics.median(_step_times(m, space, data, steps,
                                                                args.batch)) for m in order})
            per_count[str(n_tasks)] = {
                "equal_ms": statistics.median(r["equal"] for r in rounds) * 1e3,
                "ms": {m: statistics.median(r[m] for r in rounds) * 1e3 for m in methods},
                "ratio": {m: statistics.median(r[m] / r["equal"] for r in rounds)
                          for m in methods},
            }
            print(f"{space_name} T={n_tasks}: equal {per_count[str(n_tasks)]['equal_ms']:.1f} ms",
                  flush=True)
        counts = [str(t) for t in args.tasks]
        growth = {m: per_count[counts[-1]]["ms"][m] / per_count[counts[0]]["ms"][m]
                  for m in methods}
        slope = {m: log_log_slope([float(t) for t in args.tasks],
                                  [per_count[c]["ms"][m] for c in counts]) for m in methods}
        out["spaces"][space_name] = {"by_tasks": per_count, "growth": growth, "slope": slope}
    return out


# ------------------------------------------------------------------------------- results
def run_results(args: argparse.Namespace) -> dict[str, Any]:
    """Δ_MTL of hard sharing trained with each method, per dataset and seed."""
    torch.set_num_threads(1)
    methods = _methods(args.methods)
    out: dict[str, Any] = {"budget": COMPARE_BUDGET, "seeds": args.seeds, "methods": methods,
                           "datasets": {}}
    for key, (dataset, space_name, kwargs) in DATASETS.items():
        runs: dict[str, dict[int, dict[str, float]]] = {m: {} for m in methods}
        for seed in args.seeds:
            data = load_dataset(dataset, seed=seed, **kwargs)
            space = create_space(space_name, input_shape=data.input_shape)
            ctx = SearchContext(data=data, space=space, seed=seed,
                                budget=TrainConfig(**COMPARE_BUDGET, device="cpu"))
            ctx.reference()
            for m in methods:
                start = time.perf_counter()
                proposal = Proposal(ctx.new_graph("hard_sharing"),
                                    train_overrides={"weighting": m})
                result = evaluate_proposal(proposal, ctx)
                runs[m][seed] = {"val": result.delta_mtl, "test": result.delta_mtl_test,
                                 "seconds": time.perf_counter() - start}
            print(f"{key} seed {seed} done", flush=True)
        rows = _rows(runs, methods)
        out["datasets"][key] = {"dataset": dataset, "space": space_name, "kwargs": kwargs,
                                "tasks": len(data.tasks), "rows": rows,
                                "runs": {m: {str(s): v for s, v in r.items()}
                                         for m, r in runs.items()}}
    return out


# ------------------------------------------------------------------------ the best tree
def _best_tree(dataset: str, space_name: str, kwargs: dict[str, Any], seed: int,
               args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The validation-best graph of an architecture-only search of the default strategy at
    ``--compute`` (equal weighting), and that trial's summary."""
    import mtlsearch

    result = mtlsearch.search(
        dataset=dataset, dataset_kwargs=kwargs, space=space_name, seed=seed,
        trials=args.trials, compute=args.compute, progress=False, pruner="none",
        objectives=("delta_mtl",), budget=TrainConfig(**COMPARE_BUDGET))
    best = result.best()
    return best.user_attrs["graph"], {"trial": best.number, "strategy": result.settings["strategy"],
                                      "val": best.user_attrs["delta_mtl"],
                                      "test": best.user_attrs["delta_mtl_test"]}


def run_tree(args: argparse.Namespace) -> dict[str, Any]:
    """Δ_MTL of the best tree an architecture-only search found, retrained with each method.

    Per seed: the default strategy searches at ``--compute`` with equal weighting; its
    validation-best graph is then trained from scratch with every method (the same seed, so
    ``equal`` reproduces the search's own training) and scored against the single-task
    networks of the same seed.
    """
    torch.set_num_threads(1)
    methods = _methods(args.methods)
    out: dict[str, Any] = {"budget": COMPARE_BUDGET, "seeds": args.seeds, "methods": methods,
                           "compute": args.compute, "trials": args.trials, "datasets": {}}
    for key, (dataset, space_name, kwargs) in DATASETS.items():
        runs: dict[str, dict[int, dict[str, float]]] = {m: {} for m in methods}
        trees: dict[str, Any] = {}
        refused: dict[str, dict[str, str]] = {}  # method -> seed -> why it cannot train the tree
        for seed in args.seeds:
            graph, found = _best_tree(dataset, space_name, kwargs, seed, args)
            data = load_dataset(dataset, seed=seed, **kwargs)
            space = create_space(space_name, input_shape=data.input_shape)
            ctx = SearchContext(data=data, space=space, seed=seed,
                                budget=TrainConfig(**COMPARE_BUDGET, device="cpu"))
            tree = SharingGraph.from_dict(graph)
            found["branches_per_depth"] = tree.branches_per_depth()
            trees[str(seed)] = found
            for m in methods:
                start = time.perf_counter()
                try:
                    result = evaluate_proposal(Proposal(tree, train_overrides={"weighting": m}),
                                               ctx)
                except TrainingError as exc:  # e.g. GradNorm on a tree with no common block
                    refused.setdefault(m, {})[str(seed)] = str(exc).split(";")[0]
                    continue
                runs[m][seed] = {"val": result.delta_mtl, "test": result.delta_mtl_test,
                                 "seconds": time.perf_counter() - start}
            print(f"{key} seed {seed}: tree {found['branches_per_depth']} done", flush=True)
        ran = [m for m in methods if m not in refused]
        out["datasets"][key] = {"dataset": dataset, "space": space_name, "kwargs": kwargs,
                                "tasks": len(data.tasks), "trees": trees, "refused": refused,
                                "rows": _rows(runs, ran),
                                "runs": {m: {str(s): v for s, v in r.items()}
                                         for m, r in runs.items()}}
    return out


def _rows(runs: dict[str, dict[int, dict[str, float]]], methods: list[str]) -> dict[str, Any]:
    """Per method: Δ_MTL mean ± std over the seeds, and test paired per seed with equal."""
    rows = {}
    for m in methods:
        test = {s: v["test"] for s, v in runs[m].items()}
        rows[m] = {
            "val": mean_std([v["val"] for v in runs[m].values()]),
            "test": mean_std(list(test.values())),
            "seconds": statistics.fmean(v["seconds"] for v in runs[m].values()),
            "vs_equal": paired_difference(test, {s: v["test"] for s, v in
                                                 runs["equal"].items()}).to_dict(),
        }
    return rows


# -------------------------------------------------------------------------- joint search
def run_joint(args: argparse.Namespace) -> dict[str, Any]:
    """Joint (architecture + weighting) search against architecture-only, equal compute.

    Needs ``mtlsearch.search(..., weighting=...)``; until the runner takes it this says so.
    """
    import mtlsearch

    torch.set_num_threads(1)
    if "weighting" not in inspect.signature(mtlsearch.search).parameters:
        raise SystemExit("mtlsearch.search() has no weighting= argument yet: the joint search "
                         "needs the runner integration (mtlsearch/study/weighting_search.py)")
    out: dict[str, Any] = {"compute": args.compute, "seeds": args.seeds, "datasets": {}}
    for key, (dataset, space_name, kwargs) in DATASETS.items():
        best: dict[str, dict[int, float]] = {"architecture": {}, "joint": {}}
        for seed in args.seeds:
            for label, weighting in (("architecture", None), ("joint", "auto")):
                result = mtlsearch.search(
                    dataset=dataset, dataset_kwargs=kwargs, space=space_name, seed=seed,
                    trials=args.trials, compute=args.compute, progress=False, pruner="none",
                    objectives=("delta_mtl",), budget=TrainConfig(**COMPARE_BUDGET),
                    weighting=weighting)
                best[label][seed] = float(result.best().user_attrs["delta_mtl_test"])
        out["datasets"][key] = {
            "joint": mean_std(list(best["joint"].values())),
            "architecture": mean_std(list(best["architecture"].values())),
            "joint_vs_architecture": paired_difference(best["joint"],
                                                       best["architecture"]).to_dict(),
            "runs": {k: {str(s): v for s, v in r.items()} for k, r in best.items()},
        }
        print(key, out["datasets"][key]["joint_vs_architecture"], flush=True)
    return out


# ----------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The script's options (run_all.py's declaration is checked against them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=["steps", "results", "tree", "all"],
                        default="all")
    parser.add_argument("--joint", action="store_true",
                        help="the joint search against architecture-only (needs the runner's "
                             "weighting= argument)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[6, 40])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method and round")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=None, help="default: all that run here")
    parser.add_argument("--trials", type=int, default=12, help="--joint, tree: most trials per search")
    parser.add_argument("--compute", default="6x", help="--joint, tree: compute per search")
    parser.add_argument("--json", default=None, help="write every number to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.getLogger("mtlsearch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*not DPP.*")  # cvxpy, inside Nash-MTL
    started = time.process_time()
    report: dict[str, Any] = {"machine": machine_info("cpu"), "kinds": method_kinds(),
                              "command": "python benchmarks/bench_weighting.py "
                                         + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.joint:
        report["joint"] = run_joint(args)
    else:
        if args.part in ("steps", "all"):
            report["steps"] = run_steps(args)
            print(steps_markdown(report["steps"], report["kinds"]))
        if args.part in ("results", "all"):
            report["results"] = run_results(args)
            print(results_markdown(report["results"]))
        if args.part in ("tree", "all"):
            report["tree"] = run_tree(args)
            print(results_markdown(report["tree"], "the best tree found"))
    report["cpu_seconds"] = time.process_time() - started
    print(f"CPU time: {report['cpu_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(json_ready(report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
