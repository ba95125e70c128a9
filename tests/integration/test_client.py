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


async def test_publish_now_refuses_what_publish_refuses(nats_server: EmbeddedServer) -> None:
    nc: CorpsClient = await connect([nats_server.url], "publish-now-test")
    with pytest.raises(nats.errors.MaxPayloadError):
        nc.publish_now("too.big", bytes(nc.max_payload + 1))
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        nc.publish_now("closed", b"x")
