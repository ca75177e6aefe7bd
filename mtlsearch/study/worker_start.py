"""How the worker processes of a parallel search start, and on which cores they run.

Two measured costs on a small-candidate search (``docs/benchmarks.md``, section h):

* **Cores**: two unpinned training processes on two cores each train about 1.3x slower than
  one alone (the scheduler moves them between cores, their caches go cold); pinned, one per
  core, they train as fast as one alone. So on the CPU, when the processes together have
  every usable core, each is pinned to its own cores (:func:`core_slices`, :func:`pin`).
* **Start**: a spawned worker imports torch and everything a trial needs (about 5 s of CPU:
  torch, ``torch._dynamo`` through ``torch.optim``, torchmetrics) before its first trial.
  Forked from the caller, it has them already. Fork is used only where it is safe
  (:func:`start_method`): on Linux, training on the CPU with CUDA untouched, one torch thread
  per worker (a forked child that runs an OpenMP team after its parent ran one hangs in
  libgomp; with one thread it never runs one) and no other thread of the caller that could
  hold a lock across the fork.

``MTLSEARCH_PIN_WORKERS=0`` turns the pinning off; ``MTLSEARCH_WORKER_START=spawn`` (or
``fork``) forces a start method.

Example:
    >>> core_slices(2, 1, available=[0, 1])
    ((0,), (1,))
    >>> core_slices(3, 1, available=[0, 1])  # not a core each: no pinning
    ()
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mtlsearch.defaults import usable_core_ids
from mtlsearch.errors import MTLSearchError

__all__ = ["PIN_ENV", "START_ENV", "core_slices", "fork_blockers", "pin", "pinning_enabled",
           "start_method", "warm_imports"]

log = logging.getLogger(__name__)

#: Environment variable: ``0``/``off``/``false`` stops workers being pinned to cores.
PIN_ENV = "MTLSEARCH_PIN_WORKERS"
#: Environment variable: ``fork`` or ``spawn`` forces how workers start (default: chosen).
START_ENV = "MTLSEARCH_WORKER_START"
_OFF = {"0", "off", "false", "no"}


def pinning_enabled() -> bool:
    """Whether workers may be pinned to cores (``MTLSEARCH_PIN_WORKERS`` is not off)."""
    return os.environ.get(PIN_ENV, "").strip().lower() not in _OFF


def core_slices(processes: int, threads: int,
                available: Sequence[int] | None = None) -> tuple[tuple[int, ...], ...]:
    """One disjoint set of ``threads`` cores per process, from the ``available`` core ids
    (default: this process's usable cores), in order; ``()`` (no pinning) when there are
    fewer than ``processes * threads`` cores, a single process, or the system cannot pin.
    """
    cores = list(available) if available is not None else usable_core_ids()
    if processes < 2 or threads < 1 or len(cores) < processes * threads:
        return ()
    if available is None and not hasattr(os, "sched_setaffinity"):
        return ()
    return tuple(tuple(cores[i * threads:(i + 1) * threads]) for i in range(processes))


@contextlib.contextmanager
def pin(cores: Iterable[int] | None) -> Iterator[None]:
    """Run this process on ``cores`` while inside, then on the cores it had (``None`` or
    empty: leave it where it is)."""
    cores = tuple(cores or ())
    if not cores or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    pin_for_good(cores)
    try:
        yield
    finally:
        pin_for_good(before)


def pin_for_good(cores: Iterable[int] | None) -> None:
    """Run this process (a worker) on ``cores`` from now on (empty: unchanged)."""
    cores = tuple(cores or ())
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def fork_blockers(allowed: Sequence[threading.Thread] = ()) -> list[str]:
    """The names of this process's live threads, other than the main one and ``allowed``
    (threads the caller holds still across the fork), that rule a fork out: one of them
    could hold a lock the child then waits on for ever."""
    main = threading.main_thread()
    return [t.name for t in threading.enumerate()
            if t is not main and t not in allowed and t.is_alive()]


def start_method(*, threads: int, device_kind: str, allowed: Sequence[threading.Thread] = (),
                 risks: Sequence[str] = ()) -> tuple[str, str]:
    """``("fork" | "spawn", why)``: how this search's workers start (see the module).
    ``allowed``: threads held still across the fork; ``risks``: the caller's own reasons
    against forking (objects a child must not inherit).

    Raises:
        MTLSearchError: ``MTLSEARCH_WORKER_START`` names neither method.
    """
    forced = os.environ.get(START_ENV, "").strip().lower()
    if forced and forced not in ("fork", "spawn"):
        raise MTLSearchError(f"{START_ENV}={forced!r}: use 'fork' or 'spawn' (or unset it "
                             "to let mtlsearch choose)")
    if forced == "spawn":
        return "spawn", f"spawned ({START_ENV}=spawn)"
    reasons = []
    if not sys.platform.startswith("linux"):
        reasons.append(f"{sys.platform} (fork only on Linux)")
    if device_kind != "cpu":
        reasons.append(f"training on {device_kind}")
    elif "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        reasons.append("CUDA is initialised in this process")
    if threads != 1:
        reasons.append(f"{threads} torch threads per worker")
    blockers = fork_blockers(allowed)
    if blockers:
        reasons.append("other threads run here: " + ", ".join(blockers))
    reasons.extend(risks)
    if forced == "fork":
        if reasons:
            log.warning("%s=fork although fork may not be safe here: %s", START_ENV,
                        "; ".join(reasons))
        return "fork", f"forked ({START_ENV}=fork)"
    if reasons:
        return "spawn", "spawned: " + "; ".join(reasons)
    return "fork", "forked from this process (CPU, one torch thread each)"


def warm_imports(kinds: Iterable[Any]) -> None:
    """Import now what every trial imports on first use (``torch._dynamo``, which
    ``torch.optim`` loads; each task kind's ``scoring_modules``), so that forked workers
    have it: this process would import it in its own first trial anyway."""
    import torch._dynamo  # noqa: F401  (every optimizer's first step imports it)

    for module in dict.fromkeys(m for kind in kinds for m in getattr(kind, "scoring_modules", ())):
        try:
            importlib.import_module(module)
        except ImportError:  # the trial will say what is missing
            log.debug("could not import %s ahead of the trials", module)
