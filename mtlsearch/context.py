"""The search context a strategy works in, and the cache of expensive results.

Example:
    >>> from mtlsearch import create_space, load_dataset
    >>> from mtlsearch.train import TrainConfig
    >>> data = load_dataset("synthetic", n_tasks=4, n_samples=300)
    >>> ctx = SearchContext(data=data, space=create_space("mlp", input_shape=data.input_shape),
    ...                     budget=TrainConfig(epochs=1))
    >>> ctx.task_names
    ['t000', 't001', 't002', 't003']
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DatasetSplits
from .graph import SharingGraph
from .scoring import Metrics, evaluate
from .spaces import SearchSpace
from .tasks import TaskSpec
from .train import TrainConfig, TrainResult, build_and_train

__all__ = ["SearchContext", "ResultCache", "cache_key"]


def cache_key(kind: str, **parts: Any) -> str:
    """A stable key for a cached item from what produced it."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


class ResultCache:
    """In-memory cache of JSON-ready results, mirrored to a folder when one is given.

    Items are keyed by what produced them (:func:`cache_key`), so every trial of a study and
    every later study with the same data, space, budget and seed reuses them.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        if key in self._memory:
            return self._memory[key]
        if self.folder is not None:
            path = self.folder / f"{key}.json"
            if path.is_file():
                try:
                    value = json.loads(path.read_text())
                except json.JSONDecodeError:
                    return None  # a half-written file from a crash: recompute
                self._memory[key] = value
                return value
        return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._memory[key] = value
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = self.folder / f".{key}.tmp"
                tmp.write_text(json.dumps(value))
                tmp.replace(self.folder / f"{key}.json")  # atomic: readers never see half

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value


@dataclass
class SearchContext:
    """Everything a strategy may use: data, tasks, space, budget, seed, trainer and cache.

    Attributes:
        data: The dataset splits.
        space: The search space.
        budget: Training settings of every candidate (the study's budget).
        seed: Seed of this search (weights, shuffling, strategies' random choices).
        cache: Expensive results keyed by what produced them.
    """

    data: DatasetSplits
    space: SearchSpace
    budget: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    cache: ResultCache = field(default_factory=ResultCache)

    def __post_init__(self) -> None:
        self.space.check_input(self.data.input_shape)
        if self.budget.seed != self.seed:
            self.budget = self.budget.replace(seed=self.seed)

    @property
    def tasks(self) -> list[TaskSpec]:
        return list(self.data.tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.data.tasks]

    def new_graph(self, kind: str = "hard_sharing", **kwargs: Any) -> SharingGraph:
        """A graph over this context's tasks and blocks, with space and task specs recorded.

        ``kind`` is ``hard_sharing``, ``single_task`` or ``partitions`` (pass ``partitions=``).
        """
        meta = {"space": self.space.spec(), "task_specs": [t.to_dict() for t in self.tasks]}
        if kind == "hard_sharing":
            return SharingGraph.hard_sharing(self.task_names, self.space.num_blocks, **meta, **kwargs)
        if kind == "single_task":
            return SharingGraph.single_task(self.task_names, self.space.num_blocks, **meta, **kwargs)
        if kind == "partitions":
            return SharingGraph.from_partitions(self.task_names, kwargs.pop("partitions"), **meta, **kwargs)
        raise ValueError(f"unknown graph kind {kind!r}; use hard_sharing, single_task or partitions")

    def train(self, graph: SharingGraph, **overrides: Any) -> TrainResult:
        """Materialize and train ``graph`` on the training split with the budget (+ overrides).

        Keyword arguments that are not training settings (``on_epoch_end``, ``on_backward``)
        go to the :class:`~mtlsearch.train.Trainer`.
        """
        hooks = {k: overrides.pop(k) for k in ("on_epoch_end", "on_backward") if k in overrides}
        config = self.budget.replace(**overrides) if overrides else self.budget
        return build_and_train(
            graph, self.space, self.tasks, self.data.train, self.data.val, config, **hooks
        )

    def evaluate(self, model: Any, split: str = "val") -> Metrics:
        """Per-task metrics of ``model`` on ``split`` (``train``, ``val`` or ``test``)."""
        return evaluate(model, getattr(self.data, split), batch_size=self.budget.eval_batch_size)

    def key(self, kind: str, **extra: Any) -> str:
        """A cache key for ``kind`` of item, from the data, space, budget and seed."""
        budget = self.budget.to_dict()
        budget.pop("device", None)
        return cache_key(
            kind,
            dataset=self.data.name,
            data=self.data.fingerprint(),
            space=self.space.spec(),
            budget=budget,
            seed=self.seed,
            **extra,
        )

    def reference(self) -> dict[str, Metrics]:
        """Single-task reference metrics ``{"val": ..., "test": ...}``, computed once and cached."""

        def compute() -> dict[str, Any]:
            result = self.train(self.new_graph("single_task"))
            return {"val": self.evaluate(result.model, "val"), "test": self.evaluate(result.model, "test")}

        return self.cache.get_or_compute(self.key("single_task_reference"), compute)
