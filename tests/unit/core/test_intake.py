"""runtime/core/_intake.py: a payload's envelopes, and one problem per message that cannot be delivered."""

from __future__ import annotations

import pytest

from corps import Message, Request
from corps.core._intake import Problem, decode, decode_fast
from corps.wire._codec import Decoders, Envelope, encode_as, join_frame, union_of


class Done(Message):
    ok: bool


class Add(Request[Done]):
    n: int


class Note(Message):
    text: str


DECODERS = Decoders(union_of([Add, Note]))
LIMIT = 64


def frame(envs: list[object], is_json: bool = False) -> bytes:
    return join_frame([encode_as(e, is_json) for e in envs], is_json)


def test_the_fast_path_takes_a_good_msgpack_frame_only() -> None:
    good = frame([Envelope(Add(1), rid=3), Envelope(Note("x"))])
    assert decode_fast(DECODERS, LIMIT, good) == [Envelope(Add(1), rid=3), Envelope(Note("x"))]
    assert decode_fast(DECODERS, LIMIT, frame([Envelope(Note("x"))], is_json=True)) is None
    assert decode_fast(DECODERS, LIMIT, encode_as(Note("x"), False)) is None  # bare: the general path
    assert decode_fast(DECODERS, LIMIT, frame([Envelope(Note("y" * LIMIT))])) is None  # over the limit
    assert decode_fast(None, LIMIT, good) is None  # a class with no handlers
    assert decode_fast(DECODERS, LIMIT, b"") is None


@pytest.mark.parametrize("is_json", [False, True])
def test_one_bad_message_in_a_frame_costs_only_itself(is_json: bool) -> None:
    payload = join_frame([
        encode_as(Envelope(Note("a")), is_json),
        encode_as(Envelope({"$type": "Add", "n": "ten"}, rid=7), is_json),
        encode_as(Envelope(Note("b" * LIMIT), rid=8), is_json),
        encode_as(Envelope(Add(2), rid=9), is_json),
    ], is_json)
    intake = decode(DECODERS, LIMIT, payload, has_reply=True)
    assert intake.is_json is is_json
    assert intake.envelopes == [Envelope(Note("a")), Envelope(Add(2), rid=9)]
    assert [p.rid for p in intake.problems] == [7, 8]
    assert "Expected `int`, got `str`" in intake.problems[0].why
    assert "over the 64-byte limit" in intake.problems[1].why


@pytest.mark.parametrize(("has_reply", "rid"), [(True, -1), (False, 0)])
def test_a_bare_message_is_a_bare_ask_when_it_has_a_reply_subject(has_reply: bool, rid: int) -> None:
    intake = decode(DECODERS, LIMIT, b'{"$type": "Add", "n": 4}', has_reply)
    assert intake.envelopes == [Envelope(Add(4), rid)]
    assert intake.is_json
    assert intake.problems == []
    bad = decode(DECODERS, LIMIT, b'{"$type": "Nope"}', has_reply)
    assert bad.envelopes == []
    assert bad.problems[0].rid == rid
    assert "Nope" in bad.problems[0].why


def test_garbage_oversized_and_handlerless_payloads_are_one_problem_each() -> None:
    assert decode(DECODERS, LIMIT, b"hello", True).problems == [
        Problem(-1, "payload is neither a message (map) nor a frame (array)", b"hello")]
    big = encode_as(Note("z" * LIMIT), False)
    assert decode(DECODERS, LIMIT, big, True).problems == [
        Problem(-1, f"message of {len(big)} bytes is over the {LIMIT}-byte limit", big)]
    handlerless = frame([Envelope(Note("x"))])
    assert decode(None, LIMIT, handlerless, True).problems == [Problem(-1, "no handlers", handlerless)]
    truncated = frame([Envelope(Note("x")), Envelope(Note("y"))])[:-3]
    (problem,) = decode(DECODERS, LIMIT, truncated, True).problems
    assert problem.rid == -1
    assert problem.why.startswith("malformed frame:")


DEEP = b"\x91" * 2000 + b"\xc0"  # [[[...[nil]...]]] 2,000 deep: msgspec raises RecursionError, not a msgspec error
BIG = 1 << 20


@pytest.mark.parametrize("is_json", [False, True])
def test_nesting_deeper_than_the_recursion_limit_is_a_problem_not_an_exception(is_json: bool) -> None:
    deep = b"[" * 2000 + b"]" * 2000 if is_json else DEEP
    deep_field = join_frame([encode_as(Envelope(Note("a")), is_json),  # a good neighbour: costs only the frame
                             encode_as(Envelope({"$type": "Add", "n": 1, "x": "HOLE"}, rid=4), is_json)
                             .replace(encode_as("HOLE", is_json), deep)], is_json)
    assert decode_fast(DECODERS, BIG, deep_field) is None
    for payload in (deep, deep_field):
        (problem,) = decode(DECODERS, BIG, payload, has_reply=True).problems
        assert problem.rid == -1  # the frame cannot be split: its asks are unknown, so the NATS request is answered
        assert problem.why.startswith("malformed frame: nested too deeply to decode (RecursionError: ")
        assert problem.payload == payload
    bare = encode_as({"$type": "Add", "n": 1, "x": "HOLE"}, is_json).replace(encode_as("HOLE", is_json), deep)
    assert decode(DECODERS, BIG, bare, has_reply=True).problems == [
        Problem(-1, "nested too deeply to decode (RecursionError: maximum recursion depth exceeded while "
                    "deserializing an object)", bare)]
