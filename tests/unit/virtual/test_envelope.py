"""The stored value of a durable virtual instance (runtime/virtual/_envelope.py): its format pinned
(values already in KV buckets must keep reading), an unknown version refused, and any bytes,
hostile nesting included, decoded or refused as StateFenced, never another exception."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import example, given

from corps.errors import StateFenced
from corps.virtual._envelope import MARK, decode_value, encode_value
from tests.hostile import DEEP, DEEP_MAP, payloads


class Counter(msgspec.Struct):
    n: int = 0


DECODER = msgspec.msgpack.Decoder(Counter)
EXTRAS = {"saga.memory": b"\x92\x01\x90", "other": b""}


def test_the_stored_bytes_are_plain_state_without_extras_and_a_version_1_envelope_with_them() -> None:
    assert encode_value(Counter(3), {}) == msgspec.msgpack.encode(Counter(3))
    assert encode_value(Counter(3), EXTRAS) == b"\xc1" + msgspec.msgpack.encode([1, Counter(3), EXTRAS])
    assert decode_value("k", encode_value(Counter(3), EXTRAS), DECODER) == (Counter(3), EXTRAS)


def test_an_envelope_of_another_version_is_refused() -> None:
    later = MARK + msgspec.msgpack.encode([2, Counter(3), EXTRAS])
    with pytest.raises(StateFenced, match="envelope version 2"):
        decode_value("k", later, DECODER)


@pytest.mark.parametrize("inner", [DEEP, DEEP_MAP])
def test_deep_nesting_inside_an_envelope_is_refused_typed(inner: bytes) -> None:
    # The state is read as Raw first: msgspec skips it recursively, and raises RecursionError.
    with pytest.raises(StateFenced, match="RecursionError") as refused:
        decode_value("k", MARK + b"\x93\x01" + inner + b"\x80", DECODER)
    assert isinstance(refused.value.__cause__, RecursionError)


VALID = [encode_value(Counter(3), {}), encode_value(Counter(3), EXTRAS)]


@given(payloads(VALID))
@example(MARK + b"\x93\x01" + DEEP + b"\x80")
@example(MARK + b"\x93\x01\x80\x81\xa1k" + DEEP)
def test_any_stored_bytes_decode_or_are_refused_as_state_fenced(data: bytes) -> None:
    try:
        state, extras = decode_value("k", data, DECODER)
    except StateFenced:
        return
    assert isinstance(state, Counter)
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in extras.items())
