"""Small statistics and timing helpers: percentiles, medians, formatting of rates and durations."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from corps.bench._hist import LogHistogram


def now() -> float:
    """A monotonic clock in seconds, the one every scenario times with."""
    return time.perf_counter()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank (as HDR histograms report)."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    """p50/p99/p99.9 (from a log-bucketed histogram, HDR-style), mean and max in microseconds of
    per-operation latencies given in seconds, and the histogram itself (``hist_ns``) for the JSON."""
    hist = LogHistogram().record_seconds(latencies_s)
    return {
        "p50_us": hist.value_at(50) / 1e3,
        "p99_us": hist.value_at(99) / 1e3,
        "p999_us": hist.value_at(99.9) / 1e3,
        "mean_us": statistics.fmean(latencies_s) * 1e6 if latencies_s else math.nan,
        "max_us": max(latencies_s) * 1e6 if latencies_s else math.nan,
        "hist_ns": hist.pairs(),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_value(value: float, unit: str) -> str:
    """A value with its unit, short: ``1.23M msg/s``, ``312 µs``, ``612 B``."""
    if math.isnan(value):
        return "n/a"
    if unit.endswith("/s"):
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.3g}{suffix} {unit}"
        return f"{value:.3g} {unit}"
    if unit in ("µs", "B"):
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def fmt_range(values: Sequence[float], unit: str) -> str:
    """``median [min-max]`` of the samples, e.g. ``1.2M msg/s [1.1M-1.3M]``."""
    if not values:
        return "failed"
    med = fmt_value(median(values), unit)
    if len(values) == 1:
        return med
    lo, hi = fmt_value(min(values), unit).split(" ")[0], fmt_value(max(values), unit).split(" ")[0]
    return f"{med} [{lo}-{hi}]"
