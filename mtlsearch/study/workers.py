"""Parallel trials on one machine: worker processes that share one study through its storage.

:func:`run_workers` runs the search loop of :func:`~mtlsearch.study.runner.search` in this
process and in ``N - 1`` others (forked from this one where that is safe, spawned otherwise;
on the CPU each pinned to its own cores: :mod:`mtlsearch.study.worker_start`), all on the
same study: the budget lock keeps
the trial count exact, the per-trial seeding and the sampler's fixed history
(:mod:`mtlsearch.study.samplers`) keep the trials those of a serial run, and their progress
comes back through a queue to the one display of the parent. Ctrl-C stops every worker (each
queues its running trial again); a worker that dies (``kill -9``) leaves a trial that the next
process to ask for one fails and queues again.

Example:
    >>> from mtlsearch.study import search
    >>> search(strategy="random_tree", trials=20, workers=2,
    ...        storage="journal:runs/s.log")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import queue as queue_module
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mtlsearch.errors import MTLSearchError, OutOfSpaceError, StorageError

__all__ = ["EventSender", "SharedDisplay", "check_not_bootstrapping", "run_workers",
           "spawn_context", "worker_init"]

log = logging.getLogger(__name__)

_ERRORS = {"MTLSearchError": MTLSearchError, "OutOfSpaceError": OutOfSpaceError,
           "StorageError": StorageError}


def spawn_context() -> Any:
    """The multiprocessing context of every mtlsearch worker (spawn: no forked torch state)."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


def worker_init(threads: int, cores: Any = None) -> None:
    """What every worker process does first: its torch threads, and Optuna's INFO lines off
    (the parent reports progress; the workers' own lines would interleave). ``cores``: the
    cores to run on, or a queue of core sets of which this process takes one (a pool's
    workers, which have no index)."""
    import optuna
    import torch

    from mtlsearch.study.worker_start import pin_for_good

    if cores is not None and not isinstance(cores, (tuple, list)):
        try:
            cores = cores.get(timeout=5)
        except queue_module.Empty:  # more processes than core sets: this one is not pinned
            cores = None
    pin_for_good(cores)
    torch.set_num_threads(max(int(threads), 1))
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class EventSender:
    """A worker's progress display: every call goes to the parent's display as an event."""

    def __init__(self, events: Any, index: int):
        self._events, self._index = events, index

    def __enter__(self) -> EventSender:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def _send(self, name: str, *args: Any, **kwargs: Any) -> None:
        self._events.put(("call", self._index, name, args, kwargs))

    def status(self, text: str) -> None:
        self._send("status", text)

    def message(self, text: str) -> None:
        self._send("message", text)

    def trial_started(self, number: int, epochs: int) -> None:
        self._send("trial_started", number, epochs)

    def epoch_end(self, epoch: int, delta: float | None = None) -> None:
        self._send("epoch_end", epoch, delta)

    def trial_finished(self, number: int, state: str, **kwargs: Any) -> None:
        self._send("trial_finished", number, state, **kwargs)


def _interrupt_once(signum: int, frame: Any) -> None:
    # The terminal's Ctrl-C and the parent's forward may both come: the second must not
    # interrupt the first's clean-up (queueing the running trial again).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM" if signum == signal.SIGTERM else "")


def _worker_main(target: Callable[..., Any], call: Any, events: Any, threads: int,
                 index: int, trackers: Sequence[Any] = (), cores: Sequence[int] = ()) -> None:
    """One worker process: ``target`` (the runner's search loop, handed over by reference:
    this module imports no runner) on the shared study; the parent did the setup.
    ``trackers``: the parent's experiment trackers, registered here as copies of their own;
    ``cores``: the cores this process runs on (empty: any)."""
    from mtlsearch.study.trackers import tracking

    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    events.put(("started", index))  # past the bootstrap (the re-import of __main__)
    try:
        # Started with Ctrl-C blocked (see run_workers): one that came during the bootstrap
        # is delivered now, to the handler above, and ends this worker cleanly.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        worker_init(threads, cores)
        call.workers, call.progress = 1, False
        with tracking(trackers):
            target(call, None, events=EventSender(events, index))
    except KeyboardInterrupt:
        events.put(("interrupted", index))
        sys.exit(130)
    except BaseException as exc:
        events.put(("error", index, type(exc).__name__, str(exc),
                    traceback.format_exc()[-3000:]))
        sys.exit(1)
    events.put(("done", index))


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

_MAIN_GUARD = ("if its error (above) says the calling script starts a search at import time, "
               "put the search(workers=...) call under `if __name__ == \"__main__\":` (each "
               "worker process imports the script again)")


def check_not_bootstrapping() -> None:
    """Refuse to start workers from a process that is itself still starting: a spawned
    worker that re-imports a calling script whose ``search(workers=...)`` is not under
    ``if __name__ == "__main__":`` (it would run a search of its own).

    Raises:
        MTLSearchError: this process is a spawned child importing its parent's script.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise MTLSearchError("a worker process is importing the calling script, which starts "
                             "a search at import time: put the search(workers=...) call under "
                             "`if __name__ == \"__main__\":`")


def _check_picklable(*objects: Any) -> None:
    """Fail now, in this process, on what a worker cannot be handed (a lambda, a local
    class): the processes start on threads, where the error would surface late. Tensors
    are not pickled for the check (always picklable; their data may be large)."""
    import torch

    class _TensorsAside(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return id(obj) if isinstance(obj, torch.Tensor) else None

    try:
        _TensorsAside(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(objects)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise MTLSearchError(
            f"cannot hand the search to a worker process ({exc}): with workers > 1 the "
            "strategy, dataset and callbacks must be picklable (module-level functions and "
            "classes, or 'module:object' callback paths, not lambdas)") from None


def _process(ctx: Any, target: Callable[..., Any], call: Any, events: Any, threads: int,
             index: int, trackers: Sequence[Any], cores: Sequence[int]) -> Any:
    return ctx.Process(target=_worker_main,
                       args=(target, call, events, threads, index, list(trackers), tuple(cores)),
                       name=f"mtlsearch-worker-{index}", daemon=False)


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Block Ctrl-C in this thread while inside: a process started here starts with it
    blocked (the mask survives fork and exec) until its handler is set, so a Ctrl-C during
    its bootstrap never prints a KeyboardInterrupt traceback from inside multiprocessing."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class SharedDisplay:
    """The parent's display, shared by its own trials and the workers' events (two threads)."""

    def __init__(self, display: Any):
        self._display, self._lock = display, threading.RLock()
        self._said: set[str] = set()

    def message(self, text: str) -> None:
        """Every process says why the study stops: shown once."""
        with self._lock:
            if text not in self._said:
                self._said.add(text)
                self._display.message(text)

    def __enter__(self) -> SharedDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._display, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)
        return call


def run_workers(target: Callable[..., Any], call: Any, workers: int, display: Any,
                own: Callable[[], None], halt: threading.Event, *,
                threads: int | None = None, cores: Sequence[Sequence[int]] = (),
                device_kind: str = "cpu", no_fork: Sequence[str] = (),
                kinds: Sequence[Any] = ()) -> Any:
    """Run the search ``call`` with ``workers`` processes in all: this one (``own()``, its
    search loop) and ``workers - 1`` others running ``target(call, None, events=...)``
    (a module-level function: it is pickled by reference), until the budget is spent.

    ``display`` (a :class:`SharedDisplay`, also this process's) shows every process's trials;
    ``halt`` is set when a worker fails, to stop ``own()`` after its running trial;
    ``threads``: torch threads of every process, this one's too while the workers run
    (default: this process's); ``cores``: the cores of each process, this one's first, while
    the workers run (empty: unpinned). The workers are forked from this process where
    :func:`~mtlsearch.study.worker_start.start_method` finds it safe (``device_kind``: where
    the candidates train; ``no_fork``: the caller's reasons against it; ``kinds``: the task
    kinds, whose scoring modules are imported first so the forks have them), spawned
    otherwise. Returns when every worker is done; a worker that died
    (``kill -9``) leaves a trial that this process's loop, run once more at the end, fails and
    redoes (the other processes do so while they run).

    Raises:
        KeyboardInterrupt: after every worker stopped (each queued its running trial again).
        MTLSearchError: a worker failed (its message, and where).
    """
    import multiprocessing

    import torch

    from mtlsearch.study.trackers import active_trackers
    from mtlsearch.study.worker_start import pin, start_method, warm_imports

    before = torch.get_num_threads()
    threads = threads or before
    trackers = active_trackers()
    _check_picklable(target, call, trackers)
    mine = tuple(cores[0]) if cores else ()
    core_of = {i: tuple(cores[i]) if i < len(cores) else () for i in range(1, workers)}
    with _held(display) as quiet:
        method, why = start_method(threads=threads, device_kind=device_kind, allowed=quiet,
                                   risks=no_fork)
    log.info("workers %s%s", why, f"; pinned to cores {[list(c) for c in cores]}" if cores
             else "")
    ctx = multiprocessing.get_context(method)
    events = ctx.Queue()
    errors: list[tuple[str, str, str]] = []
    ended: set[int] = set()  # workers that reported how they ended
    started: set[int] = set()  # workers past their bootstrap
    died: list[int] = []
    procs: dict[int, Any] = {}
    lock = threading.Lock()
    stopping = threading.Event()

    def start(index: int) -> None:
        process = _process(ctx, target, call, events, threads, index, trackers,
                           core_of[index])
        with lock:
            if stopping.is_set():
                return
            procs[index] = process
        try:
            with _stop_signals_blocked():
                process.start()
        except BaseException as exc:  # too many processes, no memory, a child that died early
            with lock:
                procs.pop(index, None)
            hint = f"; {_MAIN_GUARD}" if isinstance(exc, (BrokenPipeError, EOFError)) else ""
            errors.append(("MTLSearchError", f"worker {index} could not start "
                           f"({type(exc).__name__}: {exc}){hint}", ""))
            halt.set()

    if method == "fork":
        # Forked now, before this process starts any thread (a thread holding a lock at the
        # fork leaves it held in the child), with what the trials import already imported.
        warm_imports(kinds)
        with _held(display):
            for index in range(1, workers):
                start(index)
        starters: list[threading.Thread] = []
    else:
        # On threads: a spawned Process.start() returns only once the child has read what
        # it is handed, that is after it imported torch (seconds), and this process should
        # be training meanwhile.
        starters = [threading.Thread(target=start, args=(i,), name=f"mtlsearch-start-{i}",
                                     daemon=True) for i in range(1, workers)]
        for starter in starters:
            starter.start()

    def pump(timeout: float) -> None:
        try:
            event = events.get(timeout=timeout)
        except queue_module.Empty:
            return
        while True:
            kind = event[0]
            if kind == "call":
                _, _, name, args, kwargs = event
                if name != "status":  # the parent already said what it set up
                    getattr(display, name)(*args, **kwargs)
            elif kind == "started":
                started.add(event[1])
            elif kind == "error":
                ended.add(event[1])
                errors.append(tuple(event[2:]))
                halt.set()
            else:
                ended.add(event[1])
            try:
                event = events.get_nowait()
            except queue_module.Empty:
                return

    finished = threading.Event()

    def monitor() -> None:
        while True:
            pump(0.2)
            starting = any(t.is_alive() for t in starters)
            with lock:
                for index, process in list(procs.items()):
                    if process.pid is None or process.exitcode is None:  # not started / running
                        continue
                    del procs[index]
                    if process.exitcode != 0 and index not in ended:
                        died.append(index)
                        _say_died(index, process, index in started)
                if not procs and not starting and finished.is_set():
                    break
        pump(0.1)

    watcher = threading.Thread(target=monitor, name="mtlsearch-workers", daemon=True)
    watcher.start()
    torch.set_num_threads(threads)  # this process is one of the workers: its share of cores
    try:
        with pin(mine):
            own()
        finished.set()
        if errors:  # a worker failed: the others stop too (each queues its trial again)
            _stop(_running(stopping, starters, lock, procs))
        while watcher.is_alive():
            watcher.join(timeout=0.5)
        if died and not errors and not halt.is_set():
            own()  # a dead worker's last trial: failed, queued again and redone here
    except BaseException:
        finished.set()
        _stop(_running(stopping, starters, lock, procs))
        watcher.join(timeout=10)
        raise
    finally:
        torch.set_num_threads(before)
    if errors:
        name, message, where = errors[0]
        kind = _ERRORS.get(name)
        if kind is not None:
            raise kind(message)
        raise MTLSearchError(f"a worker failed: {name}: {message}\n{where}")
    return None


def _held(display: Any) -> Any:
    """``display.held()``: the display held still (its refresh thread waits), yielding the
    threads it runs; a display without one yields none."""
    held = getattr(display, "held", None)
    return held() if held is not None else contextlib.nullcontext([])


def _running(stopping: threading.Event, starters: Sequence[threading.Thread],
             lock: threading.Lock, procs: dict[int, Any]) -> dict[int, Any]:
    """The workers to stop: none starts from now on; those starting are waited for."""
    stopping.set()
    for starter in starters:
        starter.join(timeout=60)
    with lock:
        return {i: p for i, p in procs.items() if p.pid is not None}


def _say_died(index: int, process: Any, started: bool) -> None:
    if started:
        log.warning("worker %d (pid %d) died (exit code %s); its trial is queued again by the "
                    "next worker that asks for one", index, process.pid, process.exitcode)
        return
    log.warning("worker %d (pid %d) exited (code %s) before it started; the search goes on "
                "without it. Its error is printed above; %s", index, process.pid,
                process.exitcode, _MAIN_GUARD)


def _stop(procs: dict[int, Any]) -> None:
    """Interrupt the workers still running and wait for them (each queues its trial again)."""
    for process in procs.values():
        if process.exitcode is None and process.pid is not None:
            try:
                os.kill(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for process in procs.values():
        process.join(timeout=60)
        if process.exitcode is None:
            log.warning("worker pid %d did not stop within 60 s; killing it", process.pid)
            process.kill()
            process.join(timeout=10)
