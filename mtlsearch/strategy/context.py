"""The search context a strategy works in, and the cache of expensive results.

Example:
    >>> from mtlsearch import create_space, load_dataset
    >>> from mtlsearch.engine.train import TrainConfig
    >>> data = load_dataset("synthetic", n_tasks=4, n_samples=300)
    >>> ctx = SearchContext(data=data, space=create_space("mlp", input_shape=data.input_shape),
    ...                     budget=TrainConfig(epochs=1))
    >>> ctx.task_names
    ['t000', 't001', 't002', 't003']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlsearch.data.dataset import DatasetSplits
from mtlsearch.engine.compute import Compute, charge_cached, measured, uncharged
from mtlsearch.engine.scoring import Metrics, evaluate
from mtlsearch.engine.train import TrainConfig, TrainResult, build_and_train
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.tasks.kinds import TaskSpec

__all__ = ["SearchContext", "ResultCache", "cache_key"]

# Trained single-task weights of the last few contexts, in this process: the reference and
# the affinity estimators both need the same single-task models (same graph, budget, seed).
_SINGLE_TASK_WEIGHTS: OrderedDict[str, dict[str, Any]] = OrderedDict()
_SINGLE_TASK_KEEP = 4
# What training them cost: a strategy that asks for them is charged it (once per search).
_SINGLE_TASK_COST: dict[str, Compute] = {}

log = logging.getLogger(__name__)

try:  # POSIX: one process computes an item while the others wait for it
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process lock, see ResultCache
    fcntl = None  # type: ignore[assignment]


def _cost_key(key: str) -> str:
    return f"compute-{key}"


def cache_key(kind: str, **parts: Any) -> str:
    """A stable key for a cached item from what produced it."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


class ResultCache:
    """In-memory cache of JSON-ready results, mirrored to a folder when one is given.

    Items are keyed by what produced them (:func:`cache_key`), so every trial of a study and
    every later study with the same data, space, budget and seed reuses them.

    With a folder, :meth:`get_or_compute` holds an exclusive ``fcntl.flock`` on
    ``folder/.KEY.lock`` while it computes: workers (processes, on one machine or sharing the
    folder over a file system with working ``flock``) that ask for the same item at once wait
    for the first one, then read its result; an item is computed once, never twice at the same
    time. The operating system drops the lock of a process that dies, so a crashed worker
    leaves nothing stale behind: the next one computes the item. On systems without ``fcntl``
    (Windows) only threads of one process are serialised.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> Any | None:
        """The item stored under ``key`` (memory, then the folder), or ``None``."""
        if key in self._memory:
            return self._memory[key]
        return self._read(key)

    def _read(self, key: str) -> Any | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a half-written file from a crash: recompute
        self._memory[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._memory[key] = value
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                # one temp name per writer: two processes writing the same key never share one
                tmp = self.folder / f".{key}.{os.getpid()}-{threading.get_ident()}.tmp"
                try:
                    tmp.write_text(json.dumps(value))
                    tmp.replace(self.folder / f"{key}.json")  # atomic: readers never see half
                finally:
                    tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves nothing

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """The item under ``key``; computed by ``compute()`` and stored when it is missing.

        Only one caller computes a given key at a time (threads of this process, and other
        processes sharing the folder); the others wait, then find the stored result.
        """
        value = self.get(key)
        if value is not None:
            charge_cached(key, self.cost(key))
            return value
        with self._exclusive(key):
            value = self._memory.get(key)
            if value is None:
                value = self._read(key)  # another process may have finished while we waited
            if value is not None:
                charge_cached(key, self.cost(key))
                return value
            with measured(key) as cost:
                value = compute()
            # the cost first: a reader that finds the value finds what it cost
            self.put(_cost_key(key), cost.snapshot().to_dict())
            self.put(key, value)
        return value

    def cost(self, key: str) -> Compute | None:
        """What computing the item ``key`` cost (``None`` if not recorded)."""
        recorded = self.get(_cost_key(key))
        return Compute.from_dict(recorded) if isinstance(recorded, dict) else None

    @contextlib.contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock: a thread lock, and a ``flock`` on a file when there is a folder."""
        with self._lock:
            thread_lock = self._key_locks.setdefault(key, threading.Lock())
        with thread_lock:
            if self.folder is None or fcntl is None:
                yield
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f".{key}.lock"  # kept: deleting it would race with waiters
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("waiting for another process computing %s (lock %s)", key, path)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


@dataclass
class SearchContext:
    """Everything a strategy may use: data, tasks, space, budget, seed, trainer and cache.

    Attributes:
        data: The dataset splits.
        space: The search space.
        budget: Training settings of every candidate (the study's budget).
        seed: Seed of this search (weights, shuffling, strategies' random choices).
        cache: Expensive results keyed by what produced them.
        distributed: Set on rank 0 of a ``torchrun`` search (a
            :class:`~mtlsearch.engine.distributed.Session`): :meth:`train` then trains with every rank.
    """

    data: DatasetSplits
    space: SearchSpace
    budget: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    cache: ResultCache = field(default_factory=ResultCache)
    distributed: Any = field(default=None, repr=False, compare=False)

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
        go to the :class:`~mtlsearch.engine.train.Trainer`. Under ``torchrun`` (``distributed`` set)
        every rank trains the model together (DistributedDataParallel).
        """
        hooks = {k: overrides.pop(k) for k in ("on_epoch_end", "on_backward") if k in overrides}
        config = self.budget.replace(**overrides) if overrides else self.budget
        if self.distributed is not None:
            return self.distributed.train(self, graph, config, **hooks)
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

    def single_task_model(self) -> Any:
        """The single-task models (one chain per task) trained with the budget and seed.

        Trained once per context key: the reference metrics and the affinity estimators ask
        for the same networks. Kept in this process and, with a cache folder, in it
        (``KEY.safetensors`` and what training cost), so other processes on the folder (the
        workers of a comparison) load them instead of training them again; one that asks
        while another trains them waits for it (the cache's lock). Each call returns a fresh
        model holding the trained weights (callers may freeze or hook it).
        """
        from mtlsearch.engine.model import materialize

        key = self.key("single_task_model")
        graph = self.new_graph("single_task")
        state = _SINGLE_TASK_WEIGHTS.get(key)
        cost = _SINGLE_TASK_COST.get(key)
        if state is None:
            state, cost = self._stored_single_task(key)
        if state is None:
            with self.cache._exclusive(key):  # another process may be training them now
                state, cost = self._stored_single_task(key)
                if state is None:
                    with measured(key) as meter:
                        model = self.train(graph).model
                    self._keep_single_task(key, model.state_dict(), meter.snapshot(),
                                           store=True)
                    return model
        self._keep_single_task(key, state, cost)
        charge_cached(key, cost)
        model = materialize(graph, self.space, self.tasks)
        model.load_state_dict(state)
        return model.to(next(iter(state.values())).device)

    def _keep_single_task(self, key: str, state: dict[str, Any], cost: Compute | None,
                          store: bool = False) -> None:
        """Remember trained single-task weights in this process (the last few), and with
        ``store`` in the cache folder too."""
        import copy

        if key not in _SINGLE_TASK_WEIGHTS:
            _SINGLE_TASK_WEIGHTS[key] = copy.deepcopy(state) if store else state
        if cost is not None:
            _SINGLE_TASK_COST[key] = cost
        _SINGLE_TASK_WEIGHTS.move_to_end(key)
        while len(_SINGLE_TASK_WEIGHTS) > _SINGLE_TASK_KEEP:
            old, _ = _SINGLE_TASK_WEIGHTS.popitem(last=False)
            _SINGLE_TASK_COST.pop(old, None)
        folder = self.cache.folder
        if not store or folder is None:
            return
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        # The cost first, then the weights (atomically): a reader that finds the weights
        # finds what they cost.
        if cost is not None:
            self.cache.put(_cost_key(key), cost.to_dict())
        tmp = folder / f".{key}.{os.getpid()}-{threading.get_ident()}.safetensors.tmp"
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
            tmp.replace(folder / f"{key}.safetensors")
        except OSError as exc:  # a full disk: this process keeps them, others train again
            log.warning("could not keep the single-task weights in %s: %s", folder, exc)
        finally:
            tmp.unlink(missing_ok=True)

    def _stored_single_task(self, key: str) -> tuple[dict[str, Any] | None, Compute | None]:
        """Single-task weights another process trained and kept in the cache folder, on
        this context's device, and what they cost; ``(None, None)`` when there are none."""
        folder = self.cache.folder
        path = folder / f"{key}.safetensors" if folder is not None else None
        if path is None or not path.is_file():
            return None, None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from mtlsearch.engine.train import select_device

        try:
            state = load_file(str(path), device=str(select_device(self.budget.device)))
        except (SafetensorError, OSError) as exc:  # a damaged file: train them again
            log.warning("ignoring damaged single-task weights %s: %s", path, exc)
            return None, None
        return state, self.cache.cost(key)

    def reference(self) -> dict[str, Metrics]:
        """Single-task reference metrics ``{"val": ..., "test": ...}``, computed once and cached.

        The reference is every strategy's yardstick, so it is charged to none of them
        (:func:`~mtlsearch.engine.compute.uncharged`); a strategy that asks for the single-task
        networks themselves (:meth:`single_task_model`) is charged their training.
        """

        def compute() -> dict[str, Any]:
            model = self.single_task_model()
            return {"val": self.evaluate(model, "val"), "test": self.evaluate(model, "test")}

        with uncharged():
            return self.cache.get_or_compute(self.key("single_task_reference"), compute)
