"""The event consumer pipelines its pull requests, within max_ack_pending.

Two batches are asked for (two requests open at the server) when ``max_ack_pending`` leaves room
for both (the server fills one while the node handles what the other brought); never more than
that room. Read from the server itself: the consumer's ``num_waiting`` (open pull requests).
"""

from __future__ import annotations

from typing import Any

import anyio
import nats
from nats.aio.msg import Msg

from corps import ActorSystem, EventsConfig
from corps.wire._transport import flush
from tests.integration.events_domain import Log, Recorder

POLLS = 50


async def _waiting(nats_server: Any, system: ActorSystem, consumer: str) -> list[int]:
    """``num_waiting`` of the consumer, read POLLS times, each after a server round trip."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        seen = []
        for _ in range(POLLS):
            await system.events.nc.flush()  # what the node sent has reached the server
            info = await js.consumer_info(system.events.stream, consumer)
            seen.append(info.num_waiting)
            if seen[-1] >= 2 and len(seen) >= 10:
                break
        return seen
    finally:
        await nc.close()


async def test_two_pull_requests_are_open_when_max_ack_pending_leaves_room(
    nats_server: Any, corps_namespace: str
) -> None:
    Recorder.log = Log()
    cfg = EventsConfig(batch=100, max_ack_pending=1000)
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        await system.spawn(Recorder, "r")
        seen = await _waiting(nats_server, system, "Recorder")
    assert max(seen) == 2, seen  # pipelined, and no more than two


async def test_pull_requests_never_ask_beyond_max_ack_pending(nats_server: Any, corps_namespace: str) -> None:
    Recorder.log = Log()
    cfg = EventsConfig(batch=8, max_ack_pending=10)  # a second request of 8 would not fit
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        await system.spawn(Recorder, "r")
        seen = await _waiting(nats_server, system, "Recorder")
    assert max(seen) == 1, seen


async def test_two_pull_requests_are_open_again_after_the_first_two_expire(
    nats_server: Any, corps_namespace: str
) -> None:
    """Each expired request is closed by its own end status, so the two that replace them are both
    open: the node remembers the tokens of every request it has open (``OPEN_TOKENS``), not only
    the last one (with one remembered, the first 408 is not recognised, its batch stays counted
    as asked for, and from then on a single request is open at a time)."""
    Recorder.log = Log()
    cfg = EventsConfig(batch=100, max_ack_pending=1000, fetch_expires=0.6, heartbeat=0.2)  # empty stream: expiries
    expired: set[str] = set()
    both = anyio.Event()

    async def status(msg: Msg) -> None:
        if (msg.headers or {}).get("Status") == "408":
            expired.add(msg.subject.rsplit(".", 1)[-1])
            if {"1", "2"} <= expired:
                both.set()

    watcher = await nats.connect(nats_server.url)
    try:
        await watcher.subscribe(f"{corps_namespace}.evin.>", cb=status)  # the node's pull inboxes, heard too
        await flush(watcher)
        async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
            await system.spawn(Recorder, "r")
            with anyio.fail_after(10):
                await both.wait()  # requests 1 and 2 are over: their replacements were asked for
            seen = await _waiting(nats_server, system, "Recorder")
    finally:
        await watcher.close()
    assert max(seen) == 2, seen


async def test_every_event_arrives_once_through_pipelined_pulls(nats_server: Any, corps_namespace: str) -> None:
    from tests.integration.events_domain import Noted

    Recorder.log = log = Log()
    cfg = EventsConfig(batch=7, max_ack_pending=20)  # many small requests, two open at a time
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        for start in range(0, 500, 100):
            for n in range(start, start + 100):
                await system.publish(Noted("k", n))
        await system.spawn(Recorder, "r")
        await log.wait_for(500)
        assert [n for _, n in log.seen] == list(range(500))  # one instance: in stream order, each once
        assert system.events.consumers["Recorder"].stalls == 0
