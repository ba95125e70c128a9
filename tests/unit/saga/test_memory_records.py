"""The bounded in-memory records of ``effect="memory"`` participants (runtime/saga/_memory_records.py),
and the decoding of stored records (untrusted: anyone with access to the KV bucket may write one)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import ParticipantRecordsFull, SagaStoreUnavailable
from corps.saga._memory_records import MemoryRecords
from corps.saga._records import FENCE, INTENT, Record, decode_record, encode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fill(records: MemoryRecords, n: int, prefix: str = "s") -> None:
    for i in range(n):
        assert await records.create(f"{prefix}{i}:charge", INTENT) is not None


async def test_a_full_store_of_records_younger_than_the_horizon_refuses_a_new_key_and_keeps_every_record() -> None:
    clock = Clock()
    records = MemoryRecords(limit=3, horizon=60.0, clock=clock)
    await fill(records, 3)
    clock.now += 59.0  # all still within the horizon: forgetting one could let its retry apply twice
    with pytest.raises(ParticipantRecordsFull) as full:
        await records.create("s3:charge", INTENT)
    assert (full.value.limit, full.value.horizon, full.value.oldest) == (3, 60.0, 59.0)
    assert "SagaConfig.memory_records" in str(full.value)
    assert isinstance(full.value, SagaStoreUnavailable)  # retryable, as a store that is down: the handler did not run
    assert len(records) == 3
    assert records.evicted == 0
    for i in range(3):  # every copy of an earlier request is still answered from its record
        assert await records.create(f"s{i}:charge", INTENT) is None
        assert await records.get(f"s{i}:charge") is not None


async def test_records_past_the_horizon_are_evicted_oldest_first_only_when_room_is_needed() -> None:
    clock = Clock()
    records = MemoryRecords(limit=3, horizon=60.0, clock=clock)
    await fill(records, 2)
    clock.now += 30.0
    await records.create("s2:charge", INTENT)
    clock.now += 30.0  # s0 and s1 are 60 s old now, s2 30 s
    assert await records.create("s3:charge", INTENT) is not None
    assert records.evicted == 2  # the two past the horizon, not the young one
    assert await records.get("s0:charge") is None
    assert await records.get("s1:charge") is None
    assert await records.get("s2:charge") is not None
    assert len(records) == 2


async def test_an_update_keeps_a_records_age_so_a_finished_step_is_evicted_by_when_it_began() -> None:
    clock = Clock()
    records = MemoryRecords(limit=1, horizon=10.0, clock=clock)
    revision = await records.create("s0:charge", INTENT)
    assert revision is not None
    clock.now += 9.0
    assert await records.update("s0:charge", Record(True, b"r"), revision)
    clock.now += 1.0
    assert await records.create("s1:charge", INTENT) is not None  # s0 began 10 s ago: past the horizon


async def test_compensations_have_a_quarter_more_room_so_the_way_out_is_not_refused_with_the_way_in() -> None:
    records = MemoryRecords(limit=4, horizon=60.0, clock=Clock())
    await fill(records, 4)
    with pytest.raises(ParticipantRecordsFull):
        await records.create("s4:charge", INTENT)
    assert await records.create("s0:charge:undo", INTENT, undo=True) is not None  # the 5th: 4 + 4 // 4
    with pytest.raises(ParticipantRecordsFull) as full:
        await records.create("s9:charge", FENCE, undo=True)
    assert full.value.limit == 5  # bounded all the same


@given(st.binary(max_size=256))
def test_any_stored_bytes_decode_to_a_record_or_a_typed_error(data: bytes) -> None:
    try:
        record: Record | str = decode_record("s1:charge", data)
    except SagaStoreUnavailable as exc:
        record = str(exc)
    assert isinstance(record, Record) or "unreadable" in record


@given(st.builds(Record, st.booleans(), st.binary(max_size=64), st.text(max_size=20), st.booleans()))
def test_every_record_reads_back_as_written(record: Record) -> None:
    assert decode_record("k", encode(record)) == record


def test_a_deeply_nested_value_is_an_unreadable_record_not_a_recursion_error() -> None:
    deep = b"\x91" * 100_000 + b"\xc0"  # [[[...]]]: msgspec raises RecursionError, not DecodeError
    with pytest.raises(SagaStoreUnavailable):
        decode_record("k", deep)
    with pytest.raises(SagaStoreUnavailable):
        decode_record("k", msgspec.msgpack.encode({"done": "yes"}))
