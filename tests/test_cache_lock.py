"""ResultCache.get_or_compute: an expensive item is computed once, never twice at the same time.

Real processes share a cache folder. Each child waits for a start signal (a file), then asks
for the same key; ``compute`` appends one line to a counter file and sleeps, so two
unserialised computations would both be counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mtlsearch.strategy.context import ResultCache

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from mtlsearch.strategy.context import ResultCache

folder, counter, go, mode, sleep = sys.argv[1:6]
Path(go + f".ready{os.getpid()}").touch()  # imports done: ready to race
while not Path(go).exists():
    time.sleep(0.01)

def compute():
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(float(sleep))
    return {"answer": 42, "by": os.getpid()}

cache = ResultCache(folder)
if mode == "locked":
    value = cache.get_or_compute("expensive-item", compute)
else:  # the race the lock prevents: check, then compute, then store
    value = cache.get("expensive-item")
    if value is None:
        value = compute()
        cache.put("expensive-item", value)
print(json.dumps(value))
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl.flock is POSIX")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(script: Path, tmp: Path, mode: str, sleep: float) -> subprocess.Popen:
    args = [sys.executable, str(script), str(tmp / "cache"), str(tmp / "counter"),
            str(tmp / "go"), mode, str(sleep)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def _run_pair(tmp: Path, mode: str) -> tuple[list[dict], list[str]]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    procs = [_start(script, tmp, mode, sleep=1.0) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp.glob("go.ready*"))) < 2:  # both past their imports
        assert time.monotonic() < deadline, "the children did not start"
        for proc in procs:  # a child that died on import says why, at once
            assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    (tmp / "go").touch()
    values = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        values.append(json.loads(out.strip().splitlines()[-1]))
    counter = tmp / "counter"
    return values, counter.read_text().split() if counter.exists() else []


def test_two_processes_same_key_compute_once(tmp_path):
    values, computed = _run_pair(tmp_path, "locked")
    assert len(computed) == 1  # exactly one computation
    assert values[0] == values[1] == {"answer": 42, "by": int(computed[0])}
    stored = json.loads((tmp_path / "cache" / "expensive-item.json").read_text())
    assert stored == values[0]


def test_without_the_lock_the_same_pair_computes_twice(tmp_path):
    # The control: the set-up above really makes the two computations overlap.
    values, computed = _run_pair(tmp_path, "unlocked")
    assert len(computed) == 2
    assert {v["by"] for v in values} == {int(p) for p in computed}


def test_a_worker_killed_while_computing_does_not_block_the_next(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    (tmp_path / "go").touch()
    first = _start(script, tmp_path, "locked", sleep=60)
    counter = tmp_path / "counter"
    deadline = time.monotonic() + 60
    while not (counter.exists() and counter.read_text().strip()):
        assert time.monotonic() < deadline, "the first worker never started computing"
        assert first.poll() is None, first.communicate()[1]
        time.sleep(0.05)
    second = _start(script, tmp_path, "locked", sleep=0)
    time.sleep(1.0)
    assert second.poll() is None  # waiting for the lock held by the first worker
    first.send_signal(signal.SIGKILL)  # the OS releases its flock
    first.communicate(timeout=30)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    computed = counter.read_text().split()
    assert len(computed) == 2
    assert json.loads(out.strip().splitlines()[-1]) == {"answer": 42, "by": int(computed[1])}


def test_threads_of_one_process_compute_once(tmp_path):
    for folder in (None, tmp_path / "cache"):
        cache = ResultCache(folder)
        calls: list[int] = []

        def compute(calls: list[int] = calls) -> dict[str, int]:
            calls.append(1)
            time.sleep(0.2)
            return {"n": len(calls)}

        results: list[dict] = []

        def ask(c: ResultCache = cache, f=compute, out: list[dict] = results) -> None:
            out.append(c.get_or_compute("k", f))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == [1]
        assert results == [{"n": 1}] * 3


def test_a_half_written_item_is_recomputed_under_the_lock(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "k.json").write_text('{"trunc')  # a crash while writing, before the atomic rename
    cache = ResultCache(folder)
    assert cache.get_or_compute("k", lambda: {"v": 1}) == {"v": 1}
    assert json.loads((folder / "k.json").read_text()) == {"v": 1}
    assert ResultCache(folder).get_or_compute("k", lambda: {"v": 2}) == {"v": 1}  # stored


def test_affinity_tensor_and_reference_go_through_the_locked_path(tmp_path, monkeypatch):
    from mtlsearch.plugins.affinity_tree.estimators import estimate_affinity
    from mtlsearch.testing import tiny_context

    asked: list[str] = []
    original = ResultCache.get_or_compute

    def spy(self, key, compute):
        asked.append(key.split("-")[0])
        return original(self, key, compute)

    monkeypatch.setattr(ResultCache, "get_or_compute", spy)
    ctx = tiny_context()
    ctx.cache = ResultCache(tmp_path / "cache")
    first = estimate_affinity(ctx, "rsa")
    ctx.reference()
    assert asked == ["affinity_tensor", "single_task_reference"]
    # The reference was stored by the affinity stage (no wait needed); the single-task
    # networks were trained under their own lock (another process would load them).
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob(".*.lock")) == [
        ".affinity_tensor", ".single_task_model"]
    again = estimate_affinity(ctx, "rsa")  # from the cache
    assert again.values.tolist() == first.values.tolist()
