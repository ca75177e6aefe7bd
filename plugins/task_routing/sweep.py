"""The σ sweep: train task routing at each sharing ratio over several seeds and plot each task's
metric against σ (the paper's Figure 5).

Each (σ, seed) run uses ``seed`` for the weights, the shuffling, the active-task draws and the
masks, so the runs of one seed differ only in σ.

Example:
    >>> result = sigma_sweep("multi_digits", seeds=(0, 1, 2), plot="sweep")  # doctest: +SKIP
    >>> print(result.table("accuracy"))  # doctest: +SKIP

Command line::

    python -m mtlsearch.plugins.task_routing.sweep --dataset multi_digits --seeds 0 1 2 --plot sweep
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.context import SearchContext
from mtlsearch.data import DatasetSplits
from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import create_space, load_dataset
from mtlsearch.spaces import SearchSpace
from mtlsearch.train import TrainConfig

from .evaluation import DEFAULT_MAX_BYTES, evaluate_routed
from .masks import SCHEMES, check_sigma
from .strategy import routed_graph

__all__ = ["PAPER_SIGMAS", "SweepResult", "sigma_sweep", "plot_sigma_sweep", "main"]

#: The paper's grid of sharing ratios.
PAPER_SIGMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


@dataclass
class SweepResult:
    """Per-σ, per-seed, per-task metrics of a sweep.

    Attributes:
        sigmas: The sharing ratios, in order.
        seeds: The seeds.
        tasks: Task names.
        split: The split the metrics were measured on.
        runs: One ``{"sigma", "seed", "metrics": {task: {metric: value}}}`` per run.
        settings: What produced it (dataset, space, scheme, budget).
    """

    sigmas: list[float]
    seeds: list[int]
    tasks: list[str]
    split: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def values(self, metric: str, sigma: float, task: str | None = None) -> list[float]:
        """``metric`` per seed at ``sigma``: of ``task``, or the mean over tasks."""
        out = []
        for run in self.runs:
            if run["sigma"] != sigma:
                continue
            per_task = {t: m[metric] for t, m in run["metrics"].items() if metric in m}
            if not per_task:
                raise MTLSearchError(f"metric {metric!r} was not measured; have {self.metric_names()}")
            out.append(per_task[task] if task is not None else float(np.mean(list(per_task.values()))))
        return out

    def metric_names(self) -> list[str]:
        names = {m for run in self.runs for v in run["metrics"].values() for m in v}
        return sorted(names - {"loss"})

    def per_task(self, metric: str = "accuracy") -> dict[float, dict[str, tuple[float, float]]]:
        """``{sigma: {task: (mean, std over seeds)}}``."""
        return {s: {t: _mean_std(self.values(metric, s, t)) for t in self.tasks} for s in self.sigmas}

    def overall(self, metric: str = "accuracy") -> dict[float, tuple[float, float]]:
        """``{sigma: (mean, std over seeds of the task-mean)}``."""
        return {s: _mean_std(self.values(metric, s)) for s in self.sigmas}

    def best_sigma(self, metric: str = "accuracy") -> float:
        """The σ with the highest mean task-mean ``metric``."""
        overall = self.overall(metric)
        return max(self.sigmas, key=lambda s: overall[s][0])

    def table(self, metric: str = "accuracy", *, scale: float = 100.0) -> str:
        """A Markdown table: one row per σ, the task-mean and each task, ``mean ± std``."""
        head = ["σ", "mean", *self.tasks]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        per_task, overall = self.per_task(metric), self.overall(metric)
        for s in self.sigmas:
            cells = [f"{s:g}", _pm(overall[s], scale)] + [_pm(per_task[s][t], scale) for t in self.tasks]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sigmas": self.sigmas,
            "seeds": self.seeds,
            "tasks": self.tasks,
            "split": self.split,
            "runs": self.runs,
            "settings": self.settings,
        }


def _pm(pair: tuple[float, float], scale: float) -> str:
    return f"{pair[0] * scale:.1f} ± {pair[1] * scale:.1f}"


def _context(
    dataset: str | DatasetSplits,
    space: str | SearchSpace,
    dataset_kwargs: Mapping[str, Any] | None,
    space_kwargs: Mapping[str, Any] | None,
    budget: TrainConfig,
) -> SearchContext:
    data = load_dataset(dataset, **dict(dataset_kwargs or {})) if isinstance(dataset, str) else dataset
    if isinstance(space, str):
        kwargs = dict(space_kwargs or {})
        kwargs.setdefault("input_shape", tuple(data.input_shape))
        space = create_space(space, **kwargs)
    return SearchContext(data=data, space=space, budget=budget, seed=budget.seed)


def sigma_sweep(
    dataset: str | DatasetSplits = "multi_digits",
    *,
    space: str | SearchSpace = "small_cnn",
    sigmas: Sequence[float] = PAPER_SIGMAS,
    seeds: Sequence[int] = (0, 1, 2),
    scheme: str = "paper",
    budget: TrainConfig | None = None,
    task_sampling: str = "one",
    split: str = "test",
    dataset_kwargs: Mapping[str, Any] | None = None,
    space_kwargs: Mapping[str, Any] | None = None,
    max_eval_bytes: int = DEFAULT_MAX_BYTES,
    plot: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train task routing at every ``sigma`` for every seed; per-task metrics on ``split``.

    Args:
        dataset: A registered dataset name (options in ``dataset_kwargs``) or loaded splits.
        space: A registered space name (options in ``space_kwargs``; ``input_shape`` defaults
            to the dataset's) or a space.
        sigmas: Sharing ratios (default: the paper's 0, 0.2, ..., 1).
        seeds: Seeds; each seeds weights, data order, active tasks and masks.
        scheme: Mask scheme, ``"paper"`` or ``"official"``.
        budget: Training settings (default ``TrainConfig()``); its seed is replaced per run.
        task_sampling: ``"one"`` active task per batch (Algorithm 1) or ``"all"``.
        split: ``"val"`` or ``"test"``.
        max_eval_bytes: Memory budget of one batched evaluation pass.
        plot: Save the Figure-5 style plot to ``<plot>.png`` and ``.svg``.
        progress: Called with one line per finished run.

    Returns:
        A :class:`SweepResult`.

    Raises:
        MTLSearchError: a sigma outside [0, 1], no seed, an unknown scheme or split.

    Example:
        >>> r = sigma_sweep("synthetic", space="mlp", sigmas=(0, 1), seeds=(0, 1),
        ...                 budget=TrainConfig(epochs=1), dataset_kwargs={"n_samples": 300})
        >>> sorted(r.overall())
        [0.0, 1.0]
    """
    sigma_list = [check_sigma(s) for s in sigmas]
    if not sigma_list or not list(seeds):
        raise MTLSearchError("a sweep needs at least one sigma and one seed")
    if scheme not in SCHEMES:
        raise MTLSearchError(f"unknown mask scheme {scheme!r}; choose one of {list(SCHEMES)}")
    if split not in ("val", "test"):
        raise MTLSearchError(f"split must be 'val' or 'test', got {split!r}")
    budget = (budget or TrainConfig()).replace(task_sampling=task_sampling)
    ctx = _context(dataset, space, dataset_kwargs, space_kwargs, budget)
    result = SweepResult(
        sigma_list,
        [int(s) for s in seeds],
        ctx.task_names,
        split,
        settings={
            "dataset": ctx.data.name,
            "space": ctx.space.spec(),
            "scheme": scheme,
            "budget": budget.to_dict(),
        },
    )
    for seed in result.seeds:
        run_ctx = SearchContext(data=ctx.data, space=ctx.space, budget=budget, seed=seed)
        for sigma in sigma_list:
            graph = routed_graph(run_ctx.new_graph("hard_sharing"), ctx.space, sigma=sigma, seed=seed, scheme=scheme)
            trained = run_ctx.train(graph)
            metrics = evaluate_routed(
                trained.model, getattr(ctx.data, split), batch_size=budget.eval_batch_size,
                max_bytes=max_eval_bytes,
            )
            result.runs.append({"sigma": sigma, "seed": seed, "metrics": metrics})
            if progress is not None:
                mean = np.mean([m["accuracy"] for m in metrics.values() if "accuracy" in m] or [math.nan])
                progress(f"sigma={sigma:g} seed={seed}: mean accuracy {mean:.4f} ({trained.seconds:.1f}s)")
    if plot is not None:
        plot_sigma_sweep(result, plot)
    return result


def plot_sigma_sweep(
    result: SweepResult,
    path: str | Path | None = None,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Each task's metric against σ, one panel per metric (the paper's Figure 5).

    Thin lines are tasks (mean over seeds), the thick black line the task mean with its
    standard deviation over seeds as a band.

    Returns:
        The matplotlib figure (saved as ``<path>.png`` and ``.svg`` when ``path`` is given).
    """
    from matplotlib.figure import Figure

    from mtlsearch.viz import _palette
    from mtlsearch.viz import save_figure as _save

    names = [m for m in (metrics or ("accuracy", "precision", "recall")) if m in result.metric_names()]
    if not names:
        raise MTLSearchError(f"none of the metrics {metrics} were measured; have {result.metric_names()}")
    fig = Figure(figsize=(4.2 * len(names), 3.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colors = _palette(len(result.tasks))
    xs = result.sigmas
    for ax, metric in zip(axes, names):
        per_task = result.per_task(metric)
        for color, task in zip(colors, result.tasks):
            ys = [per_task[s][task][0] * 100 for s in xs]
            ax.plot(xs, ys, "o-", color=color, lw=1, ms=3, alpha=0.85, label=task)
        overall = result.overall(metric)
        mean = np.array([overall[s][0] for s in xs]) * 100
        std = np.array([overall[s][1] for s in xs]) * 100
        ax.plot(xs, mean, "s-", color="black", lw=2.2, ms=5, label="task mean")
        ax.fill_between(xs, mean - std, mean + std, color="black", alpha=0.12, lw=0)
        ax.set_xlabel("sharing ratio σ")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_xticks(xs)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(labels) <= 16:
        fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(
        title
        or f"Task routing on {result.settings.get('dataset', '?')}: {result.split} metrics vs σ "
        f"({len(result.seeds)} seeds, {result.settings.get('scheme', 'paper')} masks)"
    )
    if path is not None:
        _save(fig, path)
    return fig


def _options(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MTLSearchError(f"{what} option {item!r} must look like key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """The sweep's command-line parser (reusable by a ``mtlsearch sweep`` subcommand)."""
    p = argparse.ArgumentParser(
        prog="python -m mtlsearch.plugins.task_routing.sweep",
        description="Train task routing at each sharing ratio sigma over several seeds; print "
        "per-task metrics (mean ± std) and plot each task's metric against sigma.",
    )
    p.add_argument("--dataset", default="multi_digits", help="registered dataset (default: multi_digits)")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    p.add_argument("--space", default="small_cnn", help="registered search space (default: small_cnn)")
    p.add_argument("--space-option", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(PAPER_SIGMAS), help="sharing ratios")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--scheme", choices=SCHEMES, default="paper", help="mask scheme")
    p.add_argument("--task-sampling", choices=("one", "all"), default="one", help="active tasks per batch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--metric", default="accuracy", help="metric of the printed table")
    p.add_argument("--plot", metavar="STEM", help="save the plot as STEM.png and STEM.svg")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep from the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        budget = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer
        )
        result = sigma_sweep(
            args.dataset,
            space=args.space,
            sigmas=args.sigmas,
            seeds=args.seeds,
            scheme=args.scheme,
            budget=budget,
            task_sampling=args.task_sampling,
            split=args.split,
            dataset_kwargs=_options(args.dataset_option, "dataset"),
            space_kwargs=_options(args.space_option, "space"),
            plot=args.plot,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except MTLSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.table(args.metric))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
