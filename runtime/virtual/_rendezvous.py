"""Placement: rendezvous (highest random weight) hashing of an id over the live members.

Pure and deterministic: every node that sees the same members places an id on the same one, and
a member's arrival or departure moves only the ids that it wins or held (about 1/n of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(member: str, key: str) -> int:
    """The member's score for ``key``: 8 bytes of BLAKE2b of both (stable across processes)."""
    digest = hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that ``key`` is placed on; None when there are no members. Ties (never seen
    with 64-bit weights) go to the greater member name, so the result never depends on order."""
    best: tuple[int, str] | None = None
    for m in members:
        w = (weight(m, key), m)
        if best is None or w > best:
            best = w
    return None if best is None else best[1]
