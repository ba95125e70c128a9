"""@on_event(idempotent=True): the event's mark is written before the handler (begun) and after (done).

A consumer "dies" inside its handler by being cancelled there, as a killed process would: no mark
after it, no ack. The SIGKILL version of this is in tests/fault.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import anyio
import pytest

from corps import Actor, ActorSystem, Backoff, EventsConfig, Message, on_event
from corps.events._delivery import MARK_DONE, MARK_INTENT, current_event
from corps.wire._embedded import EmbeddedServer

# Short ack_wait: what a dead node held is redelivered to another within a second.
FAST = EventsConfig(ack_wait=1.0, heartbeat=0.3, fetch_expires=1.0)


class Tick(Message):
    n: int


class Counter(Actor):
    marks: ClassVar[list[tuple[int, bytes | None]]] = []
    """(event, its mark while the handler runs), per run."""
    plan: ClassVar[dict[int, str]] = {}
    """Event -> 'die' or 'fail' on its first run."""
    ran: ClassVar[dict[int, anyio.Event]] = {}

    @on_event(Tick, idempotent=True, backoff=Backoff(initial=0.05))
    async def tick(self, event: Tick) -> None:
        d = current_event.get()
        assert d is not None
        mark = await self.system.events.mark(d.consumer.name, d.event_id)
        type(self).marks.append((event.n, mark))
        what = type(self).plan.pop(event.n, "")
        type(self).ran.setdefault(event.n, anyio.Event()).set()
        if what == "die":
            raise asyncio.CancelledError  # killed here: nothing after this line runs
        if what == "fail":
            raise RuntimeError("transient")


@pytest.fixture(autouse=True)
def fresh() -> None:
    Counter.marks, Counter.plan, Counter.ran = [], {}, {}


async def ran(n: int, times: int = 1) -> None:
    with anyio.fail_after(10):
        while sum(m[0] == n for m in Counter.marks) < times:
            Counter.ran[n] = event = anyio.Event()
            await event.wait()


async def test_an_idempotent_handler_runs_under_a_begun_mark_and_leaves_a_done_mark(
    actor_system: ActorSystem,
) -> None:
    await actor_system.spawn(Counter, "c")
    await actor_system.publish(Tick(1), msg_id="tick-1")
    await actor_system.publish(Tick(2), msg_id="tick-2")
    await ran(2)  # one instance, one event at a time: event 1 is acked, and marked, by now
    assert Counter.marks == [(1, MARK_INTENT), (2, MARK_INTENT)]  # before: no mark while it ran
    # Published with a msg_id, an event's id is that id.
    assert await actor_system.events.mark("Counter", "tick-1") == MARK_DONE


async def test_a_handler_that_raises_clears_its_mark_so_the_retry_is_a_first_attempt(
    actor_system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    Counter.plan = {1: "fail"}
    await actor_system.spawn(Counter, "c")
    with caplog.at_level(logging.WARNING, logger="corps.events"):
        await actor_system.publish(Tick(1), msg_id="tick-1")
        await ran(1, times=2)
    assert Counter.marks == [(1, MARK_INTENT), (1, MARK_INTENT)]  # each run under its own fresh mark
    assert actor_system.events.consumers["Counter"].unfinished == 0
    assert not [r for r in caplog.records if "never finished" in r.getMessage()]


async def test_a_redelivery_after_a_death_inside_the_handler_runs_it_again_and_counts_it(
    nats_server: EmbeddedServer, corps_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    def node() -> ActorSystem:
        return ActorSystem(nats_server.url, namespace=corps_namespace, server_name=nats_server.server_name,
                           events=FAST)

    Counter.plan = {1: "die"}
    async with node() as first:
        await first.spawn(Counter, "c")
        await first.publish(Tick(1), msg_id="tick-1")
        await ran(1)
    # That node is gone with the event unacked and its mark "begun": another node gets it.
    with caplog.at_level(logging.WARNING, logger="corps.events"):
        async with node() as second:
            await second.spawn(Counter, "c")
            await ran(1, times=2)
            assert second.events.consumers["Counter"].unfinished == 1
    assert Counter.marks == [(1, MARK_INTENT), (1, MARK_INTENT)]
    assert any("was begun by an earlier delivery that never finished" in r.getMessage()
               and "may apply twice" in r.getMessage() for r in caplog.records)
