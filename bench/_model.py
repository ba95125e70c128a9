"""What a benchmark is made of: variants (corps or raw) that produce samples, rows that compare them."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Sample = dict[str, float]
"""One run of one variant: metric name -> value (e.g. ``{"rate": 1.2e6, "seconds": 0.17}``)."""


@dataclass(frozen=True)
class Context:
    """What every variant gets: the server, the loop in use, and the scenario's parameters."""

    url: str
    loop: str
    params: Mapping[str, int]


@dataclass(frozen=True)
class Variant:
    """One way to do a scenario's work: ``corps``, ``corps-nocoalesce``, ``raw``..."""

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


@dataclass(frozen=True)
class Row:
    """One line of the table: ``metric`` of variant ``corps`` against the same metric of ``raw``."""

    label: str
    metric: str
    unit: str
    corps: str
    raw: str | None = None
    target: Target | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    params: dict[str, int]
    variants: tuple[Variant, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())
