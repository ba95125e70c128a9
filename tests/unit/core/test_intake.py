"""runtime/core/_intake.py: a payload's envelopes, and one problem per message that cannot be delivered."""

from __future__ import annotations

import pytest

from corps import Message, Request
from corps.core._cell import envelopes_of
from corps.core._intake import Problem, decode, decode_fast
from corps.wire._codec import Decoders, Envelope, Tells, encode_as, is_tells, join_frame, sniff, tells_frame, union_of


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


# -- tells frames: [1, base, [msg, ...]], root tells without an envelope each ----------------


def test_the_fast_path_takes_a_tells_frame_as_decoded_with_ids_from_its_base() -> None:
    data = tells_frame(70_000, [encode_as(Note("a"), False), encode_as(Add(2), False)], False)
    fast = decode_fast(DECODERS, LIMIT, data)
    assert isinstance(fast, Tells)
    assert fast.msgs == [Note("a"), Add(2)]
    assert envelopes_of(fast) == [Envelope(Note("a"), 0, 70_000), Envelope(Add(2), 0, 70_001)]
    assert decode(DECODERS, LIMIT, data, has_reply=True).envelopes == envelopes_of(fast)  # both paths agree


@pytest.mark.parametrize("is_json", [False, True])
def test_one_bad_message_in_a_tells_frame_costs_only_itself(is_json: bool) -> None:
    data = tells_frame(5, [encode_as(Note("a"), is_json), encode_as({"$type": "Add", "n": "ten"}, is_json),
                           encode_as(Note("b" * LIMIT), is_json), encode_as(Add(2), is_json)], is_json)
    assert decode_fast(DECODERS, LIMIT, data) is None  # the whole frame is over the limit: the slow path
    intake = decode(DECODERS, LIMIT, data, has_reply=True)
    assert intake.is_json is is_json
    assert intake.envelopes == [Envelope(Note("a"), 0, 5), Envelope(Add(2), 0, 8)]  # ids by position
    assert [p.rid for p in intake.problems] == [0, 0]  # tells: recorded, not answered
    assert "Expected `int`, got `str`" in intake.problems[0].why
    assert "over the 64-byte limit" in intake.problems[1].why


@pytest.mark.parametrize("is_json", [False, True])
def test_a_malformed_tells_frame_is_one_problem(is_json: bool) -> None:
    for data in (b"\x93\x01\xa1x\x90", b"\x93\x01\x05\x05", b"\x93\x01\x01") if not is_json else \
            (b'[1,"x",[]]', b"[1,5,5]", b"[1,1]"):
        assert decode_fast(DECODERS, LIMIT, data) is None
        intake = decode(DECODERS, LIMIT, data, has_reply=False)
        assert intake.envelopes == []
        assert [p.rid for p in intake.problems] == [-1]
        assert intake.problems[0].why.startswith("malformed frame")
        assert intake.problems[0].payload == data


def test_a_tells_frame_is_told_apart_from_a_frame_of_envelopes_by_its_second_byte() -> None:
    envelope_frames = [join_frame([encode_as(Envelope(Note(str(i))), j) for i in range(n)], j)
                       for n in (1, 3, 16) for j in (False, True)]
    for data in envelope_frames:
        assert not is_tells(data, data[:1] == b"[")
    for j in (False, True):
        data = tells_frame(1, [encode_as(Note("x"), j)] * 3, j)
        assert sniff(data)[0] == sniff(envelope_frames[0])[0]  # a frame, as far as sniff goes
        assert is_tells(data, j)
    assert is_tells(b' [ 1 ,2,[]]', True)
    assert not is_tells(b"[10,2,[]]", True)
