"""The order in which a comparison's (strategy, seed) searches start on its workers.

The leaderboard does not depend on it (every search depends on its seed only); the wall time
does. Two things waste a worker:

* **waiting for a seed's single-task reference**: the first search of a seed trains it
  under the cache's lock, and a second search of the same seed started beside it waits. So
  the searches start strategy by strategy, the seeds interleaved: the first ones on the
  workers are of different seeds and train their references side by side;
* **a long search last**: the others finish and their workers idle until it ends. So once
  a strategy's search has finished for one seed, its other seeds are ranked by how long
  that one took (longest first, the standard longest-processing-time rule), after the
  strategies not timed yet: the last to start are the shortest.

Example:
    >>> order = LongestFirst([("a", 0), ("b", 0), ("a", 1), ("b", 1)])
    >>> order.next(), order.next()      # strategy a on both seeds first
    (0, 2)
    >>> order.finished(0, seconds=1.0)  # a took 1 s; b is not timed yet: it goes first
    >>> order.next(), order.next(), order.next()
    (1, 3, None)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LongestFirst"]


class LongestFirst:
    """Hands out job indices: untimed strategies first (seeds interleaved), then the timed
    ones, longest first."""

    def __init__(self, jobs: Sequence[tuple[str, int]]):
        """``jobs``: ``(strategy, seed)`` of each job, indexed as the caller's list."""
        strategies = list(dict.fromkeys(name for name, _ in jobs))
        seeds = list(dict.fromkeys(seed for _, seed in jobs))
        self._jobs = list(jobs)
        self._pending = sorted(range(len(jobs)), key=lambda i: (
            strategies.index(jobs[i][0]), seeds.index(jobs[i][1]), i))
        self._seconds: dict[str, float] = {}

    def next(self) -> int | None:
        """The job to start now, or ``None`` when every job has started."""
        if not self._pending:
            return None
        untimed = [i for i in self._pending if self._jobs[i][0] not in self._seconds]
        if untimed:
            choice = untimed[0]
        else:  # max() keeps the first of equals: the interleaved order breaks ties
            choice = max(self._pending, key=lambda i: self._seconds[self._jobs[i][0]])
        self._pending.remove(choice)
        return choice

    def finished(self, index: int, seconds: float) -> None:
        """Job ``index`` took ``seconds``: its strategy's other seeds are ranked by it (the
        longest time seen, when several seeds have finished)."""
        name = self._jobs[index][0]
        self._seconds[name] = max(float(seconds), self._seconds.get(name, 0.0))
