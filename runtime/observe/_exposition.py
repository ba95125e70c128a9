"""The Prometheus text exposition format (version 0.0.4), without a dependency.

A ``Family`` is one metric name with its labels. Label values may come from user code (class,
message type, saga step and consumer names), so they are escaped (backslash, double quote,
newline) and never come from ids. Cardinality is bounded: a family keeps at most ``max_series``
label sets; beyond, new ones fold into one series whose every label is ``OVERFLOW``, counted in
``Family.folded`` (exported as ``corps_metrics_folded_total``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Final, Literal

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_SERIES: Final = 1000
"""Label sets per metric family; more fold into the OVERFLOW series."""
OVERFLOW: Final = "_other"
LATENCY_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                          2.5, 5.0, 10.0)
"""Seconds: handler and saga step latency, from 100 us (a handler on this machine) to 10 s."""

Kind = Literal["counter", "gauge", "histogram"]


def escape_label(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Family:
    """One metric: name, help, kind, label names, and its series (label values -> value)."""

    def __init__(self, name: str, help: str, kind: Kind, labels: tuple[str, ...],
                 buckets: tuple[float, ...] = LATENCY_BUCKETS, max_series: int = MAX_SERIES) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self.buckets = buckets
        self.max_series = max_series
        self.values: dict[tuple[str, ...], float] = {}
        self.histograms: dict[tuple[str, ...], list[float]] = {}
        """Per series: a count per bucket (not cumulative), then the sum, then the count."""
        self.folded = 0

    def _key(self, key: tuple[str, ...], store: dict[tuple[str, ...], Any]) -> tuple[str, ...]:
        if key in store or len(store) < self.max_series:
            return key
        self.folded += 1
        return (OVERFLOW,) * len(self.labels)

    def inc(self, key: tuple[str, ...], by: float = 1.0) -> None:
        key = self._key(key, self.values)
        self.values[key] = self.values.get(key, 0.0) + by

    def set(self, key: tuple[str, ...], value: float) -> None:
        key = self._key(key, self.values)
        self.values[key] = value

    def observe(self, key: tuple[str, ...], value: float) -> None:
        key = self._key(key, self.histograms)
        h = self.histograms.get(key)
        if h is None:
            h = self.histograms[key] = [0.0] * (len(self.buckets) + 2)
        i = bisect_left(self.buckets, value)  # the first bound >= value; past the last: only +Inf (the count)
        if i < len(self.buckets):
            h[i] += 1
        h[-2] += value
        h[-1] += 1

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        if self.kind != "histogram":
            for key, value in sorted(self.values.items()):
                out.append(f"{self.name}{self._labels(key)} {number(value)}")
            return
        for key, h in sorted(self.histograms.items()):
            cumulative = 0.0
            for bound, n in zip(self.buckets, h, strict=False):
                cumulative += n
                out.append(f"{self.name}_bucket{self._labels(key, ('le', repr(float(bound))))} {number(cumulative)}")
            out.append(f"{self.name}_bucket{self._labels(key, ('le', '+Inf'))} {number(h[-1])}")
            out.append(f"{self.name}_sum{self._labels(key)} {number(h[-2])}")
            out.append(f"{self.name}_count{self._labels(key)} {number(h[-1])}")

    def _labels(self, key: tuple[str, ...], extra: tuple[str, str] | None = None) -> str:
        pairs = [f'{n}="{escape_label(v)}"' for n, v in zip(self.labels, key, strict=True)]
        if extra is not None:
            pairs.append(f'{extra[0]}="{extra[1]}"')
        return "{" + ",".join(pairs) + "}" if pairs else ""


def render(families: list[Family]) -> bytes:
    """The text exposition of ``families``, plus how many series each folded."""
    out: list[str] = []
    for family in families:
        family.render(out)
    folded = Family("corps_metrics_folded_total", f"label sets folded into the {OVERFLOW!r} series once a "
                    f"metric held its bound of series", "counter", ("metric",))
    for family in families:
        if family.folded:
            folded.values[(family.name,)] = family.folded
    folded.render(out)
    return ("\n".join(out) + "\n").encode()
