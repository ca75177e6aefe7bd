"""Where and how the worker processes of a parallel search start
(mtlsearch/study/worker_start.py): one disjoint core set per process, pinning that is undone,
fork only where it is safe (each reason named), the live display held still across a fork,
and what is imported before forking."""

from __future__ import annotations

import io
import os
import queue
import sys
import threading
from types import SimpleNamespace

import pytest
from rich.console import Console

from mtlsearch.errors import MTLSearchError
from mtlsearch.study import worker_start
from mtlsearch.study.progress import SearchProgress
from mtlsearch.study.worker_count import plan_workers
from mtlsearch.study.worker_start import core_slices, pin, start_method, warm_imports
from mtlsearch.study.workers import worker_init

CAN_PIN = hasattr(os, "sched_setaffinity")


@pytest.mark.parametrize(("processes", "threads", "available", "expected"), [
    (2, 1, [0, 1], ((0,), (1,))),
    (2, 2, [4, 5, 6, 7], ((4, 5), (6, 7))),
    (3, 1, [2, 5, 9, 11], ((2,), (5,), (9,))),  # the cores given, in order, one each
    (3, 1, [0, 1], ()),  # fewer cores than processes: nobody pinned
    (2, 2, [0, 1, 2], ()),
    (1, 4, [0, 1, 2, 3], ()),  # one process: nothing to keep apart
])
def test_core_slices_are_disjoint_sets_of_the_given_cores(processes, threads, available,
                                                          expected):
    assert core_slices(processes, threads, available=available) == expected


def test_the_plan_pins_cpu_workers_and_only_them(monkeypatch):
    monkeypatch.setattr(worker_start, "usable_core_ids", lambda: [4, 5, 6, 7])
    if not CAN_PIN:
        pytest.skip("this system cannot pin processes")
    plan = plan_workers(2, device="cpu", cores=4, caller_threads=2)
    assert (plan.threads, plan.cores, plan.device_kind) == (2, ((4, 5), (6, 7)), "cpu")
    assert plan_workers(2, device="cuda", cores=4, caller_threads=2).cores == ()
    assert plan_workers(1, device="cpu", cores=4, caller_threads=2).cores == ()
    monkeypatch.setenv("MTLSEARCH_PIN_WORKERS", "0")
    assert plan_workers(2, device="cpu", cores=4, caller_threads=2).cores == ()


@pytest.mark.skipif(not CAN_PIN, reason="this system cannot pin processes")
def test_pin_runs_on_the_cores_given_then_on_those_it_had():
    before = os.sched_getaffinity(0)
    first = min(before)
    with pin([first]):
        assert os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == before
    with pin(()):  # nothing given: left where it is
        assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not CAN_PIN, reason="this system cannot pin processes")
def test_a_pool_worker_takes_one_core_set_from_the_queue():
    import torch

    slots: queue.Queue = queue.Queue()
    first = min(os.sched_getaffinity(0))
    slots.put((first,))
    seen = {}
    threads = torch.get_num_threads()

    def one_worker():  # affinity is per thread on Linux: this thread plays the process
        worker_init(1, slots)
        seen["cores"] = os.sched_getaffinity(0)

    try:
        worker = threading.Thread(target=one_worker)
        worker.start()
        worker.join()
    finally:
        torch.set_num_threads(threads)
    assert seen["cores"] == {first} and slots.empty()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux only")
def test_fork_is_chosen_only_where_it_is_safe(monkeypatch):
    monkeypatch.delenv("MTLSEARCH_WORKER_START", raising=False)
    everyone = threading.enumerate()  # whatever else runs in the test process is allowed
    assert start_method(threads=1, device_kind="cpu", allowed=everyone)[0] == "fork"
    method, why = start_method(threads=2, device_kind="cpu", allowed=everyone)
    assert method == "spawn" and "2 torch threads per worker" in why
    method, why = start_method(threads=1, device_kind="cuda", allowed=everyone)
    assert method == "spawn" and "training on cuda" in why
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="someone-elses-thread")
    other.start()
    try:
        method, why = start_method(threads=1, device_kind="cpu", allowed=everyone)
    finally:
        stop.set()
        other.join()
    assert method == "spawn" and "someone-elses-thread" in why
    method, why = start_method(threads=1, device_kind="cpu", allowed=everyone,
                               risks=["callbacks given as objects"])
    assert method == "spawn" and why.endswith("callbacks given as objects")


def test_the_start_method_can_be_forced_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("MTLSEARCH_WORKER_START", "spawn")
    assert start_method(threads=1, device_kind="cpu")[0] == "spawn"
    monkeypatch.setenv("MTLSEARCH_WORKER_START", "forkserver")
    with pytest.raises(MTLSearchError, match="'forkserver': use 'fork' or 'spawn'"):
        start_method(threads=1, device_kind="cpu")


def test_the_live_display_is_held_still_across_a_fork():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with SearchProgress(4, console=console) as display:
        with display.held() as quiet:
            assert len(quiet) == 1 and quiet[0].is_alive()  # its refresh thread
            got = []
            probe = threading.Thread(target=lambda: got.append(
                display._progress.live._lock.acquire(timeout=0.3)))
            probe.start()
            probe.join()
            assert got == [False]  # the refresh thread cannot write meanwhile
        assert display._progress.live._lock.acquire(timeout=1)
        display._progress.live._lock.release()
    with SearchProgress(4, enabled=False) as quiet_display, quiet_display.held() as quiet:
        assert quiet == []


def test_warm_imports_imports_what_the_task_kinds_score_with(monkeypatch):
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    kinds = [SimpleNamespace(scoring_modules=("wave", "no_such_module_here")),
             SimpleNamespace()]
    warm_imports(kinds)  # a module that is missing is left to the trial to report
    assert "wave" in sys.modules and "torch._dynamo" in sys.modules


def test_what_a_forked_worker_must_not_inherit_is_named():
    from mtlsearch.study.runner import _fork_risks

    def callback(study, trial):
        return None

    plain = SimpleNamespace(callbacks=["pkg.mod:cb"], artifact_store=None)
    assert _fork_risks(plain) == []
    risky = SimpleNamespace(callbacks=[callback], artifact_store=object())
    assert _fork_risks(risky) == ["callbacks given as objects", "an artifact store object"]
