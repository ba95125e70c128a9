"""The lean JetStream path's decoders (corps.wire._js_answers): any bytes, a typed outcome.

They run inside nats-py's protocol parser (the reply route) or on an awaiting operation; a
PubAck, a direct get's headers, a message-get answer may be anything a hostile publisher on the
reply subject sends.
"""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps.errors import StoreConflict, StoreError, StoreNoResponders, StoreRefused, StoreUnreadable
from corps.wire._js_answers import Entry, Reply, decode_ack, decode_api_get, decode_direct, decode_purged, header_block
from tests.hostile import DEEP_JSON, DEEP_JSON_MAP, HUGE, payloads

S = "$KV.b.k"
ACKS = [b'{"stream":"KV_b","seq":7}', b'{"stream":"KV_b","seq":7,"duplicate":true}',
        b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}']
GETS = [json.dumps({"message": {"subject": S, "seq": 4, "data": base64.b64encode(b"v").decode()}}).encode(),
        b'{"error":{"code":404,"err_code":10037,"description":"no message found"}}']
PURGES = [b'{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":1}',
          b'{"error":{"code":404,"err_code":10059,"description":"stream not found"}}']


def test_a_puback_is_its_sequence_and_api_errors_are_typed() -> None:
    assert decode_ack(S, Reply(ACKS[0])) == 7
    assert decode_ack(S, Reply(ACKS[1])) == 7
    with pytest.raises(StoreConflict):
        decode_ack(S, Reply(ACKS[2]))
    with pytest.raises(StoreRefused) as info:
        decode_ack(S, Reply(b'{"error":{"code":500,"err_code":10999,"description":"boom"}}'))
    assert (info.value.code, info.value.err_code) == (500, 10999)
    with pytest.raises(StoreNoResponders):
        decode_ack(S, Reply(b"", b"NATS/1.0 503\r\n\r\n"))
    with pytest.raises(StoreUnreadable):
        decode_ack(S, Reply(b'{"stream":"KV_b"}'))  # no sequence: not a stored message


def test_a_direct_get_reads_sequence_subject_and_markers_from_headers() -> None:
    def reply(pairs: dict[str, str], data: bytes = b"v") -> Reply:
        return Reply(data, header_block(pairs))

    found = decode_direct(S, reply({"Nats-Subject": S, "Nats-Sequence": "9"}))
    assert found == Entry(b"v", 9, False)
    assert decode_direct(S, reply({"Nats-Subject": S, "Nats-Sequence": "9", "KV-Operation": "DEL"}, b"")) == \
        Entry(b"", 9, True)
    assert decode_direct(S, Reply(b"", b"NATS/1.0 404 Message Not Found\r\n\r\n")) is None
    with pytest.raises(StoreUnreadable):
        decode_direct(S, reply({"Nats-Subject": "$KV.b.other", "Nats-Sequence": "9"}))
    for bad in ("", "-1", "0", "9" * 40, "²"):
        with pytest.raises(StoreUnreadable):
            decode_direct(S, reply({"Nats-Subject": S, "Nats-Sequence": bad}))


def test_an_api_get_decodes_base64_and_404_is_none() -> None:
    assert decode_api_get(S, Reply(GETS[0])) == Entry(b"v", 4, False)
    assert decode_api_get(S, Reply(GETS[1])) is None
    with pytest.raises(StoreUnreadable):
        decode_api_get(S, Reply(GETS[0].replace(b'"data": "', b'"data": "!')))


def test_a_purge_answer_is_its_count_and_anything_else_a_typed_error() -> None:
    assert decode_purged(S, Reply(PURGES[0])) == 1
    assert decode_purged(S, Reply(b'{"success":true,"purged":0}')) == 0
    with pytest.raises(StoreRefused):
        decode_purged(S, Reply(PURGES[1]))
    with pytest.raises(StoreNoResponders):
        decode_purged(S, Reply(b"", b"NATS/1.0 503\r\n\r\n"))
    for bad in (b'{"success":false}', b'{"success":true,"purged":-1}', ACKS[0], b"[]"):
        with pytest.raises(StoreUnreadable):
            decode_purged(S, Reply(bad))


@given(payloads(ACKS + GETS + PURGES + [DEEP_JSON, DEEP_JSON_MAP]))
def test_any_answer_bytes_are_a_value_or_a_typed_error(data: bytes) -> None:
    for decode in (decode_ack, decode_api_get, decode_direct, decode_purged):
        with contextlib.suppress(StoreError):
            decode(S, Reply(data))


@given(st.binary(max_size=300), st.binary(max_size=50))
def test_any_header_block_is_a_value_or_a_typed_error(raw: bytes, data: bytes) -> None:
    for block in (raw, b"NATS/1.0" + raw, b"NATS/1.0\r\nNats-Subject: " + S.encode() + b"\r\n" + raw):
        reply = Reply(data, block)
        for decode in (decode_ack, decode_api_get, decode_direct, decode_purged):
            with contextlib.suppress(StoreError):
                decode(S, reply)


def test_huge_answers_are_typed_errors() -> None:
    for data in HUGE:
        for decode in (decode_ack, decode_api_get, decode_purged):
            with pytest.raises(StoreError):
                decode(S, Reply(data))
