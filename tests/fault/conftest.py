"""The fault suite's plan (default: a fixed seed and few sagas; ``--soak``: more, repeated) and report.

Every scenario prints one line (``driver.Result.line``); they are also gathered into a "fault
scenarios" section at the end of the run, which is what docs/reliability.md quotes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fault.driver import Result

LINES: list[str] = []

SEED = int(os.environ.get("CORPS_FAULT_SEED", "20260"))
DEFAULT_N = int(os.environ.get("CORPS_FAULT_N", "12"))
SOAK_N = int(os.environ.get("CORPS_FAULT_SOAK_N", "48"))
SOAK_REPEATS = int(os.environ.get("CORPS_FAULT_SOAK_REPEATS", "3"))
FAULT_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Plan:
    """How big and how often: ``n`` sagas (or orders) per run, one run per seed."""

    soak: bool
    n: int
    seeds: tuple[int, ...]


@pytest.fixture
def plan(request: pytest.FixtureRequest) -> Plan:
    if request.config.getoption("--soak", default=False):
        return Plan(True, SOAK_N, tuple(SEED + i for i in range(SOAK_REPEATS)))
    return Plan(False, DEFAULT_N, (SEED,))


@pytest.fixture
def report(record_property: pytest.RecordProperty) -> object:
    def add(result: Result) -> None:
        line = result.line()
        LINES.append(line)
        record_property(result.scenario, line)
        print(line, flush=True)

    return add


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    soak = config.getoption("--soak", default=False)
    for item in items:
        if FAULT_DIR not in Path(str(item.path)).parents:
            continue
        item.add_marker(pytest.mark.fault)
        # Above every bounded wait inside a scenario (SETTLE), so a scenario that hangs still
        # prints its line (stuck > 0) and fails on it, rather than being cut off by the timeout.
        # A test that names its own timeout keeps it (the 10,000-payload fuzz: ~110 s alone, more under load).
        own = item.get_closest_marker("timeout")
        item.add_marker(pytest.mark.timeout(1200 if soak else own.args[0] if own and own.args else 150))
        if not soak and item.get_closest_marker("soak"):
            item.add_marker(pytest.mark.skip(reason="a soak scenario: runs with --soak"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LINES:
        terminalreporter.section("fault scenarios")
        for line in LINES:
            terminalreporter.write_line(line)
