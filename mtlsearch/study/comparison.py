"""Compare strategies: one search per (strategy, seed), a leaderboard and a report folder.

Every strategy searches the same data, space and budget; for each seed the best trial (by
validation Δ_MTL) is kept, and strategies are ranked by its mean over seeds. The single-task
reference of a seed is trained once and shared by every strategy (one result cache). The
data split stays the same for every seed: seeds vary weights, shuffling and sampling.

Example:
    >>> board = compare(strategies=["hard_sharing", "random_tree"], seeds=(0, 1), trials=2,
    ...                 out="runs/compare")  # doctest: +SKIP
    >>> board.rows[0]["strategy"]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlsearch.console import make_console  # off a terminal: as wide as the table
from mtlsearch.defaults import DEFAULT_COMPUTE, DEFAULT_EPOCHS, DEFAULT_SEEDS, DEFAULT_TRIALS
from mtlsearch.engine.compute import compute_unit, parse_compute
from mtlsearch.engine.scoring import metric_directions
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import get_strategy_class, list_strategies, load_dataset, paired_baseline
from mtlsearch.stats import PairedDifference, paired_difference
from mtlsearch.stats import mean_std as _mean_std
from mtlsearch.strategy.context import ResultCache
from mtlsearch.study.runner import search
from mtlsearch.study.samplers import sampler_setting
from mtlsearch.study.trials import best_trial, complete_trials
from mtlsearch.study.weighting_search import requested_weightings

__all__ = [
    "Leaderboard",
    "compare",
    "DEFAULT_EPOCHS",
    "DEFAULT_TRIALS",
    "DEFAULT_SEEDS",
    "DEFAULT_COMPUTE",
    "compute_unit",
    "parse_compute",
    "quick_settings",
]

log = logging.getLogger(__name__)



def quick_settings(name: str) -> dict[str, Any]:
    """What compare passes to the strategy ``name`` unless ``strategy_kwargs`` names it: its
    class's :attr:`~mtlsearch.strategy.base.Strategy.quick_settings` (strategies whose full
    method trains many networks per trial declare some, so a comparison ends in minutes)."""
    return dict(getattr(get_strategy_class(name), "quick_settings", None) or {})


def __getattr__(name: str) -> Any:
    # QUICK_STRATEGY_KWARGS, the table this replaced: now read from the registered classes
    if name == "QUICK_STRATEGY_KWARGS":
        return {n: quick_settings(n) for n in list_strategies() if quick_settings(n)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pm(pair: tuple[float, float] | None, digits: int = 2, sign: str = "+") -> str:
    if pair is None or pair[0] != pair[0]:
        return "-"
    return f"{pair[0]:{sign}.{digits}f} ± {pair[1]:.{digits}f}"


@dataclass
class Leaderboard:
    """The result of :func:`compare`.

    Attributes:
        rows: One dict per strategy, best mean validation Δ_MTL first: ``delta_mtl`` and
            ``delta_mtl_test`` as ``(mean, std)``, ``params``, ``macs``, ``search_seconds``
            (means over seeds), ``task_metrics`` ``{split: {task: {metric: (mean, std)}}}``.
        runs: One dict per (strategy, seed): its best trial.
        points: Every complete trial (``delta_mtl``, ``params``, ``label``...) for the Pareto plot.
        settings: What was compared.
        folder: The report folder.
    """

    rows: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    points: list[dict[str, Any]]
    settings: dict[str, Any]
    folder: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (as written to ``leaderboard.json``)."""
        return {"settings": self.settings, "leaderboard": self.rows, "runs": self.runs,
                "points": self.points, "files": self.files}

    def table(self) -> Table:
        """The leaderboard as a :class:`rich.table.Table`."""
        seeds = len(self.settings.get("seeds", []))
        table = Table(title=f"Leaderboard ({seeds} seeds, mean ± std)")
        for name, justify in (("#", "right"), ("strategy", "left"), ("Δ_MTL val %", "right"),
                              ("Δ_MTL test %", "right"), ("params", "right"), ("MACs", "right"),
                              ("trials", "right"), ("compute", "right"), ("search s", "right"),
                              ("runs", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        unit = self.settings.get("compute_unit_macs")
        baseline = self.settings.get("paired_baseline")
        if baseline:
            table.add_column(f"test vs {baseline}\n(paired, wins)", justify="right")
        for i, r in enumerate(self.rows, 1):
            table.add_row(str(i), r["strategy"], _pm(r["delta_mtl"]), _pm(r["delta_mtl_test"]),
                          _count(r["params"]), _count(r["macs"]), _trials(r),
                          _compute(r.get("compute_macs"), unit),
                          "-" if r["search_seconds"] is None else f"{r['search_seconds']:.1f}",
                          f"{r['n_runs']}/{seeds}", *([_paired_text(r)] if baseline else []))
        return table

    def print(self, console: Console | None = None) -> None:
        """Print the table (stdout by default)."""
        (console or make_console()).print(self.table())

    def to_markdown(self) -> str:
        """``report.md``: settings, the leaderboard, per-task metrics and the pictures."""
        s = self.settings
        budget = s.get("budget", {})
        lines = [
            "# mtlsearch comparison", "",
            f"Dataset `{s['dataset']}`, space `{s['space']}`, seeds {s['seeds']}, "
            f"{s['trials']} trials per search, {budget.get('epochs')} epochs, batch "
            f"{budget.get('batch_size')}, lr {budget.get('lr')}. Δ_MTL is the mean relative "
            "gain over single-task networks (percent, higher is better); each seed keeps the "
            "trial with the best validation Δ_MTL (the test split never chooses).", "",
            _compute_sentence(s), "",
            "## Leaderboard", "",
            "| # | strategy | Δ_MTL val % | Δ_MTL test % | params | MACs | trials | compute "
            f"| search s | runs | test vs {s.get('paired_baseline') or '-'} (paired, wins) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        unit = s.get("compute_unit_macs")
        for i, r in enumerate(self.rows, 1):
            secs = "-" if r["search_seconds"] is None else f"{r['search_seconds']:.1f}"
            lines.append(f"| {i} | {r['strategy']} | {_pm(r['delta_mtl'])} | "
                         f"{_pm(r['delta_mtl_test'])} | {_count(r['params'])} | "
                         f"{_count(r['macs'])} | {_trials(r)} | "
                         f"{_compute(r.get('compute_macs'), unit)} | {secs} | "
                         f"{r['n_runs']}/{len(s['seeds'])} | {_paired_text(r)} |")
        if s.get("paired_baseline"):
            lines += ["", f"The last column is each strategy's test Δ_MTL minus "
                      f"{s['paired_baseline']}'s, seed by seed (both scored against the same "
                      "single-task reference): mean ± std of the differences, and the seeds "
                      "it wins."]
        failed = [r for r in self.runs if r.get("error")]
        if failed:
            lines += ["", "Runs without a complete trial:", ""]
            lines += [f"- {r['strategy']} seed {r['seed']}: {r['error']}" for r in failed]
        tasks = list(dict.fromkeys(t for r in self.rows
                                   for t in r["task_metrics"].get("test", {})))
        if tasks:
            metric = self.settings.get("task_metric", "accuracy")
            lines += ["", f"## Test {metric} per task (mean ± std over seeds)", "",
                      "| strategy | " + " | ".join(tasks) + " |",
                      "|---|" + "---:|" * len(tasks)]
            for r in self.rows:
                cells = [_pm(r["primary_metric"].get(t), 3, "") for t in tasks]
                lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
        pictures = [("Δ_MTL against parameters (every trial)", self.files.get("pareto")),
                    (f"Test {self.settings.get('task_metric', 'metric')} per task",
                     self.files.get("task_metrics"))]
        pictures += [(f"Best architecture of {name[len('arch_'):]}", path)
                     for name, path in self.files.items() if name.startswith("arch_")]
        lines += ["", "## Pictures"]
        for caption, path in pictures:
            if path:
                lines += ["", f"### {caption}", "", f"![{caption}]({path})"]
        return "\n".join(lines) + "\n"


def _trials(row: Mapping[str, Any]) -> str:
    n = row.get("n_trials")
    return "-" if n is None else f"{n:.1f}".removesuffix(".0")


def _compute(macs: float | None, unit: float | None) -> str:
    """Compute in units of one hard-sharing training (``4.2x``), or raw MACs without a unit."""
    if macs is None or macs != macs:
        return "-"
    if unit:
        return f"{macs / unit:.1f}x"
    return f"{macs:.3g}"


def _compute_sentence(settings: Mapping[str, Any]) -> str:
    unit = settings.get("compute_unit_macs")
    unit_text = (f"compute is training MACs in units of one hard-sharing training "
                 f"({unit:.3g} MACs: epochs x training samples x forward MACs per sample), "
                 "counting every network a strategy trains (internal candidates, policy "
                 "phases, recombined and single-task networks it asks for)")
    if settings.get("compute_macs"):
        return (f"Equal compute: every search stops starting trials once it has spent "
                f"{settings['compute']} ({settings['compute_macs']:.3g} MACs), at most "
                f"{settings['trials']} trials; {unit_text}.")
    return f"Equal trials ({settings['trials']} per search); {unit_text}."


def _trial_macs(trial: Any) -> float:
    return float((trial.user_attrs.get("compute") or {}).get("macs", 0.0))




def _count(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def _study_name(strategy: str, seed: int, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"compare-{strategy}-seed{seed}-{digest.hexdigest()[:6]}"


def _primary(specs: Sequence[Any]) -> dict[str, str]:
    """Each task's first Δ_MTL metric (accuracy for classification, MAE for regression)."""
    return {s.name: next(iter(metric_directions(s))) for s in specs}


def compare(
    *,
    strategies: Sequence[str] | None = None,
    dataset: str = "multi_digits",
    space: str = "small_cnn",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    trials: int = DEFAULT_TRIALS,
    budget: TrainConfig | None = None,
    compute: float | str | None = DEFAULT_COMPUTE,
    out: str | Path = "mtlsearch-out",
    dataset_kwargs: Mapping[str, Any] | None = None,
    space_kwargs: Mapping[str, Any] | None = None,
    strategy_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    objectives: Sequence[str] = ("delta_mtl", "params"),
    pruner: str = "none",
    storage: str | None = None,
    progress: bool = True,
    show: bool = True,
    console: Console | None = None,
    workers: int | str = 1,
    weighting: str | Sequence[str] | None = None,
    sampler: str | None = None,
    sampler_kwargs: Mapping[str, Any] | None = None,
    history_lag: int | None = None,
    callbacks: Sequence[Any] | None = None,
) -> Leaderboard:
    """Run every strategy on every seed, rank them and write a report to ``out``.

    Args:
        strategies: Strategy names (default: every registered strategy).
        dataset, space: Names of the dataset and search space; ``*_kwargs`` go to them.
        seeds: One search per seed and strategy.
        trials: Trials per search (the cap when ``compute`` is given); a strategy that
            samples nothing runs 1 trial.
        budget: Training of every candidate (default ``TrainConfig(epochs=DEFAULT_EPOCHS)``).
        compute: Equal compute for every search: training MACs, or ``"Nx"`` for N times
            the compute of training one hard-sharing network with ``budget`` (the leaderboard's
            unit). A search starts no trial once it has spent that much; ``None`` runs
            ``trials`` trials whatever they cost. Every run's compute is reported.
        out: Report folder (studies in ``out/compare.db``, shared cache in ``out/cache``).
        strategy_kwargs: ``{strategy: {argument: value}}``; strategies left out get their
            :func:`quick_settings` (their class's ``quick_settings``), if any.
        storage: Optuna storage of the studies (default ``sqlite:///<out>/compare.db``).
        progress: Show each search's progress (with several workers: a line per finished
            search); show: print the leaderboard at the end.
        workers: Processes running the (strategy, seed) searches side by side; the
            leaderboard is the same as with one (every search depends on its seed only).
            ``"auto"``: one per usable CPU core on the CPU, the device-share rule on a GPU
            (:mod:`mtlsearch.study.worker_count`).
            Strategies must be registered through entry points (a worker is a fresh process).
        weighting: The loss weighting of every search (see :func:`~mtlsearch.study.search`):
            ``None`` keeps the budget's, a name fixes one, ``"auto"`` or a list samples it.
        sampler, sampler_kwargs, history_lag, callbacks: Every search's Optuna sampler (a
            name), its arguments, its history lag and the study callbacks (see
            :func:`~mtlsearch.study.search`; with several workers, callbacks must be
            ``"module:object"`` paths or picklable).

    Returns:
        The :class:`Leaderboard`; the folder holds ``report.md``, ``leaderboard.json``,
        ``pareto.png/.svg``, ``task_metrics.png/.svg`` and ``arch_<strategy>.png/.svg``.

    Example:
        >>> compare(strategies=["hard_sharing"], seeds=(0,), trials=1, out="runs/c")  # doctest: +SKIP
    """
    names = list(strategies) if strategies else list_strategies()
    known = list_strategies()
    unknown = [n for n in names if n not in known]
    if unknown:
        from mtlsearch.errors import UnknownNameError

        raise UnknownNameError("strategy", unknown[0], known)
    if not seeds:
        raise MTLSearchError("compare needs at least one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = budget or TrainConfig(epochs=DEFAULT_EPOCHS)
    storage = storage or f"sqlite:///{out.resolve() / 'compare.db'}"
    data = load_dataset(dataset, **dict(dataset_kwargs or {}))  # once: every search shares it
    primary = _primary(data.tasks)
    metric_names = set(primary.values())
    budget_dict = {k: v for k, v in budget.to_dict().items() if k not in ("device", "seed")}
    unit = compute_unit(data, space, budget, space_kwargs)
    compute_macs = parse_compute(compute, unit)
    settings: dict[str, Any] = {
        "strategies": names, "dataset": dataset, "dataset_kwargs": dict(data.kwargs),
        "space": space, "space_kwargs": dict(space_kwargs or {}), "seeds": list(seeds),
        "trials": trials, "budget": budget_dict, "objectives": list(objectives),
        "compute": compute, "compute_macs": compute_macs, "compute_unit_macs": unit,
        "task_metric": metric_names.pop() if len(metric_names) == 1 else "primary metric",
    }
    requested = requested_weightings(weighting)
    if requested is not None:
        settings["weighting"] = requested
    chosen = None  # the default sampler keeps the study names of earlier comparisons
    if sampler is not None or sampler_kwargs or history_lag is not None:
        chosen = sampler_setting(sampler, sampler_kwargs, len(objectives), history_lag)
        settings["sampler"] = chosen
    key = {k: settings[k] for k in ("dataset", "dataset_kwargs", "space", "space_kwargs",
                                    "budget", "objectives")}
    jobs = []
    for seed in seeds:
        for name in names:
            given = strategy_kwargs or {}
            kwargs = dict(given[name] if name in given else quick_settings(name))
            study_name = _study_name(name, seed, {**key, "strategy_kwargs": kwargs,
                                                  **({"compute": compute_macs} if compute_macs else {}),
                                                  **({"weighting": requested} if requested else {}),
                                                  **({"sampler": chosen} if chosen else {})})
            jobs.append(dict(strategy=name, dataset=dataset, dataset_kwargs=dict(dataset_kwargs or {}),
                             space=space, budget=budget, seed=seed, storage=storage,
                             study_name=study_name, objectives=list(objectives), pruner=pruner,
                             space_kwargs=space_kwargs, strategy_kwargs=kwargs,
                             out=str(out / "runs" / f"{name}-seed{seed}"),
                             cache=str(out / "cache"), trials=trials, compute=compute_macs,
                             weighting=requested, sampler=sampler,
                             sampler_kwargs=dict(sampler_kwargs or {}), history_lag=history_lag,
                             callbacks=list(callbacks or ())))
    plan = _plan_workers(workers, budget, data, space, space_kwargs, len(jobs))
    log.info("%s; %d torch thread(s) each%s", plan.why, plan.threads,
             f"; pinned to cores {[list(c) for c in plan.cores]}" if plan.cores else "")
    settings["workers"] = plan.workers
    if plan.workers == 1:
        done = [_one_search(job, progress=progress, data=data) for job in jobs]
    else:
        done = _parallel(jobs, plan.workers, (console or make_console()) if progress else None,
                         threads=plan.threads, cores=plan.cores)
    runs = [run for run, _ in done]
    points = [p for _, pts in done for p in pts]
    rows = [_aggregate(name, [r for r in runs if r["strategy"] == name], primary) for name in names]
    baseline = paired_baseline(names)  # the registered baseline of lowest rank compared
    settings["paired_baseline"] = baseline
    for row in rows:
        row["paired"] = _paired(row["strategy"], baseline, runs)
    rows.sort(key=_sort_key)
    board = Leaderboard(rows, runs, points, settings, out)
    write_report(board, out)
    if show:
        board.print(console)
        (console or make_console()).print(f"report: {out / 'report.md'}")
    return board


def _plan_workers(workers: Any, budget: TrainConfig, data: Any, space: str,
                  space_kwargs: Mapping[str, Any] | None, jobs: int) -> Any:
    """Processes for the ``jobs`` searches (``"auto"``: one per core on the CPU, the
    device-share rule on a GPU, measured on the largest candidate of ``space``)."""
    from mtlsearch.study.worker_count import plan_workers

    def measure_gpu(device: Any, cap: int) -> Any:
        from mtlsearch.engine.device_share import plan_device_share
        from mtlsearch.registry import create_space

        built = create_space(space, input_shape=data.input_shape, **dict(space_kwargs or {}))
        return plan_device_share(built, data.train, batch_size=budget.batch_size,
                                 device=device, cap=cap)

    return plan_workers(workers, device=budget.device, jobs=jobs, measure_gpu=measure_gpu)


@functools.lru_cache(maxsize=2)
def _worker_data(key: str) -> Any:
    """The dataset of a job, loaded once per worker process (``key``: name and arguments)."""
    name, kwargs = json.loads(key)
    return load_dataset(name, **kwargs)


def _one_search(job: Mapping[str, Any], progress: bool = False,
                data: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One (strategy, seed) search of a comparison: its run record and its trials' points.

    ``data`` is the job's dataset when the caller has it loaded (a serial comparison).
    """
    job = dict(job)
    key = json.dumps([job["dataset"], job.pop("dataset_kwargs")], sort_keys=True, default=str)
    trials, compute = job.pop("trials"), job.pop("compute")
    name, seed = job["strategy"], job["seed"]
    common = {**job, "dataset": data if data is not None else _worker_data(key),
              "cache": ResultCache(job["cache"]), "progress": progress}
    start = time.perf_counter()
    # One call with the whole budget: the progress counts to it, and a strategy that samples
    # nothing stops after its one trial by itself.
    result = search(trials=trials, compute=compute, **common)
    log.info("%s seed %d: %.1fs", name, seed, time.perf_counter() - start)
    points = [{"delta_mtl": t.user_attrs["delta_mtl"], "params": t.user_attrs["params"],
               "label": name, "seed": seed, "trial": t.number,
               "delta_mtl_test": t.user_attrs.get("delta_mtl_test"),
               "compute_macs": _trial_macs(t)}
              for t in complete_trials(result.study)]
    return _run_record(result.study, name, seed), points


def _one_search_tracked(job: dict[str, Any], trackers: Sequence[Any]) -> Any:
    """:func:`_one_search` in a worker process, with the parent's experiment trackers; also
    returns its wall seconds (what the start order ranks by: its trials, and what it spent
    before them, an affinity tensor for instance)."""
    from mtlsearch.study.trackers import tracking

    start = time.perf_counter()
    with tracking(trackers):
        result = _one_search(job)
    return result, time.perf_counter() - start


def _parallel(jobs: list[dict[str, Any]], workers: int, console: Console | None,
              threads: int = 1, cores: Sequence[Sequence[int]] = (),
              ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Run the searches in ``workers`` processes; results in job order (as a serial run).

    Every search depends on its seed and trial numbers only, so the results are those of a
    serial run, whatever the order the searches start in: :class:`SearchOrder`'s, which
    keeps the workers busy (seeds' references side by side, the shortest searches last).
    The single-task reference of a seed is computed once (the cache's file lock: the other
    workers wait for it). Ctrl-C stops every worker; the same call resumes. ``cores``: one
    core set per worker process to pin it to (empty: unpinned).
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import optuna

    from mtlsearch.study.job_order import SearchOrder
    from mtlsearch.study.storage import open_storage
    from mtlsearch.study.trackers import active_trackers
    from mtlsearch.study.workers import spawn_context, worker_init

    opened = open_storage(jobs[0]["storage"])
    if isinstance(opened, str):  # a database URL: make its tables now, not in two workers at once
        optuna.storages.RDBStorage(opened)
    ctx = spawn_context()  # no forked torch state
    results: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    order = SearchOrder([(job["strategy"], job["seed"]) for job in jobs])
    slots = None
    if cores:  # each worker takes one core set as it starts (a pool's workers have no index)
        slots = ctx.Queue()
        for core_set in cores:
            slots.put(tuple(core_set))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init,
                             initargs=(threads, slots)) as pool:
        trackers = active_trackers()  # each worker registers copies of the parent's
        running: dict[Any, int] = {}

        def start_next() -> None:
            index = order.next()
            if index is not None:
                running[pool.submit(_one_search_tracked, jobs[index], trackers)] = index

        try:
            for _ in range(workers):  # one search per worker at a time: the order decides
                start_next()
            while running:
                done, _pending = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    results[i], seconds = future.result()
                    run = results[i][0]
                    order.finished(i, seconds)
                    start_next()
                    if console is not None:
                        console.print(_finished_line(run, len(results), len(jobs)))
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return [results[i] for i in range(len(jobs))]


def _finished_line(run: Mapping[str, Any], done: int, total: int) -> str:
    best = "no complete trial" if "error" in run else \
        f"best Δ_MTL {run['delta_mtl']:+.2f}% (test {run['delta_mtl_test']:+.2f}%)"
    return (f"[{done}/{total}] {run['strategy']} seed {run['seed']}: {run['n_trials']} trials, "
            f"{best}, {run['search_seconds']:.0f}s")


def _paired(name: str, baseline: str | None, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``name`` minus ``baseline`` seed by seed, on validation and test Δ_MTL."""
    if baseline is None or baseline == name:
        return None
    def by_seed(strategy: str, key: str) -> dict[int, float]:
        return {r["seed"]: r[key] for r in runs if r["strategy"] == strategy and "error" not in r}
    return {split: paired_difference(by_seed(name, key), by_seed(baseline, key)).to_dict()
            for split, key in (("val", "delta_mtl"), ("test", "delta_mtl_test"))}


def _paired_text(row: Mapping[str, Any], split: str = "test") -> str:
    paired = row.get("paired")
    if not paired:
        return "-"
    d = paired[split]
    return PairedDifference(d["mean"], d["std"], d["wins"], d["losses"], d["n"]).text()


def _sort_key(row: Mapping[str, Any]) -> float:
    mean = row["delta_mtl"][0]
    return -mean if mean == mean else float("inf")  # strategies without a result last


def _run_record(study: Any, strategy: str, seed: int) -> dict[str, Any]:
    # finished trials only: queued initial parameters a compute budget never reached do not count
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    seconds = sum(float(t.user_attrs.get("trial_seconds", 0.0)) for t in trials)
    record: dict[str, Any] = {"strategy": strategy, "seed": seed, "study": study.study_name,
                              "n_trials": len(trials), "search_seconds": seconds,
                              "n_failed": sum(t.state.name == "FAIL" for t in trials),
                              "compute_macs": sum(_trial_macs(t) for t in trials),
                              "networks": sum(int((t.user_attrs.get("compute") or {})
                                                  .get("networks", 0)) for t in trials)}
    try:
        best = best_trial(study)
    except MTLSearchError:
        reasons = {t.user_attrs.get("fail_reason") for t in trials} - {None}
        record["error"] = "; ".join(sorted(reasons)) or "no complete trial"
        return record
    a = best.user_attrs
    record.update(trial=best.number, delta_mtl=a["delta_mtl"], delta_mtl_test=a["delta_mtl_test"],
                  params=a["params"], macs=a["macs"], metrics=a["metrics"], graph=a["graph"],
                  hyperparams=dict(best.params))
    return record


def _aggregate(name: str, runs: list[dict[str, Any]], primary: Mapping[str, str]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {
        "strategy": name, "n_runs": len(ok),
        "delta_mtl": _mean_std([r["delta_mtl"] for r in ok]),
        "delta_mtl_test": _mean_std([r["delta_mtl_test"] for r in ok]),
        "params": statistics.fmean([r["params"] for r in ok]) if ok else None,
        "macs": statistics.fmean([r["macs"] for r in ok]) if ok else None,
        "search_seconds": statistics.fmean([r["search_seconds"] for r in runs]) if runs else None,
        "compute_macs": statistics.fmean([r["compute_macs"] for r in runs]) if runs else None,
        "n_trials": statistics.fmean([r["n_trials"] for r in runs]) if runs else None,
        "task_metrics": {}, "primary_metric": {},
    }
    for split in ("val", "test"):
        per_task: dict[str, dict[str, tuple[float, float]]] = {}
        for task in primary:
            metrics = sorted({m for r in ok for m in r["metrics"][split].get(task, {})})
            per_task[task] = {m: _mean_std([r["metrics"][split][task][m] for r in ok])
                              for m in metrics}
        row["task_metrics"][split] = per_task if ok else {}
    if ok:
        row["primary_metric"] = {t: row["task_metrics"]["test"][t][m] for t, m in primary.items()}
    if ok:
        best = max(ok, key=lambda r: r["delta_mtl"])
        row["best_run"] = {"seed": best["seed"], "trial": best["trial"], "graph": best["graph"]}
    return row


def write_report(board: Leaderboard, folder: str | Path) -> Path:
    """Write ``report.md``, ``leaderboard.json`` and the pictures of ``board`` to ``folder``."""
    from mtlsearch import viz

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if board.points:
        fig = viz.plot_pareto(board.points, folder / "pareto", title="Validation Δ_MTL against parameters (every trial)")
        del fig
        files["pareto"] = "pareto.png"
    table = {r["strategy"]: r["primary_metric"] for r in board.rows if r["primary_metric"]}
    if table:
        viz.plot_task_metrics(table, folder / "task_metrics",
                              metric=board.settings.get("task_metric", "accuracy"),
                              title="Test metric per task (mean ± std over seeds)")
        files["task_metrics"] = "task_metrics.png"
    for r in board.rows:
        if "best_run" in r:
            stem = f"arch_{r['strategy']}"
            viz.draw_architecture(r["best_run"]["graph"], folder / stem,
                                  title=f"{r['strategy']} (seed {r['best_run']['seed']}, "
                                        f"trial {r['best_run']['trial']})")
            files[stem] = f"{stem}.png"
    board.files = files
    board.folder = folder
    (folder / "report.md").write_text(board.to_markdown(), encoding="utf-8")
    text = json.dumps(board.to_dict(), indent=1, default=list)
    (folder / "leaderboard.json").write_text(text, encoding="utf-8")
    return folder
