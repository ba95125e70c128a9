"""The lean JetStream path: pipelined publishes and KV operations with one reply subscription.

nats-py's JetStream calls cost, per operation, a NUID inbox, a Future awaited under
``wait_for``, a JSON PubAck decoded into a dataclass, a header dict built key by key, and for
``kv.get`` without direct get a JSON request whose answer is base64 in JSON. Here each
operation is a token (a counter) on one wildcard reply subscription
(``{inbox_prefix}.{nuid}.*``, so ``Security.inbox_prefix`` grants cover it), a Future, one timer,
and a write into the connection's pending buffer: operations started in one loop iteration go
out in one socket write (the flusher is woken once), and are answered as their acks arrive.
Timeouts: one sweeping timer for every operation with the default timeout (``SWEEPS_PER_TIMEOUT``),
a timer of its own for an operation with another.

Every answer is untrusted bytes: a PubAck that is not JSON, a direct-get reply without a
sequence, a token that is not ours: each becomes a typed error on its operation (StoreUnreadable)
or a counted drop (``dropped``), never an exception in the connection's reader.

``Lean.of(nc)`` gives the one instance of a connection, started on first use. ``Bucket`` puts,
creates (expected last subject sequence 0, over a delete marker if the key was deleted), CAS
updates, deletes and purges (awaited, or fire-and-forget with failures counted), and gets by
direct get (``$JS.API.DIRECT.GET``) when the bucket's stream allows it, else by the API.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
import nats.errors
from nats.nuid import NUID

from corps.errors import (
    StoreConflict,
    StoreError,
    StoreNoResponders,
    StoreRefused,
    StoreTimeout,
    StoreUnavailable,
    StoreUnreadable,
)
from corps.wire._client import Route, Throttled, subscribe_route
from corps.wire._codec import undecodable

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger("corps.transport")

DEFAULT_TIMEOUT: Final = 5.0
WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
"""JetStream error codes of a lost compare-and-set (JSStreamWrongLastSequence, ...Constant)."""
EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION: Final = "KV-Operation"
MARKER_REASON: Final = "Nats-Marker-Reason"
"""nats-server 2.11+: a marker the server placed (a TTL, a purge) instead of KV-Operation."""
MAX_TOKEN_DIGITS: Final = 18
SWEEPS_PER_TIMEOUT: Final = 20
"""Operations with the default timeout share one timer, which fails those past their deadline
``timeout / SWEEPS_PER_TIMEOUT`` apart: a timeout fires at most 5 % late, and no operation
pays for a timer of its own (``call_later`` and its ``cancel`` were ~1.8 µs of each write)."""
PAYLOAD_TOO_LARGE: Final = 413
"""StoreRefused.code of a write over the server's max_payload (refused by the client: nothing sent)."""


class PubAckError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """The stream's acknowledgement of a publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: PubAckError | None = None


class _Purged(msgspec.Struct, frozen=True):
    success: bool = False
    purged: int = 0
    error: PubAckError | None = None


class _StoredMsg(msgspec.Struct, frozen=True):
    subject: str = ""
    seq: int = 0
    hdrs: str | None = None
    data: str | None = None


class _MsgGet(msgspec.Struct, frozen=True):
    message: _StoredMsg | None = None
    error: PubAckError | None = None


_ACK = msgspec.json.Decoder(PubAck)
_MSG_GET = msgspec.json.Decoder(_MsgGet)
_PURGED = msgspec.json.Decoder(_Purged)
_json = msgspec.json.Encoder().encode


class Entry(msgspec.Struct, frozen=True):
    """A KV key's last message: its value and revision; ``deleted`` for a delete or purge marker."""

    value: bytes
    revision: int
    deleted: bool = False


class Reply:
    """One answer on the reply subscription: status line (``None``: none), headers, payload."""

    __slots__ = ("_headers", "_raw", "data", "status")

    def __init__(self, data: bytes, raw: bytes | None = None, headers: dict[str, str] | None = None,
                 status: str | None = None) -> None:
        self.data = data
        self._raw = raw
        self._headers = headers
        self.status = status
        if raw is not None and status is None:
            first = raw[: raw.find(b"\r\n")] if b"\r\n" in raw else raw
            code = first[9:12]  # b"NATS/1.0 404 ..."
            if len(code) == 3 and code.isdigit():
                self.status = code.decode()

    def header(self, name: str) -> str | None:
        if self._headers is None:
            self._headers = parse_headers(self._raw) if self._raw else {}
        return self._headers.get(name)


def parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status]\\r\\nName: value\\r\\n...`` -> {name: value} (the status line skipped)."""
    out: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def header_block(pairs: dict[str, str]) -> bytes:
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs.items()) + "\r\n").encode()


def decode_ack(subject: str, reply: Reply) -> int:
    """The stream sequence a PubAck gives for a publish on ``subject``.

    Raises:
        StoreNoResponders: status 503 (no stream on the subject, or JetStream is off).
        StoreConflict: the expected last subject sequence did not match.
        StoreRefused: any other API error or status.
        StoreUnreadable: the answer is not a PubAck.
    """
    ack = _answer(subject, reply, _ACK, "PubAck")
    if ack.seq <= 0:
        raise StoreUnreadable(subject, f"a PubAck without a sequence: {reply.data[:100]!r}")
    return ack.seq


def decode_purged(subject: str, reply: Reply) -> int:
    """How many messages a ``STREAM.PURGE`` request removed (``subject``: what it purged).

    Raises:
        StoreNoResponders: status 503.
        StoreRefused: an API error, or another status.
        StoreUnreadable: the answer is not a purge response.
    """
    got = _answer(subject, reply, _PURGED, "purge response")
    if not got.success or got.purged < 0:
        raise StoreUnreadable(subject, f"a purge response without success: {reply.data[:100]!r}")
    return got.purged


_Answer = TypeVar("_Answer", PubAck, _Purged)


def _answer(subject: str, reply: Reply, decoder: msgspec.json.Decoder[_Answer], what: str) -> _Answer:
    """A JSON API answer with an optional ``error``: decoded, or its status or error as a StoreError."""
    if reply.status is not None and not reply.data:
        raise _status_error(subject, reply)
    try:
        got = decoder.decode(reply.data)
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: RecursionError and all
        raise StoreUnreadable(subject, f"not a {what}: {undecodable(exc)}") from None
    if got.error is not None:
        raise _api_error(subject, got.error)
    return got


def _api_error(subject: str, err: PubAckError) -> StoreError:
    if err.err_code in WRONG_LAST_SEQUENCE:
        return StoreConflict(subject, err.description[:200] or "wrong last sequence")
    if err.code == 503:
        return StoreNoResponders(subject, err.description[:200] or "503")
    return StoreRefused(subject, err.code, err.err_code, err.description)


def _status_error(subject: str, reply: Reply) -> StoreError:
    if reply.status == "503":
        return StoreNoResponders(subject, "no stream or JetStream responder (503)")
    description = reply.header("Description") or ""
    status = reply.status or "?"
    return StoreRefused(subject, int(status) if status.isdigit() else 0, 0, f"status {status} {description}")


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


_DEL: Final = header_block({KV_OPERATION: "DEL"})
_CAS: Final = b"NATS/1.0\r\n" + EXPECTED_LAST.encode() + b": %d\r\n\r\n"
"""``header_block({EXPECTED_LAST: str(last)})`` as one %-format (a CAS write per saga transition)."""
_PURGE: Final = header_block({KV_OPERATION: "PURGE", "Nats-Rollup": "sub"})


class Bucket:
    """A JetStream KV bucket through ``Lean``: keys are the caller's to validate.

    Args:
        direct: the bucket's stream has ``allow_direct``: gets are direct gets.
    """

    def __init__(self, lean: Lean, bucket: str, *, direct: bool) -> None:
        self.lean = lean
        self.name = bucket
        self.stream = f"KV_{bucket}"
        self.direct = direct
        self._pre = f"$KV.{bucket}."
        self._get_api = f"$JS.API.STREAM.MSG.GET.{self.stream}"
        self._purge_api = f"$JS.API.STREAM.PURGE.{self.stream}"
        self._get_direct = f"$JS.API.DIRECT.GET.{self.stream}.{self._pre}"

    def subject(self, key: str) -> str:
        return self._pre + key

    # -- writes: *_soon send now and return the ack's future; the plain forms await it ---------

    def put_soon(self, key: str, value: bytes) -> asyncio.Future[Reply]:
        return self.lean.request(self._pre + key, value)

    def create_soon(self, key: str, value: bytes) -> asyncio.Future[Reply]:
        return self.update_soon(key, value, 0)

    def update_soon(self, key: str, value: bytes, last: int) -> asyncio.Future[Reply]:
        return self.lean.request(self._pre + key, value, _CAS % last)

    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; its revision."""
        return decode_ack(self._pre + key, await self.put_soon(key, value))

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``value`` if the key's revision is ``last`` (0: the key has no value); the new revision.

        Raises:
            StoreConflict: it is not.
        """
        return decode_ack(self._pre + key, await self.update_soon(key, value, last))

    async def create(self, key: str, value: bytes) -> int:
        """Write ``value`` if the key has none (never written, or deleted); its revision.

        Raises:
            StoreConflict: the key has a value.
        """
        try:
            return await self.update(key, value, 0)
        except StoreConflict:
            found = await self.entry(key)  # a delete marker is a message: create goes over it
            if found is None or not found.deleted:
                raise
            return await self.update(key, value, found.revision)

    async def delete(self, key: str, *, last: int | None = None, wait: bool = True) -> None:
        """Put a delete marker (if the revision is still ``last``, when given).

        ``wait=False`` sends it and returns: a failure is counted (``Lean.unawaited_failures``).

        Raises:
            StoreConflict: ``last`` given and the key has moved on (only with ``wait``).
        """
        headers = _DEL if last is None else header_block({KV_OPERATION: "DEL", EXPECTED_LAST: str(last)})
        await self._marker(key, headers, wait)

    async def purge(self, key: str, *, wait: bool = True) -> None:
        """Remove every value of the key, leaving a purge marker."""
        await self._marker(key, _PURGE, wait)

    def purge_soon(self, key: str, upto: int) -> asyncio.Future[Reply] | None:
        """Remove the key's messages up to stream sequence ``upto`` (its delete marker, read at
        ``upto``: what a listing would otherwise read again each time), leaving nothing behind.
        A write after ``upto`` stays. Not awaited: a failure is counted (``Lean.unawaited_failures``);
        the answer's future (``decode_purged`` reads it), None if it could not be sent."""
        subject = self._pre + key
        request = _json({"filter": subject, "seq": upto + 1})  # seq: purge below it
        try:
            fut = self.lean.request(self._purge_api, request)
        except StoreError as exc:
            self.lean.failed(subject, exc)
            return None
        self.lean.settle(fut, subject, decode_purged)
        return fut

    async def _marker(self, key: str, headers: bytes, wait: bool) -> None:
        subject = self._pre + key
        if wait:
            decode_ack(subject, await self.lean.request(subject, b"", headers))
            return
        try:
            fut = self.lean.request(subject, b"", headers)
        except StoreError as exc:
            self.lean.failed(subject, exc)
        else:
            self.lean.settle(fut, subject)

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The key's value and revision; None if it has none (never written, deleted or purged)."""
        found = await self.entry(key)
        return None if found is None or found.deleted else found

    async def entry(self, key: str) -> Entry | None:
        """The key's last message, delete markers included; None if there is none."""
        subject = self._pre + key
        if self.direct:
            reply = await self.lean.request(self._get_direct + key, b"")
            return decode_direct(subject, reply)
        reply = await self.lean.request(self._get_api, _json({"last_by_subj": subject}))
        return decode_api_get(subject, reply)


def decode_direct(subject: str, reply: Reply) -> Entry | None:
    """A direct get's answer: the message in headers and payload, or status 404 (none).

    Raises:
        StoreUnreadable: no sequence, or the message of another subject.
        StoreNoResponders / StoreRefused: a status other than 404.
    """
    if reply.status == "404":
        return None
    if reply.status is not None:
        raise _status_error(subject, reply)
    seq = reply.header("Nats-Sequence") or ""
    if not (seq.isdecimal() and len(seq) <= MAX_TOKEN_DIGITS and int(seq) > 0):
        raise StoreUnreadable(subject, f"a direct get answer without a valid sequence ({seq[:30]!r})")
    if reply.header("Nats-Subject") != subject:
        raise StoreUnreadable(subject, f"a direct get answer for {str(reply.header('Nats-Subject'))[:100]!r}")
    deleted = reply.header(KV_OPERATION) in ("DEL", "PURGE") or reply.header(MARKER_REASON) is not None
    return Entry(reply.data, int(seq), deleted)


def decode_api_get(subject: str, reply: Reply) -> Entry | None:
    """A ``STREAM.MSG.GET`` answer: JSON with the message base64-encoded, or error 404 (none).

    Raises:
        StoreUnreadable: not such an answer.
        StoreNoResponders / StoreRefused: an API error other than "no message".
    """
    if reply.status is not None and not reply.data:
        raise _status_error(subject, reply)
    try:
        got = _MSG_GET.decode(reply.data)
        if got.error is not None:
            if got.error.code == 404:
                return None
            raise _api_error(subject, got.error)
        msg = got.message
        if msg is None or msg.seq <= 0 or msg.subject != subject:
            raise StoreUnreadable(subject, "a message get answer without a message of this subject")
        data = base64.b64decode(msg.data or "", validate=True)
        headers = parse_headers(base64.b64decode(msg.hdrs, validate=True)) if msg.hdrs else {}
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: RecursionError, binascii.Error, ...
        raise StoreUnreadable(subject, f"not a message get answer: {undecodable(exc)}") from None
    deleted = headers.get(KV_OPERATION) in ("DEL", "PURGE") or MARKER_REASON in headers
    return Entry(data, msg.seq, deleted)
