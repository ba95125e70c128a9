"""CorpsClient on a real nats-server: direct routes keep per-subscription order; publish_now is publish."""

from __future__ import annotations

import anyio
import nats.errors
import pytest
from nats.aio.msg import Msg

from corps import EmbeddedServer
from corps.wire._client import CorpsClient, Route
from corps.wire._transport import connect, flush


async def test_a_route_keeps_arrival_order_across_taken_and_declined_messages(nats_server: EmbeddedServer) -> None:
    nc = await connect([nats_server.url], "route-test")
    seen: list[tuple[str, int]] = []
    done = anyio.Event()
    total = 300

    def record(path: str, n: int) -> None:
        seen.append((path, n))
        if len(seen) == total:
            done.set()

    def take(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        n = int(data)
        if n % 30 == 10:
            return False  # declined: this one, and all after it until the slow path catches up
        record("direct", n)
        return True

    async def slow(msg: Msg) -> None:
        await anyio.lowlevel.checkpoint()  # a slow path that really suspends
        record("slow", int(msg.data))

    route = Route(take, slow)
    try:
        await nc.subscribe_route("route.test", route)
        await flush(nc)
        for n in range(total):
            assert not nc.publish_now("route.test", b"%d" % n)
            if n % 30 == 29:
                await flush(nc)  # rounds of 30: the slow path catches up between rounds
        with anyio.fail_after(5):
            await done.wait()
    finally:
        await nc.close()
    assert [n for _, n in seen] == list(range(total))  # in order, whichever path each took
    assert {path for path, _ in seen} == {"direct", "slow"}
    assert route.pending == 0


async def test_after_a_flush_caught_up_waits_for_the_slow_path_to_handle_what_was_read(
        nats_server: EmbeddedServer) -> None:
    """The barrier of a virtual node after its lease lapsed: flush, then ``caught_up``; every
    message sent before the flush has been handled when it returns, later ones need not be."""
    nc = await connect([nats_server.url], "caught-up-test")
    gate = anyio.Event()
    handled: list[int] = []

    async def slow(msg: Msg) -> None:
        await gate.wait()
        handled.append(int(msg.data))

    route = Route(lambda s, r, d, h: False, slow)
    try:
        await nc.subscribe_route("caught.up", route)
        await flush(nc)
        for n in range(20):
            nc.publish_now("caught.up", b"%d" % n)
        await flush(nc)  # the PONG came after all 20: the parser read them, the slow path holds them
        done = anyio.Event()

        async def barrier() -> None:
            await route.caught_up()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(barrier)
            await flush(nc)  # a round trip: the barrier had every chance to return early
            assert not done.is_set(), "caught_up returned while the slow path still held messages"
            nc.publish_now("caught.up", b"20")  # after the barrier began: not waited for
            gate.set()
            with anyio.fail_after(5):
                await done.wait()
        assert handled[:20] == list(range(20))
    finally:
        await nc.close()


async def test_publish_now_refuses_what_publish_refuses(nats_server: EmbeddedServer) -> None:
    nc: CorpsClient = await connect([nats_server.url], "publish-now-test")
    with pytest.raises(nats.errors.MaxPayloadError):
        nc.publish_now("too.big", bytes(nc.max_payload + 1))
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        nc.publish_now("closed", b"x")
