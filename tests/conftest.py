"""Shared test configuration: the corps pytest plugin (corps.testing) supplies the fixtures."""

from __future__ import annotations

import inspect
import os

import pytest
from hypothesis import HealthCheck, settings

# CI: derandomized (a fixed seed) so any failure reproduces; "soak" for long local runs.
settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.register_profile("soak", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every ``async def`` test under anyio (the backend fixture comes from corps.testing).

    The mark goes on the function before collection, so anyio's own hook and parametrize see it.
    """
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak``: the fault suite (tests/fault) in full: every scenario, more sagas, repeated seeds."""
    parser.addoption("--soak", action="store_true", default=False,
                     help="run every fault scenario of tests/fault, bigger and repeated (docs/reliability.md)")
