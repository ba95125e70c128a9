"""Events on a real nats-server: at-least-once, retries, dead letters, dedupe, idempotency, order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import msgspec
import nats
import pytest

from corps import (
    Actor,
    ActorSystem,
    EventsConfig,
    Message,
    ProvisioningConflict,
    PublishFailed,
    Request,
    handler,
    on_event,
)
from corps.wire._transport import flush
from tests.integration.events_domain import (
    Catcher,
    DeadLetterWatch,
    Idempotent,
    Log,
    Noted,
    Passer,
    PerKey,
    Poison,
    Recorder,
    Service,
)


async def dead_letters_of(system: ActorSystem, count: int, timeout: float = 10.0) -> list[Any]:
    async def enough() -> bool:
        return len(await system.events.dead_letters()) >= count

    watch = await DeadLetterWatch().start(system)
    try:
        await watch.wait_until(enough, timeout)
    finally:
        await watch.stop()
    return await system.events.dead_letters()


async def test_a_failing_handler_is_redelivered_until_it_succeeds(actor_system: ActorSystem) -> None:
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    for n in range(3):
        await actor_system.publish(Noted("a", n, fail_times=2 if n == 1 else 0))
    await log.wait_for(3)
    assert sorted(log.seen) == [("a", 0), ("a", 1), ("a", 2)]
    assert log.attempts[("a", 1)] == 3
    assert await actor_system.events.dead_letters() == []


async def test_a_poison_event_gets_max_deliver_attempts_then_a_dead_letter_then_redrive(
    actor_system: ActorSystem,
) -> None:
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    ack = await actor_system.publish(Poison(7))
    await actor_system.publish(Noted("after", 1, fail_times=3))  # fails 3 times: dead-lettered too
    entries = await dead_letters_of(actor_system, 2)
    poison = next(e for e in entries if e.event_type == "Poison")
    assert log.attempts[("poison", 7)] == 3
    assert poison.attempts == 3
    assert poison.reason == "handler-error"
    assert "ValueError: poison 7 can never be handled" in poison.error
    assert poison.stream_seq == ack.seq
    assert poison.consumer == "Recorder"
    assert poison.subject.endswith(".events.Poison")
    assert msgspec.msgpack.decode(poison.data) == {"$type": "Poison", "n": 7}
    assert "Corps-Dlq-Msg-Id" in poison.headers
    # Redrive the other one: its 4th attempt succeeds, and the entry leaves the dead-letter stream.
    noted = next(e for e in entries if e.event_type == "Noted")
    await actor_system.events.redrive(noted.dlq_seq)
    await log.wait_for(1)
    assert log.seen == [("after", 1)]
    assert log.attempts[("after", 1)] == 4
    assert [e.event_type for e in await actor_system.events.dead_letters()] == ["Poison"]


async def test_an_undecodable_event_is_dead_lettered_at_once_and_the_next_is_processed(
    actor_system: ActorSystem,
) -> None:
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    nc = await nats.connect(actor_system.url)
    try:
        js = nc.jetstream()
        await js.publish(f"{actor_system.namespace}.events.Noted", b"\xc1 not msgpack")
        await js.publish(f"{actor_system.namespace}.events.Noted",
                         msgspec.msgpack.encode({"$type": "Noted", "key": 5, "n": "x"}))
    finally:
        await nc.close()
    await actor_system.publish(Noted("ok", 1))
    await log.wait_for(1)
    entries = await dead_letters_of(actor_system, 2)
    assert [e.reason for e in entries] == ["undecodable", "undecodable"]
    assert [e.attempts for e in entries] == [1, 1]
    assert entries[0].data == b"\xc1 not msgpack"
    assert "Expected `str`" in entries[1].error


async def test_a_duplicate_publish_is_dropped_by_the_stream(actor_system: ActorSystem) -> None:
    Recorder.log = log = Log()
    await actor_system.spawn(Recorder, "r")
    first = await actor_system.publish(Noted("d", 1), msg_id="order-1-noted")
    again = await actor_system.publish(Noted("d", 1), msg_id="order-1-noted")
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    await actor_system.publish(Noted("d", 2))  # a barrier: processed after the first
    await log.wait_for(2)
    assert log.seen == [("d", 1), ("d", 2)]


class Announce(Request["Announced"]):
    text: str
    kind: str = "noted"


class Announced(Message):
    seq: int
    duplicate: bool


class Announcer(Actor):
    """Publishes on every ask, without @idempotent: what a retried saga step does."""

    @handler
    async def announce(self, msg: Announce) -> Announced:
        ack = await self.publish(Noted(msg.text, 1) if msg.kind == "noted" else Poison(1))
        return Announced(ack.seq, ack.duplicate)


async def test_a_keyed_asks_events_are_deduplicated_on_a_retry_and_a_plain_asks_are_not(
    actor_system: ActorSystem,
) -> None:
    """A keyed ask (a saga step's) publishes with ids from its idempotency key: a retried step's
    events are dropped by the stream, as a retried event handler's are."""
    ref = await actor_system.spawn(Announcer, "a")
    first = await ref.ask(Announce("x"), idempotency_key="saga-1:notify")
    again = await ref.ask(Announce("x"), idempotency_key="saga-1:notify")
    assert (first.duplicate, again.duplicate, again.seq) == (False, True, first.seq)
    other_key = await ref.ask(Announce("x"), idempotency_key="saga-2:notify")
    other_type = await ref.ask(Announce("x", kind="poison"), idempotency_key="saga-1:notify")
    assert not other_key.duplicate
    assert not other_type.duplicate  # the retry took another path: not mistaken for a duplicate
    plain = [await ref.ask(Announce("x")) for _ in range(2)]
    assert [p.duplicate for p in plain] == [False, False]
    assert len({first.seq, other_key.seq, other_type.seq, *(p.seq for p in plain)}) == 5


async def test_an_idempotent_handler_has_one_effect_for_a_duplicate_delivery(actor_system: ActorSystem) -> None:
    Idempotent.log = log = Log()
    await actor_system.spawn(Idempotent, "i")
    await actor_system.publish(Noted("x", 1), msg_id="evt-1")
    await log.wait_for(1)
    # The same event again as a new stream message (what a redelivery after a crash between the
    # effect and the ack, or a publisher retry after the duplicate window, amounts to).
    nc = await nats.connect(actor_system.url)
    try:
        await nc.jetstream().publish(f"{actor_system.namespace}.events.Noted",
                                     msgspec.msgpack.encode(Noted("x", 1)),
                                     headers={"Nats-Msg-Id": "evt-1-again", "Corps-Event-Id": "evt-1"})
    finally:
        await nc.close()
    await actor_system.publish(Noted("x", 2))
    await log.wait_for(2)
    assert log.seen == [("x", 1), ("x", 2)]


async def test_events_of_one_key_are_handled_in_order_and_a_slow_key_blocks_no_other(
    actor_system: ActorSystem,
) -> None:
    PerKey.log = log = Log()
    PerKey.release = anyio.Event()
    keys = [f"k{i}" for i in range(6)]
    await actor_system.spawn(PerKey, "k0")  # the others are activated by their first event
    await actor_system.publish(Noted("slow", 0))
    for n in range(15):
        for key in keys:
            await actor_system.publish(Noted(key, n, fail_times=1 if n == 3 else 0))
    await actor_system.publish(Noted("slow", 1))
    await log.wait_for(15 * len(keys))  # every other key finished while "slow" still waits
    assert ("slow", 1) not in log.seen
    PerKey.release.set()
    await log.wait_for(15 * len(keys) + 2)
    for key in [*keys, "slow"]:
        ns = [n for k, n in log.seen if k == key]
        assert ns == sorted(ns), f"{key} out of order: {ns}"
    assert {k for k, _ in log.seen} == {*keys, "slow"}


async def test_a_service_class_shares_one_durable_consumer_across_instances(actor_system: ActorSystem) -> None:
    Service.log = log = Log()
    await actor_system.spawn(Service, "s")
    await actor_system.spawn(Service, "s")
    for n in range(20):
        await actor_system.publish(Noted("s", n))
    await log.wait_for(20)
    assert sorted(n for _, n in log.seen) == list(range(20))


async def test_replay_from_a_sequence_or_a_time_rebuilds_a_projection(actor_system: ActorSystem) -> None:
    acks = [await actor_system.publish(Noted("p", n)) for n in range(10)]
    await actor_system.publish(Poison(1))
    totals: dict[str, int] = {}
    async for event, _seq in actor_system.events.replay(Noted):
        totals[event.key] = totals.get(event.key, 0) + event.n
    assert totals == {"p": 45}
    tail = [seq async for _event, seq in actor_system.events.replay(Noted, from_seq=acks[7].seq)]
    assert tail == [a.seq for a in acks[7:]]
    import datetime

    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    assert len([e async for e, _ in actor_system.events.replay(Noted, from_time=since)]) == 10


async def test_a_stream_that_differs_from_the_code_is_reported_field_by_field(
    actor_system_factory: Callable[..., Any],
) -> None:
    await actor_system_factory()
    with pytest.raises(ProvisioningConflict) as caught:
        await actor_system_factory(events=EventsConfig(max_age=60.0, duplicate_window=10.0))
    text = str(caught.value)
    assert "max_age is 604800.0 on the server, 60.0 in the code" in text
    assert "duplicate_window" in text


async def test_a_tell_from_an_event_handler_carries_the_events_correlation_id(actor_system: ActorSystem) -> None:
    Catcher.log, Catcher.correlations = Log(), []
    await actor_system.spawn(Catcher, "c")
    await actor_system.spawn(Passer, "p")
    await actor_system.publish(Noted("k", 1), msg_id="evt-1")  # a root event: its id is its correlation
    await Catcher.log.wait_for(1)
    assert Catcher.correlations == ["evt-1"]


async def test_a_publish_nobody_stores_retries_then_fails_with_publish_failed(
    nats_server: Any, corps_namespace: str
) -> None:
    cfg = EventsConfig(publish_timeout=0.6, publish_attempt_timeout=0.2)
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        await system.events.js.delete_stream(system.events.stream)  # the server now answers 503
        with anyio.fail_after(5), pytest.raises(PublishFailed, match="503"):
            await system.publish(Noted("k", 1))
        assert system.events.publisher.retries >= 2
        assert system.events.publisher.published == 0


async def test_a_publish_whose_ack_never_comes_times_out_per_attempt_then_fails(
    nats_server: Any, corps_namespace: str
) -> None:
    cfg = EventsConfig(publish_timeout=0.6, publish_attempt_timeout=0.15)
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        await system.events.js.delete_stream(system.events.stream)
        silent = await nats.connect(nats_server.url)  # takes the event, never answers: no 503 either
        try:
            await silent.subscribe(f"{corps_namespace}.events.>")
            await flush(silent)
            with anyio.fail_after(5), pytest.raises(PublishFailed, match=r"no ack within \d\.\d\ds"):
                await system.publish(Noted("k", 1))
        finally:
            await silent.close()
        assert system.events.publisher.retries >= 2


async def test_a_stopping_node_hands_its_pulled_backlog_back_at_once(
    nats_server: Any, corps_namespace: str
) -> None:
    # ack_wait 30 s: an event left unacked by the stopping node would reach the next one only
    # after it, far past this test's deadline.
    cfg = EventsConfig(batch=200, max_ack_pending=400, ack_wait=30.0)
    Recorder.log = log = Log()
    total = 3000
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as first:
        for start in range(0, total, 500):
            await asyncio.gather(*(first.publish(Noted("b", n)) for n in range(start, start + 500)))
        await first.spawn(Recorder, "r")
        await log.wait_for(1)  # stopping now: its open pull request is still being filled
    handled_by_first = len(log.seen)
    assert handled_by_first < total, "the first node handled everything: nothing was handed back"
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as second:
        await second.spawn(Recorder, "r")
        await log.wait_until(lambda: {n for _, n in log.seen} == set(range(total)), timeout=10)


class Lingering(Message):
    n: int


class Lingerer(Actor):
    """Holds each event until the test releases it: a handler far longer than ack_wait."""

    entered: ClassVar[anyio.Event]
    release: ClassVar[anyio.Event]
    calls: ClassVar[int] = 0

    @on_event(Lingering)
    async def linger(self, event: Lingering) -> None:
        type(self).calls += 1
        self.entered.set()
        await self.release.wait()


async def test_a_handler_longer_than_a_short_ack_wait_is_kept_alive_not_redelivered(
    nats_server: Any, corps_namespace: str
) -> None:
    Lingerer.entered, Lingerer.release, Lingerer.calls = anyio.Event(), anyio.Event(), 0
    cfg = EventsConfig(ack_wait=0.5)
    async with ActorSystem(nats_server.url, namespace=corps_namespace, events=cfg) as system:
        await system.spawn(Lingerer, "l")
        await system.publish(Lingering(1))
        with anyio.fail_after(5):
            await Lingerer.entered.wait()
        # The property is about time passing: held for 6x ack_wait, kept alive by in-progress acks.
        await anyio.sleep(3.0)
        info = await system._nc.jetstream().consumer_info(system.events.stream, "Lingerer")
        assert info.num_redelivered == 0
        assert Lingerer.calls == 1
        Lingerer.release.set()
