"""Memory records saved with a durable instance's state (runtime/saga/_durable_records.py): the
format pinned, an unknown version refused, the bound inclusive, and any bytes, hostile nesting
included, decoded or refused as SagaStoreUnavailable, never another exception."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import example, given

from corps.errors import SagaStoreUnavailable
from corps.saga._durable_records import decode_records, encode_records
from corps.saga._records import INTENT, Record
from tests.hostile import DEEP, payloads

RECORDS = [("s1:charge", Record(True, b"\x81")), ("s2:charge", INTENT), ("s3:charge", Record(False, refusal="no"))]
# One record whose map carries an unknown field 2,000 deep: msgspec skips it recursively.
DEEP_RECORD = b"\x92\x01\x91\x92\xa1k\x82\xa1x" + DEEP + b"\xa4done\xc3"


def test_the_records_are_a_version_1_array_in_creation_order() -> None:
    assert encode_records(RECORDS) == msgspec.msgpack.encode([1, RECORDS])
    assert decode_records(encode_records(RECORDS), 3) == RECORDS


def test_exactly_the_bound_is_accepted_one_more_is_refused() -> None:
    assert decode_records(encode_records(RECORDS), len(RECORDS)) == RECORDS
    with pytest.raises(SagaStoreUnavailable, match="3 saved memory records, over the bound of 2"):
        decode_records(encode_records(RECORDS), 2)


def test_records_of_another_version_are_refused() -> None:
    with pytest.raises(SagaStoreUnavailable, match="unknown version 2"):
        decode_records(msgspec.msgpack.encode([2, RECORDS]), 10)
    with pytest.raises(SagaStoreUnavailable, match="unreadable"):
        decode_records(msgspec.msgpack.encode([1]), 10)  # truncated: no records is not "none"


def test_deep_nesting_in_a_record_is_refused_typed() -> None:
    with pytest.raises(SagaStoreUnavailable, match="RecursionError") as refused:
        decode_records(DEEP_RECORD, 10)
    assert isinstance(refused.value.__cause__, RecursionError)


@given(payloads([encode_records(RECORDS), encode_records([])]))
@example(DEEP_RECORD)
def test_any_saved_bytes_decode_or_are_refused_typed(data: bytes) -> None:
    try:
        records = decode_records(data, 10)
    except SagaStoreUnavailable:
        return
    assert len(records) <= 10
    assert all(isinstance(key, str) and isinstance(r, Record) for key, r in records)
