"""The corps pytest plugin: fixtures with real nats-servers, clusters and actor systems.

Registered through the ``pytest11`` entry point, so installing corps makes these fixtures
available in any pytest run:

* ``nats_server`` (session): one embedded nats-server with JetStream, on a free loopback port,
  checked by its unique server_name.
* ``nats_server_factory``: start extra servers (fault tests kill and restart them); all are
  stopped at the end of the test.
* ``actor_system``: an ActorSystem on ``nats_server``, in a namespace of its own per test, so
  tests never see each other's actors; drained when the test ends.
* ``actor_system_factory``: more systems on the same server and namespace (two nodes).
* ``nats_cluster``: a fresh 3-node JetStream cluster per test, from the node configs in corps's
  ``deploy/`` (the ones docker-compose runs) on free loopback ports; returns once it has formed
  (routes up, a JetStream meta leader that every node agrees on, each node checked by its
  server_name). ``nats_cluster_factory`` starts more. Needs a corps source
  checkout (``deploy/``), or ``NatsCluster(config_dir=...)`` with node-<i>.conf files of your own.

Async fixtures run under anyio's pytest plugin: mark tests ``@pytest.mark.anyio``. The plugin
provides the ``anyio_backend`` fixture (asyncio on uvloop where installed); override it in your
conftest.py to choose another.

This module imports neither hypothesis nor anything of the test extra but pytest: with corps
installed, any project's pytest run loads it. The property-testing tools are in ``corps.testing``
and are imported only when used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from corps.core._run import uvloop_available
from corps.system._system import ActorSystem
from corps.testing._cluster import NatsCluster
from corps.wire._embedded import EmbeddedServer


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
def nats_cluster_factory() -> Iterator[Callable[..., NatsCluster]]:
    """Start clusters: ``cluster = nats_cluster_factory()`` (``size`` up to the node files in
    deploy/, ``config_dir=...`` for others); all stopped after the test."""
    clusters: list[NatsCluster] = []

    def start(size: int = 3, **kwargs: Any) -> NatsCluster:
        cluster = NatsCluster(size, **kwargs)
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def nats_cluster(nats_cluster_factory: Callable[..., NatsCluster]) -> NatsCluster:
    """A fresh, formed 3-node JetStream cluster (deploy/node-*.conf on free loopback ports) per test."""
    return nats_cluster_factory()


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


def pytest_configure(config: pytest.Config) -> None:
    """Offer the ``ci`` / ``dev`` / ``soak`` hypothesis profiles (if hypothesis is installed)
    unless the run defines its own."""
    if importlib.util.find_spec("hypothesis") is not None:
        from corps.testing._profiles import register_profiles

        register_profiles()
