"""What the partitions of a virtual class and the events side tell each other (this package
does not import events: ``corps.events._partitioned.PartitionedConsumer`` is the ``Reader``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec


class Reader(Protocol):
    """What the partitions tell the events side (``PartitionedConsumer``)."""

    def acquire(self, p: int, after: int, guard: Callable[[], bool], suspect: Suspect | None = None) -> None: ...
    async def horizon(self) -> int: ...
    async def release(self, p: int, wait: float) -> int: ...
    def through(self, p: int) -> int: ...
    def drop_all(self) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def stats(self) -> dict[str, int]: ...


class Suspect(msgspec.Struct, frozen=True):
    """What a partition's new owner learns from a record taken over from an owner that died."""

    until: int
    """Events of the partition at or below it are suspects: begun one at a time, each recorded first."""
    begun: int
    """The suspect event an owner began and did not finish (0: none)..."""
    tries: int
    """...and the owners that began it (each died before it finished)."""
    begin: Callable[[int, int], Awaitable[bool]]
    """``begin(seq, tries)``: record that this owner begins ``seq`` for the ``tries``-th time (False:
    not recorded, the partition was lost or the KV is unusable)."""


__all__ = ["Reader", "Suspect"]
