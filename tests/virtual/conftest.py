"""Sizes of the virtual-actor tests: small by default, the issue's full sizes with ``--soak``."""

from __future__ import annotations

import pytest


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak", default=False))
