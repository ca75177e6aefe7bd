"""The σ sweep: train task routing at each sharing ratio over several seeds, choose σ on the
validation split and report the test split for the chosen σ only (the paper's Figure 5 plots
each task's validation metric against σ).

Each (σ, seed) run uses ``seed`` for the weights, the shuffling, the active-task draws and the
masks, so the runs of one seed differ only in σ. Every run is measured on the validation split;
once all runs are done the σ with the best mean validation metric is chosen and only its
models are evaluated on the test split, so the test split never takes part in the choice.

Example:
    >>> result = sigma_sweep("multi_digits", seeds=(0, 1, 2), plot="sweep")  # doctest: +SKIP
    >>> print(result.table("accuracy"))  # validation, every σ  # doctest: +SKIP
    >>> result.chosen_sigma, result.test_overall()  # test, the chosen σ only  # doctest: +SKIP

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
import torch

from mtlsearch.data.dataset import DatasetSplits
from mtlsearch.engine.model import materialize
from mtlsearch.engine.scoring import delta_mtl, metric_directions
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.graph.space import SearchSpace
from mtlsearch.registry import create_space, load_dataset
from mtlsearch.stats import mean_std as _mean_std
from mtlsearch.strategy.context import SearchContext

from .evaluation import DEFAULT_MAX_BYTES, evaluate_routed
from .masks import SCHEMES, check_sigma
from .norms import recalibrate_norms
from .strategy import TASK_NORMS, routed_graph

__all__ = ["PAPER_SIGMAS", "SweepResult", "sigma_sweep", "plot_sigma_sweep", "main"]

#: The paper's grid of sharing ratios.
PAPER_SIGMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: The pseudo-metric of a run's Δ_MTL against the single-task networks of its seed (percent).
DELTA = "delta_mtl"


@dataclass
class SweepResult:
    """Per-σ, per-seed, per-task validation metrics of a sweep, and the chosen σ's test metrics.

    Attributes:
        sigmas: The sharing ratios, in order.
        seeds: The seeds.
        tasks: Task names.
        split: The split of :attr:`runs` (always ``"val"``: σ is chosen on it).
        runs: One ``{"sigma", "seed", "metrics": {task: {metric: value}}}`` per run
            (validation; with ``"delta_mtl"`` when the sweep computed Δ_MTL).
        settings: What produced it (dataset, space, scheme, budget, selection metric).
        chosen_sigma: The σ with the best mean validation ``settings["select"]`` metric.
        test_runs: The chosen σ's runs on the test split, in the same form as :attr:`runs`
            (the only test figures a sweep measures).
    """

    sigmas: list[float]
    seeds: list[int]
    tasks: list[str]
    split: str = "val"
    runs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    chosen_sigma: float | None = None
    test_runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, metric: str, sigma: float, task: str | None = None) -> list[float]:
        """Validation ``metric`` per seed at ``sigma``: of ``task``, or the mean over tasks
        (``"delta_mtl"``: the run's Δ_MTL, or the task's Δ with ``task``)."""
        return _values(self.runs, metric, sigma, task, self.metric_names())

    def metric_names(self) -> list[str]:
        return _metric_names(self.runs)

    def per_task(self, metric: str = "accuracy") -> dict[float, dict[str, tuple[float, float]]]:
        """``{sigma: {task: (mean, std over seeds)}}`` on the validation split."""
        return {s: {t: _mean_std(self.values(metric, s, t)) for t in self.tasks} for s in self.sigmas}

    def overall(self, metric: str = "accuracy") -> dict[float, tuple[float, float]]:
        """``{sigma: (mean, std over seeds of the task-mean)}`` on the validation split."""
        return {s: _mean_std(self.values(metric, s)) for s in self.sigmas}

    def best_sigma(self, metric: str = "accuracy", *, higher: bool = True) -> float:
        """The σ with the best mean validation ``metric``: highest (``higher``) or lowest
        (the first of equal ones)."""
        overall = self.overall(metric)
        sign = 1.0 if higher else -1.0
        return max(self.sigmas, key=lambda s: sign * overall[s][0])

    def test_per_task(self, metric: str = "accuracy") -> dict[str, tuple[float, float]]:
        """``{task: (mean, std over seeds)}`` on the test split at :attr:`chosen_sigma`."""
        sigma = self._chosen()
        return {t: _mean_std(_values(self.test_runs, metric, sigma, t, _metric_names(self.test_runs)))
                for t in self.tasks}

    def test_overall(self, metric: str = "accuracy") -> tuple[float, float]:
        """``(mean, std over seeds)`` of the task-mean test ``metric`` at :attr:`chosen_sigma`."""
        sigma = self._chosen()
        return _mean_std(_values(self.test_runs, metric, sigma, None, _metric_names(self.test_runs)))

    def _chosen(self) -> float:
        if self.chosen_sigma is None or not self.test_runs:
            raise MTLSearchError("this sweep has no chosen sigma with test metrics")
        return self.chosen_sigma

    def table(self, metric: str = "accuracy", *, scale: float | None = None) -> str:
        """A Markdown table of validation figures: one row per σ, the task-mean and each task,
        ``mean ± std`` (``scale`` 100 for metrics, 1 for Δ_MTL, which is in percent)."""
        scale = (1.0 if metric == DELTA else 100.0) if scale is None else scale
        head = ["σ", "mean", *self.tasks]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        per_task, overall = self.per_task(metric), self.overall(metric)
        for s in self.sigmas:
            mark = " (chosen)" if s == self.chosen_sigma else ""
            cells = [f"{s:g}{mark}", _pm(overall[s], scale)] + [_pm(per_task[s][t], scale) for t in self.tasks]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def test_table(self, metric: str = "accuracy", *, scale: float | None = None) -> str:
        """One Markdown row of test figures for the chosen σ (the only test figures)."""
        scale = (1.0 if metric == DELTA else 100.0) if scale is None else scale
        head = ["σ", "mean", *self.tasks]
        per_task = self.test_per_task(metric)
        cells = [f"{self._chosen():g}", _pm(self.test_overall(metric), scale)]
        cells += [_pm(per_task[t], scale) for t in self.tasks]
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                          "| " + " | ".join(cells) + " |"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "sigmas": self.sigmas,
            "seeds": self.seeds,
            "tasks": self.tasks,
            "split": self.split,
            "runs": self.runs,
            "settings": self.settings,
            "chosen_sigma": self.chosen_sigma,
            "test_runs": self.test_runs,
        }


def _metric_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    names = {m for run in runs for v in run["metrics"].values() for m in v}
    if any(DELTA in run for run in runs):
        names.add(DELTA)
    return sorted(names - {"loss"})


def _values(runs: Sequence[Mapping[str, Any]], metric: str, sigma: float, task: str | None,
            known: list[str]) -> list[float]:
    out = []
    for run in runs:
        if run["sigma"] != sigma:
            continue
        if metric == DELTA:
            if DELTA not in run:
                raise MTLSearchError(f"metric {metric!r} was not measured; have {known}")
            out.append(run[DELTA]["overall"] if task is None else run[DELTA]["per_task"][task])
            continue
        per_task = {t: m[metric] for t, m in run["metrics"].items() if metric in m}
        if not per_task:
            raise MTLSearchError(f"metric {metric!r} was not measured; have {known}")
        out.append(per_task[task] if task is not None else float(np.mean(list(per_task.values()))))
    return out


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
    update_parity: bool | None = None,
    task_norm: str = "task",
    recalibrate: bool = True,
    select: str = "accuracy",
    dataset_kwargs: Mapping[str, Any] | None = None,
    space_kwargs: Mapping[str, Any] | None = None,
    max_eval_bytes: int = DEFAULT_MAX_BYTES,
    plot: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train task routing at every ``sigma`` for every seed; choose σ on the validation split.

    Every run is evaluated on the validation split. The chosen σ is the one whose task-mean
    validation ``select`` metric, averaged over seeds, is highest; only its runs are then
    evaluated on the test split (their weights are kept on the CPU until then).

    Args:
        dataset: A registered dataset name (options in ``dataset_kwargs``) or loaded splits.
        space: A registered space name (options in ``space_kwargs``; ``input_shape`` defaults
            to the dataset's) or a space.
        sigmas: Sharing ratios (default: the paper's 0, 0.2, ..., 1).
        seeds: Seeds; each seeds weights, data order, active tasks and masks.
        scheme: Mask scheme, ``"paper"`` or ``"official"``.
        budget: Training settings (default ``TrainConfig()``); its seed is replaced per run.
        task_sampling: ``"one"`` active task per batch (Algorithm 1) or ``"all"``.
        update_parity: Override the budget's ``update_parity`` (``None``: keep it; the
            default budget has it on); ``False`` is the paper's code (one pass per epoch).
        task_norm: ``"task"`` (per-task batch-norm statistics) or ``"shared"`` (the paper's).
        recalibrate: After training, set the batch-norm statistics to the training split's
            (:func:`~.norms.recalibrate_norms`); ``False`` keeps the moving averages.
        select: The validation metric that chooses σ: a task metric (``"accuracy"``, mean
            over tasks) or ``"delta_mtl"`` (Δ_MTL against single-task networks trained with
            the same budget and seed, one per seed).
        max_eval_bytes: Memory budget of one batched evaluation pass.
        plot: Save the Figure-5 style plot (validation) to ``<plot>.png`` and ``.svg``.
        progress: Called with one line per finished run.

    Returns:
        A :class:`SweepResult`.

    Raises:
        MTLSearchError: a sigma outside [0, 1], no seed, an unknown scheme or task_norm, or a
            ``select`` metric the tasks do not have.

    Example:
        >>> r = sigma_sweep("synthetic", space="mlp", sigmas=(0, 1), seeds=(0, 1),
        ...                 budget=TrainConfig(epochs=1), dataset_kwargs={"n_samples": 300})
        >>> sorted(r.overall()), r.chosen_sigma in (0.0, 1.0)
        ([0.0, 1.0], True)
    """
    sigma_list = [check_sigma(s) for s in sigmas]
    if not sigma_list or not list(seeds):
        raise MTLSearchError("a sweep needs at least one sigma and one seed")
    if scheme not in SCHEMES:
        raise MTLSearchError(f"unknown mask scheme {scheme!r}; choose one of {list(SCHEMES)}")
    if task_norm not in TASK_NORMS:
        raise MTLSearchError(f"task_norm must be one of {list(TASK_NORMS)}, got {task_norm!r}")
    budget = (budget or TrainConfig()).replace(task_sampling=task_sampling)
    if update_parity is not None:
        budget = budget.replace(update_parity=bool(update_parity))
    ctx = _context(dataset, space, dataset_kwargs, space_kwargs, budget)
    higher = _direction(select, ctx)
    result = SweepResult(
        sigma_list,
        [int(s) for s in seeds],
        ctx.task_names,
        "val",
        settings={
            "dataset": ctx.data.name,
            "space": ctx.space.spec(),
            "scheme": scheme,
            "task_norm": task_norm,
            "recalibrate": bool(recalibrate),
            "select": select,
            "budget": budget.to_dict(),
        },
    )
    kept: dict[tuple[float, int], tuple[Any, dict[str, Any]]] = {}
    references: dict[int, dict[str, Any]] = {}
    for seed in result.seeds:
        run_ctx = SearchContext(data=ctx.data, space=ctx.space, budget=budget, seed=seed)
        if select == DELTA:
            references[seed] = run_ctx.reference()
        for sigma in sigma_list:
            graph = routed_graph(run_ctx.new_graph("hard_sharing"), ctx.space, sigma=sigma, seed=seed,
                                 scheme=scheme, task_norm=task_norm)
            trained = run_ctx.train(graph)
            if recalibrate:  # the training split only
                recalibrate_norms(trained.model, ctx.data.train, batch_size=budget.eval_batch_size)
            run = _measure(trained.model, ctx, "val", sigma, seed, references.get(seed), budget, max_eval_bytes)
            result.runs.append(run)
            state = {k: v.detach().to("cpu", copy=True) for k, v in trained.model.state_dict().items()}
            kept[(sigma, seed)] = (trained.model.graph, state)
            if progress is not None:
                progress(f"sigma={sigma:g} seed={seed}: val {_line(run, select)} ({trained.seconds:.1f}s)")
    result.chosen_sigma = result.best_sigma(select, higher=higher)
    for seed in result.seeds:  # the test split is read here only, for the chosen sigma
        graph, state = kept.pop((result.chosen_sigma, seed))
        with torch.random.fork_rng(devices=[]):
            model = materialize(graph, ctx.space, ctx.tasks)
        model.load_state_dict(state)
        result.test_runs.append(
            _measure(model, ctx, "test", result.chosen_sigma, seed, references.get(seed), budget, max_eval_bytes)
        )
    if progress is not None:
        progress(f"chosen sigma={result.chosen_sigma:g} (best mean val {select}); test "
                 f"{select} {result.test_overall(select)[0] * (1 if select == DELTA else 100):.2f}")
    if plot is not None:
        plot_sigma_sweep(result, plot)
    return result


def _direction(select: str, ctx: SearchContext) -> bool:
    """Whether a higher ``select`` is better; refuses a metric no task measures, before training."""
    if select == DELTA:
        return True
    # evaluate_routed adds precision and recall to binary tasks (the paper's metrics)
    directions = [{**metric_directions(spec), **({"precision": True, "recall": True}
                                                 if spec.kind == "binary" else {})}
                  for spec in ctx.tasks]
    known = [d[select] for d in directions if select in d]
    if not known:
        names = sorted({m for d in directions for m in d} | {DELTA})
        raise MTLSearchError(f"cannot choose sigma by {select!r}: the tasks measure {names}")
    if len(set(known)) > 1:
        raise MTLSearchError(f"{select!r} is better high for some tasks and low for others; "
                             f"choose by {DELTA!r}")
    return known[0]


def _measure(model: Any, ctx: SearchContext, split: str, sigma: float, seed: int,
             reference: Mapping[str, Any] | None, budget: TrainConfig, max_bytes: int) -> dict[str, Any]:
    metrics = evaluate_routed(model, getattr(ctx.data, split), batch_size=budget.eval_batch_size,
                              max_bytes=max_bytes)
    run: dict[str, Any] = {"sigma": sigma, "seed": seed, "metrics": metrics}
    if reference is not None:
        delta = delta_mtl(metrics, reference[split], ctx.tasks)
        run[DELTA] = {"overall": delta.overall, "per_task": dict(delta.per_task)}
    return run


def _line(run: Mapping[str, Any], select: str) -> str:
    if select == DELTA:
        return f"delta_mtl {run[DELTA]['overall']:+.2f}"
    values = [m[select] for m in run["metrics"].values() if select in m]
    return f"mean {select} {np.mean(values) if values else math.nan:.4f}"


def plot_sigma_sweep(
    result: SweepResult,
    path: str | Path | None = None,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Each task's validation metric against σ, one panel per metric (the paper's Figure 5).

    Thin lines are tasks (mean over seeds), the thick black line the task mean with its
    standard deviation over seeds as a band, the dotted line the chosen σ.

    Returns:
        The matplotlib figure (saved as ``<path>.png`` and ``.svg`` when ``path`` is given).
    """
    from matplotlib.figure import Figure

    from mtlsearch.viz import palette as _palette
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
        if result.chosen_sigma is not None:
            ax.axvline(result.chosen_sigma, color="black", ls=":", lw=1)
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
        description="Train task routing at each sharing ratio sigma over several seeds; choose sigma "
        "on the validation split, print per-task validation metrics (mean ± std) for every sigma "
        "and test metrics for the chosen sigma only, and plot each task's metric against sigma.",
    )
    p.add_argument("--dataset", default="multi_digits", help="registered dataset (default: multi_digits)")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    p.add_argument("--space", default="small_cnn", help="registered search space (default: small_cnn)")
    p.add_argument("--space-option", action="append", metavar="KEY=VALUE", help="space option (repeatable)")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(PAPER_SIGMAS), help="sharing ratios")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--scheme", choices=SCHEMES, default="paper", help="mask scheme")
    p.add_argument("--task-sampling", choices=("one", "all"), default="one", help="active tasks per batch")
    p.add_argument("--no-update-parity", dest="update_parity", action="store_false",
                   help="one pass over the data per epoch under one-task sampling (the paper's code; "
                   "default: T passes, as many updates per task as all-task training)")
    p.add_argument("--no-recalibrate", dest="recalibrate", action="store_false",
                   help="keep the batch norms' moving averages (default: recompute them on the "
                   "training split after training)")
    p.add_argument("--task-norm", choices=TASK_NORMS, default="task",
                   help="batch-norm statistics per task (default) or shared by all tasks (the paper's code)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    p.add_argument("--select", default="accuracy",
                   help="validation metric that chooses sigma: a task metric (mean over tasks) or "
                   "delta_mtl (trains one single-task reference per seed); default accuracy")
    p.add_argument("--metric", default=None, help="metric of the printed tables (default: --select)")
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
            update_parity=args.update_parity,
            task_norm=args.task_norm,
            recalibrate=args.recalibrate,
            select=args.select,
            dataset_kwargs=_options(args.dataset_option, "dataset"),
            space_kwargs=_options(args.space_option, "space"),
            plot=args.plot,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except MTLSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metric = args.metric or args.select
    try:
        print(f"validation {metric}, every sigma (mean ± std over seeds):")
        print(result.table(metric))
        print(f"\ntest {metric} at the chosen sigma {result.chosen_sigma:g} "
              f"(best mean validation {args.select}; the test split chose nothing):")
        print(result.test_table(metric))
    except MTLSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
