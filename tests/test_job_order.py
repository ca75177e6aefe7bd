"""The order a comparison's searches start in (mtlsearch/study/job_order.py), on a
simulated pool: each seed's first search trains its single-task reference, and a search of a
seed whose reference is still training waits for it (the cache's lock), as in compare."""

from __future__ import annotations

import heapq

from mtlsearch.study.job_order import SearchOrder

SECONDS = {"a": 1.0, "b": 10.0, "c": 4.0}
REFERENCE = 5.0


def _jobs(seeds=(0, 1)) -> list[tuple[str, int]]:
    return [(name, seed) for seed in seeds for name in SECONDS]  # as compare lists them


def _simulate(jobs, workers: int, order: SearchOrder | None) -> tuple[float, list[int]]:
    """Makespan and start order on ``workers`` workers; ``order=None``: the list's order."""
    queue = list(range(len(jobs)))
    started: list[int] = []
    reference_done: dict[int, float] = {}  # seed -> when its reference is in the cache
    running: list[tuple[float, int]] = []

    def start(now: float) -> None:
        index = order.next() if order is not None else (queue.pop(0) if queue else None)
        if index is None:
            return
        name, seed = jobs[index]
        if seed not in reference_done:  # this search trains the reference
            reference_done[seed] = now + REFERENCE
        begin = max(now, reference_done[seed])  # waits while another trains it
        started.append(index)
        heapq.heappush(running, (begin + SECONDS[name], index))

    for _ in range(workers):
        start(0.0)
    now = 0.0
    while running:
        now, done = heapq.heappop(running)
        if order is not None:
            order.finished(done, SECONDS[jobs[done][0]])
        start(now)
    return now, started


def test_the_first_searches_are_of_different_seeds():
    jobs = _jobs(seeds=(0, 1, 2))
    order = SearchOrder(jobs)
    first = [jobs[order.next()] for _ in range(3)]
    assert first == [("a", 0), ("a", 1), ("a", 2)]  # three references trained side by side


def test_the_hand_worked_schedule():
    """Two seeds, two workers. a0 and a1 train both references at once (end 6); then b0, b1
    (end 16), c0, c1 (end 20): no worker ever waits, the lower bound (2 x 5 + 2 x 15) / 2.
    In the list's order (a0, b0, ...) b0 waits for a0's reference of seed 0 (5 s idle)."""
    jobs = _jobs()
    makespan, started = _simulate(jobs, 2, SearchOrder(jobs))
    assert makespan == 20.0
    assert [jobs[i] for i in started] == [("a", 0), ("a", 1), ("b", 0), ("b", 1),
                                          ("c", 0), ("c", 1)]
    naive, _ = _simulate(jobs, 2, None)
    assert naive == 25.0


def test_three_seeds_on_two_workers_never_wait_for_a_reference():
    """The case that made compare slow: seed 2's searches all started at the end, both
    workers at once, one waiting for the other's reference."""
    jobs = _jobs(seeds=(0, 1, 2))
    makespan, started = _simulate(jobs, 2, SearchOrder(jobs))
    lower_bound = (3 * REFERENCE + 3 * sum(SECONDS.values())) / 2
    assert makespan <= lower_bound + min(SECONDS.values())  # at most the shortest job's tail
    naive, _ = _simulate(jobs, 2, None)
    assert makespan < naive
    assert sorted(started) == list(range(len(jobs)))


def test_timed_strategies_start_longest_first_and_the_shortest_last():
    jobs = _jobs(seeds=(0, 1, 2, 3))
    order = SearchOrder(jobs)
    first = []
    for _ in range(4):  # one search per new seed first: four references
        index = order.next()
        first.append(index)
        order.finished(index, SECONDS[jobs[index][0]])
    assert sorted(jobs[i][1] for i in first) == [0, 1, 2, 3]
    assert {jobs[i][0] for i in first} == set(SECONDS)  # untimed strategies came first
    rest = [jobs[i][0] for i in iter(order.next, None)]
    assert rest == sorted(rest, key=lambda name: -SECONDS[name])  # longest first
    assert rest[-1] == "a"  # the shortest last


def test_a_seed_whose_reference_may_still_train_goes_last():
    jobs = _jobs(seeds=(0, 1))
    order = SearchOrder(jobs)
    first = order.next()  # a0: seed 0's reference starts
    assert jobs[first] == ("a", 0)
    second = order.next()
    assert jobs[second] == ("a", 1)  # a new seed rather than waiting on seed 0
    third = order.next()  # nothing finished: both seeds are preparing; any is a wait
    assert jobs[third][0] == "b"
    order.finished(first, 1.0)
    assert jobs[order.next()][1] == 0  # seed 0 is ready now, seed 1 may not be


def test_a_strategy_is_ranked_by_its_shortest_seed():
    """A seed's first search also trained the seed's reference: the strategy's estimate is
    its shortest search, not that one."""
    jobs = _jobs(seeds=(0, 1, 2))
    order = SearchOrder(jobs)
    handed = {jobs[i]: i for i in (order.next() for _ in range(len(jobs)))}
    order = SearchOrder(jobs)
    for job in [("b", 0), ("b", 1), ("c", 0)]:
        assert order._pending.count(handed[job]) == 1
        order._pending.remove(handed[job])
        order._started_seeds.add(job[1])
    order.finished(handed[("b", 0)], 12.0)  # trained seed 0's reference as well
    order.finished(handed[("b", 1)], 3.0)
    order.finished(handed[("c", 0)], 4.0)
    order._ready_seeds.add(2)
    order._started_seeds.add(2)
    rest = [jobs[i] for i in iter(order.next, None)]
    assert rest.index(("c", 1)) < rest.index(("b", 2))  # c (4 s) before b (3 s, not 12 s)
