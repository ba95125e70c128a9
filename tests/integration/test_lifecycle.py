"""Start, connect, drain and stop: embedded server, readiness, graceful shutdown, presence."""

from __future__ import annotations

import socket
from uuid import uuid4

import anyio
import anyio.abc
import pytest

from corps import ActorSystem, AskTimeout, NatsUnavailable, NoResponders
from corps.wire._embedded import EmbeddedServer
from corps.wire._transport import flush
from tests.integration.domain import (
    GATES,
    Account,
    Balance,
    Deposit,
    Forward,
    Gate,
    GetBalance,
    Hold,
    Relay,
    Slow,
    TraceLog,
)


async def test_no_url_starts_an_embedded_server_and_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    async with ActorSystem() as system:
        assert system.embedded
        server = system._embedded
        assert server is not None
        assert server.running
        ref = await system.spawn(Account, "e")
        assert (await ref.ask(Deposit("e", 1), timeout=2.0)).amount == 1
        url = system.url
    assert not server.running
    with socket.socket() as s:  # the port is free again
        assert s.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0


async def test_nats_url_from_the_environment_is_used(
    nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    async with ActorSystem(namespace=f"t{uuid4().hex[:8]}") as system:
        assert not system.embedded
        assert system.url == nats_server.url


async def test_a_server_with_another_name_is_refused(nats_server: EmbeddedServer) -> None:
    with pytest.raises(NatsUnavailable, match="server_name"):
        async with ActorSystem(nats_server.url, server_name="some-stale-server"):
            pass


async def test_an_unreachable_server_raises_nats_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with anyio.fail_after(15), pytest.raises(NatsUnavailable):
            async with ActorSystem(f"nats://127.0.0.1:{port}"):
                pass


async def test_drain_finishes_in_flight_and_queued_asks(
    nats_server: EmbeddedServer, corps_namespace: str, actor_system: ActorSystem
) -> None:
    name = f"drain-{uuid4().hex}"
    GATES[name] = gate = Gate()
    stop = anyio.Event()

    async def host(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with ActorSystem(nats_server.url, namespace=corps_namespace) as system:
            await system.spawn(Slow, "busy")
            task_status.started()
            await stop.wait()
        # leaving the block drained the system

    ref = actor_system.ref(Slow, "busy")
    replies: list[Balance] = []

    async def ask() -> None:
        replies.append(await ref.ask(Hold(name), timeout=10.0))

    async with anyio.create_task_group() as tg:
        await tg.start(host)
        for _ in range(3):  # one in the handler, two waiting in its mailbox
            tg.start_soon(ask)
        await gate.entered.wait()
        await actor_system._outbox.flush()
        await flush(actor_system._nc)  # all three are at the server before the host starts draining
        stop.set()
        gate.release.set()
    assert len(replies) == 3, "an in-flight or queued ask was lost in the drain"
    with pytest.raises(NoResponders):  # after the drain, nothing is hosted
        await ref.ask(Hold(name), timeout=2.0)


async def test_what_a_handler_sends_carries_the_correlation_id(actor_system: ActorSystem) -> None:
    await actor_system.spawn(Relay, "r1")
    await actor_system.spawn(Relay, "r2")
    await actor_system.spawn(Account, "r2")
    reply = await actor_system.ref(Relay, "r1").ask(Forward("r2", 5), timeout=2.0)
    assert reply.amount == 5
    seen = (await actor_system.ref(Relay, "r2").ask(TraceLog(), timeout=2.0)).seen
    assert len(seen) == 1
    label, corr = seen[0]
    # The root ask had no correlation id, so its own id (sender node + sequence) became one.
    assert label == "forwarded"
    assert corr.startswith(actor_system.node + "-")


async def test_two_hosts_of_one_class_reach_each_others_ids(actor_system_factory: object) -> None:
    a: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    b: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    await a.spawn(Account, "on-a")
    await b.spawn(Account, "on-b")
    for system in (a, b):
        assert (await system.ref(Account, "on-a").ask(GetBalance("on-a"), timeout=2.0)).account == "on-a"
        assert (await system.ref(Account, "on-b").ask(GetBalance("on-b"), timeout=2.0)).account == "on-b"
    # Shared hosting: a node cannot know that an id lives nowhere, so it stays silent.
    with pytest.raises(AskTimeout):
        await a.ref(Account, "nowhere").ask(GetBalance("nowhere"), timeout=0.3)
    assert a.metrics()["Account"]["unrouted"] + b.metrics()["Account"]["unrouted"] >= 1


async def test_a_comma_separated_url_list_is_a_server_list(nats_server: EmbeddedServer, corps_namespace: str) -> None:
    unused = EmbeddedServer().start()  # a real address that is stopped again: only the other answers
    unused.stop(cleanup=True)
    async with ActorSystem(f"{nats_server.url}, {unused.url}", namespace=corps_namespace) as system:
        assert system._servers == [nats_server.url, unused.url]
        ref = await system.spawn(Account, "listed")
        assert (await ref.ask(Deposit("listed", 1), timeout=2.0)).amount == 1
