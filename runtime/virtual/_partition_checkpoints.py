"""Checkpoints of the partitions a node owns: each a compare-and-set of the partition's record.

The owner writes ``seq`` (every event of the partition at or below it was handled: the reader's
``through``) every ``CHECKPOINT`` seconds; a write that finds the record taken over (its
revision moved) means this node was fenced off. After a takeover, a suspect event is charged in
the same write before it runs (``begin``). Hand-overs write the record too, under the same lock,
so each compare-and-set sees the last revision.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio
import nats.js.errors

from corps.virtual._partition_record import PartitionRecord, encode_record

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from corps.virtual._membership import Membership
    from corps.virtual._partition_reader import Reader
    from corps.wire._client import Throttled

log = logging.getLogger("corps.virtual")

CHECKPOINT: Final = 1.0
"""Seconds between checkpoints of an owned partition (a node that dies redelivers at most what
it handled since, plus what it had in flight)."""


class Checkpoints:
    """The record writes of ``ClassPartitions``: its state is set in ``ClassPartitions.__init__``."""

    m: Membership
    kv: KeyValue
    reader: Reader | None
    checkpoints: int
    lost: int
    suspects_begun: int
    _revisions: dict[int, int]
    _written: dict[int, int]
    _epochs: dict[int, int]
    _until: dict[int, int]
    _begun: dict[int, tuple[int, int]]
    _leaving: set[int]
    _writes: anyio.Lock
    _quiet: Throttled

    if TYPE_CHECKING:  # ClassPartitions'
        def _key(self, p: int) -> str: ...

    async def checkpoint_forever(self) -> None:
        while self.reader is not None:
            await anyio.sleep(CHECKPOINT)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        async with self._writes:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        reader = self.reader
        if reader is None or not self.m.valid():
            return
        for p, revision in list(self._revisions.items()):
            if p in self._leaving:
                continue
            seq = reader.through(p)
            if seq <= self._written.get(p, 0) or not self.m.valid():
                continue
            if await self._write(p, revision, seq):
                self.checkpoints += 1

    async def _write(self, p: int, revision: int, seq: int) -> bool | None:
        """Write ``p``'s record at checkpoint ``seq`` (CAS on ``revision``, under ``_writes``):
        True if written, False if taken over (this node was fenced off), None if the KV failed."""
        try:
            new = await self.kv.update(self._key(p), encode_record(self._record(p, seq)), last=revision,
                                       validate_keys=False)
        except nats.js.errors.KeyWrongLastSequenceError:
            self.lost += 1  # taken over: this node was fenced off (its lapse drops it too)
            log.warning("partition %s was taken over: this node's claim on it had lapsed", self._key(p))
            return False
        except Exception as exc:  # noqa: BLE001 -- KV unusable for now: tried again later
            self._quiet.warning("checkpoint", "write of %s failed: %r", self._key(p), exc)
            return None
        if self._revisions.get(p) != revision:
            return False
        self._revisions[p] = new
        self._written[p] = seq
        return True

    def _record(self, p: int, seq: int) -> PartitionRecord:
        """Partition ``p``'s record as this node holds it, checkpointed at ``seq``: the suspects
        and the one begun last are kept until the checkpoint passes them."""
        until = self._until.get(p, 0)
        begun, tries = self._begun.get(p, (0, 0))
        if begun <= seq:
            begun = tries = 0
        return PartitionRecord(f"{self.m.me}:{self._epochs[p]}", seq, until if until > seq else 0, begun, tries)

    async def begin(self, p: int, seq: int, tries: int) -> bool:
        """Record that this node begins suspect event ``seq`` of ``p`` for the ``tries``-th time (with
        the checkpoint, in one compare-and-set); False if not recorded (the event must not run)."""
        reader = self.reader
        async with self._writes:
            if reader is None or p in self._leaving or not self.m.valid():
                return False
            for q, (begun, _) in list(self._begun.items()):
                # the suspect before, in another partition, finished: its record must say so before
                # this one begins, or a death now would charge it
                revision = self._revisions.get(q)
                if q != p and revision is not None and begun > self._written.get(q, 0):
                    through = reader.through(q)
                    if through >= begun and await self._write(q, revision, through) is None:
                        return False
            revision = self._revisions.get(p)
            if revision is None:
                return False
            self._begun[p] = (seq, tries)
            if await self._write(p, revision, max(reader.through(p), self._written.get(p, 0))):
                self.suspects_begun += 1
                return True
            return False


__all__ = ["CHECKPOINT", "Checkpoints"]
