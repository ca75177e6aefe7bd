"""How many worker processes a search or a comparison runs, and how many torch threads each.

``workers`` is a whole number or ``"auto"``. ``"auto"`` follows the device the candidates
train on:

* **CPU**: the usable cores (at most :data:`MAX_CPU_WORKERS`): small candidates train
  fastest one thread per process, one process per core;
* **CUDA**: the device-share rule of :mod:`mtlsearch.engine.device_share`, from the largest
  candidate's training peak measured on the device and the device's free memory (at most the
  usable cores, which feed the processes);
* **MPS** (Apple GPUs): one process (several on one MPS device have not been measured);

and never more than there is work for (``jobs``: a search's trials left, a comparison's
searches). A search on in-memory storage runs one process: workers share the study through
its storage.

Each worker process gets ``threads`` torch threads: the caller's, but no more than its share
of the cores, so N processes never ask for more threads than there are cores; on the CPU,
when they have a core each (or more), each is pinned to its own
(:func:`~mtlsearch.study.worker_start.core_slices`).

Example:
    >>> plan = plan_workers(2, device="cpu", cores=4, caller_threads=4)
    >>> plan.workers, plan.threads
    (2, 2)
    >>> parse_workers("auto")
    'auto'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mtlsearch.errors import MTLSearchError
from mtlsearch.study.worker_start import core_slices, pinning_enabled

__all__ = ["AUTO", "MAX_CPU_WORKERS", "WorkerPlan", "parse_workers", "plan_workers"]

AUTO = "auto"
#: Most worker processes ``"auto"`` starts on the CPU.
MAX_CPU_WORKERS = 8

Workers = int | Literal["auto"]


@dataclass(frozen=True)
class WorkerPlan:
    """The decision: processes, torch threads in each, and why (a line for the log);
    with several processes, where the candidates train (``device_kind``) and, on the CPU,
    the cores each process is pinned to (``cores``, one entry per process; empty: unpinned).
    """

    workers: int
    threads: int
    why: str
    device_kind: str = ""
    cores: tuple[tuple[int, ...], ...] = ()


def parse_workers(value: Any) -> Workers:
    """A worker count as given by a user: a whole number of at least 1, or ``"auto"``.

    Raises:
        MTLSearchError: anything else (what was given, and the two accepted forms).
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = int(value)
        exact = not isinstance(value, bool) and float(value) == number
    except (TypeError, ValueError):
        exact = False
    if not exact:
        raise MTLSearchError(f"workers must be a whole number or 'auto', got {value!r}")
    if number < 1:
        raise MTLSearchError(f"workers must be at least 1 (or 'auto'), got {number}")
    return number


def plan_workers(asked: Any, *, device: Any = "cpu", jobs: int | None = None,
                 cores: int | None = None, caller_threads: int | None = None,
                 measure_gpu: Callable[[Any, int], Any] | None = None,
                 shared_storage: bool = True) -> WorkerPlan:
    """How many processes run, with how many torch threads each.

    Args:
        asked: A whole number, or ``"auto"`` (see the module's rule).
        device: Where the candidates train (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``,
            a ``torch.device``, or ``None``: the first available, as training picks it).
        jobs: The most processes there is work for (trials left, searches); ``None``: no cap.
        cores: The usable CPU cores (default :func:`~mtlsearch.defaults.usable_cores`).
        caller_threads: The caller's torch threads (default ``torch.get_num_threads()``).
        measure_gpu: ``measure_gpu(device, cap)`` returns a
            :class:`~mtlsearch.engine.device_share.DeviceShare` for a CUDA ``device``
            (a search passes :func:`~mtlsearch.engine.device_share.plan_device_share` on its
            space and data); required for ``"auto"`` on CUDA.
        shared_storage: ``False`` for a search on in-memory storage: one process.
    """
    from mtlsearch.defaults import usable_cores

    asked = parse_workers(asked)
    cores = cores or usable_cores()
    if caller_threads is None:
        import torch

        caller_threads = torch.get_num_threads()
    kind = _device_kind(device) if asked == AUTO else ""  # only auto looks at the device
    if asked != AUTO:
        workers, why = asked, f"{asked} worker(s), as asked"
    elif not shared_storage:
        workers, why = 1, ("1 worker: the study is in memory (several workers share it "
                           "through a storage: give one, e.g. journal:FILE.log)")
    elif kind == "cuda":
        if measure_gpu is None:
            raise MTLSearchError("workers='auto' on a CUDA device needs the candidates' "
                                 "measured memory; give a number of workers instead")
        share = measure_gpu(device, min(MAX_CPU_WORKERS, cores))
        workers, why = share.trainings, f"auto: {share.describe()}"
    elif kind == "mps":
        workers, why = 1, "auto: 1 worker on an Apple GPU (several on one MPS device are not measured)"
    else:
        workers = min(MAX_CPU_WORKERS, cores)
        why = f"auto: {workers} worker(s), one per usable CPU core (at most {MAX_CPU_WORKERS})"
    if jobs is not None and workers > max(1, jobs):
        workers = max(1, jobs)
        why += f"; {workers} for the {jobs} job(s) left"
    threads = max(1, min(int(caller_threads), cores // workers)) if workers > 1 else \
        max(1, int(caller_threads))
    if workers == 1:
        return WorkerPlan(workers=1, threads=threads, why=why)
    kind = kind or _device_kind(device)
    slices = core_slices(workers, threads) if kind == "cpu" and pinning_enabled() else ()
    return WorkerPlan(workers=workers, threads=threads, why=why, device_kind=kind, cores=slices)


def _device_kind(device: Any) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"``, as training resolves ``device`` (None: the first
    available)."""
    if device is None or str(device) == "auto":
        from mtlsearch.engine.train import select_device

        return select_device(None).type
    return str(device).split(":")[0]
