"""The partition of a key: FNV-1a (32 bits) of its UTF-8 bytes, modulo the number of partitions.

The same function as nats-server's subject mapping ``{{partition(n, ...)}}`` applied to one
token, so a server-side mapping of the key as a subject token would put it in the same
partition. Stable across processes, machines and Python versions (no salted ``hash()``).
"""

from __future__ import annotations

from typing import Final

_OFFSET: Final = 0x811C9DC5
_PRIME: Final = 0x01000193
MAX_PARTITIONS: Final = 1024
"""The most partitions a class may be split into (each owned partition is a KV record)."""


def fnv1a32(data: bytes) -> int:
    h = _OFFSET
    for b in data:
        h = ((h ^ b) * _PRIME) & 0xFFFFFFFF
    return h


def partition_of(key: str, partitions: int) -> int:
    """The partition (``0 <= p < partitions``) that ``key`` belongs to.

    Raises:
        ValueError: ``partitions`` is not between 1 and ``MAX_PARTITIONS``.
    """
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}")
    return fnv1a32(key.encode("utf-8", "surrogatepass")) % partitions
