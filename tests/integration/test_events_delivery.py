"""The event consumer's per-delivery paths, on a real nats-server: what happens to a delivery
before its handler runs (redriven for another class, a key that cannot be read, a delivery past
its handler's ``max_deliver``). The hot path takes each delivery in one call; these are its
branches that are not the handler's."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import nats

from corps import Actor, ActorSystem, Message, on_event
from corps.events._wire import events_subject
from tests.integration.events_domain import FAST, Log, Noted, Recorder
from tests.integration.test_events import dead_letters_of


class Tally(Actor):
    """A second class that consumes ``Noted``: a redrive for ``Recorder`` is not for it."""

    log: Log = Log()

    @on_event(Noted)
    async def noted(self, event: Noted) -> None:
        self.log.add(event.key, event.n)


class Inner(Message):
    id: str


class Wrapped(Message):
    inner: Inner | None


class Wrappers(Actor):
    """Keyed by a dotted path through an optional part: ``Wrapped(None)`` has no key."""

    log: Log = Log()

    @on_event(Wrapped, key="inner.id")
    async def wrapped(self, event: Wrapped) -> None:
        assert event.inner is not None
        self.log.add(event.inner.id, 0)


class Strict(Message):
    n: int


class OneShot(Actor):
    """``Strict`` gets one attempt, while the class's consumer (``max_deliver`` 3, for ``Noted``)
    lets the server deliver it more often: a second delivery is the sign of an attempt that died."""

    log: Log = Log()

    @on_event(Strict, max_deliver=1)
    async def strict(self, event: Strict) -> None:
        self.log.add("strict", event.n)

    @on_event(Noted, max_deliver=3, backoff=FAST)
    async def noted(self, event: Noted) -> None:
        self.log.add(event.key, event.n)


async def test_a_redriven_event_is_handled_again_only_by_the_class_it_was_redriven_for(
    actor_system: ActorSystem,
) -> None:
    Recorder.log = log = Log()
    Tally.log = tally = Log()
    await actor_system.spawn(Recorder, "r")
    await actor_system.spawn(Tally, "t")
    await actor_system.publish(Noted("x", 1, fail_times=3))  # Recorder: 3 failures, dead-lettered
    (entry,) = await dead_letters_of(actor_system, 1)
    await actor_system.events.redrive(entry.dlq_seq)  # for Recorder alone: its 4th attempt succeeds
    await log.wait_for(1)
    await actor_system.publish(Noted("barrier", 2))  # behind the redriven copy in the stream
    await tally.wait_for(2)
    await log.wait_for(2)
    assert tally.seen == [("x", 1), ("barrier", 2)]  # the redriven copy was acked and skipped
    assert log.seen == [("x", 1), ("barrier", 2)]
    assert log.attempts[("x", 1)] == 4


async def test_an_event_whose_key_cannot_be_read_is_dead_lettered_and_the_next_is_handled(
    actor_system: ActorSystem,
) -> None:
    Wrappers.log = log = Log()
    await actor_system.spawn(Wrappers, "a")
    await actor_system.publish(Wrapped(None))
    await actor_system.publish(Wrapped(Inner("a")))
    await log.wait_for(1)
    (entry,) = await dead_letters_of(actor_system, 1)
    assert entry.reason == "no-key"
    assert "inner.id" in entry.error
    assert entry.consumer == "Wrappers"
    assert log.seen == [("a", 0)]


async def test_a_delivery_past_its_handlers_max_deliver_is_dead_lettered_without_running_it(
    actor_system: ActorSystem,
) -> None:
    OneShot.log = log = Log()
    ns = actor_system.namespace
    ack = await actor_system.publish(Strict(7))
    # The class's consumer as corps provisions it; a first delivery taken and nak'ed by hand (as
    # if the attempt's process had died), so the next one is the second.
    filters = sorted({events_subject(ns, Strict), events_subject(ns, Noted)})
    await actor_system.events.ensure_consumer("OneShot", filters, 3)
    nc = await nats.connect(actor_system.url)
    try:
        psub = await nc.jetstream().pull_subscribe_bind("OneShot", actor_system.events.stream)
        (first,) = await psub.fetch(1, timeout=5.0)
        assert first.metadata.num_delivered == 1
        await first.nak()
        await nc.flush()
    finally:
        await nc.close()
    await actor_system.spawn(OneShot, "o")
    (entry,) = await dead_letters_of(actor_system, 1)
    assert (entry.reason, entry.stream_seq, entry.attempts) == ("max-deliver", ack.seq, 2)
    assert entry.error == "delivered 2 times"
    await actor_system.publish(Noted("after", 1))  # the consumer goes on
    await log.wait_for(1)
    assert log.seen == [("after", 1)]  # Strict's handler never ran


class Held(Actor):
    """One instance for every event; the first holds the mailbox until released."""

    log: Log = Log()
    entered: anyio.Event
    release: anyio.Event

    @on_event(Noted)
    async def noted(self, event: Noted) -> None:
        if event.n == 0:
            Held.entered.set()
            await Held.release.wait()
        self.log.add(event.key, event.n)


async def test_events_that_wait_in_a_mailbox_share_one_entry_and_keep_their_order(actor_system: ActorSystem) -> None:
    # A pull batch's deliveries, queued behind a busy handler, join the mailbox's last entry while
    # it waits: one entry (and one list) instead of one per event; order and count unchanged.
    Held.log, Held.entered, Held.release = Log(), anyio.Event(), anyio.Event()
    await actor_system.spawn(Held, "h")
    for n in range(30):
        await actor_system.publish(Noted("h", n))
    with anyio.fail_after(10):
        await Held.entered.wait()
        cell = actor_system._hosts[Held].cells["h"]
        while cell.depth < 29:  # the other 29 delivered into the mailbox (bounded: fail_after)
            await anyio.lowlevel.checkpoint()
    assert cell.queue is not None
    assert cell.depth == 29
    # (the entry being run may hold the next event too, if it joined before the drain took it)
    assert 28 <= sum(len(envs) for envs, _, _ in cell.queue) <= 29
    assert len(cell.queue) <= 3  # one entry per pull batch at most, not one per event
    Held.release.set()
    await Held.log.wait_for(30)
    assert [n for _, n in Held.log.seen] == list(range(30))
