"""The read of a partitioned consumer: one ordered, unacknowledged consumer from a stream sequence.

Each hosting node reads a virtual class's event subjects through one ephemeral consumer with no
acks (``_read_from``), created from the lowest checkpoint among the partitions it owns, and pulls
batches within ``max_ack_pending``. Each delivery is decoded (untrusted bytes: an undecodable
one, or one whose key cannot be read, is dead-lettered by partition 0's owner), its partition
computed from its key, and it is taken only if this node owns that partition and has not taken it
before (``_take_delivery``); then it goes to its key's queue. A delivery the consumer numbers out
of turn (a gap: a message lost between server and client) restarts the read from the last
sequence taken, as nats-py's ordered consumer does; so does a partition acquired behind the read,
and a pull request that goes unanswered. ``PartitionedConsumer`` (``_partitioned.py``) is the rest.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from nats.js.api import DeliverPolicy

from corps.events._delivery import EventDelivery
from corps.events._provision import consumer_config
from corps.events._wire import REDRIVE_FOR, STATUS, Inbound, parse_ack_subject
from corps.wire._codec import undecodable
from corps.wire._partition import partition_of

if TYPE_CHECKING:
    import asyncio

    from nats.aio.msg import Msg

    from corps.core._host import ClassHost
    from corps.core._messages import Message
    from corps.events._component import Events
    from corps.events._config import EventsConfig
    from corps.events._consumer import EventConsumer
    from corps.events._partitioned_part import Part
    from corps.events._spec import EventHandlerSpec
    from corps.events._wire import EventDecoder

log = logging.getLogger("corps.events")


def _dseq(reply: str) -> int:
    """The consumer sequence of a delivery (``$JS.ACK...``; 0 if unreadable): gaps show there."""
    t = reply.split(".")
    if len(t) >= 12:
        t = t[2:]
    try:
        return int(t[6])
    except (IndexError, ValueError):
        return 0


class PartitionedRead:
    """The reading side of ``PartitionedConsumer``: its state is set in ``PartitionedConsumer.__init__``."""

    events: Events
    host: ClassHost
    cfg: EventsConfig
    name: str
    n: int
    handlers: dict[type[Message], EventHandlerSpec]
    decoder: EventDecoder
    filters: list[str]
    parts: dict[int, Part]
    outstanding: dict[int, EventDelivery]
    keys: dict[str, deque[EventDelivery]]
    position: int
    restarts: int
    gaps: int
    skipped: int
    _part_of: dict[int, int]
    _inbox: str
    _cname: str
    _dseq: int
    _asked: int
    _gen: int
    _restart: bool
    _stopping: bool
    _wake: asyncio.Event
    _room: asyncio.Event
    _ended: asyncio.Event
    _as_consumer: EventConsumer

    if TYPE_CHECKING:  # PartitionedConsumer's (and OwnTasks')
        def _route(self, d: EventDelivery) -> None: ...
        def _spawn(self, coro: Any) -> None: ...
        async def _dead_letter(self, d: EventDelivery, reason: str, error: str) -> None: ...

    async def _read_loop(self) -> None:
        while not self._stopping:
            if not self.parts:
                self._wake.clear()
                await self._drop_consumer()
                await self._wake.wait()
                continue
            start = min(max(part.after, part.dispatched) for part in self.parts.values()) + 1
            try:
                await self._read_from(start)
            except Exception as exc:  # noqa: BLE001 -- JetStream unreachable for now: read again shortly
                log.warning("event consumer %s: read failed: %r", self.name, exc)
                await anyio.sleep(self.cfg.heartbeat)

    async def _read_from(self, start: int) -> None:
        await self._drop_consumer()
        self._restart = False
        self._gen += 1
        self.restarts += 1
        cfg = consumer_config(None, self.filters, self.cfg, 0, deliver=DeliverPolicy.BY_START_SEQUENCE,
                              start_seq=start, ack=False)
        info = await self.events.js.add_consumer(self.events.stream, cfg)
        self._cname, self._dseq = info.name, 0
        self.position = start - 1
        for part in self.parts.values():  # (one acquired while the consumer was being created may be behind it)
            part.synced = max(part.after, part.dispatched) + 1 >= start
            if not part.synced:
                self._restart = True
        nxt = f"$JS.API.CONSUMER.MSG.NEXT.{self.events.stream}.{info.name}"
        token = 0
        while not (self._stopping or self._restart or not self.parts):
            room = self.cfg.max_ack_pending - len(self.outstanding)
            if room <= 0:
                self._room.clear()
                with anyio.move_on_after(self.cfg.heartbeat):
                    await self._room.wait()
                continue
            token += 1
            want = min(self.cfg.batch, room)
            self._asked = want
            self._ended.clear()
            body = json.dumps({"batch": want, "expires": int(self.cfg.fetch_expires * 1e9)}).encode()
            await self.events.nc.publish(nxt, body, reply=f"{self._inbox}{self._gen}")
            with anyio.move_on_after(self.cfg.fetch_expires + 2 * self.cfg.heartbeat) as scope:
                await self._ended.wait()
            if scope.cancelled_caught:
                self._restart = True  # the request went unanswered (a server restart forgets it)

    async def _drop_consumer(self) -> None:
        name, self._cname = self._cname, ""
        if name:
            try:
                await self.events.js.delete_consumer(self.events.stream, name)
            except Exception:  # noqa: BLE001 -- ephemeral: the server removes it after 30 s anyway
                log.debug("event consumer %s: read consumer %s not deleted", self.name, name)

    def _take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        if not reply:
            return False  # a status: _on_status
        self._delivered(Inbound(subject, reply.decode(), data, headers))
        return True

    async def _on_status(self, msg: Msg) -> None:
        if msg.reply:
            self._delivered(Inbound(msg.subject, msg.reply, msg.data, headers=msg.headers or {}))
            return
        status = (msg.headers or {}).get(STATUS, "")
        if msg.subject == f"{self._inbox}{self._gen}" and status in ("404", "408", "409"):
            self._ended.set()  # the request is over

    def _delivered(self, msg: Inbound) -> None:
        meta = parse_ack_subject(msg.reply)
        if meta is None or meta.consumer != self._cname or self._restart:
            return  # an earlier read's, or one being replaced
        dseq = _dseq(msg.reply)
        if dseq != self._dseq + 1:
            self.gaps += 1
            self._restart = True  # a delivery lost on the way: read again from the last one taken
            self._ended.set()
            return
        self._dseq = dseq
        self._asked -= 1
        if self._asked <= 0:
            self._ended.set()
        seq = meta.stream_seq
        self.position = seq
        meta.consumer = self.name  # dead letters name the class, so redrive finds this consumer
        target = msg.header(REDRIVE_FOR)
        if target is not None and target != self.name:
            return  # redriven for another consumer
        try:
            event = self.decoder.decode(msg.data)
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes: dead-lettered by partition 0's owner
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, msgspec.MsgspecError) else undecodable(exc)
            d = self._take_delivery(0, seq, EventDelivery(self._as_consumer, msg, meta, None, None, None))
            if d is not None:
                self.host.metrics.undecodable += 1
                self._spawn(self._dead_letter(d, "undecodable", why))
            return
        spec = self.handlers[type(event)]
        try:
            key = spec.key_of(event)
        except AttributeError as exc:  # a dotted key through an optional part that is None
            d = self._take_delivery(0, seq, EventDelivery(self._as_consumer, msg, meta, event, spec, None))
            if d is not None:
                self._spawn(self._dead_letter(d, "no-key", f"{spec.key}: {exc}"))
            return
        assert key is not None
        d = self._take_delivery(partition_of(key, self.n), seq,
                                EventDelivery(self._as_consumer, msg, meta, event, spec, key))
        if d is None:
            return
        if key in self.keys:
            self.keys[key].append(d)  # one event at a time per key, in stream order
        else:
            self.keys[key] = deque()
            self._route(d)

    def _take_delivery(self, p: int, seq: int, d: EventDelivery) -> EventDelivery | None:
        part = self.parts.get(p)
        if part is None or not part.open or seq <= part.dispatched:
            self.skipped += part is None
            return None  # owned elsewhere, leaving, or taken before this read restarted
        if not part.guard():
            part.open = False  # this node's lease ran out (drop_all follows): no checkpoint past this
            return None
        part.dispatched = seq
        part.inflight.add(seq)
        self.outstanding[seq] = d
        self._part_of[seq] = p
        return d


__all__ = ["PartitionedRead"]
