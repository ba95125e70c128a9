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
package does not import events; ``_partition_reader.py``). The record and its codec are
``_partition_record.py``; checkpoints and the charging of suspects, ``_partition_checkpoints.py``.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import nats.js.errors

from corps.virtual._partition_checkpoints import Checkpoints
from corps.virtual._partition_reader import Reader, Suspect
from corps.virtual._partition_record import PartitionRecord, encode_record, placement_key, read_partition_record
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

_POLL = 0.01
_POLL_MAX = 0.2


class ClassPartitions(Checkpoints):
    """The partitions of one virtual class on this node (its record writes: ``Checkpoints``)."""

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
            return await self.kv.create(key, encode_record(mine), validate_keys=False), mine
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
        token = await self.kv.update(key, encode_record(taken), last=entry.revision, validate_keys=False)
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
                    released = PartitionRecord("", seq, until if until > seq else 0)
                    await self.kv.update(self._key(p), encode_record(released), last=revision, validate_keys=False)
                except Exception as exc:  # noqa: BLE001 -- the record stays ours: the next owner waits for our lease
                    self._quiet.warning("partition", "hand-over of %s failed: %r", self._key(p), exc)
        finally:
            self._leaving.discard(p)

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


__all__ = ["ClassPartitions"]
