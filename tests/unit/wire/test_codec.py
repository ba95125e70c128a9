"""Wire format (runtime/wire/_codec.py): sniffing payloads, joining frames, envelopes and decoders."""

from __future__ import annotations

import msgspec
import pytest

from corps import ActorSystem, Message, Request
from corps.core._outbox import Outbox, Tracker
from corps.wire._codec import (
    BAD,
    BARE,
    FRAME,
    FRAME_OVERHEAD,
    RAW_FRAME,
    TELLS_OVERHEAD,
    Decoders,
    Envelope,
    WireCodec,
    encode_as,
    join_frame,
    msgpack_array_header,
    sniff,
    tells_frame,
    union_of,
)


class Balance(Message):
    amount: int


class Deposit(Request[Balance]):
    amount: int


class Ping(Message):
    n: int


# Sizes at the msgpack header boundaries: fix (< 16), 16-bit (< 65536) and 32-bit.
SIZES = [0, 1, 15, 16, 65535, 65536]


@pytest.mark.parametrize("n", SIZES)
def test_the_array_header_is_the_one_msgspec_writes(n: int) -> None:
    assert msgspec.msgpack.encode([0] * n).startswith(msgpack_array_header(n))


@pytest.mark.parametrize("n", SIZES)
def test_sniff_classifies_msgpack_arrays_as_frames(n: int) -> None:
    assert sniff(msgspec.msgpack.encode([0] * n)) == (FRAME, False)


@pytest.mark.parametrize("n", SIZES)
def test_sniff_classifies_msgpack_maps_as_bare_messages(n: int) -> None:
    assert sniff(msgspec.msgpack.encode({str(i): 0 for i in range(n)})) == (BARE, False)


@pytest.mark.parametrize("payload", [b"[]", b"[1]", b" [", b"\n\t\r [[]]"])
def test_sniff_classifies_json_arrays_as_frames_after_whitespace(payload: bytes) -> None:
    assert sniff(payload) == (FRAME, True)


@pytest.mark.parametrize("payload", [b"{}", b'{"$type":"Ping","n":1}', b"  \n{"])
def test_sniff_classifies_json_objects_as_bare_messages_after_whitespace(payload: bytes) -> None:
    assert sniff(payload) == (BARE, True)


@pytest.mark.parametrize(
    "payload",
    [b"", b"   ", b"\n", b"hello", b"\x00", b"\x01", b"\xc0", b"\xff", b'"str"', b"  x{", b"\xa3abc"],
)
def test_sniff_classifies_empty_and_garbage_as_bad(payload: bytes) -> None:
    assert sniff(payload)[0] == BAD


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_a_joined_frame_decodes_as_the_list_of_its_envelopes(n: int, fmt: str) -> None:
    codec = WireCodec(fmt)  # type: ignore[arg-type]
    envelopes = [Envelope(Ping(i), rid=i % 3) for i in range(n)]
    frame = join_frame([codec.encode(env) for env in envelopes], codec.is_json)
    decoder = (msgspec.json if codec.is_json else msgspec.msgpack).Decoder(list[Envelope[Ping]])
    assert decoder.decode(frame) == envelopes


def test_the_frame_overhead_bounds_every_array_header() -> None:
    assert max(len(msgpack_array_header(n)) for n in SIZES) == FRAME_OVERHEAD


async def _nowhere(subject: str, payload: bytes, reply: str) -> None:
    raise AssertionError("nothing is published here")


def test_an_envelope_sent_outside_a_handler_travels_as_three_fields() -> None:
    # Senders encode (msg, rid, mid) outside a handler: no empty correlation fields on the wire.
    system = ActorSystem("nats://unused", codec="json")
    system._outbox = Outbox(_nowhere, 1024, True, Tracker("inbox"))
    assert system._encode("s", Ping(1), 0) == b'[{"$type":"Ping","n":1},0,1]'
    assert system._encode("s", Ping(1), 7) == b'[{"$type":"Ping","n":1},7,2]'


@pytest.mark.parametrize("is_json", [False, True])
@pytest.mark.parametrize("n", [0, 1, 15, 16])
def test_a_tells_frame_decodes_to_its_messages_numbered_from_its_base(is_json: bool, n: int) -> None:
    codec = WireCodec("json" if is_json else "msgpack")
    msgs = [Ping(i) for i in range(n)]
    frame = tells_frame(2**40, [codec.encode(m) for m in msgs], is_json)
    tells = Decoders(Ping).tells(is_json).decode(frame)
    assert (tells.base, tells.msgs) == (2**40, msgs)
    assert tells.envelopes() == [Envelope(m, 0, 2**40 + i) for i, m in enumerate(msgs)]
    assert sniff(frame) == (FRAME, is_json)
    assert len(frame) <= sum(len(codec.encode(m)) + 1 for m in msgs) + TELLS_OVERHEAD  # the bound the outbox uses


def test_an_envelope_keeps_defaults_before_a_set_field() -> None:
    assert msgspec.json.encode(Envelope(Ping(1), cause="m-1")) == b'[{"$type":"Ping","n":1},0,0,"","m-1","",""]'


def test_an_envelope_without_trailing_fields_decodes_with_defaults() -> None:
    # What a sender that omits defaults (or a foreign client) puts on the wire.
    wire = msgspec.msgpack.encode([[{"$type": "Ping", "n": 1}, 5]])
    decoded = msgspec.msgpack.decode(wire, type=list[Envelope[Ping]])
    assert decoded == [Envelope(Ping(1), rid=5, mid=0, corr="", cause="")]


@pytest.mark.parametrize("is_json", [False, True])
def test_decoders_pick_the_message_class_by_tag(is_json: bool) -> None:
    frame_decoder, bare_decoder = Decoders(union_of([Deposit, Ping])).frame_and_bare(is_json)
    parts = [encode_as(Envelope(Ping(1)), is_json), encode_as(Envelope(Deposit(2), rid=9), is_json)]
    frame = join_frame(parts, is_json)
    assert frame_decoder.decode(frame) == [Envelope(Ping(1)), Envelope(Deposit(2), rid=9)]
    assert bare_decoder.decode(encode_as(Deposit(3), is_json)) == Deposit(3)


@pytest.mark.parametrize("is_json", [False, True])
def test_decoders_reject_a_wrong_field_type_naming_the_field(is_json: bool) -> None:
    frame_decoder, bare_decoder = Decoders(union_of([Deposit, Ping])).frame_and_bare(is_json)
    wrong = {"$type": "Deposit", "amount": "ten"}
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$\.amount`"):
        bare_decoder.decode(encode_as(wrong, is_json))
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\[0\]\[0\]\.amount`"):
        frame_decoder.decode(encode_as([[wrong]], is_json))


def test_decoders_reject_a_tag_outside_the_union() -> None:
    _, bare_decoder = Decoders(union_of([Deposit, Ping])).frame_and_bare(False)
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'Balance'"):
        bare_decoder.decode(msgspec.msgpack.encode(Balance(1)))


def test_decoders_are_built_once_per_format() -> None:
    decoders = Decoders(Ping)
    assert decoders.frame_and_bare(False) is decoders.frame_and_bare(False)
    assert decoders.frame_and_bare(True) is decoders.frame_and_bare(True)


def test_the_raw_frame_decoder_leaves_messages_undecoded() -> None:
    frame = join_frame([encode_as(Envelope(Ping(1), rid=2), False)], False)
    (env,) = RAW_FRAME[False].decode(frame)
    assert env.rid == 2
    assert msgspec.msgpack.decode(env.msg, type=Ping) == Ping(1)


def test_the_codec_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'msgpack' or 'json'"):
        WireCodec("yaml")  # type: ignore[arg-type]
