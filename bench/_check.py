"""``corps bench --check``: which rows missed their target, and ``--target`` overrides of a row's goal.

Exit codes of ``corps bench`` (documented in bench/README.md and docs/benchmarks.md):
``0`` every run succeeded (and, with ``--check``, every row with a target met it); ``1`` a variant
failed (an exception, a timeout, lost messages); ``2`` usage error; ``3`` with ``--check``, a row
missed its target or could not be evaluated (no number on one side). A failure (1) wins over a
miss (3).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final, Literal

from corps.bench._model import Row, Scenario, Target
from corps.bench._report import evaluate
from corps.bench._runner import Outcome

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_MISSED: Final = 3

_SPEC = re.compile(r"^(?P<label>.+?)\s*(?P<op>>=|<=|<)\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<x>x?)$")


def parse_target(text: str) -> tuple[str, Target]:
    """``"tell (coalesce)>=0.6x"`` (on the corps/raw ratio) or ``"ask p50<=300"`` (on the corps
    median, in the row's unit) -> (row label, Target).

    Raises:
        ValueError: the text is not ``LABEL OP NUMBER[x]``.
    """
    m = _SPEC.match(text.strip())
    if m is None:
        raise ValueError(f"--target {text!r}: expected LABEL>=NUMBER[x], LABEL<=NUMBER[x] or LABEL<NUMBER[x], "
                         f"e.g. 'tell (coalesce) vs raw batched/iter>=0.6x'")
    on: Literal["ratio", "value"] = "ratio" if m["x"] else "value"
    op: Literal[">=", "<=", "<"] = ">=" if m["op"] == ">=" else "<=" if m["op"] == "<=" else "<"
    return m["label"], Target(op, float(m["value"]), on)


def with_targets(chosen: list[Scenario], overrides: dict[str, Target]) -> list[Scenario]:
    """The scenarios with each overridden row's target replaced.

    Raises:
        ValueError: a label names no row of the chosen scenarios.
    """
    labels = {row.label for sc in chosen for row in sc.rows}
    unknown = sorted(set(overrides) - labels)
    if unknown:
        raise ValueError(f"--target names no row of the chosen scenarios: {', '.join(map(repr, unknown))}; "
                         f"rows: {', '.join(sorted(labels))}")
    return [replace(sc, rows=tuple(_retarget(row, overrides.get(row.label)) for row in sc.rows)) for sc in chosen]


def _retarget(row: Row, target: Target | None) -> Row:
    if target is None:
        return row
    if target.on == "ratio" and row.raw is None:
        raise ValueError(f"--target {row.label!r}: the row has no raw side, so no ratio; give a value (no 'x')")
    return replace(row, target=Target(target.op, target.value, target.on, row.unit if target.on == "value" else ""))


def misses(outcomes: list[Outcome]) -> list[str]:
    """One line per row with a target that it did not meet (or that no number could decide)."""
    out: list[str] = []
    for outcome in outcomes:
        for row in outcome.scenario.rows:
            if row.target is None:
                continue
            ev = evaluate(row, outcome)
            if ev["met"] is not True:
                got = ev["ratio"] if row.target.on == "ratio" else ev["corps"]["median"]
                shown = "no number" if ev["met"] is None else (
                    f"{got:.2f}x" if row.target.on == "ratio" else f"{got:,.0f} {row.unit}")
                out.append(f"{outcome.scenario.name}: {row.label}: {shown}, target {row.target}")
    return out


def exit_code(outcomes: list[Outcome], check: bool) -> int:
    if any(o.errors for o in outcomes):
        return EXIT_FAILED
    return EXIT_MISSED if check and misses(outcomes) else EXIT_OK
