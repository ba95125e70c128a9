"""Poison events after a takeover: the suspects of a partitioned consumer, begun one at a time.

A partition taken over from an owner that died comes with a ``Suspect`` (``_partitioned_part``):
its events up to ``until`` may have been begun by that owner. ``PartitionedConsumer._route``
queues those (a heap by stream sequence, ``_suspects``) instead of routing them; this module
begins them one at a time on this node (``_next_suspect``), each charged an attempt in its
partition's record first (``Suspect.begin``: corps.virtual's compare-and-set), so that a node
that dies while one runs charges that one, and only it. A suspect begun ``max_deliver`` times by
owners that died is dead-lettered (``crashed-owners``) instead of run. See docs/virtual.md,
"poison events".
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corps.events._config import EventsConfig
    from corps.events._delivery import EventDelivery
    from corps.events._partitioned_part import Part


class SuspectRuns:
    """The suspects of ``PartitionedConsumer``: its state is set in ``PartitionedConsumer.__init__``."""

    cfg: EventsConfig
    parts: dict[int, Part]
    outstanding: dict[int, EventDelivery]
    crashed_owners: int
    _part_of: dict[int, int]
    _suspects: list[tuple[int, EventDelivery]]
    _suspect: int
    _charged: set[int]
    _stopping: bool

    if TYPE_CHECKING:  # PartitionedConsumer's (and OwnTasks')
        def _route(self, d: EventDelivery) -> None: ...
        def _give_up(self, d: EventDelivery) -> None: ...
        def _later(self, d: EventDelivery, delay: float) -> None: ...
        def _spawn(self, coro: Any) -> None: ...
        async def _dead_letter(self, d: EventDelivery, reason: str, error: str) -> None: ...

    def _next_suspect(self) -> None:
        """Begin the first waiting suspect event if none is begun on this node."""
        if self._suspect in self.outstanding:
            return
        self._suspect = 0
        while self._suspects:
            seq, d = heapq.heappop(self._suspects)
            if self.outstanding.get(seq) is d:
                self._suspect = seq
                self._spawn(self._begin_suspect(d))
                return

    async def _begin_suspect(self, d: EventDelivery) -> None:
        """Charge the suspect event an attempt in its partition's record, then run it; dead-letter
        it instead if owners that died have begun it ``max_deliver`` times already."""
        seq = d.meta.stream_seq
        part = self.parts.get(self._part_of.get(seq, -1))
        suspect = part.suspect if part is not None else None
        if part is None or not part.open or suspect is None or d.spec is None:
            self._give_up(d)
            return
        tries = suspect.tries if seq == suspect.begun else 0
        if tries >= d.spec.max_deliver:
            d.meta.delivered = tries
            self.crashed_owners += 1
            await self._dead_letter(d, "crashed-owners", f"begun {tries} times by owners that died before it finished")
            return
        if not await suspect.begin(seq, tries + 1):
            if self.outstanding.get(seq) is d:
                self._suspect = 0
                if self._stopping or not part.open:
                    self._give_up(d)
                else:  # the KV is unusable for now: tried again
                    self._later(d, self.cfg.heartbeat)
            return
        d.meta.delivered = tries + 1  # the attempts of the owners that died count towards max_deliver
        self._charged.add(seq)
        self._route(d)


__all__ = ["SuspectRuns"]
