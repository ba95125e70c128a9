"""What a benchmark is made of: variants (corps, raw, a peer) that produce samples, rows that compare them."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Sample = dict[str, Any]
"""One run of one variant: metric name -> float (e.g. ``{"rate": 1.2e6, "seconds": 0.17}``).

Values that are not numbers are data kept in the JSON, never compared: e.g. ``hist_ns``, the
latency histogram as ``[[value_ns, count], ...]`` (see ``corps.bench._hist``), which the plot reads.
"""


@dataclass(frozen=True)
class Context:
    """What every variant gets: the server, the loop in use, and the scenario's parameters."""

    url: str
    loop: str
    params: Mapping[str, int]


@dataclass(frozen=True)
class Variant:
    """One way to do a scenario's work: ``corps``, ``corps-nocoalesce``, ``raw``, ``faststream``..."""

    name: str
    run: Callable[[Context], Awaitable[Sample]]


_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    """A goal on the corps/raw ratio of medians (``on="ratio"``) or on the corps median itself."""

    op: Literal[">=", "<=", "<"]
    value: float
    on: Literal["ratio", "value"] = "ratio"
    unit: str = ""

    def met(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        if self.on == "ratio":
            return f"{self.op} {self.value:g}x"
        return f"{self.op} {self.value:,.0f} {self.unit}".rstrip()


LATENCY_UNITS = frozenset({"µs", "us", "ms", "s", "B"})
"""Units where lower is better (latencies, sizes); everything else (``msg/s``...) is a rate."""


@dataclass(frozen=True)
class Row:
    """One line of the table: ``metric`` of variant ``corps`` against the same metric of ``raw``.

    ``peer`` names a third variant (``faststream``) shown as another column with its ratio to raw;
    a peer that is not installed is shown as such. ``lower_is_better`` defaults from the unit.
    """

    label: str
    metric: str
    unit: str
    corps: str
    raw: str | None = None
    target: Target | None = None
    peer: str | None = None
    lower_is_better: bool | None = None

    @property
    def lower(self) -> bool:
        return self.unit in LATENCY_UNITS if self.lower_is_better is None else self.lower_is_better


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    params: dict[str, int]
    variants: tuple[Variant, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())
    missing: Mapping[str, str] = field(default_factory=dict)
    """Variants named by rows that cannot run here, and why (``{"faststream": "not installed"}``)."""
