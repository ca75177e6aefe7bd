"""Compute accounting: what every network a strategy trains costs, in one comparable unit.

A strategy's cost is not its trial count: one trial of ``gumbel_policy`` learns a policy on a
supernet and retrains several candidates, one of ``affinity_tree`` may train every recombined
network first. To compare strategies at equal compute, every training pass is charged to the
open :func:`meter` in **training MACs**: for each optimizer step, the rows of the batch times the
forward multiply-accumulates per sample of the routes that ran (only the active task's route
under one-task sampling). The backward pass costs a fixed multiple of the forward one for every
architecture here, so forward MACs rank strategies the same as total FLOPs would. Wall seconds
and the number of networks trained are recorded beside it.

The :class:`~mtlsearch.engine.train.Trainer` charges every step it takes; strategies with their own
training loops (a policy phase, stochastic depth) call :func:`charge_forward`. Results cached
across trials (an affinity tensor, the single-task networks a strategy asks for) are charged to
a search once, the first time it uses them, with what they cost when they were computed
(:meth:`Meter.charge_once`), so a search's compute does not depend on what another search
computed before it.

Example:
    >>> with meter() as m:
    ...     charge(macs=1000.0, samples=10)
    ...     with meter() as inner:
    ...         charge(macs=5.0)
    >>> m.macs, inner.macs
    (1005.0, 5.0)
    >>> with meter() as m, uncharged():
    ...     charge(macs=1.0)
    >>> m.macs
    0.0
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mtlsearch.errors import MTLSearchError

__all__ = [
    "Compute",
    "Meter",
    "meter",
    "uncharged",
    "charge",
    "charge_cached",
    "charge_forward",
    "measured",
    "forward_macs",
    "current_meters",
    "compute_unit",
    "parse_compute",
]

# The open meters, innermost last; a charge goes to all of them (a trial inside a search).
_METERS: contextvars.ContextVar[tuple[Meter, ...]] = contextvars.ContextVar("mtlsearch_meters", default=())


@dataclass
class Compute:
    """An amount of training compute.

    Attributes:
        macs: Training MACs: sum over optimizer steps of batch rows x forward MACs per sample.
        samples: Sample passes (batch rows summed over steps).
        networks: Trainings started (candidates, recombined networks, policy phases...).
        seconds: Wall seconds while the meter was open (set when it closes).
    """

    macs: float = 0.0
    samples: int = 0
    networks: int = 0
    seconds: float = 0.0

    def add(self, other: Compute) -> None:
        """Add ``other``'s MACs, samples and networks (not its seconds) to this amount."""
        self.macs += other.macs
        self.samples += other.samples
        self.networks += other.networks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Compute:
        return cls(**{k: data[k] for k in ("macs", "samples", "networks", "seconds") if k in data})


@dataclass
class Meter(Compute):
    """An open compute meter (see :func:`meter`); remembers the cached items it was charged."""

    charged_keys: set[str] = field(default_factory=set, repr=False)

    def charge_once(self, key: str, cost: Compute) -> None:
        """Charge ``cost`` unless the item ``key`` was charged to this meter before."""
        if key not in self.charged_keys:
            self.charged_keys.add(key)
            self.add(cost)

    def snapshot(self) -> Compute:
        """The amount so far, as a plain :class:`Compute`."""
        return Compute(self.macs, self.samples, self.networks, self.seconds)


def current_meters() -> tuple[Meter, ...]:
    """The open meters, outermost first."""
    return _METERS.get()


@contextlib.contextmanager
def meter(into: Meter | None = None) -> Iterator[Meter]:
    """Open a meter: every charge inside the block is added to it (and to the outer ones).

    Pass ``into`` to keep adding to an existing meter (a search's meter across its trials).
    """
    opened = into if into is not None else Meter()
    token = _METERS.set((*_METERS.get(), opened))
    start = time.perf_counter()
    try:
        yield opened
    finally:
        opened.seconds += time.perf_counter() - start
        _METERS.reset(token)


@contextlib.contextmanager
def uncharged() -> Iterator[None]:
    """Charge nothing inside the block (the single-task reference every strategy shares)."""
    token = _METERS.set(())
    try:
        yield
    finally:
        _METERS.reset(token)


def charge(*, macs: float, samples: int = 0, networks: int = 0) -> None:
    """Add an amount of compute to every open meter."""
    for m in _METERS.get():
        m.macs += float(macs)
        m.samples += int(samples)
        m.networks += int(networks)


def charge_cached(key: str, cost: Compute | None) -> None:
    """Charge a cached item's ``cost`` to every open meter that has not been charged ``key``.

    The decision is taken for every meter before any is marked, so meters that share one set
    of keys (a search and its trials) are charged together, the first time only.
    """
    fresh = [m for m in _METERS.get() if key not in m.charged_keys]
    for m in fresh:
        m.charged_keys.add(key)
        if cost is not None:
            m.add(cost)


def mark_charged(key: str) -> None:
    """Record in every open meter that ``key``'s cost was charged (it was just computed)."""
    for m in _METERS.get():
        m.charged_keys.add(key)


@contextlib.contextmanager
def measured(key: str) -> Iterator[Meter]:
    """Measure what computing the cached item ``key`` costs (charged to the open meters too).

    The measuring meter has its own keys, so it counts every cached item the computation
    uses in full: the item's recorded cost does not depend on who computed what before.
    """
    with meter() as cost:
        yield cost
    mark_charged(key)


def forward_macs(model: Any, active: Sequence[str] | None = None) -> int:
    """Forward MACs per sample of ``model``'s routes for ``active`` tasks (default: all).

    ``model`` is a :class:`~mtlsearch.engine.model.MultiTaskModel`; shared prefixes count once and
    skipped blocks cost their shortcut, as in :func:`~mtlsearch.graph.summary.summarize`. Cached
    on the model per task tuple.
    """
    cache: dict[tuple[str, ...] | None, int] = model.__dict__.setdefault("_forward_macs", {})
    key = None if active is None else tuple(active)
    if key not in cache:
        cache[key] = _plan_macs(model, key)
    return cache[key]


def _plan_macs(model: Any, active: tuple[str, ...] | None) -> int:
    space = model.space
    plan = model.plan(None if active is None else list(active))
    macs = 0
    for level in plan.levels:
        for run in level:
            macs += len(run.run_inputs) * space.block_cost(run.index).macs
            macs += len(run.skip_inputs) * space.skip_cost(run.index).macs
    specs = {s.name: s for s in model.task_specs}
    for task in plan.head_slots:
        macs += space.head_cost(specs[task]).macs
    return int(macs)


def charge_forward(model: Any, rows: int, active: Sequence[str] | None = None) -> None:
    """Charge one training step of ``rows`` samples through ``model``'s ``active`` routes."""
    if _METERS.get():
        charge(macs=float(rows) * forward_macs(model, active), samples=int(rows))


def compute_unit(data: Any, space: str | Any, budget: Any,
                 space_kwargs: Mapping[str, Any] | None = None) -> float:
    """Training MACs of one hard-sharing network over ``data`` with ``budget``: the unit of
    ``"Nx"`` compute budgets (epochs x training samples x forward MACs per sample)."""
    from mtlsearch.graph.sharing import SharingGraph
    from mtlsearch.graph.summary import (
        summarize,  # imported here: the meters stay free of the engine
    )
    from mtlsearch.registry import create_space

    space_obj = create_space(space, input_shape=data.input_shape, **dict(space_kwargs or {})) \
        if isinstance(space, str) else space
    names = [t.name for t in data.tasks]
    graph = SharingGraph.hard_sharing(names, space_obj.num_blocks)
    macs = summarize(graph, space_obj, data.tasks).macs
    return float(budget.epochs * len(data.train) * macs)


def parse_compute(compute: float | str | None, unit: float) -> float | None:
    """A compute budget in MACs from a number or ``"Nx"`` (N units of :func:`compute_unit`)."""
    if compute is None:
        return None
    text = str(compute).strip().lower()
    try:
        value = float(text[:-1]) * unit if text.endswith("x") else float(text)
    except ValueError:
        raise MTLSearchError(
            f"bad compute budget {compute!r}: give training MACs (e.g. 3e9) or a multiple of "
            "one hard-sharing training (e.g. 6x)") from None
    if not value > 0:
        raise MTLSearchError(f"the compute budget must be positive, got {compute!r}")
    return value
