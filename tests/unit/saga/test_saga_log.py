"""The saga log's records: whatever bytes a key holds, reading them gives a record or SagaUnreadable."""

from __future__ import annotations

import msgspec
import pytest

import corps.saga._log as saga_log
from corps import SagaError, SagaUnreadable
from corps.saga import Engine, Started
from corps.saga._log import SagaRecord, decode_record
from tests.unit.saga.test_saga_engine import ORDER, ThreeSteps


def test_a_record_round_trips() -> None:
    state, _ = Engine(ThreeSteps).advance(None, Started.of("s-1", ORDER, at=0.0))
    record = SagaRecord(state=state, owner="n1", lease_until=5.0)
    assert decode_record("s-1", msgspec.msgpack.encode(record)) == record


@pytest.mark.parametrize("data", [b"", b"\x00 garbage", b"\xc1", msgspec.msgpack.encode({"state": [1]}),
                                  b"\x91" * 100_000 + b"\xc0", msgspec.json.encode({"owner": "x"})])
def test_bytes_that_are_no_record_are_unreadable_with_the_saga_id(data: bytes) -> None:
    with pytest.raises(SagaUnreadable) as info:
        decode_record("s-9", data)
    assert isinstance(info.value, SagaError)
    assert info.value.saga_id == "s-9"
    assert info.value.reason
    assert str(info.value).startswith("saga 's-9': its log record cannot be decoded: ")


def test_any_decoding_failure_is_unreadable_not_only_msgspec_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def deep(data: bytes) -> SagaRecord:
        raise RecursionError("maximum recursion depth exceeded")  # what msgspec raises on deep nesting

    monkeypatch.setattr(saga_log, "_decode", deep)
    with pytest.raises(SagaUnreadable, match="RecursionError"):
        decode_record("s-1", b"\x91\x91\x91")
