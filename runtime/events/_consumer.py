"""The durable consumer of one actor class: a pull loop with batches, routing, acks, retries.

Why a custom pull loop: nats-py's ``PullSubscription.fetch`` creates a Task and a uuid4 per
message. Here a pull request asks for a batch, deliveries arrive on one wildcard inbox of
this consumer, acks are fire-and-forget publishes that nats-py writes out together, and each
request carries an idle heartbeat: a request that hears nothing for two heartbeats is presumed
dead (a server restart forgets pull requests: nats.py #504) and a new one is sent, after
checking that the consumer still exists.

Pulls are pipelined: up to two batches are asked for at a time, whenever ``max_ack_pending``
leaves room, so the server fills one while this node handles what the other brought. (With one
request at a time the client sat idle a fifth of the time: nats-py's reader takes in a whole
batch before any handler, ack or next request runs, then the server waits for that request.)
The server shares its deliveries among open requests (round robin) and a delivery does not say
which request it answers, so the consumer counts what all of them still ask for: plus one per
request sent, minus one per delivery, minus a request's ``Nats-Pending-Messages`` when its end
status (404, 408, 409) comes. That count plus what this node holds stays within
``max_ack_pending`` (the server enforces it too).

A mailbox runs a whole batch in one loop iteration, so the acks and the next request do not wait
for its end: ``AckBuffer`` writes every ``WRITE_EVERY`` answers, and the handler whose ack makes
room sends the next request itself (``_pull_now``), so the server delivers while the batch still
runs. (Measured: acks left 500 at a time and each mailbox run began with the whole batch; the
server, at ``max_ack_pending``, waited for them: 85k events/s, 125k with this.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from corps.events._classes import event_handlers_of
from corps.events._delivery import EventDelivery
from corps.events._dlq import write_dead_letter
from corps.events._marks import Marks
from corps.events._pulling import PENDING, PullPacing
from corps.events._tasks import OwnTasks
from corps.events._wire import (
    REDRIVE_FOR,
    REDRIVE_FOR_B,
    STATUS,
    AckBuffer,
    EventDecoder,
    ack_numbers,
    ack_prefix,
    events_subject,
)
from corps.wire._client import Route, subscribe_route
from corps.wire._codec import MSGPACK_MAP, undecodable, union_of
from corps.wire._js_answers import parse_headers

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from corps.core._host import ClassHost
    from corps.events._component import Events
    from corps.events._spec import EventHandlerSpec

log = logging.getLogger("corps.events")

STOP_QUIET = 0.1
"""Seconds without a delivery after which a stopping consumer stops waiting for its open pull."""


class EventConsumer(PullPacing, OwnTasks, Marks):
    """Consumes the events one actor class handles, on this node (pulling: ``PullPacing``)."""

    events: Events

    def __init__(self, events: Events, host: ClassHost) -> None:
        self.events = events
        self.host = host
        self.cfg = events.cfg
        self.name = host.name
        self.handlers = event_handlers_of(host.cls)
        self.decoder = EventDecoder(union_of(list(self.handlers)))  # msgpack, or JSON from other clients
        self.filters = sorted({events_subject(events.namespace, tp) for tp in self.handlers})
        self.max_deliver = max(s.max_deliver for s in self.handlers.values())
        self.outstanding: dict[int, EventDelivery] = {}
        self.keys: dict[str, deque[EventDelivery]] = {}
        self.processed = 0
        self.dead_lettered = 0
        self.stalls = 0
        self.unfinished = 0
        """Events of idempotent handlers found begun and never finished (a crash mid-handler): run again."""
        self._prefix = f"{events.namespace}.evin.{events.node}.{self.name}."
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{events.stream}.{self.name}"
        self._rr = itertools.count()
        self._cells: list[Any] = []
        self._token = 0
        self._open: dict[int, int] = {}
        """Recent pull requests without an end status: token -> messages asked for (at most OPEN_TOKENS)."""
        self._asked = 0  # messages the open requests still ask for (all of them: see the module doc)
        self._seen = 0  # every delivery, ever (stop() watches it)
        self._pace = max(min(self.cfg.batch, self.cfg.max_ack_pending), 1)
        """At most this many still asked for when the next request goes: two batches in flight."""
        self._heard = 0.0
        self._ended = asyncio.Event()  # nothing is asked for
        self._ended.set()
        self._turn = asyncio.Event()  # the asked-for count fell to _pace: time for the next request
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._refused = False
        self._sub: Any = None
        self._acks = AckBuffer(events.nc)
        self._decode = self.decoder.msgpack.decode
        self._ack_prefix = ack_prefix(events.stream, self.name)
        self._room_wanted = False
        self._stopping = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.events.ensure_consumer(self.name, self.filters, self.max_deliver)
        if any(s.idempotent for s in self.handlers.values()):
            await self.events.ensure_kv()
        nc = self.events.nc
        self._sub = await subscribe_route(nc, self._prefix + "*", Route(self._take, self._on_msg))
        self._spawn(self._pull_loop())
        self._spawn(self._keep_alive())

    async def stop(self) -> None:
        """Stop pulling, and hand back at once what this node will not handle.

        Deliveries already in mailboxes finish (the system drain waits for them). Deliveries
        waiting for a retry are nak'ed, and so is every delivery the open pull request still
        brings until it goes quiet: another node gets them now, not after ``ack_wait``.
        """
        self._stopping = True
        for seq, timer in list(self._timers.items()):
            timer.cancel()
            d = self.outstanding.get(seq)
            if d is not None:
                self._hand_back(d)
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._ended.is_set():  # requests still being filled: let them finish, nak'ing
            seen = self._seen
            with anyio.move_on_after(STOP_QUIET):
                await self._ended.wait()
            if self._seen == seen:
                break  # quiet: nothing is behind these requests (they may wait for new events)
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def _hand_back(self, d: EventDelivery) -> None:
        """Nak ``d`` and, for a key, every delivery held back behind it: none may overtake it here."""
        waiting = self.keys.pop(d.key, None) if d.key is not None else None
        for x in [d, *(waiting or ())]:
            self._acks.add(x.ack_to, b"-NAK")
            self.outstanding.pop(x.seq, None)

    # -- receiving -------------------------------------------------------------------------

    def _take(self, subject: bytes | str, reply: bytes, data: bytes, raw: bytes | None,
              headers: dict[str, str] | None = None) -> bool:
        """A delivery, straight from nats-py's parser (see ``Route``): the hot path, one call and
        one object (``EventDelivery``) per event. Declined: a status message (no reply), for
        ``_on_msg``, which passes deliveries back here with their headers parsed."""
        if not reply:
            return False
        self._heard = now = time.monotonic()
        self._seen += 1
        if self._asked:  # (a late delivery of a forgotten, stalled request counts against the new ones)
            self._asked -= 1
            if self._asked == self._pace:
                self._turn.set()
            elif not self._asked:
                self._ended.set()
                self._turn.set()
        if self._stopping:
            self._acks.add(reply, b"-NAK")  # pulled while stopping: straight back to the stream
            return True
        numbers = ack_numbers(reply, self._ack_prefix)
        if numbers is None:
            log.warning("event consumer %s: delivery with an unexpected reply subject %r", self.name, reply)
            return True
        seq, delivered = numbers
        if seq in self.outstanding:
            return True  # redelivered while we still hold it (a late keep-alive): ours will answer
        if headers is None and raw is not None and raw.find(REDRIVE_FOR_B) >= 0:
            headers = parse_headers(raw)
        if headers:
            target = headers.get(REDRIVE_FOR)
            if target is not None and target != self.name:
                self._acks.add(reply, b"+ACK")  # redriven for another consumer
                return True
        event: Any = None
        spec: EventHandlerSpec | None = None
        key: str | None = None
        why = ""
        try:
            event = self._decode(data) if data and data[0] in MSGPACK_MAP else self.decoder.decode(data)
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes: dead-lettered now, not on every redelivery
            self.host.metrics.undecodable += 1
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, msgspec.MsgspecError) else undecodable(exc)
        else:
            spec = self.handlers[type(event)]
            if spec.key is not None:
                try:
                    key = spec.key_of(event)
                except AttributeError as exc:  # a dotted key through an optional part that is None
                    why = f"{spec.key}: {exc}"
        d = EventDelivery.received(self, subject, reply, data, raw, headers, seq, now, event, spec, key)
        self.outstanding[seq] = d
        if why:
            self._spawn(self._dead_letter(d, "no-key" if spec is not None else "undecodable", why))
        elif spec is not None and delivered > spec.max_deliver:  # the last attempt's process died before answering
            self._spawn(self._dead_letter(d, "max-deliver", f"delivered {delivered} times"))
        elif key is None:
            self._enqueue(d)
        elif key in self.keys:
            self.keys[key].append(d)  # held back: one event at a time per key, in stream order
        else:
            self.keys[key] = deque()
            self._enqueue(d)
        return True

    async def _on_msg(self, msg: Msg) -> None:
        """What ``_take`` declined, and what follows it on the subscription until it is caught up."""
        if msg.reply:
            self._take(msg.subject, msg.reply.encode(), msg.data, None, msg.headers or {})
            return
        # A status message: 100 heartbeat, 404/408 request over, 409 refused. Status messages come
        # on the request's own inbox subject; deliveries keep the subject the event was published
        # on, so they cannot tell which request they answer.
        token = msg.subject[len(self._prefix):]
        current = token.isdecimal() and len(token) < 19 and int(token) in self._open
        if current:
            self._heard = time.monotonic()
        headers = msg.headers or {}
        status = headers.get(STATUS, "")
        if current and status in ("404", "408", "409"):
            if status == "409":
                log.info("event consumer %s: pull refused: %s", self.name, headers.get("Description"))
                self._refused = True  # e.g. max_ack_pending reached by other nodes: no spinning
            left = headers.get(PENDING, "")
            self._close(int(token), int(left) if left.isdecimal() and len(left) < 19 else None)

    def _enqueue(self, d: EventDelivery) -> None:
        host = self.host
        if d.key is not None:
            cell = host.cells.get(d.key)
            if cell is None:
                assert d.spec is not None
                if d.spec.activate and not self._stopping:
                    self._spawn(self._activate(d))
                else:
                    d.attempts += 1  # an attempt that found no instance
                    self._spawn(self.failed(d, LookupError(f"no {self.name} instance {d.key!r} on this node")))
                return
        else:
            cells = host.services
            if not cells:
                if len(self._cells) != len(host.cells):  # stopped cells leave host.cells
                    self._cells = list(host.cells.values())
                cells = self._cells
            if not cells:
                self._nak(d, self.cfg.heartbeat)
                return
            cell = cells[next(self._rr) % len(cells)]
            if cell.stopped:  # replaced since the cache was built
                self._cells = [c for c in host.cells.values() if not c.stopped]
                if not self._cells:
                    self._nak(d, self.cfg.heartbeat)
                    return
                cell = self._cells[0]
        host.enqueue_event(cell, d)

    async def _activate(self, d: EventDelivery) -> None:
        """An event for an entity this node does not run: spawn it (its first event creates it)."""
        from corps.errors import SpawnError

        assert d.key is not None
        try:
            if d.key not in self.host.cells:
                await self.host.system.spawn(self.host.cls, d.key)
        except SpawnError as exc:
            if d.key not in self.host.cells:
                await self.failed(d, exc)
                return
        self.host.enqueue_event(self.host.cells[d.key], d)

    # -- outcomes --------------------------------------------------------------------------

    def complete(self, d: EventDelivery, how: bytes) -> None:
        """Answer the server (ack, nak, term) and let the next event of the same key go.
        The answer is written with the others of this loop iteration (``AckBuffer``)."""
        self._acks.add(d.ack_to, how)
        if self.outstanding.pop(d.seq, None) is None:
            return
        if d.key is not None:
            waiting = self.keys.get(d.key)
            if waiting:
                self._enqueue(waiting.popleft())
            elif waiting is not None:
                del self.keys[d.key]
        if self._room_wanted:  # the pull loop waits for room
            self._room.set()
        if self._asked <= self._pace:
            self._pull_now()

    def _nak(self, d: EventDelivery, delay: float) -> None:
        self.complete(d, b'-NAK {"delay": %d}' % int(delay * 1e9))

    async def failed(self, d: EventDelivery, exc: BaseException) -> None:
        """A handler attempt failed: retry after the backoff, or dead-letter after the last one."""
        spec = d.spec
        assert spec is not None
        if self._stopping:
            self.complete(d, b"-NAK")
            return
        attempt = max(d.attempt, 1)
        if attempt >= spec.max_deliver:
            self._spawn(self._dead_letter(d, "handler-error", f"{type(exc).__name__}: {exc}"))
            return
        delay = spec.backoff.delay(attempt)
        if d.key is None:
            self._nak(d, delay)  # frees the instance; later events may overtake this one
            return
        # Keyed: retry in place so no later event of this key overtakes it. Keep the delivery
        # alive meanwhile (the keep-alive task sends +WPI), and count the attempt here.
        self._timers[d.seq] = asyncio.get_running_loop().call_later(delay, self._retry, d)

    def _retry(self, d: EventDelivery) -> None:
        self._timers.pop(d.seq, None)
        if not self._stopping and d.seq in self.outstanding:
            self._enqueue(d)

    async def _dead_letter(self, d: EventDelivery, reason: str, error: str) -> None:
        try:
            await write_dead_letter(self.events, d, reason, error)
        except Exception as exc:  # noqa: BLE001 -- not lost: nak'ed, it comes back and tries again
            log.error("event consumer %s: dead-letter write failed for seq %d: %r", self.name, d.seq, exc)
            self._nak(d, self.cfg.heartbeat)
            return
        self.dead_lettered += 1
        if self.events.observer is not None:  # the event type from its subject: it may be undecodable
            self.events.observer.event_dead_lettered(self.name, d.msg.subject.rpartition(".")[2], reason)
        log.warning("event consumer %s: seq %d dead-lettered (%s): %s", self.name, d.seq, reason, error)
        self.complete(d, b"+TERM")

    async def _keep_alive(self) -> None:
        """Send +WPI for deliveries held longer than a third of ack_wait (long handlers, held keys)."""
        period = self.cfg.ack_wait / 3
        while True:
            await anyio.sleep(period)
            now = time.monotonic()
            for d in list(self.outstanding.values()):
                if now - d.touched >= period:
                    d.touched = now
                    self._acks.add(d.ack_to, b"+WPI")
