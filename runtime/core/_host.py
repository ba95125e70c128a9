"""Hosting one actor class on one node: spawn, route to instances, admit to their mailboxes
(decoding is ``corps.core._intake``; running the mailboxes and supervising, ``corps.core._mailbox``).

Entity actors: one wildcard subscription per class, routed in-process by id. An idle instance
is a ``Cell`` in a dict, with no task and no queue of its own; a drain task exists only while
its mailbox holds messages. Service actors: each instance has its own queue-group subscription.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corps.core._activation import Activations, Activator
from corps.core._actor import Actor, new_instance, overrides
from corps.core._cell import Cell, envelopes_of
from corps.core._intake import Intake, decode, decode_fast, decode_fast_bare
from corps.core._mailbox import Mailboxes
from corps.core._metrics import ClassMetrics, EndpointStats
from corps.core._presence import Presence
from corps.core._replies import Replies
from corps.core._shed import Shedder
from corps.wire._client import Route, subscribe_route
from corps.wire._codec import MSGPACK_MAP, Envelope, ErrorReply, Tells
from corps.wire._headers import NO_IDS, ids_from_block, ids_from_map
from corps.wire._subjects import actor_class_wildcard, inbox_subject
from corps.wire._transport import flush

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from corps.core._node import Node

log = logging.getLogger("corps.actor")

class ClassHost(Activations, Replies, Mailboxes):
    """Everything this node does for one actor class."""

    system: Node  # (Mailboxes needs less of it: _Drains)

    def __init__(self, system: Node, cls: type[Actor]) -> None:
        self.system = system
        self.cls = cls
        self.options = cls.options
        self.name = cls.actor_name
        self.metrics = ClassMetrics()
        self.cells: dict[str, Cell] = {}
        self.services: list[Cell] = []
        self._prefix_len = len(system.namespace) + len(self.name) + 8
        own = system.security.inbox_prefix
        # "{ns}.inbox." (and "{prefix}.inbox." under an inbox prefix): any corps node's replies
        self._corps_inboxes = tuple({inbox_subject(system.namespace, ""), *([inbox_subject(own, "")] if own else [])})
        # Reply subjects this node answers on; any other is refused unhandled (Security.reply_prefixes).
        self._reply_ok = (*self._corps_inboxes, *system.security.reply_prefixes)
        self._reply_ok_b = tuple(p.encode() for p in self._reply_ok)
        self._reply_types = {tp: spec.reply for tp, spec in cls._handlers.items()}
        self._sub: Subscription | None = None
        self._entity_route: Route | None = None
        self._presence: Presence | None = None
        self._on_start = overrides(cls, "on_start")
        self._on_stop = overrides(cls, "on_stop")
        o = self.options
        self._high = max(1, o.mailbox_size // 2)  # high-water mark: overload once held above it
        self._held_why = f"mailbox above its high-water mark ({self._high}) for {o.overload_wait}s"
        self._shedder = Shedder(system._nc, system.codec, self.metrics, system.dead_letters, cls._decoders,
                                o.max_message_bytes, o.mailbox_size)
        self.endpoints = EndpointStats(cls._dispatch)
        self.activator: Activator | None = None
        """Set for a virtual class (corps.virtual): decides about messages for ids not active here."""
        self.dispatch: dict[type, Any] = cls._dispatch
        """Message type -> handler call; a virtual class with durable state wraps it (save after each)."""
        self.prepare: Callable[[Actor], Any] | None = None
        """Virtual classes: awaited on each new instance before ``on_start`` (load its state)."""
        self.fenced = 0
        """Virtual classes: messages not handled because this node's lease on the id ran out."""
        """Per message type: handled, errors, processing time (the NATS services API's STATS)."""
        self._ext = f"ext-{system.node}"  # ids of messages from non-corps clients (Current.ext)

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe (entity classes: once, a wildcard) and flush, so the server holds the SUB."""
        if self.options.service:
            return
        self._presence = Presence(self.system, self.name)
        await self._presence.join()
        route = self._entity_route = self._route(self._take_entity, self._on_entity_msg)
        self._sub = await subscribe_route(self.system._nc, actor_class_wildcard(self.system.namespace, self.name),
                                          route)
        await flush(self.system._nc)

    def _route(self, take: Any, slow: Any) -> Route:
        """A route whose slow path holds at most the class's pending bounds; beyond, it sheds."""
        o = self.options
        return Route(take, slow, self._shedder.shed_raw, max_pending=o.pending_limit, max_bytes=o.pending_bytes)

    async def spawn(self, actor_id: str, subject: str) -> None:
        from corps.errors import SpawnError

        if not self.options.service and actor_id in self.cells:
            raise SpawnError(subject, "an instance with this id is already running in this system")
        cell = Cell(actor_id, subject)
        if not self.options.service:
            self.cells[actor_id] = cell  # registered before on_start: early messages wait in its mailbox
        try:
            await self._start_instance(cell)
        except Exception as exc:
            self.cells.pop(actor_id, None)
            raise SpawnError(subject, f"{type(exc).__name__} in __init__ or on_start: {exc}") from exc
        if self.options.service:
            route = self._route(functools.partial(self._take, cell), functools.partial(self._receive, cell))
            cell.sub = await subscribe_route(self.system._nc, subject, route, queue=subject)
            self.services.append(cell)
            await flush(self.system._nc)
        self._release(cell)

    async def _start_instance(self, cell: Cell) -> None:
        cell.actor = new_instance(self.cls, cell.actor_id, self.system)
        if self.prepare is not None:
            await self.prepare(cell.actor)
        if self._on_start:
            await cell.actor.on_start()

    def _release(self, cell: Cell) -> None:
        cell.busy = False
        if cell.queue:
            self._schedule(cell)

    async def stop_intake(self) -> None:
        """Unsubscribe; messages already received are still processed (drain)."""
        subs = [self._sub] + [c.sub for c in self.services]
        for sub in subs:
            if sub is not None:
                await sub.drain()  # type: ignore[no-untyped-call]
        self._sub = None
        if self._presence is not None:
            await self._presence.leave()

    async def stop_all(self) -> None:
        """Call on_stop on every instance (only if the class defines it)."""
        for cell in [*self.cells.values(), *self.services]:
            await self._call_on_stop(cell)

    async def _call_on_stop(self, cell: Cell) -> None:
        if self._on_stop and cell.actor is not None:
            try:
                await cell.actor.on_stop()
            except Exception:
                log.exception("on_stop of %s failed", cell.subject)

    # -- receive and route ---------------------------------------------------------------

    def _take_entity(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """The hot path, straight from nats-py's parser (see ``Route``): a msgpack frame for a
        live instance here, whose mailbox has room. False: ``_on_entity_msg`` handles it."""
        cell = self.cells.get(subject[self._prefix_len :].decode())
        return cell is not None and self._take(cell, subject, reply, data, headers)

    def _take(self, cell: Cell, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        if reply and not reply.startswith(self._reply_ok_b):
            return False  # misdirected: refused and recorded on the slow path
        if cell.over_since is not None and data and data[0] in MSGPACK_MAP and self._overloaded(cell):
            return self._shedder.shed_bare(cell.subject, reply, data, self._held_why)
        envs = decode_fast(self.cls._decoders, self.options.max_message_bytes, data)
        if envs is None and data and data[0] in MSGPACK_MAP:  # a bare msgpack message from another client
            ids = NO_IDS if headers is None else ids_from_block(headers)
            if ids.bad:
                self.metrics.bad_headers += ids.bad
            system = self.system
            system._seq += 1
            envs = decode_fast_bare(self.cls._decoders, self.options.max_message_bytes, data, bool(reply),
                                    system._seq, ids.corr, ids.traceparent)
        return envs is not None and self._admit(cell, reply.decode(), envs, False)

    async def _on_entity_msg(self, msg: Msg) -> None:
        await self._receive(self.cells.get(msg.subject[self._prefix_len :]), msg)

    async def _receive(self, cell: Cell | None, msg: Msg) -> None:
        """Decode one NATS message and route it to ``cell`` (None: no instance with that id here)."""
        if msg.reply and not msg.reply.startswith(self._reply_ok):
            self.metrics.misdirected += 1
            self.system.dead_letters.record(msg.subject, f"reply subject {msg.reply[:80]!r} is outside the reply "
                                                         f"prefixes {self._reply_ok}: refused, not handled",
                                            payload=msg.data)
            return
        envs: list[Envelope[Any]] | Tells[Any] | None
        envs, is_json = decode_fast(self.cls._decoders, self.options.max_message_bytes, msg.data), False
        if envs is None:
            envs, is_json = await self._decode(msg)
            if not envs:
                return
        if cell is None:
            await self._unknown(msg.subject, msg.reply, envelopes_of(envs), is_json)
        elif not self._admit(cell, msg.reply, envs, is_json):
            await self._stopped(cell, msg.reply, envelopes_of(envs), is_json)

    async def _decode(self, msg: Msg) -> tuple[list[Envelope[Any]], bool]:
        """Decode a frame or a bare message. Bad parts are answered and recorded here."""
        ids = ids_from_map(msg.headers)
        if ids.bad:
            self.metrics.bad_headers += ids.bad
        self.system._seq += 1
        intake = decode(self.cls._decoders, self.options.max_message_bytes, msg.data, bool(msg.reply),
                        self.system._seq, ids.corr, ids.traceparent)
        if intake.problems:
            await self._refuse(msg.subject, msg.reply, intake)
        return intake.envelopes, intake.is_json

    async def _refuse(self, subject: str, reply: str, intake: Intake) -> None:
        """Answer or record every problem. Tells (rid 0) are not answered: a corps frame carries its
        sender's inbox for 503s only. But a request from anyone else (``nc.request`` of ``[[1]]``)
        waits for an answer: if nothing in it is answered, it gets InvalidMessage, bare."""
        answered = False
        for problem in intake.problems:
            await self._reject(subject, reply, problem.rid, intake.is_json, "InvalidMessage", problem.why,
                               payload=problem.payload)
            answered = answered or problem.rid != 0
        if reply and not answered and not reply.startswith(self._corps_inboxes) \
                and not any(env.rid for env in intake.envelopes):
            await self._send_reply(reply, -1, intake.is_json, False,
                                   ErrorReply("InvalidMessage", "InvalidMessage", intake.problems[0].why))

    async def _unknown(self, subject: str, reply: str, envs: list[Envelope[Any]], is_json: bool) -> None:
        if self.activator is not None:
            await self.activator.unknown(subject, reply, envs, is_json)
            return
        assert self._presence is not None
        if self._presence.shared:
            # Another node hosts this class too and may host this id: stay silent, but count it.
            self.metrics.unrouted += len(envs)
            return
        for env in envs:
            await self._reject(subject, reply, env.rid, is_json, "NoResponders",
                               "no instance with this id is running", type(env.msg).__name__)

    def _admit(self, cell: Cell, reply: str, envs: list[Envelope[Any]] | Tells[Any], is_json: bool) -> bool:
        """Queue what the instance's mailbox admits and refuse the rest at once, without awaiting
        (so one busy instance never holds up its class's subscription). False: it has stopped.

        A mailbox takes at most ``mailbox_size`` messages; once it has stayed at or above its
        high-water mark (half of that) for ``overload_wait``, it takes none until it drains below.
        """
        if cell.stopped:
            return False
        q = cell.queue
        if q is None:
            q = cell.queue = deque()
        n, size = cell.depth, self.options.mailbox_size
        held = cell.over_since is not None and self._overloaded(cell)
        entry: list[Envelope[Any]] | Tells[Any] = envs
        if type(envs) is Tells:  # a tells frame: queued as decoded, unless only part of it is taken
            k = len(envs.msgs)
        else:
            if TYPE_CHECKING:  # (type() is, not isinstance: ~0.1 us less per NATS message)
                assert isinstance(envs, list)
            k = len(envs)
        taken = 0 if held else k if n + k <= size else max(size - n, 0)
        if taken:
            if taken < k:
                entry = envelopes_of(envs)[:taken]
            q.append((entry, reply, is_json))  # the decoded list (or Tells) itself
            cell.depth = n = n + taken
            if cell.over_since is None and n >= self._high:
                cell.over_since = time.monotonic()  # crossed the mark: overload_wait starts now
            if not cell.busy:
                self._schedule(cell)
        if taken < k:
            why = self._held_why if held else f"mailbox full ({size})"
            self._shedder.refuse(cell.subject, reply, envelopes_of(envs)[taken:], is_json, why)
        return True

    def _overloaded(self, cell: Cell) -> bool:
        """Has the mailbox stayed at or above its high-water mark for overload_wait? (It went
        above at ``cell.over_since``; the drain task clears that once it is below again.)"""
        assert cell.over_since is not None
        return time.monotonic() - cell.over_since >= self.options.overload_wait

    def enqueue_event(self, cell: Cell, delivery: Any) -> None:
        """Put an event delivery into an instance's mailbox, behind its tells and asks.

        Not bounded by mailbox_size: the event consumer bounds what it holds (max_ack_pending),
        and refusing an event here would only delay it until its redelivery.
        """
        q = cell.queue
        if q is None:
            q = cell.queue = deque()
        last = cell.events
        if last is not None and q and q[-1][0] is last and self.activator is None:
            last.append(Envelope(delivery))  # behind the events of the last entry, still queued: one entry
        else:  # (virtual: a takeover counts entries, so each event stays one)
            cell.events = last = [Envelope(delivery)]  # its ids come from the delivery (Carrier)
            q.append((last, "", False))
        cell.depth += 1
        if not cell.busy:
            self._schedule(cell)
