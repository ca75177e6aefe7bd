"""Statistics over seeds: mean ± std, and paired differences.

Every strategy of one seed is scored against the same single-task reference and searched on
the same data, so two strategies are compared seed by seed (paired), not by overlapping
error bars: the seed-to-seed noise they share cancels in the difference.

Example:
    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    >>> d = paired_difference({0: 3.0, 1: 1.0, 2: 2.5}, {0: 1.0, 1: 1.5, 2: 0.5})
    >>> d.mean, d.wins, d.n
    (1.1666666666666667, 2, 3)
    >>> nan_mean_std([1.0, None, float("nan"), 3.0])
    (2.0, 1.4142135623730951)
    >>> log_log_slope([1, 2, 4], [3, 12, 48])
    2.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["mean_std", "nan_mean_std", "PairedDifference", "paired_difference", "log_log_slope"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def nan_mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """:func:`mean_std` of the values that are there: ``None`` and NaN are left out (a run that
    failed, a metric a task lacks, NaN written to JSON as ``null``), as numpy's ``nanmean``
    does."""
    return mean_std([float(v) for v in values if v is not None and v == v])


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over the seeds both have.

    Attributes:
        mean, std: Of the per-seed differences.
        wins: Seeds where ``a`` is strictly better (larger); losses likewise.
        n: Seeds compared.
        beyond_noise: The mean is more than one standard error away from zero, in the
            direction of the mean (``mean > std / sqrt(n)``), with at least 2 seeds.
    """

    mean: float
    std: float
    wins: int
    losses: int
    n: int

    @property
    def beyond_noise(self) -> bool:
        if self.n < 2 or not math.isfinite(self.mean):
            return False
        return abs(self.mean) > self.std / math.sqrt(self.n)

    def better(self) -> bool:
        """``a`` is better than ``b`` beyond the paired noise."""
        return self.mean > 0 and self.beyond_noise

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "beyond_noise": self.beyond_noise}

    def text(self, digits: int = 2) -> str:
        """``+1.20 ± 0.80 (3/3)``: mean ± std of the differences, wins out of seeds."""
        if self.n == 0:
            return "-"
        return f"{self.mean:+.{digits}f} ± {self.std:.{digits}f} ({self.wins}/{self.n})"


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedDifference:
    """Per-seed ``a[seed] - b[seed]`` over the seeds both have (finite values only)."""
    seeds = [s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])]
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    mean, std = mean_std(diffs)
    return PairedDifference(mean, std, sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), len(diffs))


def log_log_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``log(y)`` against ``log(x)``: the exponent ``k`` of a power law
    ``y ~ x^k`` (1: linear growth, 2: quadratic). Points with a value <= 0 are left out;
    ``None`` with fewer than two points or a single ``x``."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in pts) / den
