"""One partition a node owns, as the partitioned consumer keeps it (``_partitioned.py``).

What corps.virtual hands in when it acquires a partition (its checkpoint, its guard, and a
``Suspect`` when it was taken over from an owner that died), and the positions the read keeps
for it: what it took, what is in flight, what it gave up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class Suspect(Protocol):
    """A partition taken over from an owner that died (``corps.virtual._partition_reader.Suspect``)."""

    @property
    def until(self) -> int: ...
    @property
    def begun(self) -> int: ...
    @property
    def tries(self) -> int: ...
    @property
    def begin(self) -> Callable[[int, int], Awaitable[bool]]: ...


class Part:
    """One partition this node owns."""

    __slots__ = ("after", "dispatched", "done", "guard", "inflight", "open", "suspect", "synced", "undone")

    def __init__(self, after: int, guard: Callable[[], bool], suspect: Suspect | None = None) -> None:
        self.after = after
        """Its record's position when claimed: every event at or below it was handled."""
        self.dispatched = after
        """The last sequence of this partition taken from the stream."""
        self.done = after
        """``through``, as last computed (it never goes back)."""
        self.guard = guard
        self.inflight: set[int] = set()
        self.undone: set[int] = set()
        """Taken and given up on (the partition is leaving): its next owner handles them."""
        self.open = True
        self.suspect = suspect
        """Taken over from an owner that died: its events up to ``suspect.until`` are begun one at a
        time on this node, each recorded first (and dead-lettered once begun ``max_deliver`` times)."""
        self.synced = True
        """The read has passed no event of this partition that it did not take (False while a
        read that was already past ``after`` when it was acquired goes on: until it restarts)."""


__all__ = ["Part", "Suspect"]
