"""The lean JetStream path: pipelined requests with one reply subscription.

nats-py's JetStream calls cost, per operation, a NUID inbox, a Future awaited under
``wait_for``, a JSON PubAck decoded into a dataclass, a header dict built key by key, and for
``kv.get`` without direct get a JSON request whose answer is base64 in JSON. Here each
operation is a token (a counter) on one wildcard reply subscription
(``{inbox_prefix}.{nuid}.*``, so ``Security.inbox_prefix`` grants cover it), a Future, one timer,
and a write into the connection's pending buffer: operations started in one loop iteration go
out in one socket write (the flusher is woken once), and are answered as their acks arrive.
Timeouts: one sweeping timer for every operation with the default timeout (``SWEEPS_PER_TIMEOUT``),
a timer of its own for an operation with another.

Every answer is untrusted bytes: a token that is not ours is a counted drop (``dropped``), never
an exception in the connection's reader; the answers themselves are decoded by ``_js_answers``.

``Lean.of(nc)`` gives the one instance of a connection, started on first use. The KV bucket
operations on top of it are ``_kv_bucket.Bucket``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import nats.errors
from nats.nuid import NUID

from corps.errors import StoreError, StoreRefused, StoreTimeout, StoreUnavailable
from corps.wire._client import Route, Throttled, subscribe_route
from corps.wire._js_answers import MAX_TOKEN_DIGITS, Reply, decode_ack

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger("corps.transport")

DEFAULT_TIMEOUT: Final = 5.0
SWEEPS_PER_TIMEOUT: Final = 20
"""Operations with the default timeout share one timer, which fails those past their deadline
``timeout / SWEEPS_PER_TIMEOUT`` apart: a timeout fires at most 5 % late, and no operation
pays for a timer of its own (``call_later`` and its ``cancel`` were ~1.8 µs of each write)."""
PAYLOAD_TOO_LARGE: Final = 413
"""StoreRefused.code of a write over the server's max_payload (refused by the client: nothing sent)."""


class Lean:
    """Pipelined JetStream requests on one connection, answered through one reply subscription."""

    def __init__(self, nc: Client, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._nc = nc
        self.timeout = timeout
        self._prefix = bytes(nc._inbox_prefix) + b"." + bytes(NUID().next()) + b"."
        self._prefix_s = self._prefix.decode()
        # token -> (future, subject, deadline on the loop's clock, its own timer or None: the sweep's)
        self._pending: dict[int, tuple[asyncio.Future[Reply], str, float, asyncio.TimerHandle | None]] = {}
        self._sweeping: asyncio.TimerHandle | None = None
        self._next = 0
        self._started: asyncio.Future[None] | None = None
        self.dropped = 0
        """Answers on the reply subject that no operation waits for (late, or not ours): dropped."""
        self.unawaited_failures = 0
        """Fire-and-forget operations (``delete(wait=False)``) that failed; logged (throttled)."""
        self._quiet = Throttled(log)

    @classmethod
    async def of(cls, nc: Client) -> Lean:
        """The connection's instance, its reply subscription made on first use."""
        lean = _instances.get(nc)
        if lean is None:
            lean = _instances[nc] = cls(nc)
        await lean.start()
        return lean

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await subscribe_route(self._nc, self._prefix_s + "*", Route(self._take, self._slow))
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: awaited below, and by later callers
                self._started = None
                raise
            self._started.set_result(None)
        await self._started

    # -- answers (straight from the parser: nothing here may raise) -----------------------------

    def _take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        self._answer(subject, Reply(data, headers))
        return True

    async def _slow(self, msg: Msg) -> None:  # a client that is not a CorpsClient
        headers = dict(msg.headers or {})
        status = headers.get("Status")
        self._answer(msg.subject.encode(), Reply(msg.data, None, headers, status or None))

    def _answer(self, subject: bytes, reply: Reply) -> None:
        token = subject[len(self._prefix):]
        found = None
        if subject.startswith(self._prefix) and token.isdigit() and len(token) <= MAX_TOKEN_DIGITS:
            found = self._pending.pop(int(token), None)
        if found is None or found[0].done():
            self.dropped += 1
            return
        if found[3] is not None:
            found[3].cancel()
        found[0].set_result(reply)

    # -- requests -------------------------------------------------------------------------------

    def request(self, subject: str, payload: bytes, headers: bytes | None = None,
                timeout: float | None = None) -> asyncio.Future[Reply]:
        """Send now (into the pending buffer; flushed with the rest of this loop iteration); the
        answer's future, failed with StoreTimeout after ``timeout`` seconds.

        Raises:
            StoreUnavailable: the connection cannot take it (closed, draining, reconnect buffer full).
            StoreRefused: over the server's max_payload (code PAYLOAD_TOO_LARGE).
        """
        nc = self._nc
        self._next += 1
        token = self._next
        reply = self._prefix + str(token).encode()
        try:
            _write(nc, subject.encode(), reply, headers, payload)
        except nats.errors.MaxPayloadError as exc:
            raise StoreRefused(subject, PAYLOAD_TOO_LARGE, 0, "over the server's max_payload") from exc
        except nats.errors.Error as exc:
            raise StoreUnavailable(subject, f"{type(exc).__name__}: {exc}") from exc
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        # Timers, not asyncio.timeout(): that costs a cancel scope per operation.
        if timeout is None or timeout == self.timeout:
            self._pending[token] = (fut, subject, loop.time() + self.timeout, None)
            if self._sweeping is None:
                self._sweeping = loop.call_later(self.timeout / SWEEPS_PER_TIMEOUT, self._sweep)
        else:
            self._pending[token] = (fut, subject, 0.0, loop.call_later(timeout, self._expire, token, timeout))
        return fut

    def _expire(self, token: int, timeout: float) -> None:
        found = self._pending.pop(token, None)
        if found is not None and not found[0].done():
            found[0].set_exception(StoreTimeout(found[1], timeout))

    def _sweep(self) -> None:
        """Fail the default-timeout operations past their deadline; again later while any is pending.
        Tokens grow, so ``_pending`` is in the order of the deadlines: the first one not due ends it."""
        self._sweeping = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = []
        for token, (_, _, deadline, timer) in self._pending.items():
            if timer is None:
                if deadline > now:
                    break
                due.append(token)
        for token in due:
            self._expire(token, self.timeout)
        if any(timer is None for _, _, _, timer in self._pending.values()):
            self._sweeping = loop.call_later(self.timeout / SWEEPS_PER_TIMEOUT, self._sweep)

    async def publish(self, subject: str, payload: bytes, headers: bytes | None = None,
                      timeout: float | None = None) -> int:
        """Publish to a stream; the stored message's sequence (see ``decode_ack`` for errors)."""
        return decode_ack(subject, await self.request(subject, payload, headers, timeout))

    def settle(self, fut: asyncio.Future[Reply], subject: str,
               decode: Callable[[str, Reply], object] = decode_ack) -> None:
        """Let ``fut`` (a publish not awaited; another request with its ``decode``) end
        unobserved: a failure is counted and logged."""
        def done(f: asyncio.Future[Reply]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                try:
                    decode(subject, f.result())
                    return
                except StoreError as err:
                    exc = err
            self.failed(subject, exc)

        fut.add_done_callback(done)

    def failed(self, subject: str, exc: BaseException) -> None:
        """A write nobody awaits failed: counted, and logged (throttled)."""
        self.unawaited_failures += 1
        self._quiet.warning("unawaited", "a fire-and-forget write on %s failed: %s", subject, exc)

    @property
    def in_flight(self) -> int:
        return len(self._pending)


_instances: weakref.WeakKeyDictionary[Client, Lean] = weakref.WeakKeyDictionary()


def _write(nc: Client, subject: bytes, reply: bytes, headers: bytes | None, payload: bytes) -> None:
    """PUB or HPUB into nats-py's pending buffer, its flusher woken once per batch (as
    ``CorpsClient.publish_now``; here for any Client, and with headers)."""
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    size = len(payload) + (len(headers) if headers else 0)
    connected = nc.is_connected
    if not connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError
    if size > nc._max_payload:
        raise nats.errors.MaxPayloadError
    if headers:
        cmd = b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject, reply, len(headers), size, headers, payload)
    else:
        cmd = b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, size, payload)
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(payload)
    nc._pending.append(cmd)
    nc._pending_data_size += len(cmd)
    queue = nc._flush_queue
    if connected and queue is not None and queue.empty():
        queue.put_nowait(asyncio.get_running_loop().create_future())  # wake the flusher

