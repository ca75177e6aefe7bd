"""The order in which a comparison's (strategy, seed) searches start on its workers.

The leaderboard does not depend on it (every search depends on its seed only); the wall time
does. Two things waste a worker:

* **waiting for a seed's single-task reference**: the first search of a seed trains it
  under the cache's lock, and a second search of the same seed started beside it waits for
  it. So a seed no search has started yet goes first (its reference then trains beside the
  other workers' searches), and a seed whose first search is still running goes last (its
  reference may still be training);
* **a long search last**: the others finish and their workers idle until it ends. So once
  a strategy's search has finished for one seed, its other seeds are ranked by how long
  that one took (longest first, the standard longest-processing-time rule), after the
  strategies not timed yet: the last to start are the shortest. The time is the search's
  whole wall time (its trials and what it computes before them, such as an affinity
  tensor), the shortest seen over its seeds (a seed's first search also trained the seed's
  reference, which the others do not).

Example:
    >>> order = SearchOrder([("a", 0), ("b", 0), ("a", 1), ("b", 1)])
    >>> order.next(), order.next()      # a new seed each: both references train at once
    (0, 2)
    >>> order.finished(0, seconds=1.0)  # seed 0 is ready; b is not timed yet: it goes first
    >>> order.next()
    1
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SearchOrder"]


class SearchOrder:
    """Hands out job indices: new seeds first, then seeds whose reference is ready (seeds
    still preparing theirs last); within those, untimed strategies first, then the timed
    ones longest first; ties in the order strategy by strategy, seeds interleaved."""

    def __init__(self, jobs: Sequence[tuple[str, int]]):
        """``jobs``: ``(strategy, seed)`` of each job, indexed as the caller's list."""
        strategies = list(dict.fromkeys(name for name, _ in jobs))
        seeds = list(dict.fromkeys(seed for _, seed in jobs))
        self._jobs = list(jobs)
        self._position = {i: (strategies.index(jobs[i][0]), seeds.index(jobs[i][1]), i)
                          for i in range(len(jobs))}
        self._pending = sorted(range(len(jobs)), key=self._position.__getitem__)
        self._seconds: dict[str, float] = {}
        self._started_seeds: set[int] = set()
        self._ready_seeds: set[int] = set()  # a search of the seed finished: its reference is in

    def _seed_rank(self, seed: int) -> int:
        if seed not in self._started_seeds:
            return 0  # new: its reference trains while the other workers search
        return 1 if seed in self._ready_seeds else 2

    def _key(self, index: int) -> tuple:
        name, seed = self._jobs[index]
        timed = name in self._seconds
        return (self._seed_rank(seed), timed, -self._seconds.get(name, 0.0),
                self._position[index])

    def next(self) -> int | None:
        """The job to start now, or ``None`` when every job has started."""
        if not self._pending:
            return None
        choice = min(self._pending, key=self._key)
        self._pending.remove(choice)
        self._started_seeds.add(self._jobs[choice][1])
        return choice

    def finished(self, index: int, seconds: float) -> None:
        """Job ``index`` took ``seconds``: its seed is ready, and its strategy's other seeds
        are ranked by it (the shortest time seen, when several seeds have finished: the
        first search of a seed also paid for its reference)."""
        name, seed = self._jobs[index]
        self._ready_seeds.add(seed)
        self._seconds[name] = min(float(seconds), self._seconds.get(name, float("inf")))
