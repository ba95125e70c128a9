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


def _every_field(value: object) -> object:
    """``value`` as a record was encoded before defaults were left out: every field of every Struct."""
    if isinstance(value, msgspec.Struct):  # an UNSET field (a traceparent) is in no encoding
        return {f: _every_field(getattr(value, f)) for f in value.__struct_fields__
                if getattr(value, f) is not msgspec.UNSET}
    if isinstance(value, tuple):
        return [_every_field(v) for v in value]
    return value


def test_fields_at_their_default_are_left_out_and_records_with_them_read_the_same() -> None:
    state, _ = Engine(ThreeSteps).advance(None, Started.of("s-1", ORDER, at=0.0))
    record = SagaRecord(state=state, owner="n1", lease_until=5.0)
    data = msgspec.msgpack.encode(record)
    assert b"undo_round_start" not in data  # StepState and Transition omit their defaults
    assert b"version" in data  # SagaState does not: a record always says its version
    older = msgspec.msgpack.encode(_every_field(record))  # as written before (and read by older code)
    assert len(data) < 0.8 * len(older)
    assert decode_record("s-1", older) == record


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
