"""Search quality: does each strategy find what is there to find, and at what compute?

Every strategy (and the reference architectures below) is searched on datasets where the
answer is known, with the same **compute** budget per search (training MACs, see
:mod:`mtlsearch.engine.compute`), over several seeds. For each search the trials are kept in order
with what each one spent, so the script can draw **anytime curves** (best validation Δ_MTL so
far, and the test Δ_MTL of that trial, against the compute spent) and compare strategies
**seed by seed**: all searches of one seed share the single-task reference, so the paired
difference cancels the noise they share (:mod:`mtlsearch.stats`).

Reference architectures, trained once per seed:

* ``oracle``: the planted grouping tree: the trunk shared up to ``oracle_depth``, then one
  branch per planted group to the end;
* ``mixed``: the same shape (branch depth, group sizes) with the tasks dealt round-robin
  across the groups, so every group mixes planted groups;
* ``single_task`` (Δ_MTL 0 by definition: it *is* the reference; not trained again, its
  compute is that of training it) and ``hard_sharing``.

Variants searched beside the registered strategies (the papers' own comparisons):
``task_routing_sigma0`` / ``task_routing_sigma1`` (σ fixed at 0 and 1, against the searched
σ), ``gumbel_policy_random2`` (AdaShare's Random #2 ablation) and ``matched_random_tree``
(random trees of exactly the shape ``affinity_tree`` found in that seed, tasks permuted at
random, given the compute ``affinity_tree`` spent).

Datasets (``DATASETS``): ``synthetic`` configured so that grouping pays (few training samples
per task, about 10% label noise, a narrow last block), ``multi_digits`` at the README's
main-job settings (``mtlsearch compare``'s defaults: the target on its leaderboard is checked
there) and ``digits``.

    python benchmarks/bench_search_quality.py --quick --json q.json --markdown q.md   # smoke run
    python benchmarks/bench_search_quality.py --json q.json --markdown q.md           # 5 seeds
    python benchmarks/bench_search_quality.py --datasets synthetic --seeds 0 1 2 --json s.json
    python benchmarks/bench_search_quality.py --report-only --out RUN --markdown q.md

Each (dataset, seed) runs in its own process (``--jobs`` at a time, one torch thread each)
and writes ``--out/<dataset>/seed<k>.json``; the main process merges them, summarises (curves,
paired differences, ARIs: all in the ``--json`` output) and renders the markdown section with
``benchmarks/render/quality.py``, which also checks the targets.
``--quick`` is the smoke size of the benchmark suite; the default is the recorded size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__:  # imported as benchmarks.bench_search_quality, or run with python -m
    from .common import json_ready, machine_info
    from .render import quality as render_quality
else:  # run as a file (python benchmarks/bench_search_quality.py): its folder is first on the path
    from common import json_ready, machine_info
    from render import quality as render_quality

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the benchmark and how every search on it is run.

    Attributes:
        key: Name in the output; ``dataset``: registered dataset name.
        space, space_kwargs: The search space.
        dataset_kwargs: Arguments of ``load_dataset`` (``quick_dataset_kwargs`` replace
            entries under ``--quick``).
        budget: :class:`~mtlsearch.engine.train.TrainConfig` fields of every candidate.
        compute: Compute budget of every search, ``"Nx"`` (N hard-sharing trainings).
        trials: Cap on trials per search.
        oracle_depth: Block where the planted tree branches; ``None``: no planted grouping.
        main_job: These are the README's main-job settings (``compare``'s defaults).
        note: One sentence on why the settings are what they are.
    """

    key: str
    dataset: str
    space: str
    title: str
    space_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    quick_dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    quick_budget: dict[str, Any] = field(default_factory=dict)
    compute: str = "6x"
    quick_compute: str = "3x"
    trials: int = 12
    oracle_depth: int | None = None
    main_job: bool = False
    note: str = ""

    def settings(self, quick: bool) -> dict[str, Any]:
        """The dataset, budget and compute of one run (quick or not), JSON-ready."""
        return {
            "dataset": self.dataset, "space": self.space, "space_kwargs": dict(self.space_kwargs),
            "dataset_kwargs": {**self.dataset_kwargs, **(self.quick_dataset_kwargs if quick else {})},
            "budget": {**self.budget, **(self.quick_budget if quick else {})},
            "compute": self.quick_compute if quick else self.compute, "trials": self.trials,
            "oracle_depth": self.oracle_depth, "main_job": self.main_job and not quick,
        }


def _main_job() -> dict[str, Any]:
    """``mtlsearch compare``'s defaults (the README's main job), read from the package."""
    from mtlsearch.study.comparison import DEFAULT_COMPUTE, DEFAULT_EPOCHS, DEFAULT_TRIALS

    return {"budget": {"epochs": DEFAULT_EPOCHS}, "compute": str(DEFAULT_COMPUTE),
            "trials": int(DEFAULT_TRIALS)}


def datasets() -> dict[str, DatasetConfig]:
    """The benchmark's datasets (``multi_digits`` follows ``compare``'s current defaults)."""
    main = _main_job()
    return {c.key: c for c in (
        DatasetConfig(
            "synthetic", "synthetic", "mlp",
            "`synthetic` where grouping pays: 4 planted groups of 3 tasks, 200 training samples, "
            "about 11% of the labels flipped by the noise, a 4-unit last block",
            space_kwargs={"widths": [16, 16, 4]},
            dataset_kwargs={"group_sizes": [3, 3, 3, 3], "relatedness": 0.99, "between": 0.0,
                            "noise": 0.2, "n_samples": 2000, "input_dim": 16,
                            "val_fraction": 0.3, "test_fraction": 0.6},
            budget={"epochs": 20, "batch_size": 16, "lr": 0.01},
            quick_budget={"epochs": 12}, compute="24x", quick_compute="6x",
            oracle_depth=2,
            note=("Few samples per task make single-task networks overfit the noisy labels; a "
                  "last block of 4 units cannot serve 12 tasks of 4 unrelated directions "
                  "(hard sharing) nor well 3 tasks of 3 directions (a mixed group), but serves "
                  "3 near-identical tasks (a planted group). The first two blocks are 16 wide "
                  "so that `gumbel_policy` has blocks to skip."),
        ),
        DatasetConfig(
            "multi_digits", "multi_digits", "small_cnn",
            "`multi_digits` at the README's main-job settings (`mtlsearch compare`'s defaults): "
            "6 tasks about the left digit, the right digit and both",
            budget=main["budget"], compute=main["compute"], trials=main["trials"],
            quick_dataset_kwargs={"n_train": 600, "n_val": 300, "n_test": 300},
            quick_budget={"epochs": 2}, quick_compute="2x",
            oracle_depth=1, main_job=True,
            note=("The settings of `mtlsearch compare` with its defaults. The oracle shares the "
                  "small CNN's first block and gives the left / right / both groups their own "
                  "last three: in a 3-seed pilot (test Δ_MTL) branching there put the planted "
                  "tree above the mixed one in every seed (by 2.0, 2.1, 2.8), branching later "
                  "did not."),
        ),
        DatasetConfig(
            "digits", "digits", "small_cnn",
            "`digits`: 8x8 handwritten digits, 10 one-vs-rest tasks, no known grouping",
            budget={"epochs": 4, "batch_size": 64, "lr": 3e-3}, compute="6x",
            quick_budget={"epochs": 2}, quick_compute="2x",
            note=("bench_results.py's training budget for it and the main job's compute; no "
                  "planted grouping, so no oracle."),
        ),
    )}


@dataclass(frozen=True)
class Entry:
    """One searched contender: a label, the strategy behind it and its arguments.

    ``kind``: ``search`` (a registered strategy, searched at the compute budget), ``fixed``
    (one architecture, one trial: ``oracle``, ``mixed``) or ``matched`` (random trees of the
    shape ``affinity_tree`` found). ``role``: ``paper`` (a paper's strategy), ``baseline``,
    ``ablation`` (a paper's own comparison) or ``reference`` (oracle, mixed).
    """

    label: str
    strategy: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "search"
    role: str = "paper"


def entries() -> list[Entry]:
    """Every contender, in run order (``matched_random_tree`` after ``affinity_tree``).

    The strategies get ``compare``'s quick arguments (each class's ``quick_settings``: the RSA
    affinity estimator, one retrained Gumbel sample), the variants those plus their change.
    """
    from mtlsearch.study.comparison import quick_settings

    gumbel = quick_settings("gumbel_policy")
    return [
        Entry("hard_sharing", "hard_sharing", role="baseline"),
        Entry("oracle", "oracle", kind="fixed", role="reference"),
        Entry("mixed", "mixed", kind="fixed", role="reference"),
        Entry("random_tree", "random_tree", role="baseline"),
        Entry("affinity_tree", "affinity_tree", quick_settings("affinity_tree")),
        Entry("matched_random_tree", "matched_random_tree", kind="matched", role="ablation"),
        Entry("gradient_merge", "gradient_merge", quick_settings("gradient_merge")),
        Entry("gumbel_policy", "gumbel_policy", gumbel),
        Entry("gumbel_policy_random2", "gumbel_policy", {**gumbel, "ablation": "random2"},
              role="ablation"),
        Entry("task_routing", "task_routing", quick_settings("task_routing")),
        Entry("task_routing_sigma0", "task_routing", {"sigma": 0.0}, role="ablation"),
        Entry("task_routing_sigma1", "task_routing", {"sigma": 1.0}, role="ablation"),
    ]


#: ``single_task`` is the reference itself: Δ_MTL 0 in every seed, not trained again.
SINGLE_TASK = "single_task"
#: Search strategies (the four papers'); the baselines are the rest of compare's leaderboard.
PAPER_STRATEGIES = ("affinity_tree", "gradient_merge", "gumbel_policy", "task_routing")
BASELINES = ("single_task", "hard_sharing", "random_tree")

#: Each paper's claim: (a, b) pairs where ``a`` must beat ``b`` on test Δ_MTL, seed by seed.
CLAIMS: dict[str, list[tuple[str, str]]] = {
    "task_routing": [("task_routing", "task_routing_sigma1"),
                     ("task_routing", "task_routing_sigma0")],
    "gumbel_policy": [("gumbel_policy", "hard_sharing"),
                      ("gumbel_policy", "gumbel_policy_random2")],
    "affinity_tree": [("affinity_tree", "matched_random_tree")],
    "gradient_merge": [("gradient_merge", "hard_sharing"), ("gradient_merge", SINGLE_TASK)],
}
#: The planted tree against hard sharing and the same-shape mixed tree: "grouping pays".
ORACLE_PAIRS = [("oracle", "hard_sharing"), ("oracle", "mixed"), ("oracle", SINGLE_TASK)]
#: Strategies whose discovered grouping must recover the planted one where grouping pays.
ARI_STRATEGIES = ("affinity_tree", "gradient_merge")
#: Most columns of the anytime table (compute checkpoints 1x, 2x, 4x, ...).
MAX_CHECKPOINTS = 8
#: Contenders drawn as horizontal reference lines (one architecture, nothing searched).
REFERENCE_LINES = ("single_task", "hard_sharing", "oracle", "mixed")


# ------------------------------------------------------------------------------ trees


def mixed_partition(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The same group sizes with the tasks dealt round-robin across the planted groups.

    Tasks are taken one from each group in turn (first of every group, then the second...)
    and cut into groups of the planted sizes, so consecutive tasks of a new group come from
    different planted groups.

    Example:
        >>> mixed_partition([["a", "b"], ["c", "d"], ["e", "f"]])
        [['a', 'c'], ['e', 'b'], ['d', 'f']]
    """
    order = [g[i] for i in range(max(len(g) for g in groups)) for g in groups if i < len(g)]
    out, start = [], 0
    for g in groups:
        out.append(order[start:start + len(g)])
        start += len(g)
    return out


def tree_partitions(tasks: Sequence[str], groups: Sequence[Sequence[str]], depth: int,
                    num_blocks: int) -> list[list[list[str]]]:
    """Per-block partitions of a tree: all tasks shared before ``depth``, ``groups`` after.

    Example:
        >>> tree_partitions(["a", "b", "c"], [["a", "b"], ["c"]], 1, 2)
        [[['a', 'b', 'c']], [['a', 'b'], ['c']]]
    """
    if not 0 <= depth < num_blocks:
        raise ValueError(f"branch depth {depth} must be in 0..{num_blocks - 1}")
    return [[list(tasks)]] * depth + [[list(g) for g in groups]] * (num_blocks - depth)


def permuted_partitions(partitions: Sequence[Sequence[Sequence[str]]], tasks: Sequence[str],
                        rng: random.Random) -> list[list[list[str]]]:
    """The same tree shape with the task names permuted at random (one permutation for all
    depths, so the tree stays a tree).

    Example:
        >>> p = permuted_partitions([[["a", "b", "c"]], [["a", "b"], ["c"]]], ["a", "b", "c"],
        ...                         random.Random(0))
        >>> [sorted(len(g) for g in d) for d in p]
        [[3], [1, 2]]
    """
    shuffled = list(tasks)
    rng.shuffle(shuffled)
    rename = dict(zip(tasks, shuffled))
    return [[[rename[t] for t in g] for g in depth] for depth in partitions]


def _strategies() -> tuple[type, type]:
    """The two strategies this benchmark defines (built lazily: they need mtlsearch)."""
    from mtlsearch.strategy.base import Proposal, Strategy

    class FixedTree(Strategy):
        """One fixed tree (the oracle or the mixed tree): nothing to sample, one trial."""

        name = "fixed_tree"

        def __init__(self, *, partitions: list[list[list[str]]], label: str):
            self.partitions, self.label = partitions, label

        def propose(self, trial: Any, ctx: Any) -> Any:
            graph = ctx.new_graph("partitions", partitions=self.partitions)
            return Proposal(graph, info={"tree": self.label})

    class MatchedRandomTree(Strategy):
        """Random trees of one given shape: the template's partitions, tasks permuted."""

        name = "matched_random_tree"

        def __init__(self, *, partitions: list[list[list[str]]]):
            self.partitions = partitions

        def propose(self, trial: Any, ctx: Any) -> Any:
            seed = trial.suggest_int("perm_seed", 0, 2**31 - 1)
            parts = permuted_partitions(self.partitions, ctx.task_names, random.Random(seed))
            return Proposal(ctx.new_graph("partitions", partitions=parts), info={"perm_seed": seed})

    return FixedTree, MatchedRandomTree


def has_groups(partitions: Sequence[Sequence[Sequence[str]]]) -> bool:
    """Whether a tree groups tasks at some depth other than all-in-one or one-per-task (so
    permuting its tasks changes it).

    Example:
        >>> has_groups([[["a", "b", "c"]], [["a"], ["b"], ["c"]]]), has_groups([[["a", "b"], ["c"]]])
        (False, True)
    """
    return any(1 < len(depth) < sum(len(g) for g in depth) for depth in partitions)


# ------------------------------------------------------------------------------ running


def _trial_record(t: Any, planted: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """What the analysis needs of one finished trial (the graph only of complete ones)."""
    a = t.user_attrs
    compute = a.get("compute") or {}
    rec = {"number": t.number, "state": t.state.name, "params": dict(t.params),
           "delta_mtl": a.get("delta_mtl"), "delta_mtl_test": a.get("delta_mtl_test"),
           "n_params": a.get("params"), "macs": a.get("macs"),
           "compute_macs": float(compute.get("macs", 0.0)),
           "networks": compute.get("networks"), "seconds": a.get("trial_seconds"),
           "info": a.get("info"), "fail_reason": a.get("fail_reason") or a.get("pruned_reason")}
    if t.state.name == "COMPLETE" and a.get("graph") is not None:
        from mtlsearch.graph.grouping import discovered_grouping, grouping_ari

        rec["graph"] = a["graph"]
        rec["grouping"] = discovered_grouping(a["graph"])
        if planted:
            rec["ari"] = grouping_ari(a["graph"], planted)
    return rec


def single_task_compute(data: Any, space: Any, budget: Any) -> float:
    """Training MACs of the single-task networks (epochs x training samples x forward MACs),
    what the trainer would charge for them with all-task sampling and no early stopping."""
    from mtlsearch.graph.sharing import SharingGraph
    from mtlsearch.graph.summary import summarize

    graph = SharingGraph.single_task([t.name for t in data.tasks], space.num_blocks)
    return float(budget.epochs * len(data.train) * summarize(graph, space, data.tasks).macs)


def label_noise(config: DatasetConfig, quick: bool) -> float | None:
    """Share of ``synthetic`` training labels the noise flipped (against noise 0, same seed)."""
    if config.dataset != "synthetic":
        return None
    from mtlsearch import load_dataset

    kw = config.settings(quick)["dataset_kwargs"]
    noisy, clean = load_dataset("synthetic", **kw), load_dataset("synthetic", **{**kw, "noise": 0.0})
    flips = [(noisy.train.targets[t] != clean.train.targets[t]).float().mean().item()
             for t in noisy.task_names]
    return statistics.fmean(flips)


def code_version() -> dict[str, Any]:
    """The commit and a digest of the package's and plugins' sources as they are now, so a
    merged run can tell whether the code changed between its (dataset, seed) processes."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("mtlsearch", "plugins", "search_spaces"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"commit": commit, "sources": digest.hexdigest()[:12]}


def run_seed(config: DatasetConfig, seed: int, *, quick: bool, device: str | None = None,
             only: Sequence[str] | None = None,
             kwargs_override: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Every entry on one dataset and seed; the raw trial records of each search.

    Args:
        config: The dataset; ``quick``: its smoke size.
        seed: Seeds training and sampling (the data split is the dataset's own).
        device: Training device (default: the first available).
        only: Run only these entry labels (``matched_random_tree`` needs ``affinity_tree``).
        kwargs_override: ``{label: strategy kwargs}`` replacing an entry's arguments.
    """
    import optuna

    from mtlsearch import TrainConfig, create_space, load_dataset, search
    from mtlsearch.strategy.context import ResultCache, SearchContext
    from mtlsearch.study.comparison import compute_unit, parse_compute

    s = config.settings(quick)
    data = load_dataset(config.dataset, **s["dataset_kwargs"])
    space = create_space(config.space, input_shape=data.input_shape, **s["space_kwargs"])
    budget = TrainConfig(**s["budget"], device=device)
    unit = compute_unit(data, space, budget)
    budget_macs = parse_compute(s["compute"], unit)
    planted = data.info.get("groups") if config.oracle_depth is not None else None
    cache = ResultCache(None)  # in memory: the seed's single-task reference, shared
    FixedTree, MatchedRandomTree = _strategies()
    start = time.perf_counter()
    SearchContext(data=data, space=space, budget=budget, seed=seed, cache=cache).reference()
    out: dict[str, Any] = {"key": config.key, "seed": seed, "quick": quick, "settings": s,
                           "code": code_version(),
                           "unit_macs": unit, "budget_macs": budget_macs, "planted": planted,
                           "reference_seconds": time.perf_counter() - start,
                           "single_task_macs": single_task_compute(data, space, budget),
                           "runs": {}}
    for entry in entries():
        if only and entry.label not in only:
            continue
        kwargs = dict((kwargs_override or {}).get(entry.label, entry.kwargs))
        compute, trials = budget_macs, s["trials"]
        if entry.kind == "fixed":
            if planted is None:
                continue
            groups = planted if entry.label == "oracle" else mixed_partition(planted)
            strategy: Any = FixedTree(label=entry.label, partitions=tree_partitions(
                data.task_names, groups, config.oracle_depth, space.num_blocks))
        elif entry.kind == "matched":
            found = out["runs"].get("affinity_tree")
            best = best_trial(found["trials"]) if found else None
            if best is None:
                continue
            template = _graph_partitions(best["graph"])
            strategy = MatchedRandomTree(partitions=template)
            if not has_groups(template):  # hard sharing or single-task: nothing to permute
                trials = 1
            # the same compute as the search it is matched with (its last trial may cross C)
            compute = max(budget_macs, found["compute_macs"])
            kwargs = {}
        else:
            strategy = entry.strategy
        common = dict(strategy=strategy, dataset=data, space=space, budget=budget, seed=seed,
                      storage=optuna.storages.InMemoryStorage(), study_name=entry.label,
                      pruner="none", strategy_kwargs=kwargs if isinstance(strategy, str) else None,
                      cache=cache, progress=False)
        t0 = time.perf_counter()
        result = search(trials=1, **common)
        first = result.study.get_trials(deepcopy=False)
        # As compare does: a strategy that samples nothing runs one trial.
        if trials > 1 and not (first and first[0].state.is_finished() and not first[0].params):
            result = search(trials=trials, compute=compute, **common)
        records = [_trial_record(t, planted) for t in result.study.get_trials(deepcopy=False)
                   if t.state.is_finished()]
        out["runs"][entry.label] = {
            "strategy": entry.strategy, "kwargs": kwargs, "kind": entry.kind, "role": entry.role,
            "compute_budget_macs": compute, "trials": records,
            "compute_macs": sum(r["compute_macs"] for r in records),
            "seconds": time.perf_counter() - t0,
        }
        print(f"[bench_search_quality] {config.key} seed {seed} {entry.label}: "
              f"{len(records)} trials, {out['runs'][entry.label]['compute_macs'] / unit:.1f}x, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    out["seconds"] = time.perf_counter() - start
    return out


def _graph_partitions(graph: Mapping[str, Any]) -> list[list[list[str]]]:
    from mtlsearch.graph.sharing import SharingGraph

    return SharingGraph.from_dict(dict(graph)).partitions()


# ------------------------------------------------------------------------------ analysis


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def best_trial(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The complete trial with the highest validation Δ_MTL, fewer parameters on ties (the
    rule of :func:`mtlsearch.study.trials.best_trial`); ``None`` when none completed."""
    done = [t for t in trials if t.get("state") == "COMPLETE" and _finite(t.get("delta_mtl"))]
    if not done:
        return None
    return dict(min(done, key=lambda t: (-float(t["delta_mtl"]), float(t.get("n_params") or 0))))


def best_so_far(trials: Sequence[Mapping[str, Any]], unit: float = 1.0) -> list[dict[str, Any]]:
    """The anytime curve of one search: after each trial (in trial-number order), the compute
    spent so far (every finished trial counts, failed and pruned ones too) and the best
    complete trial so far (its validation and test Δ_MTL).

    Args:
        trials: Trial records with ``number``, ``state``, ``compute_macs``, ``delta_mtl``,
            ``delta_mtl_test`` (and ``n_params`` for ties).
        unit: Divide the compute by this (one hard-sharing training: ``"Nx"`` units).

    Returns:
        One point per trial: ``compute``, ``val``, ``test`` (``None`` before the first
        complete trial) and ``trial`` (the number of the best one).

    Example:
        >>> pts = best_so_far([{"number": 0, "state": "COMPLETE", "compute_macs": 2.0,
        ...                     "delta_mtl": 1.0, "delta_mtl_test": 0.5},
        ...                    {"number": 1, "state": "COMPLETE", "compute_macs": 2.0,
        ...                     "delta_mtl": 0.5, "delta_mtl_test": 3.0}], unit=2.0)
        >>> [(p["compute"], p["val"], p["test"]) for p in pts]
        [(1.0, 1.0, 0.5), (2.0, 1.0, 0.5)]
    """
    points, spent, seen = [], 0.0, []
    for t in sorted(trials, key=lambda t: t["number"]):
        spent += float(t.get("compute_macs") or 0.0)
        seen.append(t)
        best = best_trial(seen)
        points.append({"compute": spent / unit, "trial": None if best is None else best["number"],
                       "val": None if best is None else float(best["delta_mtl"]),
                       "test": None if best is None else float(best["delta_mtl_test"])})
    return points


def value_at(points: Sequence[Mapping[str, Any]], budget: float) -> tuple[float, float]:
    """``(val, test)`` of the best trial finished within ``budget`` compute (NaN if none).

    Example:
        >>> pts = [{"compute": 1.0, "val": 2.0, "test": 1.0}, {"compute": 3.0, "val": 4.0, "test": 0.0}]
        >>> value_at(pts, 0.5), value_at(pts, 2.0), value_at(pts, 3.0)
        ((nan, nan), (2.0, 1.0), (4.0, 0.0))
    """
    within = [p for p in points if p["compute"] <= budget * (1 + 1e-9) and p["val"] is not None]
    if not within:
        return math.nan, math.nan
    last = within[-1]
    return float(last["val"]), float(last["test"])


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """``a - b`` seed by seed (:func:`mtlsearch.stats.paired_difference`), with the per-seed
    differences and ``better``: ``a`` beats ``b`` beyond the paired noise."""
    from mtlsearch.stats import paired_difference

    d = paired_difference(a, b)
    seeds = sorted(s for s in a if s in b and _finite(a[s]) and _finite(b[s]))
    return {**d.to_dict(), "better": d.better(), "diffs": {str(s): a[s] - b[s] for s in seeds}}


def structure(graph: Mapping[str, Any] | None) -> str | None:
    """``"hard sharing"``, ``"single-task"``, ``"K groups at block D"`` (the discovered
    grouping and its depth) or ``"all tasks shared to block D"`` (one group there, then the
    tasks part) for a trial's graph; ``None`` without one.

    Example:
        >>> from mtlsearch import SharingGraph
        >>> g = SharingGraph.from_partitions(["a", "b", "c"], [[["a", "b", "c"]], [["a", "b"], ["c"]]])
        >>> structure(g.to_dict()), structure(SharingGraph.hard_sharing(["a", "b"], 2).to_dict())
        ('2 groups at block 1', 'hard sharing')
        >>> structure(SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]]).to_dict())
        'all tasks shared to block 0'
    """
    if not graph:
        return None
    from mtlsearch.graph.grouping import discovered_grouping, last_shared_depth, task_partition
    from mtlsearch.graph.sharing import SharingGraph

    g = SharingGraph.from_dict(dict(graph))
    depths = range(g.num_blocks)
    if all(len(task_partition(g, d)) == 1 for d in depths):
        return "hard sharing"
    if all(all(len(x) == 1 for x in task_partition(g, d, by="nodes")) for d in depths):
        return "single-task"
    depth = last_shared_depth(g)
    if depth is None:  # no two tasks compute the same features (per-task masks or skips)
        return "no two tasks alike"
    groups = discovered_grouping(g)
    if len(groups) == 1:
        return f"all tasks shared to block {depth}"
    return f"{len(groups)} groups at block {depth}"


def _entry_seed_figures(run: Mapping[str, Any], unit: float,
                        planted: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    best = best_trial(run["trials"])
    curve = best_so_far(run["trials"], unit)
    fig = {"trials": len(run["trials"]), "compute": run["compute_macs"] / unit,
           "budget": run["compute_budget_macs"] / unit, "seconds": run["seconds"],
           "failed": sum(t["state"] != "COMPLETE" for t in run["trials"]), "curve": curve,
           "val": math.nan, "test": math.nan, "n_params": None, "ari": None, "grouping": None,
           "trial": None, "hyperparams": None, "structure": None,
           "first_compute": run["trials"][0]["compute_macs"] / unit if run["trials"] else None}
    if best is not None:
        fig.update(val=float(best["delta_mtl"]), test=float(best["delta_mtl_test"]),
                   n_params=best.get("n_params"), trial=best["number"],
                   grouping=best.get("grouping"), hyperparams=best.get("params"),
                   structure=structure(best.get("graph")))
        if planted:
            fig["ari"] = best.get("ari")
    return fig


def _counts(items: Any) -> dict[str, int]:
    """How often each (non-None) item occurs, most frequent first."""
    counts: dict[str, int] = {}
    for item in items:
        if item is not None:
            counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def checkpoints_for(top: float) -> list[float]:
    """Compute checkpoints of the anytime table: 1x, 2x, 4x, ... up to the first one at or
    above ``top`` (at most :data:`MAX_CHECKPOINTS`, the last ones kept).

    Example:
        >>> checkpoints_for(5.0), checkpoints_for(0.5)
        ([1.0, 2.0, 4.0, 8.0], [1.0])
    """
    points = [1.0]
    while points[-1] < top:
        points.append(points[-1] * 2)
    return points[-MAX_CHECKPOINTS:]


def summarise(seed_runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Figures of one dataset from its per-seed raw runs (:func:`run_seed` outputs).

    Returns ``entries`` (per label: per-seed figures, mean ± std of the best trial's val /
    test Δ_MTL, compute, trials, parameters, ARI; the mean anytime curve on a grid; the value
    at each checkpoint), ``oracle`` and ``claims`` (paired differences of test Δ_MTL),
    ``versus_random_tree`` and ``leaderboard`` (compare's strategies by mean test Δ_MTL).
    """
    from mtlsearch.stats import nan_mean_std

    seed_runs = sorted(seed_runs, key=lambda r: r["seed"])
    seeds = [r["seed"] for r in seed_runs]
    first = seed_runs[0]
    unit = float(first["unit_macs"])
    budget = float(first["budget_macs"]) / unit
    planted = first.get("planted")
    labels: list[str] = []
    for r in seed_runs:
        labels += [k for k in r["runs"] if k not in labels]
    per: dict[str, dict[int, dict[str, Any]]] = {SINGLE_TASK: {}}
    for r in seed_runs:
        st = float(r["single_task_macs"]) / unit
        per[SINGLE_TASK][r["seed"]] = {
            "trials": 0, "compute": st, "budget": budget, "seconds": r.get("reference_seconds"),
            "failed": 0, "val": 0.0, "test": 0.0, "n_params": None, "trial": None,
            "ari": 0.0 if planted else None, "grouping": None, "hyperparams": None,
            "structure": "single-task", "first_compute": st,
            "curve": [{"compute": st, "val": 0.0, "test": 0.0, "trial": None}]}
        for label, run in r["runs"].items():
            per.setdefault(label, {})[r["seed"]] = _entry_seed_figures(run, unit, planted)
    top = max([p["compute"] for d in per.values() for f in d.values() for p in f["curve"]]
              + [budget])
    # log-spaced: searches differ by orders of magnitude in what one trial costs
    low = min([p["compute"] for d in per.values() for f in d.values() for p in f["curve"]]
              + [1.0])
    grid = [low * (top / low) ** (i / 48) for i in range(49)]
    checkpoints = checkpoints_for(top)
    out_entries: dict[str, Any] = {}
    for label in [SINGLE_TASK, *labels]:
        by_seed = per.get(label, {})
        figs = list(by_seed.values())
        run0 = next((r["runs"][label] for r in seed_runs if label in r["runs"]), {})
        curve = []
        end = max((f["curve"][-1]["compute"] for f in figs if f["curve"]), default=0.0)
        for x in [*[g for g in grid if g < end], end]:  # up to where the longest seed stopped
            vals = [value_at(f["curve"], x) for f in figs]
            if len(figs) == len(seeds) and all(_finite(v[0]) for v in vals):
                v, t = nan_mean_std([v[0] for v in vals]), nan_mean_std([v[1] for v in vals])
                curve.append({"compute": round(x, 4), "val": [round(a, 4) for a in v],
                              "test": [round(a, 4) for a in t]})
        out_entries[label] = {
            "role": "baseline" if label == SINGLE_TASK else run0.get("role"),
            "strategy": SINGLE_TASK if label == SINGLE_TASK else run0.get("strategy"),
            "kind": "reference" if label == SINGLE_TASK else run0.get("kind"),
            "kwargs": {} if label == SINGLE_TASK else run0.get("kwargs"),
            "seeds": {str(s): {k: v for k, v in f.items()} for s, f in by_seed.items()},
            "n": len(figs),
            "val": nan_mean_std([f["val"] for f in figs]),
            "test": nan_mean_std([f["test"] for f in figs]),
            "compute": nan_mean_std([f["compute"] for f in figs]),
            "trials": nan_mean_std([f["trials"] for f in figs]),
            "failed": sum(f["failed"] for f in figs),
            "n_params": nan_mean_std([f["n_params"] for f in figs if f["n_params"] is not None]),
            "seconds": nan_mean_std([f["seconds"] for f in figs if f["seconds"] is not None]),
            "ari": (nan_mean_std([f["ari"] for f in figs if f["ari"] is not None])
                    if planted else None),
            "structures": _counts(f["structure"] for f in figs),
            "first_compute": nan_mean_std([f["first_compute"] for f in figs
                                           if f["first_compute"] is not None]),
            "curve": curve,
            "at": {f"{c:g}": {
                "test": nan_mean_std([value_at(f["curve"], c)[1] for f in figs]),
                "defined": sum(_finite(value_at(f["curve"], c)[1]) for f in figs)}
                for c in checkpoints},
        }

    def test_of(label: str) -> dict[int, float]:
        return {s: f["test"] for s, f in per.get(label, {}).items()}

    def pair(a: str, b: str) -> dict[str, Any]:
        return {"a": a, "b": b, **paired(test_of(a), test_of(b))}

    claims = {name: [pair(a, b) for a, b in pairs if a in per and b in per]
              for name, pairs in CLAIMS.items()}
    oracle = [pair(a, b) for a, b in ORACLE_PAIRS if a in per and b in per]
    versus_random = [pair(label, "random_tree") for label in out_entries
                     if label != "random_tree" and "random_tree" in per]
    board = [label for label in (*BASELINES, *PAPER_STRATEGIES) if label in out_entries]
    board.sort(key=lambda k: -out_entries[k]["test"][0]
               if _finite(out_entries[k]["test"][0]) else math.inf)
    settings = dict(first["settings"])
    return {"seeds": seeds, "unit_macs": unit, "budget": budget, "planted": planted,
            "settings": settings, "checkpoints": checkpoints, "entries": out_entries,
            "oracle": oracle, "claims": claims,
            "claim_pairs": {name: [list(p) for p in pairs] for name, pairs in CLAIMS.items()},
            "versus_random_tree": versus_random,
            "leaderboard": board,
            "code": sorted({json.dumps(r["code"], sort_keys=True) for r in seed_runs
                            if r.get("code")}),
            "seconds": sum(float(r.get("seconds") or 0.0) for r in seed_runs)}


# ------------------------------------------------------------------------------ driver


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _seed_path(out: Path, key: str, seed: int) -> Path:
    return out / key / f"seed{seed}.json"


def _worker_argv(key: str, seed: int, args: argparse.Namespace, out: Path) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-one", key, str(seed),
            "--out", str(out), "--threads", str(args.threads)]
    if args.quick:
        argv.append("--quick")
    if args.device:
        argv += ["--device", args.device]
    if args.only:
        argv += ["--only", *args.only]
    if args.strategy_kwargs:
        argv += ["--strategy-kwargs", args.strategy_kwargs]
    return argv


def run_one(key: str, seed: int, args: argparse.Namespace, out: Path) -> None:
    """One (dataset, seed) into ``out/<key>/seed<seed>.json``."""
    config = datasets()[key]
    override = json.loads(args.strategy_kwargs) if args.strategy_kwargs else None
    raw = run_seed(config, seed, quick=args.quick, device=args.device, only=args.only,
                   kwargs_override=override)
    path = _seed_path(out, key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_ready(raw)), encoding="utf-8")


def run_all(pairs: Sequence[tuple[str, int]], args: argparse.Namespace, out: Path) -> None:
    """Every (dataset, seed), ``args.jobs`` processes at a time, slowest datasets first."""
    waiting, running = list(pairs), []
    while waiting or running:
        while waiting and len(running) < max(1, args.jobs):
            key, seed = waiting.pop(0)
            proc = subprocess.Popen(_worker_argv(key, seed, args, out), cwd=ROOT)
            running.append((key, seed, proc))
        time.sleep(0.5)
        for item in list(running):
            key, seed, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode:
                for *_, other in running:
                    other.kill()
                raise SystemExit(f"bench_search_quality: {key} seed {seed} failed (exit status "
                                 f"{proc.returncode}); see its error above")


#: Rough relative cost of one seed of each dataset (the longest start first).
_COST = {"multi_digits": 3.0, "synthetic": 2.0, "digits": 1.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run (unless ``--report-only``), merge, summarise; write ``--json`` and ``--markdown``."""
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_quality-"))
    configs = datasets()
    result: dict[str, Any] = {"command": args.command, "machine": machine_info(
        args.device or "cpu"), "quick": args.quick, "seeds": list(args.seeds),
        "threads": args.threads, "jobs": args.jobs, "out": str(out), "datasets": {}}
    if args.report_only:
        run_file = out / "run.json"
        if not run_file.is_file():
            raise SystemExit(f"bench_search_quality: --report-only needs --out with an earlier "
                             f"run's run.json; {out} has none")
        result.update(json.loads(run_file.read_text(encoding="utf-8")))
    else:
        start, cpu0 = time.perf_counter(), _cpu_seconds()
        pairs = [(k, s) for k in sorted(args.datasets, key=lambda k: -_COST.get(k, 1.0))
                 for s in args.seeds]
        run_all(pairs, args, out)
        result["wall_seconds"] = time.perf_counter() - start
        result["cpu_seconds"] = _cpu_seconds() - cpu0
        facts = {k: result[k] for k in ("command", "machine", "quick", "seeds", "threads", "jobs",
                                        "wall_seconds", "cpu_seconds")}
        facts["datasets_run"] = list(args.datasets)
        (out / "run.json").write_text(json.dumps(facts, indent=1), encoding="utf-8")
    for key in result.get("datasets_run", args.datasets):
        raws = [json.loads(_seed_path(out, key, s).read_text(encoding="utf-8"))
                for s in result["seeds"] if _seed_path(out, key, s).is_file()]
        if not raws:
            continue
        summary = summarise(raws)
        summary["title"] = configs[key].title
        summary["note"] = configs[key].note
        summary["label_noise"] = label_noise(configs[key], bool(result["quick"]))
        result["datasets"][key] = summary
    result = json_ready(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.markdown:
        images = Path(args.images) if args.images else None
        Path(args.markdown).write_text(render_quality.markdown(result, images, args.image_link)
                                       + "\n", encoding="utf-8")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help="the benchmark suite's smoke size (smaller data, budgets, 2 seeds)")
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(datasets()),
                        help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="default 0 1 2 3 4 (--quick: 0 1)")
    parser.add_argument("--only", nargs="+", default=None, metavar="LABEL",
                        help="run only these contenders (labels of entries())")
    parser.add_argument("--strategy-kwargs", default=None, metavar="JSON",
                        help='replace contenders\' arguments: \'{"affinity_tree": {"estimator": '
                             '"full"}}\'')
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: first available)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=2,
                        help="(dataset, seed) processes side by side (default 2)")
    parser.add_argument("--out", default=None, help="folder of the per-seed JSON (default: temporary)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: summarise and render the per-seed JSON in --out")
    parser.add_argument("--json", default=None, help="write the raw figures and summary here")
    parser.add_argument("--markdown", default=None, help="write the '## Search quality' section here")
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"),
                        help="where the anytime curves go (default docs/images)")
    parser.add_argument("--image-link", default="images",
                        help="folder of the pictures as linked from the markdown (default 'images')")
    parser.add_argument("--run-one", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command = "python benchmarks/bench_search_quality.py " + " ".join(argv)
    args.datasets = args.datasets or list(datasets())
    args.seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    os.environ.setdefault("MPLBACKEND", "Agg")
    import logging

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.run_one:
        key, seed = args.run_one
        run_one(key, int(seed), args, Path(args.out))
        return 0
    result = run(args)
    wall = result.get("wall_seconds")
    print("[bench_search_quality] done" + (f" in {wall:.0f} s" if wall else "")
          + (f"; json: {args.json}" if args.json else "")
          + (f"; markdown: {args.markdown}" if args.markdown else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
