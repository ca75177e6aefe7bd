"""How many worker processes run, with how many torch threads each
(mtlsearch/study/worker_count.py), and how a search and a comparison ask it: the rule by hand
on the CPU, on a (faked) GPU measurement, and the bad values a user may give."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from mtlsearch.engine.device_share import trainings_per_device
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.study.worker_count import MAX_CPU_WORKERS, parse_workers, plan_workers
from mtlsearch.testing import tiny_dataset

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize(("given", "expected"), [("auto", "auto"), (" AUTO ", "auto"),
                                                  (3, 3), ("3", 3), (1.0, 1)])
def test_parse_accepts_numbers_and_auto(given, expected):
    assert parse_workers(given) == expected


@pytest.mark.parametrize(("given", "says"), [(0, "at least 1"), ("-2", "at least 1"),
                                             ("two", "'two'"), (2.5, "2.5"), (True, "True"),
                                             (None, "None")])
def test_parse_refuses_what_is_not_a_count(given, says):
    with pytest.raises(MTLSearchError, match="whole number or 'auto'|at least 1") as info:
        parse_workers(given)
    assert says in str(info.value)


@pytest.mark.parametrize(("cores", "jobs", "workers"), [
    (2, None, 2), (16, None, MAX_CPU_WORKERS), (16, 3, 3), (1, None, 1), (4, 0, 1)])
def test_auto_on_the_cpu_is_one_per_core_capped_by_the_work(cores, jobs, workers):
    plan = plan_workers("auto", device="cpu", cores=cores, jobs=jobs, caller_threads=1)
    assert plan.workers == workers
    assert plan.why.startswith("auto:")


@pytest.mark.parametrize(("asked", "cores", "caller", "threads"), [
    (2, 4, 4, 2),    # each process its share of the cores
    (2, 4, 1, 1),    # never more than the caller asked for
    (4, 2, 2, 1),    # more processes than cores: one thread each, not zero
    (1, 4, 3, 3),    # one process: the caller's threads, unchanged
])
def test_threads_per_worker_never_oversubscribe_the_cores(asked, cores, caller, threads):
    plan = plan_workers(asked, device="cpu", cores=cores, caller_threads=caller)
    assert (plan.workers, plan.threads) == (asked, threads)
    assert plan.workers * plan.threads <= max(cores, caller) or plan.threads == 1


def test_a_number_is_kept_but_not_beyond_the_work_left():
    assert plan_workers(3, cores=2, caller_threads=1).workers == 3  # as asked, even > cores
    assert plan_workers(3, cores=2, jobs=2, caller_threads=1).workers == 2


def test_auto_with_in_memory_storage_is_one_process_and_says_why():
    plan = plan_workers("auto", cores=8, caller_threads=1, shared_storage=False)
    assert plan.workers == 1
    assert "in memory" in plan.why and "journal:" in plan.why


def test_auto_on_cuda_applies_the_device_share_rule_to_the_measurement():
    asked: list[tuple] = []

    def measure(device, cap):  # what plan_device_share returns, for a 300 MiB candidate
        asked.append((device, cap))
        return trainings_per_device(300 * MIB, 10 * GIB, cap=cap)

    plan = plan_workers("auto", device="cuda:1", cores=16, caller_threads=1, measure_gpu=measure)
    assert asked == [("cuda:1", MAX_CPU_WORKERS)]  # cap: 8, the cores allow more
    assert plan.workers == 8 and "training(s) on the GPU" in plan.why
    # 4 cores cap it at 4; a large candidate (3 GiB) fits twice in 10 GiB
    assert plan_workers("auto", device="cuda", cores=4, caller_threads=1,
                        measure_gpu=measure).workers == 4
    big = plan_workers("auto", device="cuda", cores=16, caller_threads=1,
                       measure_gpu=lambda d, cap: trainings_per_device(3 * GIB, 10 * GIB, cap=cap))
    assert big.workers == 2  # floor(0.8 x 10240 / (3072 + 500)) = 2


def test_auto_on_cuda_without_a_measurement_and_on_mps():
    with pytest.raises(MTLSearchError, match="measured memory"):
        plan_workers("auto", device="cuda", cores=4, caller_threads=1)
    assert plan_workers("auto", device="mps", cores=8, caller_threads=1).workers == 1


def test_a_search_measures_its_own_space_and_data_on_the_gpu(monkeypatch):
    """The runner hands its space, training split and batch size to plan_device_share."""
    import mtlsearch.engine.device_share as device_share
    from mtlsearch.study import runner

    seen = {}

    def fake_plan(space, dataset, *, batch_size, device, cap):
        seen.update(space=space, dataset=dataset, batch_size=batch_size, device=device, cap=cap)
        return trainings_per_device(1 * GIB, 8 * GIB, cap=cap)

    monkeypatch.setattr(device_share, "plan_device_share", fake_plan)
    monkeypatch.setattr("mtlsearch.defaults.usable_cores", lambda: 6)
    data = tiny_dataset()
    ctx = SimpleNamespace(space="the space", data=data,
                          budget=TrainConfig(batch_size=48, device="cuda"))
    call = SimpleNamespace(storage="journal:x.log", workers="auto")
    plan = runner._plan_workers("auto", call, ctx, left=10)
    assert seen == {"space": "the space", "dataset": data.train, "batch_size": 48,
                    "device": "cuda", "cap": 6}
    assert plan.workers == 4  # floor(0.8 x 8192 / 1524) = 4
    assert runner._plan_workers("auto", call, ctx, left=3).workers == 3  # only 3 trials left


def test_a_comparison_measures_the_largest_candidate_of_its_space(monkeypatch):
    import mtlsearch.engine.device_share as device_share
    from mtlsearch.study import comparison

    seen = {}

    def fake_plan(space, dataset, *, batch_size, device, cap):
        seen.update(blocks=space.num_blocks, shape=tuple(space.input_shape), batch=batch_size)
        return trainings_per_device(100 * MIB, 40 * GIB, cap=cap)

    monkeypatch.setattr(device_share, "plan_device_share", fake_plan)
    data = tiny_dataset()
    plan = comparison._plan_workers("auto", TrainConfig(batch_size=32, device="cuda"), data,
                                    "mlp", {"widths": [8, 8]}, jobs=5)
    assert seen == {"blocks": 2, "shape": tuple(data.input_shape), "batch": 32}
    assert plan.workers <= 5


def test_the_search_logs_its_choice(tmp_path, caplog, monkeypatch):
    """auto on a 1-core machine: one process, and the log says why."""
    from mtlsearch.study import search

    monkeypatch.setattr("mtlsearch.defaults.usable_cores", lambda: 1)
    with caplog.at_level(logging.INFO, logger="mtlsearch.study.runner"):
        result = search(dataset=tiny_dataset(), space="mlp", space_kwargs={"widths": [8]},
                        strategy="hard_sharing", trials=1, workers="auto", progress=False,
                        storage=f"journal:{tmp_path / 's.log'}", budget=TrainConfig(epochs=1))
    assert len(result.study.trials) == 1
    assert "auto: 1 worker(s), one per usable CPU core" in caplog.text


def test_the_cli_refuses_a_bad_worker_count(capsys):
    from mtlsearch.cli.main import main

    assert main(["search", "--workers", "two", "--trials", "1"]) != 0
    err = capsys.readouterr().err
    assert "workers must be a whole number or 'auto', got 'two'" in err
