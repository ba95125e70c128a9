"""A small log-bucketed latency histogram in the spirit of HdrHistogram (no dependency).

Values (integer nanoseconds) below 256 are exact; above, each power of two is split into 128
buckets, so a recorded value is reported within 1/128 (0.8 %) of itself. A percentile is the
highest value of the bucket holding that rank, as HdrHistogram's ``value_at_percentile``. Memory
is one dict entry per distinct bucket: a few hundred for a latency run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _bucket(v: int) -> int:
    """The lowest value of v's bucket."""
    shift = v.bit_length() - 8
    return v if shift <= 0 else (v >> shift) << shift


def _top(low: int) -> int:
    """The highest value of the bucket starting at ``low``."""
    shift = low.bit_length() - 8
    return low if shift <= 0 else low + (1 << shift) - 1


class LogHistogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def record(self, value_ns: int) -> None:
        b = _bucket(max(value_ns, 0))
        self.counts[b] = self.counts.get(b, 0) + 1
        self.total += 1

    def record_seconds(self, values: Iterable[float]) -> LogHistogram:
        for v in values:
            self.record(round(v * 1e9))
        return self

    def value_at(self, q: float) -> float:
        """The value (ns) at percentile ``q`` (0..100): nearest rank, bucket's highest value."""
        if not self.total:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.total))
        seen = 0
        for low in sorted(self.counts):
            seen += self.counts[low]
            if seen >= rank:
                return float(_top(low))
        return float(_top(max(self.counts)))

    def pairs(self) -> list[list[int]]:
        """``[[bucket_low_ns, count], ...]`` sorted: the JSON form."""
        return [[low, self.counts[low]] for low in sorted(self.counts)]

    @classmethod
    def from_pairs(cls, pairs: Iterable[Iterable[int]]) -> LogHistogram:
        h = cls()
        for low, count in (tuple(p) for p in pairs):
            h.counts[low] = h.counts.get(low, 0) + count
            h.total += count
        return h

    def merge(self, other: LogHistogram) -> LogHistogram:
        for low, count in other.counts.items():
            self.counts[low] = self.counts.get(low, 0) + count
        self.total += other.total
        return self

    def cdf(self) -> tuple[list[float], list[float]]:
        """(values in µs, cumulative fraction 0..1): the latency CDF for the plot."""
        xs: list[float] = []
        ys: list[float] = []
        seen = 0
        for low in sorted(self.counts):
            seen += self.counts[low]
            xs.append(_top(low) / 1e3)
            ys.append(seen / self.total)
        return xs, ys
