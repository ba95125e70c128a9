"""The record of a partition of a virtual class's keyed events, in ``{ns}_owners``, and its codec.

``{Class}.partition.{n}`` -> ``{"node": "<node>:<epoch>", "seq": S}``, plus the suspects while a
partition taken over from an owner that died has some (``until``, ``begun``, ``tries``: see
docs/virtual.md, "poison events"). Records are untrusted bytes (anyone who may write the bucket
can put anything there): ``read_partition_record`` turns any failure into a reason.
"""

from __future__ import annotations

import msgspec


class PartitionRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    node: str
    seq: int = 0
    until: int = 0
    """Events of the partition at or below it may have been begun by an owner that died: they are
    begun one at a time, each recorded in ``begun`` first (0 once ``seq`` passes it)."""
    begun: int = 0
    """The stream sequence of the suspect event last begun (unfinished while above ``seq``)..."""
    tries: int = 0
    """...and how many owners have begun it so far (the charged attempts)."""



encode_record = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(PartitionRecord).decode


def read_partition_record(data: bytes) -> PartitionRecord | str:
    """Decode a partition record (untrusted bytes); a string says why it is unreadable."""
    try:
        record = _decode(data)
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: any failure is the writer's problem
        return f"{type(exc).__name__}: {exc}"[:200]
    if min(record.seq, record.until, record.begun, record.tries) < 0:
        return f"negative field in {record}"[:200]
    return record


def placement_key(p: int) -> str:
    return f"~p{p}"


__all__ = ["PartitionRecord", "encode_record", "placement_key", "read_partition_record"]
