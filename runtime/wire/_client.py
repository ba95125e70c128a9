"""``CorpsClient``: nats-py's client with direct routes and a lean publish, for the hot paths.

The two places corps reaches into nats-py's internals on purpose (besides ``_parser``, which
this client installs). Both keep nats-py's own state consistent: routes take messages only for
subscriptions nats-py still holds, and ``publish_now`` writes into nats-py's pending buffer and
wakes its flusher exactly as ``publish`` would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import nats.errors
from nats.aio.client import DEFAULT_BUFFER_SIZE, Client

from corps.wire._opening import OpeningTransport
from corps.wire._parser import FastParser

if TYPE_CHECKING:
    from nats.aio.client import Srv
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger("corps.transport")

Take = Callable[[bytes, bytes, bytes, "bytes | None"], bool]
"""A direct handler: (subject, reply, payload, raw header block or None) -> taken."""

QUIET_PERIOD: Final = 60.0
"""Seconds between two log lines about one kind of failure (``Throttled``)."""


class Throttled:
    """Logs each kind of failure at once, then at most once per ``period`` seconds with the count
    since: a flood of hostile messages must not become a flood of log lines."""

    __slots__ = ("_logger", "_period", "_seen")

    def __init__(self, logger: logging.Logger, period: float = QUIET_PERIOD) -> None:
        self._logger = logger
        self._period = period
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (last logged at, suppressed since)

    def warning(self, kind: str, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        last, suppressed = self._seen.get(kind, (-self._period, 0))
        if now - last < self._period:
            self._seen[kind] = (last, suppressed + 1)
            return
        self._seen[kind] = (now, 0)
        more = f" (and {suppressed} more since the last report)" if suppressed else ""
        self._logger.warning(msg + more, *args, exc_info=exc_info, stacklevel=2)


DEFAULT_PENDING_LIMIT: Final = 65_536
"""Messages one route may hold for its slow path before it sheds (see ``Route``)."""
DEFAULT_PENDING_BYTES: Final = 64 * 1024 * 1024
"""Bytes one route may hold for its slow path before it sheds."""

Shed = Callable[[bytes, bytes, bytes], None]


def _count_only(subject: bytes, reply: bytes, data: bytes) -> None:
    """The default shed: nothing to answer (the route's owner counts ``Route.shed``)."""


class Route:
    """A subscription whose messages a synchronous handler takes straight from nats-py's parser.

    nats-py turns every message into a ``Msg`` (decoding subject and reply, parsing headers),
    queues it for the subscription's task, and awaits the callback there: about half of the
    client-side cost of a small message. ``take`` skips all of it for what it accepts. What it
    declines goes the usual way, to ``slow``, and so does everything after it until ``slow``
    has caught up: per subscription, messages are handled in the order they arrived.

    Bounded: at most ``max_pending`` messages and ``max_bytes`` bytes wait for ``slow``. Beyond
    that a message is shed at once, in the parser: ``shed(subject, reply, data)`` answers or
    records it (synchronously; it must not raise) and ``shed_count`` counts it. The reader never
    stops, so the server never cuts the connection as a slow consumer, and memory stays bounded
    under any flood.
    """

    __slots__ = ("_direct", "_shed", "_slow", "max_bytes", "max_pending", "pending", "pending_bytes", "served",
                 "shed_count")

    def __init__(self, direct: Take, slow: Callable[[Msg], Awaitable[None]], shed: Shed = _count_only, *,
                 max_pending: int = DEFAULT_PENDING_LIMIT, max_bytes: int = DEFAULT_PENDING_BYTES) -> None:
        self._direct = direct
        self._slow = slow
        self._shed = shed
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.pending = 0  # declined messages not yet handled by slow
        self.pending_bytes = 0
        self.served = 0  # declined messages done with (handled by slow, or forgotten)
        self.shed_count = 0

    def take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        if not self.pending and self._direct(subject, reply, data, headers):
            return True
        if self.pending >= self.max_pending or self.pending_bytes + len(data) > self.max_bytes:
            self.shed_count += 1
            self._shed(subject, reply, data)
            return True  # consumed: refused, not queued
        self.pending += 1
        self.pending_bytes += len(data)
        return False

    def forget(self, msg_bytes: int) -> None:
        """A declined message that will never reach ``slow`` (nats-py failed to queue it)."""
        self.pending -= 1
        self.pending_bytes -= msg_bytes
        self.served += 1

    async def cb(self, msg: Msg) -> None:
        try:
            await self._slow(msg)
        finally:
            self.pending -= 1
            self.pending_bytes -= len(msg.data)
            self.served += 1

    async def caught_up(self, poll: float = 0.005) -> None:
        """Return once ``slow`` is done with every message it held when called: after a flush,
        everything the server sent before the flush's PONG has been handled (polled: rare)."""
        target = self.served + self.pending
        while self.served < target:  # noqa: ASYNC110 -- no Event per message on the hot path for a rare wait
            await asyncio.sleep(poll)


class CorpsClient(Client):
    """nats-py's client with direct routes (see ``Route``) and a faster protocol parser
    (``corps.wire._parser``): the two places corps replaces nats-py internals.

    Nothing a message holds may stop the connection from reading. ``_process_msg`` runs inside
    the protocol parser, and nats-py's read loop ends on any exception but a protocol or socket
    error, leaving the connection up and unread until pings time out (~40 s of deafness). So a
    failing route, or nats-py failing on a message (a subject that is not UTF-8), costs that one
    message, logged and counted (``dropped``); and if the read loop ends anyway while the
    connection is up, the client reconnects at once (``read_loop_restarts``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[int, Route] = {}
        self._ps = FastParser(self)
        self.dropped = 0
        """Messages that made a route (or nats-py) raise in the parser: logged, counted, dropped."""
        self.read_loop_restarts = 0
        """Times the read loop ended while connected and a reconnect was forced."""
        self.slow_consumer_drops = 0
        """Messages nats-py dropped for a subscription over its pending limits (corps's own routes
        shed before that; see ``Route``); a server that cuts a slow client shows as a reconnect."""
        self._quiet = Throttled(log)
        self.info_wait: float | None = None
        """How long a connection waits for the server's INFO (``OpeningTransport``); ``None``:
        nats-py's ``connect_timeout``. ``connect`` sets it for the first connect only."""

    async def _connect_to_server(self, s: Srv) -> None:
        """nats-py's, with a TCP transport that checks the opening (``OpeningTransport``)."""
        if s.uri.scheme in ("ws", "wss"):
            await super()._connect_to_server(s)
            return
        s.last_attempt = time.monotonic()
        if not isinstance(self._transport, OpeningTransport):
            self._transport = OpeningTransport()
        self._transport.info_wait = self.info_wait
        await self._transport.connect(s.uri, buffer_size=DEFAULT_BUFFER_SIZE,
                                      connect_timeout=self.options["connect_timeout"])

    async def subscribe_route(self, subject: str, route: Route, queue: str = "") -> Subscription:
        """Subscribe ``route``: unbounded pending limits, as every corps subscription has."""
        sub = await self.subscribe(subject, queue=queue, cb=route.cb, pending_msgs_limit=-1,
                                   pending_bytes_limit=-1)
        self._routes[sub._id] = route
        return sub

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:
        if not self.take_direct(sid, subject, reply, data, headers):
            await self.process_declined(sid, subject, reply, data, headers)

    def take_direct(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """A message its subscription's route takes (or sheds, or that raised and is dropped):
        True, done with. False: ``process_declined`` must have it. The parser calls this first,
        without a coroutine: most messages end here (``corps.wire._parser``)."""
        # try costs nothing when nothing raises (CPython 3.11); CancelledError is not caught.
        route = self._routes.get(sid)
        try:
            if route is not None and sid in self._subs and route.take(subject, reply, data, headers):
                self.stats["in_msgs"] += 1
                self.stats["in_bytes"] += len(data)
                return True
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes: nothing may escape into the parser
            self._drop(subject, exc)
            return True
        return False

    async def process_declined(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                               headers: bytes | None) -> None:
        """nats-py's way for a message ``take_direct`` declined: a ``Msg``, queued for its callback."""
        route = self._routes.get(sid)
        try:
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]  # None: no headers
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes (a subject that is not UTF-8)
            if route is not None and sid in self._subs:
                route.forget(len(data))  # declined, but nats-py failed before queueing it for route.cb
            self._drop(subject, exc)

    def _drop(self, subject: bytes, exc: Exception) -> None:
        self.dropped += 1
        self._quiet.warning(f"drop:{type(exc).__name__}", "nats message on %r dropped: processing it raised %s: %s",
                            subject[:120], type(exc).__name__, str(exc)[:200], exc_info=exc)

    async def _read_loop(self) -> None:
        """nats-py's read loop; if it ends while the connection is up, reconnect now.

        nats-py's loop stops on an exception from the parser other than a protocol or socket error
        (it logs "nats: encountered error") without telling the client: the socket stays open and
        unread, and only missed pongs (PING_INTERVAL x MAX_OUTSTANDING_PINGS) end it. Nothing in
        corps should raise there (``_process_msg``); this is the backstop if anything does.
        """
        await super()._read_loop()
        task = asyncio.current_task()
        if (task is not None and task.cancelling()) or self.is_closed or self.is_reconnecting \
                or not self.is_connected:
            return  # ended on purpose (close, drain, reconnect), or nats-py already reconnects
        self.read_loop_restarts += 1
        log.warning("the nats read loop stopped while connected; reconnecting now")
        await self._process_op_err(nats.errors.ProtocolError())

    def publish_now(self, subject: str, payload: bytes, reply: str = "") -> bool:
        """``publish`` without its four coroutines and its Future per call: the PUB goes into
        nats-py's pending buffer and its flusher task is woken once per batch, as publish does.

        Returns True when the pending buffer is over its limit: the caller must then await
        ``_flush_pending(force_flush=True)``, publish's own back-pressure.

        Raises:
            nats.errors.ConnectionClosedError / ConnectionDrainingError / OutboundBufferLimitError /
            MaxPayloadError, as publish.
        """
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        size = len(payload)
        connected = self.is_connected
        if not connected and (self._max_pending_size <= 0 or size + self._pending_data_size > self._max_pending_size):
            raise nats.errors.OutboundBufferLimitError
        if size > self._max_payload:
            raise nats.errors.MaxPayloadError
        if reply:
            cmd = b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), size, payload)
        else:
            cmd = b"PUB %b %d\r\n%b\r\n" % (subject.encode(), size, payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += size
        self._pending.append(cmd)
        self._pending_data_size += len(cmd)
        queue = self._flush_queue
        if connected and queue is not None and queue.empty():
            queue.put_nowait(asyncio.get_running_loop().create_future())  # wake the flusher
        return 0 < self._max_pending_size < self._pending_data_size

    def hpublish_now(self, subject: str, headers: bytes, payload: bytes) -> None:
        """``publish_now`` with a pre-built header block (``NATS/1.0\r\n...\r\n\r\n``): for the
        rare messages that need headers (error replies to non-corps requesters), off the hot path.

        Raises:
            nats.errors.ConnectionClosedError / ConnectionDrainingError / MaxPayloadError.
        """
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        total = len(headers) + len(payload)
        if total > self._max_payload:
            raise nats.errors.MaxPayloadError
        cmd = b"HPUB %b %d %d\r\n%b%b\r\n" % (subject.encode(), len(headers), total, headers, payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += len(payload)
        self._pending.append(cmd)
        self._pending_data_size += len(cmd)
        queue = self._flush_queue
        if self.is_connected and queue is not None and queue.empty():
            queue.put_nowait(asyncio.get_running_loop().create_future())  # wake the flusher

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._routes.pop(sid, None)
        super()._remove_sub(sid, max_msgs)


async def subscribe_route(nc: Client, subject: str, route: Route, queue: str = "") -> Subscription:
    """A direct route on a CorpsClient; on any other client, every message takes the slow path."""
    if isinstance(nc, CorpsClient):
        return await nc.subscribe_route(subject, route, queue)
    return await nc.subscribe(subject, queue=queue, cb=route.cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
