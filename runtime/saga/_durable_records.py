"""Memory records saved with a durable instance's state: their bytes, and reading them back.

A virtual class with durable state (``ActorOptions(virtual=True, durable=...)``) saves its
``@idempotent(effect="memory")`` records in the same KV write as its state (``corps.core._extras``),
so its effect and its record are written together, and both come back on the next activation,
wherever it is. The records are in creation order; their ages are not kept (a process's
monotonic clock means nothing in another): a loaded record is stamped with the time of the load,
so it is kept at least ``memory_horizon`` from there.
"""

from __future__ import annotations

import msgspec

from corps.errors import SagaStoreUnavailable
from corps.saga._records import Record

NAME = "saga.memory"
"""The records' name among an instance's durable extras."""
_VERSION = 1


class _Dump(msgspec.Struct, array_like=True):
    version: int
    records: list[tuple[str, Record]]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Dump).decode


def encode_records(records: list[tuple[str, Record]]) -> bytes:
    return _encode(_Dump(_VERSION, records))


def decode_records(data: bytes, limit: int) -> list[tuple[str, Record]]:
    """Records saved by ``encode_records``, oldest first. The bytes come from a KV bucket anyone
    with access may write.

    Raises:
        SagaStoreUnavailable: they are no records of this version, or more than ``limit`` (any
            exception of the decoder, RecursionError included).
    """
    try:
        found = _decode(data)
    except Exception as exc:  # untrusted bytes: every failure becomes one typed outcome
        raise SagaStoreUnavailable(f"saved memory records unreadable: {type(exc).__name__}") from exc
    if found.version != _VERSION:
        raise SagaStoreUnavailable(f"saved memory records of unknown version {found.version}")
    if len(found.records) > limit:
        raise SagaStoreUnavailable(f"{len(found.records)} saved memory records, over the bound of {limit}")
    return found.records
