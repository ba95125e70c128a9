"""Every decoder of bytes from the network or a stream turns any payload into a typed outcome.

msgspec raises RecursionError, not a msgspec error, on deep nesting; these decoders run inside
nats-py's protocol parser (direct routes), where an escaping exception stops the read loop. So
none of them may raise on any bytes: thousands of generated and mutated payloads per decoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings

from corps import CorpsError, InvalidMessage, Message, Request
from corps.cli._events import _json, describe
from corps.core._cell import envelopes_of
from corps.core._inbox import Inbox, _Pending
from corps.core._intake import decode, decode_fast
from corps.core._outbox import Tracker
from corps.events._dlq import _entry
from corps.events._wire import DLQ_PREFIX
from corps.wire._codec import RAW_REPLIES, Decoders, Envelope, ErrorReply, Reply, encode_as, sniff, union_of
from tests.hostile import DEEP, DEEP_JSON, HOLE, HUGE, filled, frame, payloads, tells


class Balance(Message):
    account: str
    amount: int


class Blob(Request[Balance]):
    account: str
    data: dict[str, Any]


class Note(Message):
    text: str


DECODERS = Decoders(union_of([Blob, Note]))
LIMIT = 64 * 1024

VALID = [
    frame(encode_as(Blob("a", {"k": [1, {"x": None}]}), False), rid=3),
    frame(encode_as(Note("hello"), False), encode_as(Note("again"), False)),
    encode_as(Blob("a", {"k": 1}), False),
    encode_as(Blob("a", {"k": 1}), True),
    frame(encode_as(Note("j"), True), rid=2, is_json=True),
    encode_as([Reply(1, True, Balance("a", 1)), Reply(2, False, ErrorReply("RemoteError", "ValueError", "no"))], False),
    encode_as([Reply(1, True, Balance("a", 1))], True),
    tells(encode_as(Note("t1"), False), encode_as(Blob("b", {"k": [2]}), False), base=70_000),
    tells(encode_as(Note("t2"), True), base=3, is_json=True),
]
HOSTILE = payloads(VALID)
MANY = settings(max_examples=2000)


@MANY
@given(HOSTILE)
def test_intake_never_raises_and_answers_or_records_every_refusal(data: bytes) -> None:
    sniff(data)
    envs = decode_fast(DECODERS, LIMIT, data)
    for has_reply in (True, False):
        intake = decode(DECODERS, LIMIT, data, has_reply)
        if envs is not None:
            assert intake.envelopes == envelopes_of(envs)  # the fast path agrees
            assert not intake.problems
        if not (intake.envelopes or intake.problems):  # nothing vanishes without a trace: an empty frame
            assert (msgspec.json.decode(data) if intake.is_json else msgspec.msgpack.decode(data)) == []
        for problem in intake.problems:
            assert problem.why
            assert problem.payload in data  # what a dead letter keeps: the refused bytes


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    yield Inbox(Tracker("ns.inbox.n"), lambda subject, n: None), loop
    loop.close()


def _rids_in(data: bytes) -> set[int]:
    """The rids a reply frame answers, decoded at the stack depth ``Inbox._replies`` decodes at:
    msgspec's recursion limit counts Python frames, so a payload at the edge could differ."""
    try:
        return {r.rid for r in RAW_REPLIES[sniff(data)[1]].decode(data)}
    except Exception:
        return set()


@MANY
@given(HOSTILE)
def test_a_reply_frame_never_raises_and_each_ask_gets_its_reply_or_invalid_message(
        inbox: tuple[Inbox, asyncio.AbstractEventLoop], data: bytes) -> None:
    box, loop = inbox
    for rid in (1, 2):
        box._pending[rid] = _Pending(loop.create_future(), box.decoders_for(Balance), "ns.actor.A.a")
    futures = {rid: p.future for rid, p in box._pending.items()}
    box._replies(data, "ns.inbox.n.1")
    answered = _rids_in(data)
    for rid, fut in futures.items():
        assert fut.done() == (rid in answered)
        if fut.done() and fut.exception() is None:
            assert isinstance(fut.result(), Balance)
        elif fut.done():
            assert isinstance(fut.exception(), CorpsError)  # InvalidMessage, or the error the reply names
    box._pending.clear()


def test_deep_reply_bodies_and_odd_error_replies_fail_the_ask_not_the_reader(
        inbox: tuple[Inbox, asyncio.AbstractEventLoop]) -> None:
    box, loop = inbox
    cases = {
        1: (True, {"$type": "Balance", "account": "a"}),  # a field missing
        2: (False, {"$type": "corps.Error", "kind": "MailboxFull", "type": "²", "message": "x"}),  # isdigit, not int
        3: (False, {"$type": "corps.Error", "kind": "MailboxFull", "type": "9" * 5000, "message": "x"}),  # int limit
        4: (True, 5),
    }
    for rid in cases:
        box._pending[rid] = _Pending(loop.create_future(), box.decoders_for(Balance), "ns.actor.A.a")
    futures = {rid: p.future for rid, p in box._pending.items()}
    box._replies(encode_as([Reply(rid, ok, body) for rid, (ok, body) in cases.items()], False), "ns.inbox.n.1")
    assert isinstance(futures[1].exception(), InvalidMessage)
    assert isinstance(futures[2].exception(), InvalidMessage)
    assert isinstance(futures[3].exception(), InvalidMessage)
    assert "malformed error reply: MailboxFull of size '²'" in str(futures[2].exception())
    assert isinstance(futures[4].exception(), InvalidMessage)
    garbage = box.undecodable
    box._replies(filled([Reply(1, True, HOLE)], DEEP), "ns.inbox.n.1")  # a deep body: the frame cannot be split
    box._replies(DEEP_JSON, "ns.inbox.n.1")
    assert box.undecodable == garbage + 2
    box._pending.clear()


@settings(max_examples=1000)
@given(HOSTILE, HOSTILE)
def test_a_dead_letter_entry_is_read_and_shown_whatever_it_holds(data: bytes, header: bytes) -> None:
    value = header.decode(errors="replace")[:60]
    headers = {DLQ_PREFIX + name: value for name in ("Seq", "Attempts", "At", "Subject", "Consumer")}
    for h in (headers, {}):
        entry = _entry(7, data, h)
        assert entry.dlq_seq == 7
        assert isinstance(entry.event_type, str)
        assert describe(entry, full=True)
    _json(data)


@pytest.mark.parametrize("data", HUGE)
def test_huge_payloads_are_refused_not_raised(data: bytes) -> None:
    intake = decode(DECODERS, 2 * 1024 * 1024, data, has_reply=True)
    assert intake.problems
    assert not intake.envelopes
    assert decode_fast(DECODERS, 2 * 1024 * 1024, data) is None


def test_forged_dead_letter_headers_are_reported_not_raised() -> None:
    entry = _entry(3, DEEP, {DLQ_PREFIX + "Seq": "x", DLQ_PREFIX + "At": "nan", DLQ_PREFIX + "Attempts": "1e9"})
    assert entry.event_type == "?"
    assert (entry.stream_seq, entry.at, entry.attempts) == (0, 0.0, 0)
    assert "Corps-Dlq-Seq is not a number: 'x'" in entry.problem
    assert "Corps-Dlq-At is not a number" in entry.problem
    assert "no Corps-Dlq-Subject header" in entry.problem
    good = _entry(4, msgspec.msgpack.encode({"$type": "Noted", "n": 1}),
                  {DLQ_PREFIX + "Subject": "ns.events.Noted", DLQ_PREFIX + "Consumer": "R", DLQ_PREFIX + "Seq": "9"})
    assert (good.event_type, good.stream_seq, good.problem) == ("Noted", 9, "")
    assert describe(entry, full=True)[1].strip().startswith("unreadable entry:")


def test_a_slow_path_frame_keeps_every_envelope_field() -> None:
    """The one-by-one decode (one bad message in a frame) keeps the idempotency key of the others."""
    bad = encode_as(Envelope({"$type": "Note", "text": 1}), False)
    good = encode_as((Note("x"), 5, 6, "corr", "cause", "saga:step"), False)
    intake = decode(DECODERS, LIMIT, b"\x92" + bad + good, has_reply=True)
    assert intake.envelopes == [Envelope(Note("x"), 5, 6, "corr", "cause", "saga:step")]
