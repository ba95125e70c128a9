"""Partitions of a virtual class's keyed events: owned like ids, moved with the members.

A virtual class with keyed ``@on_event`` handlers splits its keys into ``VirtualConfig.partitions``
partitions (``corps.wire._partition``). Each partition is owned by one hosting node at a time:

- placement: rendezvous hashing of ``~p{n}`` over the members hosting the class; an *id* of the
  class is placed with its partition (``place``, the hook ``Membership.placement``), so a key's
  events and the messages sent to its id reach the same activation;
- ownership: a record in ``{ns}_owners`` under ``{Class}.partition.{n}`` ->
  ``{"node": "<node>:<epoch>", "seq": S}``, claimed by compare-and-set exactly as an id is
  (created, or taken when released, held by a non-member, or held under an epoch its node left
  behind). The claim's revision is the partition's fencing token. ``seq`` is the checkpoint:
  every event of the partition at or below it was handled; the owner advances it every
  ``CHECKPOINT`` seconds and on a hand-over, and the next owner reads from there;
- moves: on a membership change a node stops taking new events of a partition placed elsewhere
  at once, lets the ones begun finish (their instances drain), writes the checkpoint and releases
  the record (``node: ""``); the new owner's claim waits for that release, so a key's events are
  handled in stream order across the move. A node whose lease runs out drops every partition
  (and its activations are fenced off): the next owner takes the records over and redelivers what
  followed the last checkpoint (at least once).

The reading itself is ``corps.events._partitioned.PartitionedConsumer`` (``Reader`` here: this
package does not import events).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.lowlevel
import msgspec
import nats.js.errors

from corps.virtual._rendezvous import owner
from corps.wire._client import Throttled
from corps.wire._partition import partition_of
from corps.wire._subjects import actor_subject

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from nats.js.kv import KeyValue

    from corps.core._cell import Cell
    from corps.virtual._activator import ClassActivator
    from corps.virtual._config import VirtualConfig
    from corps.virtual._history import History
    from corps.virtual._membership import Membership

log = logging.getLogger("corps.virtual")

CHECKPOINT: Final = 1.0
"""Seconds between checkpoints of an owned partition (a node that dies redelivers at most what
it handled since, plus what it had in flight)."""
_POLL = 0.01
_POLL_MAX = 0.2


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


_encode = msgspec.json.Encoder().encode
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


class ClassPartitions:
    """The partitions of one virtual class on this node."""

    def __init__(self, activator: ClassActivator, membership: Membership, kv: KeyValue, cfg: VirtualConfig,
                 tg: TaskGroup, history: History, drain: float) -> None:
        self.activator = activator
        self.host = activator.host
        self.name = activator.host.name
        self.m = membership
        self.kv = kv
        self.cfg = cfg
        self.n = cfg.partitions
        self._tg = tg
        self.history = history
        self.drain = drain
        self.reader: Reader | None = None
        self.tokens: dict[int, int] = {}
        """Owned partitions -> their fencing token (the claim's revision)."""
        self._revisions: dict[int, int] = {}  # the record's revision now (each checkpoint is a CAS)
        self._written: dict[int, int] = {}
        self._epochs: dict[int, int] = {}
        self._until: dict[int, int] = {}
        """Owned partitions with suspects -> the last of them (``PartitionRecord.until``)."""
        self._begun: dict[int, tuple[int, int]] = {}
        """Owned partitions -> the suspect begun last, and its tries (kept in every write until passed)."""
        self._claiming: set[int] = set()
        self._leaving: set[int] = set()
        self.moves_in = 0
        self.moves_out = 0
        self.takeovers = 0
        """Partitions claimed from a node that did not release them (dead, or its lease ran out)."""
        self.lost = 0
        """Partitions found taken over at a checkpoint (this node had been fenced off)."""
        self.unreadable = 0
        self.checkpoints = 0
        self.suspects_begun = 0
        """Suspect events recorded as begun (one KV write each, only after a takeover)."""
        self._writes = anyio.Lock()
        """Checkpoints and hand-overs write the records under it: each CAS sees the last revision."""
        self._quiet = Throttled(log)

    def place(self, actor_id: str) -> str:
        """Where an id of this class is placed: with its partition."""
        return placement_key(partition_of(actor_id, self.n))

    def owner_of(self, p: int) -> str | None:
        name = self.name
        return owner(placement_key(p), (n for n, c in self.m.members.items() if name in c))

    def _key(self, p: int) -> str:
        return f"{self.name}.partition.{p}"

    # -- routing events into activations ---------------------------------------------------

    def route(self, d: Any) -> Cell | None:
        """Put an event delivery into its key's instance here, activating the id (claimed as
        any virtual id) if it is not active; None if this node may not take it now."""
        m, host, activator = self.m, self.host, self.activator
        key = d.key
        if not m.valid() or m.owner(self.name, key) != m.me:
            return None
        cell = host.cells.get(key)
        if cell is None or cell.stopped:
            if activator.activating >= self.cfg.max_activating:
                return None
            cell = host.activate(key, actor_subject(host.system.namespace, self.name, key), m.guard(m.epoch))
            host.enqueue_event(cell, d)
            activator.activating += 1
            self._tg.start_soon(activator._activate, cell, m.epoch)
            return cell
        host.enqueue_event(cell, d)
        return cell

    # -- membership changes ----------------------------------------------------------------

    def rebalance(self) -> None:
        """Claim the partitions placed here, hand over those placed elsewhere."""
        if self.reader is None:
            return
        me = self.m.me
        for p in range(self.n):
            mine = self.owner_of(p) == me
            if mine and p not in self.tokens and p not in self._claiming:
                self._claiming.add(p)
                self._tg.start_soon(self._claim, p, self.m.epoch)
            elif not mine and p in self.tokens and p not in self._leaving:
                self._leaving.add(p)
                self._tg.start_soon(self._hand_over, p)

    async def _claim(self, p: int, epoch: int) -> None:
        delay = _POLL
        try:
            while self.reader is not None and self.m.epoch == epoch and self.owner_of(p) == self.m.me:
                try:
                    got = await self._try_claim(p, epoch)
                except Exception as exc:  # noqa: BLE001 -- KV unusable for now: tried again
                    self._quiet.warning("partition", "claim of %s failed: %r", self._key(p), exc)
                    got = None
                if got is not None:
                    token, held = got
                    seq = held.seq
                    if self.m.epoch != epoch or self.reader is None:
                        return  # lapsed meanwhile: the record names an epoch this node left
                    self.tokens[p] = self._revisions[p] = token
                    self._written[p] = seq
                    self._epochs[p] = epoch
                    self._until[p] = held.until
                    self._begun[p] = (held.begun, held.tries)
                    self.moves_in += 1
                    self.history.record(self.name, placement_key(p), self.m.me, token, "activate")
                    suspect = None
                    if held.until > seq:
                        suspect = Suspect(held.until, held.begun, held.tries, functools.partial(self.begin, p))
                    self.reader.acquire(p, seq, self.m.guard(epoch), suspect)
                    if self.owner_of(p) != self.m.me:
                        self.rebalance()  # members changed while it was claimed: it moves on
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
        finally:
            self._claiming.discard(p)

    async def _try_claim(self, p: int, epoch: int) -> tuple[int, PartitionRecord] | None:
        """(token, the record written) if this node now holds partition ``p``; None while a live
        member does. Taken over from an owner that died (or lapsed), every event it may have begun
        (up to the stream's last sequence now) becomes a suspect: ``until``."""
        key, me = self._key(p), self.m.me
        mine = PartitionRecord(f"{me}:{epoch}")
        try:
            return await self.kv.create(key, _encode(mine), validate_keys=False), mine
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None  # deleted between the two calls: try again
        held = read_partition_record(entry.value or b"")
        if isinstance(held, str):
            self.unreadable += 1
            self._quiet.warning("partition", "partition record %r unreadable (%s): read from the start", key, held)
            held = PartitionRecord("")
        if held.node and held.node.partition(":")[0] != me and self.m.holds(held.node):
            return None
        until = held.until
        if held.node:  # it died (or lapsed) holding it: what it may have begun is suspect
            self.takeovers += 1
            until = max(until, await self.reader.horizon()) if self.reader is not None else until
        begun, tries = (held.begun, held.tries) if held.begun > held.seq else (0, 0)
        taken = PartitionRecord(f"{me}:{epoch}", held.seq, until if until > held.seq else 0, begun, tries)
        token = await self.kv.update(key, _encode(taken), last=entry.revision, validate_keys=False)
        return token, taken

    async def _hand_over(self, p: int, *, moved: bool = True) -> None:
        """Stop taking events of ``p``, let those begun finish, checkpoint and release it."""
        try:
            await anyio.lowlevel.checkpoint()  # let the claims of this change start first
            reader, token = self.reader, self.tokens.get(p)
            if reader is None or token is None or (moved and self.owner_of(p) == self.m.me):
                return
            seq = await reader.release(p, self.drain)
            async with self._writes:  # a checkpoint in flight finishes first (its revision is the last)
                if self.tokens.pop(p, None) is None:
                    return  # lapsed meanwhile: dropped, not handed over
                revision = self._revisions.pop(p)
                until = self._until.pop(p, 0)
                self._begun.pop(p, None)  # a graceful hand-over: what was begun here finished (or ran out of drain)
                self.moves_out += 1
                self.history.record(self.name, placement_key(p), self.m.me, token, "move")
                try:
                    await self.kv.update(self._key(p), _encode(PartitionRecord("", seq, until if until > seq else 0)),
                                         last=revision, validate_keys=False)
                except Exception as exc:  # noqa: BLE001 -- the record stays ours: the next owner waits for our lease
                    self._quiet.warning("partition", "hand-over of %s failed: %r", self._key(p), exc)
        finally:
            self._leaving.discard(p)

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
            new = await self.kv.update(self._key(p), _encode(self._record(p, seq)), last=revision,
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

    def lapse(self) -> None:
        """This node's lease ran out: every partition is dropped at once, without a hand-over."""
        if self.reader is not None:
            self.reader.drop_all()
        for p, token in self.tokens.items():
            self.history.record(self.name, placement_key(p), self.m.me, token, "fenced")
        self.tokens.clear()
        self._revisions.clear()
        self._written.clear()
        self._until.clear()
        self._begun.clear()

    def busy(self) -> bool:
        return bool(self._leaving or self._claiming)

    async def leave(self) -> None:
        """Graceful shutdown, after the moves: hand over what is left (with no other host, the
        records stay released, checkpointed, for whoever hosts the class next), stop reading."""
        if self.reader is None:
            return
        async with anyio.create_task_group() as tg:
            for p in list(self.tokens):
                if p not in self._leaving:
                    self._leaving.add(p)
                    tg.start_soon(functools.partial(self._hand_over, p, moved=False))
        reader, self.reader = self.reader, None
        await reader.stop()

    def stats(self) -> dict[str, int]:
        out = {"partitions": len(self.tokens), "partition_moves_in": self.moves_in,
               "partition_moves_out": self.moves_out, "partition_takeovers": self.takeovers,
               "partition_lost": self.lost, "checkpoints": self.checkpoints, "partition_records_unreadable":
               self.unreadable, "suspects_begun": self.suspects_begun}
        if self.reader is not None:
            reader_stats = self.reader.stats()
            reader_stats.pop("partitions", None)
            out.update(reader_stats)
        return out


__all__ = ["ClassPartitions", "PartitionRecord", "Reader", "Suspect", "read_partition_record"]
