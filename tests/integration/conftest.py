"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from corps import ActorSystem


@pytest.fixture
async def raw(actor_system: ActorSystem) -> AsyncIterator[Client]:
    """A plain nats-py client on the test system's server: anyone on the bus (not corps)."""
    nc = await nats.connect(actor_system.url)
    try:
        yield nc
    finally:
        await nc.close()
