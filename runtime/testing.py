"""Test support for corps users (and corps itself): a pytest plugin with real nats-servers.

Registered through the ``pytest11`` entry point, so installing corps makes these fixtures
available in any pytest run:

* ``nats_server`` (session): one embedded nats-server with JetStream, on a free loopback port,
  checked by its unique server_name.
* ``nats_server_factory``: start extra servers (fault tests kill and restart them); all are
  stopped at the end of the test.
* ``actor_system``: an ActorSystem on ``nats_server``, in a namespace of its own per test, so
  tests never see each other's actors; drained when the test ends.
* ``actor_system_factory``: more systems on the same server and namespace (two nodes).

Async fixtures run under anyio's pytest plugin: mark tests ``@pytest.mark.anyio`` and define an
``anyio_backend`` fixture (corps's default is asyncio on uvloop where installed).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from runtime._embedded import EmbeddedServer
from runtime._run import uvloop_available
from runtime._system import ActorSystem


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio on uvloop where installed, with asyncio debug off (it slows every await ~3x)."""
    return "asyncio", {"use_uvloop": uvloop_available()}


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedServer]:
    """One nats-server (JetStream on) for the whole test session."""
    with EmbeddedServer() as server:
        yield server


@pytest.fixture
def nats_server_factory() -> Iterator[Callable[..., EmbeddedServer]]:
    """Start fresh servers: ``server = nats_server_factory(jetstream=True)``; stopped after the test."""
    servers: list[EmbeddedServer] = []

    def start(**kwargs: Any) -> EmbeddedServer:
        server = EmbeddedServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(cleanup=True)


@pytest.fixture
def corps_namespace() -> str:
    """A namespace unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def actor_system_factory(
    nats_server: EmbeddedServer, corps_namespace: str
) -> AsyncIterator[Callable[..., Any]]:
    """``system = await actor_system_factory(**kwargs)``: more systems (nodes) on the test's namespace."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> ActorSystem:
            kwargs.setdefault("namespace", corps_namespace)
            kwargs.setdefault("server_name", nats_server.server_name)
            return await stack.enter_async_context(ActorSystem(nats_server.url, **kwargs))

        yield make


@pytest.fixture
async def actor_system(actor_system_factory: Callable[..., Any]) -> ActorSystem:
    """An ActorSystem on the session server, in this test's own namespace."""
    system: ActorSystem = await actor_system_factory()
    return system
