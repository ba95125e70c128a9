"""The coalescing Outbox and its Tracker (runtime/core/_outbox.py), publishing to a recording fake.

Barriers, never sleeps: ``await outbox.flush()`` publishes everything queued, and
``anyio.wait_all_tasks_blocked()`` lets the flusher task run until it waits again.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from corps.core._outbox import FIRST_GRANT, HIGH_WATER, Outbox, Tracker
from corps.errors import InvalidMessage

INBOX = "_INBOX.node1"
Sent = list[tuple[str, bytes, str]]


def enc(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def recorder(sent: Sent, gate: Callable[[str], Awaitable[None]] | None = None) -> Any:
    """A publish coroutine that records (subject, payload, reply) when called, as nats-py buffers it."""

    async def publish(subject: str, payload: bytes, reply: str) -> None:
        sent.append((subject, payload, reply))
        if gate is not None:
            await gate(subject)

    return publish


def frames(sent: Sent, subject: str) -> list[list[Any]]:
    return [msgspec.msgpack.decode(payload) for s, payload, _ in sent if s == subject]


def sequence(sent: Sent, subject: str) -> list[Any]:
    return [value for frame in frames(sent, subject) for value in frame]


@asynccontextmanager
async def flusher(outbox: Outbox) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        yield
        tg.cancel_scope.cancel()


async def tell(outbox: Outbox, subject: str, part: bytes, rid: int = 0) -> None:
    """What ActorRef.tell and ask do: the non-awaiting push, else an awaited send."""
    if not outbox.push(subject, part, rid):
        await outbox.send(subject, part, rid)


async def test_the_first_send_of_an_idle_iteration_is_published_at_once() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    await outbox.send("a", enc(1))
    assert sent == [("a", b"\x91\x01", f"{INBOX}.t1")]


async def test_sends_in_one_iteration_to_one_subject_travel_as_one_frame_in_order() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    async with flusher(outbox):
        for i in range(6):
            await tell(outbox, "a", enc(i))
        assert frames(sent, "a") == [[0]]  # the rest waits for the end of the iteration
        await anyio.wait_all_tasks_blocked()  # the window closed and the flusher ran
        assert frames(sent, "a") == [[0], [1, 2, 3, 4, 5]]
    assert outbox.nats_messages == 2


async def test_different_subjects_get_different_frames() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    async with flusher(outbox):
        await tell(outbox, "a", enc(0))
        for i in range(1, 7):
            await tell(outbox, "ab"[i % 2], enc(i))
        await outbox.flush()
    assert frames(sent, "a") == [[0], [2, 4, 6]]
    assert frames(sent, "b") == [[1, 3, 5]]


async def test_per_subject_order_holds_across_the_direct_message_and_batches() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    rng = random.Random(7)
    expected: dict[str, list[int]] = defaultdict(list)
    async with flusher(outbox):
        for i in range(300):
            subject = rng.choice("abc")
            expected[subject].append(i)
            await tell(outbox, subject, enc(i))
            if rng.random() < 0.05:
                await anyio.lowlevel.checkpoint()  # end an iteration now and then
        await outbox.flush()
    assert {s: sequence(sent, s) for s in "abc"} == expected


async def test_concurrent_senders_keep_their_own_order_per_subject() -> None:
    sent: Sent = []

    async def yield_once(_: str) -> None:
        await anyio.lowlevel.checkpoint()  # a publish that suspends, as nats-py may under load

    outbox = Outbox(recorder(sent, yield_once), limit=256, is_json=False, tracker=Tracker(INBOX))

    async def sender(name: str, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(200):
            await tell(outbox, rng.choice("xy"), enc([name, i]))
            if rng.random() < 0.1:
                await anyio.lowlevel.checkpoint()

    async with flusher(outbox):
        async with anyio.create_task_group() as senders:
            for seed, name in enumerate("PQR"):
                senders.start_soon(sender, name, seed)
        await outbox.flush()
    seen = {s: sequence(sent, s) for s in "xy"}
    assert sum(map(len, seen.values())) == 600
    for name in "PQR":
        for subject in "xy":
            mine = [i for n, i in seen[subject] if n == name]
            assert mine == sorted(mine)
    assert all(len(payload) <= 256 for _, payload, _ in sent)


async def test_flush_waits_for_a_flush_already_in_progress() -> None:
    sent: Sent = []
    gate = anyio.Event()

    async def hold_b(subject: str) -> None:
        if subject == "b":
            await gate.wait()

    outbox = Outbox(recorder(sent, hold_b), limit=1024, is_json=False, tracker=Tracker(INBOX))
    published_when_flush_returned: list[str] = []

    async def barrier() -> None:
        await outbox.flush()
        published_when_flush_returned.extend(s for s, _, _ in sent)

    with anyio.fail_after(5):
        async with flusher(outbox):
            await outbox.send("a", enc(0))
            await outbox.send("b", enc(1))
            await outbox.send("c", enc(2))
            await anyio.wait_all_tasks_blocked()  # the flusher published "b" and waits in it
            assert [s for s, _, _ in sent] == ["a", "b"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(barrier)
                await anyio.wait_all_tasks_blocked()
                gate.set()
    assert published_when_flush_returned == ["a", "b", "c"]


async def test_a_part_over_the_limit_is_refused() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=64, is_json=False, tracker=Tracker(INBOX))
    part = enc("x" * 60)
    with pytest.raises(InvalidMessage, match="over the 64-byte limit") as info:
        await outbox.send("a", part)
    assert info.value.subject == "a"
    with pytest.raises(InvalidMessage):
        await outbox.send_raw("a", part)
    assert sent == []
    await outbox.send("a", enc("s"))  # published at once; opens the window
    await outbox.send("a", enc("t"))  # an open batch: the case where push takes parts
    assert outbox.push("a", enc("u"))
    assert not outbox.push("a", part)  # never takes it: send() refuses it
    with pytest.raises(InvalidMessage, match="over the 64-byte limit"):
        await outbox.send("a", part)


@pytest.mark.parametrize("is_json", [False, True])
async def test_a_batch_over_the_limit_is_split_into_frames_within_it_in_order(is_json: bool) -> None:
    sent: Sent = []
    limit = 64
    proto: Any = msgspec.json if is_json else msgspec.msgpack
    outbox = Outbox(recorder(sent), limit=limit, is_json=is_json, tracker=Tracker(INBOX))
    values = [f"m{i:05d}" for i in range(60)]  # 8 or 9 bytes each: several per frame
    async with flusher(outbox):
        for value in values:
            await tell(outbox, "a", proto.encode(value))
        await outbox.flush()
    decoded = [proto.decode(payload) for _, payload, _ in sent]
    assert [v for frame in decoded for v in frame] == values
    assert len(sent) > 2
    assert all(len(payload) <= limit for _, payload, _ in sent)


async def test_without_coalescing_every_send_is_one_nats_message() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX), coalesce=False)
    async with flusher(outbox):
        for i in range(5):
            await tell(outbox, "a", enc(i))
        await outbox.flush()
    assert frames(sent, "a") == [[0], [1], [2], [3], [4]]
    assert outbox.nats_messages == 5


async def test_a_sender_past_the_high_water_mark_waits_for_the_flusher() -> None:
    sent: Sent = []
    big = b"\xc6" + (1 << 20).to_bytes(4, "big") + bytes(1 << 20)  # a 1 MiB msgpack bin
    outbox = Outbox(recorder(sent), limit=2 << 20, is_json=False, tracker=Tracker(INBOX))
    done = anyio.Event()

    async def flood() -> None:
        for _ in range(HIGH_WATER // len(big) + 2):
            await outbox.send("a", big)
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()  # no flusher running: the sender is held at the bound
            await outbox.flush()
            await done.wait()
        await outbox.flush()
    assert sum(len(msgspec.msgpack.decode(p)) for _, p, _ in sent) == HIGH_WATER // len(big) + 2


async def test_a_tracked_frame_maps_back_to_its_subject_asks_and_tells() -> None:
    sent: Sent = []
    tracker = Tracker(INBOX)
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=tracker)
    async with flusher(outbox):
        await tell(outbox, "a", enc(0), rid=7)
        await tell(outbox, "a", enc(1))
        await tell(outbox, "a", enc(2), rid=8)
        await tell(outbox, "a", enc(3))
        await outbox.flush()
    (_, _, first), (_, _, second) = sent
    assert tracker.lookup(first) == ("a", [7], 0)
    assert tracker.lookup(second) == ("a", [8], 2)


async def test_an_untracked_send_has_no_reply_subject() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    await outbox.send(f"{INBOX}.9", enc([1, True, "ok"]), track=False)
    assert sent[0][2] == ""


async def test_a_raw_payload_is_published_bare_and_in_queue_order() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    async with flusher(outbox):
        await outbox.send_raw("reply.1", b"bare-1")  # idle: published at once
        await outbox.send("a", enc(0))
        await outbox.send("a", enc(1))
        await outbox.send_raw("reply.2", b"bare-2")
        await outbox.flush()
    assert [(s, p) for s, p, _ in sent] == [
        ("reply.1", b"bare-1"),
        ("a", enc([0])),
        ("reply.2", b"bare-2"),
        ("a", enc([1])),
    ]


def test_the_tracker_forgets_entries_evicted_from_its_ring() -> None:
    tracker = Tracker(INBOX)
    first = tracker.track("a", [1], 0)
    for _ in range(Tracker.RING - 1):
        last = tracker.track("b", [], 2)
    assert tracker.lookup(first) == ("a", [1], 0)  # RING entries: still held
    newest = tracker.track("c", [], 3)
    assert tracker.lookup(first) is None
    assert tracker.lookup(last) == ("b", [], 2)
    assert tracker.lookup(newest) == ("c", [], 3)


def test_a_lone_tell_reuses_one_reply_subject_per_target_and_maps_back_to_one_tell() -> None:
    tracker = Tracker(INBOX)
    a1, b1, a2 = tracker.track("a", [], 1), tracker.track("b", [], 1), tracker.track("a", [], 1)
    assert a1 == a2 != b1
    assert tracker.lookup(a1) == ("a", [], 1)
    assert tracker.lookup(b1) == ("b", [], 1)
    batch = tracker.track("a", [], 2)  # more than one tell: a ring entry of its own
    assert batch != a1
    assert tracker.lookup(batch) == ("a", [], 2)


def test_the_tracker_forgets_the_oldest_lone_tell_target_past_its_bound() -> None:
    tracker = Tracker(INBOX)
    first = tracker.track("t0", [], 1)
    for i in range(1, Tracker.RING):
        tracker.track(f"t{i}", [], 1)
    assert tracker.lookup(first) == ("t0", [], 1)
    tracker.track("one-more", [], 1)
    assert tracker.lookup(first) is None
    assert tracker.lookup(tracker.track("t1", [], 1)) == ("t1", [], 1)
    assert tracker.track("t0", [], 1) != first  # a forgotten target gets a fresh token


@pytest.mark.parametrize("reply", [f"{INBOX}.x", f"{INBOX}.", f"{INBOX}.99", f"{INBOX}.t", f"{INBOX}.t7"])
def test_the_tracker_does_not_know_foreign_or_future_reply_subjects(reply: str) -> None:
    tracker = Tracker(INBOX)
    tracker.track("a", [1], 0)
    assert tracker.lookup(reply) is None


async def test_the_room_granted_to_batches_stays_within_the_memory_bound() -> None:
    """Each open batch reserves room for parts taken without a check; over many subjects the
    reservations never take the queue past HIGH_WATER (plus the one part being sent), and once
    the bound is reserved the sender waits for the flusher."""
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1 << 20, is_json=False, tracker=Tracker(INBOX))
    most = 0
    opened = 0
    part = enc(1)

    async def one_subject_after_another() -> None:
        nonlocal most, opened
        while True:
            await outbox.send(f"s{opened}", part)
            opened += 1
            most = max(most, outbox._queued)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one_subject_after_another)
            await anyio.wait_all_tasks_blocked()  # held at the bound: no flusher runs
            assert HIGH_WATER // (FIRST_GRANT + 2 * len(part)) <= opened <= HIGH_WATER // FIRST_GRANT + 1
            assert max(most, outbox._queued) <= HIGH_WATER + len(part)  # reserved and queued, held sender included
            waiting_at = opened
            await outbox.flush()
            await anyio.wait_all_tasks_blocked()
            assert opened > waiting_at  # the flush let it go on
            tg.cancel_scope.cancel()


async def test_a_batch_takes_parts_without_a_check_only_within_its_room() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1 << 20, is_json=False, tracker=Tracker(INBOX))
    await outbox.send("a", enc(0))  # published at once
    await outbox.send("a", enc(1))  # opens a batch with the first grant
    part = enc("x" * 97)  # 99 bytes
    taken = 0
    while outbox.push("a", part):
        taken += 1
    assert taken == (FIRST_GRANT // (len(part) + 1))  # each part costs its size and a separator
    await outbox.send("a", part)  # settles the batch and grants twice the room
    taken = 0
    while outbox.push("a", part):
        taken += 1
    assert taken == (2 * FIRST_GRANT // (len(part) + 1))
    await outbox.flush()
    assert sum(len(frame) for frame in frames(sent, "a")) == 2 + FIRST_GRANT // 100 + 1 + 2 * FIRST_GRANT // 100


async def test_an_untracked_batch_takes_no_part_without_send() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    await outbox.send("a", enc(0))  # published at once; opens the window
    await outbox.send(f"{INBOX}.9", enc(1), track=False)  # a reply batch
    assert not outbox.push(f"{INBOX}.9", enc(2))


# -- tells frames: root tells numbered when their batch is sealed or published -------------


async def root_tell(outbox: Outbox, subject: str, part: bytes) -> None:
    """What ActorRef.tell does outside a handler: append to the open tells batch, else send."""
    batch = outbox._tells.get(subject)
    if batch is not None and batch.room - len(part) - 1 >= 0:
        batch.room -= len(part) + 1
        batch.parts.append(part)
        return
    await outbox.send(subject, part, tell=True)


async def envelope(outbox: Outbox, subject: str, value: int, rid: int = 0) -> None:
    """What an ask (or a tell inside a handler) does: an id from next_id, in an envelope."""
    await tell(outbox, subject, enc((value, rid, outbox.next_id(subject))), rid)


def received(sent: Sent, subject: str) -> list[tuple[int, int]]:
    """(value, id) of every message on ``subject`` in arrival order, from both kinds of frame."""
    out: list[tuple[int, int]] = []
    for frame in frames(sent, subject):
        if frame[:1] == [1] and len(frame) == 3 and isinstance(frame[2], list):  # [1, base, [msg, ...]]
            out.extend((value, frame[1] + i) for i, value in enumerate(frame[2]))
        else:
            out.extend((value, mid) for value, _rid, mid in frame)
    return out


OPS = st.lists(st.tuples(st.sampled_from(["tell", "ask", "yield"]), st.sampled_from(["a", "b"])), max_size=60)


@given(ops=OPS, limit=st.sampled_from([48, 1024]))
@example(ops=[("tell", "a"), ("tell", "a"), ("ask", "a")], limit=1024)  # an ask seals the tells before it
# an ask while a flush publishes the tells batch it took (another subject's frame goes first):
@example(ops=[("tell", "a"), ("tell", "b"), ("tell", "a"), ("yield", "a"), ("yield", "a"), ("ask", "a")], limit=1024)
@settings(max_examples=150, deadline=None)
def test_ids_rise_in_send_order_per_subject_across_tells_and_envelopes(ops: list[tuple[str, str]], limit: int) -> None:
    # A virtual actor's takeover skips what the old owner handled, per sender, by id: ids must
    # rise in send order per subject, whichever kind of frame carried each message, also while a
    # flush is publishing (the gate yields inside every publish) and when batches split at the limit.
    async def main() -> None:
        sent: Sent = []

        async def gate(_subject: str) -> None:  # a flush yields inside each publish: sends run meanwhile
            if outbox._flushing:
                await anyio.lowlevel.checkpoint()

        outbox = Outbox(recorder(sent, gate), limit=limit, is_json=False, tracker=Tracker(INBOX))
        expected: dict[str, list[int]] = defaultdict(list)
        async with flusher(outbox):
            for n, (op, subject) in enumerate(ops):
                if op == "yield":
                    await anyio.lowlevel.checkpoint()
                    continue
                expected[subject].append(n)
                if op == "tell":
                    await root_tell(outbox, subject, enc(n))
                else:
                    await envelope(outbox, subject, n, rid=n + 1)
            await outbox.flush()
        ids: list[int] = []
        for subject in ("a", "b"):
            got = received(sent, subject)
            assert [value for value, _ in got] == expected[subject]
            mids = [mid for _, mid in got]
            assert mids == sorted(mids), (subject, got)
            ids.extend(mids)
        assert sorted(ids) == list(range(1, len(ids) + 1))  # unique and dense: none given twice or wasted

    anyio.run(main)


async def test_a_tells_batch_is_one_tells_frame_and_a_lone_tell_an_envelope_frame() -> None:
    sent: Sent = []
    outbox = Outbox(recorder(sent), limit=1024, is_json=False, tracker=Tracker(INBOX))
    await root_tell(outbox, "a", enc("first"))  # idle: published at once, numbered 1, as one envelope
    for word in ("x", "y", "z"):
        await root_tell(outbox, "a", enc(word))
    await outbox.flush()
    assert frames(sent, "a") == [[["first", 0, 1]], [1, 2, ["x", "y", "z"]]]
    assert outbox.seq == 4
    assert outbox.nats_messages == 2


@pytest.mark.parametrize("is_json", [False, True])
async def test_a_tells_batch_over_the_limit_is_split_within_it(is_json: bool) -> None:
    sent: Sent = []
    limit = 80
    outbox = Outbox(recorder(sent), limit=limit, is_json=is_json, tracker=Tracker(INBOX))
    parts = [msgspec.json.encode(f"m{i:03}") if is_json else enc(f"m{i:03}") for i in range(40)]
    for part in parts:
        await root_tell(outbox, "a", part)
    await outbox.flush()
    decode = msgspec.json.decode if is_json else msgspec.msgpack.decode
    assert all(len(payload) <= limit for _, payload, _ in sent)
    got = []
    for _, payload, _ in sent:
        frame = decode(payload)
        if frame[0] == 1:  # a tells frame
            got.extend((m, frame[1] + i) for i, m in enumerate(frame[2]))
        else:  # the lone first one: one envelope
            got.extend((m, mid) for m, _rid, mid in frame)
    assert got == [(f"m{i:03}", i + 1) for i in range(40)]
    assert len(sent) > 3  # it did split
