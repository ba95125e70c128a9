"""Event wire details: stream and subject names, headers, PubAck, delivery metadata, HPUB.

Events travel as the msgpack of the tagged Message (no envelope), on ``{ns}.events.{Tag}``, with
NATS headers: ``Nats-Msg-Id`` (JetStream dedupe), ``Corps-Corr`` and ``Corps-Cause``
(correlation and causation ids). Header bytes are built here, once per publish, instead of by
nats-py's per-key loop.

Any client may publish an event as JSON instead (``{"$type": "OrderPlaced", ...}``): the first byte
tells them apart (``EventDecoder``), as on actor subjects. An event is a map, never a msgpack
positive fixint, the only msgpack value whose first byte can be ``{`` or whitespace.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from nats.aio.client import Client
from nats.protocol import command as prot

from corps.core._messages import Message
from corps.wire import _headers
from corps.wire._codec import MSGPACK_MAP, sniff
from corps.wire._js_answers import PubAck as PubAck
from corps.wire._js_answers import PubAckError as PubAckError
from corps.wire._js_answers import parse_headers as parse_header_block

MSG_ID: Final = "Nats-Msg-Id"
CORR: Final = _headers.CORR
CAUSE: Final = "Corps-Cause"
TRACEPARENT: Final = _headers.TRACEPARENT
"""W3C trace context of the span that published the event (only while tracing is on)."""
EVENT_ID: Final = "Corps-Event-Id"
"""Set when an event is published again under a new Nats-Msg-Id (redrive): its original id."""
REDRIVE_FOR: Final = "Corps-Redrive-For"
"""A redriven event is for one consumer only; the others ack it and skip it."""
REDRIVE_FOR_B: Final = REDRIVE_FOR.encode()
STATUS: Final = "Status"

DLQ_PREFIX: Final = "Corps-Dlq-"

_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def stream_name(namespace: str) -> str:
    return _NAME_BAD.sub("_", namespace) + "_events"


def dlq_stream_name(namespace: str) -> str:
    return _NAME_BAD.sub("_", namespace) + "_dlq"


def kv_bucket_name(namespace: str) -> str:
    return _NAME_BAD.sub("_", namespace) + "_processed"


def event_tag(tp: type[Message]) -> str:
    tag = tp.__struct_config__.tag
    return str(tag) if tag is not None else tp.__name__


def events_subject(namespace: str, tp: type[Message] | str) -> str:
    return f"{namespace}.events.{tp if isinstance(tp, str) else event_tag(tp)}"


def dlq_subject(namespace: str, consumer: str) -> str:
    return f"{namespace}.dlq.{consumer}"


def event_id_of(headers: Mapping[str, str], stream: str, stream_seq: int) -> str:
    """An event's id: its ``Corps-Event-Id``, else its ``Nats-Msg-Id``, else stream and sequence
    (an event published by a foreign client). The id its handlers see, and trace finds."""
    return headers.get(EVENT_ID) or headers.get(MSG_ID) or f"{stream}-{stream_seq}"


def build_headers(pairs: dict[str, str]) -> bytes:
    out = ["NATS/1.0\r\n"]
    for k, v in pairs.items():
        if v:
            out.append(f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n")
    out.append("\r\n")
    return "".join(out).encode()


async def hpub(nc: Client, subject: str, reply: str, headers: bytes, payload: bytes) -> None:
    """Publish with pre-built header bytes (what ``nc.publish(headers=...)`` does, minus its loop).

    Raises:
        nats.errors.ConnectionClosedError / OutboundBufferLimitError / MaxPayloadError, as publish.
    """
    import nats.errors

    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    size = len(payload)
    if not nc.is_connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError
    if size + len(headers) > nc._max_payload:
        raise nats.errors.MaxPayloadError
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    await nc._send_command(prot.hpub_cmd(subject, reply, headers, payload))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


class AckBuffer:
    """Acks (and naks, terms) of one loop iteration, written to the connection as one command.

    ``nc.publish`` costs a Future and a flusher wake-up per call; a batch of 256 deliveries
    answered in one iteration becomes one write here. Only while connected: otherwise a lost
    ack is a redelivery (at-least-once), as with any ack.

    A mailbox runs a whole pull batch in one loop iteration; its acks would reach the server only
    after the last handler, and the server, at ``max_ack_pending``, could deliver nothing
    meanwhile: server and client took turns. So every ``WRITE_EVERY`` answers (and with a pull
    request, ``add_command``) the buffer goes out at once, behind what nats-py holds (its order
    kept: an ack never overtakes what its handler sent).

    Nothing is lost or reordered against nats-py's flusher: both take all of ``_pending`` and
    write it to the transport in one synchronous step (the flusher awaits the drain only after),
    so writes reach the socket in the order they were appended; a flusher wake is queued whenever
    the buffer is left to it (a queue that is not empty already holds one). nats-py's PING alone
    goes straight to the socket, which is why ``nc.flush()`` is no barrier (``wire._transport.flush``).
    """

    __slots__ = ("_buf", "_nc", "written")

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._buf: list[bytes] = []
        self.written = 0

    def add(self, reply: str | bytes, what: bytes) -> None:
        """Answer ``what`` (``+ACK``, ``-NAK``...) to the delivery whose reply subject is ``reply``."""
        buf = self._buf
        if not buf:
            asyncio.get_running_loop().call_soon(self._write)
        if isinstance(reply, str):
            reply = reply.encode()
        fmt = _ANSWERS.get(what)
        buf.append(fmt % reply if fmt is not None else b"PUB %b %d\r\n%b\r\n" % (reply, len(what), what))
        if len(buf) >= WRITE_EVERY:
            self._write(now=True)

    def add_command(self, command: bytes) -> None:
        """Write ``command`` (a pull request) now, behind the answers before it."""
        if not self._buf:
            asyncio.get_running_loop().call_soon(self._write)
        self._buf.append(command)
        self._write(now=True)

    def _write(self, now: bool = False) -> None:
        if not self._buf:
            return  # written early (now=True) in this iteration
        data, self._buf = b"".join(self._buf), []
        nc = self._nc
        if not nc.is_connected:
            return
        nc._pending.append(data)
        nc._pending_data_size += len(data)
        self.written += 1
        transport = nc._transport
        if now and _socket_has_room(transport):  # what nats-py's flusher does, without waiting its turn
            assert transport is not None
            transport.writelines(nc._pending)
            nc._pending = []
            nc._pending_data_size = 0
            return
        queue = nc._flush_queue
        if queue is not None and queue.empty():
            queue.put_nowait(asyncio.get_running_loop().create_future())  # wake nats-py's flusher


_ANSWERS: Final = {what: b"PUB %%b %d\r\n%b\r\n" % (len(what), what) for what in (b"+ACK", b"-NAK", b"+TERM", b"+WPI")}
"""The PUB of each fixed answer, but for its subject (one ``%`` per answer instead of three parts)."""

WRITE_EVERY: Final = 128
"""Answers after which ``AckBuffer`` writes without waiting for the end of the loop iteration."""
WRITE_NOW_LIMIT: Final = 1 << 20
"""Bytes the socket's write buffer may hold for ``AckBuffer`` to write past nats-py's flusher (which
awaits the socket's drain): above it, or on a transport other than TCP, the flusher writes."""


def _socket_has_room(transport: Any) -> bool:
    writer = getattr(getattr(transport, "_io_writer", None), "transport", None)
    return writer is not None and writer.get_write_buffer_size() < WRITE_NOW_LIMIT


PUBACK_DECODER: Final = msgspec.json.Decoder(PubAck)


class Delivery(msgspec.Struct):
    """Where a delivered message came from, parsed from its ``$JS.ACK`` reply subject."""

    stream: str
    consumer: str
    delivered: int
    stream_seq: int
    timestamp_ns: int


def parse_ack_subject(reply: str) -> Delivery | None:
    """``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`` (v1) or the v2
    form with domain and account hash first; None for anything else."""
    t = reply.split(".")
    if len(t) < 9 or t[0] != "$JS" or t[1] != "ACK":
        return None
    if len(t) >= 12:  # v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>...
        t = t[2:]
    try:
        return Delivery(t[2], t[3], int(t[4]), int(t[5]), int(t[7]))
    except ValueError:
        return None


def ack_prefix(stream: str, consumer: str) -> bytes:
    """How the v1 ``$JS.ACK`` subjects of one consumer's deliveries begin (``ack_numbers``)."""
    return f"$JS.ACK.{stream}.{consumer}".encode()


def ack_numbers(reply: bytes, prefix: bytes) -> tuple[int, int] | None:
    """(stream sequence, times delivered) of a ``$JS.ACK`` subject; None for anything else.

    The consumer's hot path: the reply subject as it came off the wire, no ``Delivery`` built
    (``EventDelivery.meta`` parses the rest if it is ever read), and for a v1 subject that
    begins with ``prefix`` (``ack_prefix``: this consumer's own) one split of the last five
    tokens. What this takes, ``parse_ack_subject`` takes, with the same numbers, so a delivery's
    ``meta`` can always be read; and it takes every ASCII subject that ``parse_ack_subject``
    takes, but for a timestamp that is not plain digits (no server sends one)."""
    if not reply.isascii():
        try:
            reply.decode()  # a consumer name may be UTF-8; anything else is not a subject
        except UnicodeDecodeError:
            return None
    t = reply.rsplit(b".", 5)
    if len(t) == 6 and t[0] == prefix:  # $JS.ACK.<stream>.<consumer> . delivered.sseq.dseq.ts.pending
        i = 1
    else:
        t = reply.split(b".")
        n = len(t)
        if n < 9 or t[0] != b"$JS" or t[1] != b"ACK":
            return None
        i = 6 if n >= 12 else 4  # v2: domain and account hash first
    if not t[i + 3].isdigit():  # the timestamp, which parse_ack_subject reads too
        return None
    delivered = t[i]
    try:
        return int(t[i + 1]), 1 if delivered == b"1" else int(delivered)
    except ValueError:
        return None


class Received:
    """What a delivered message reads of itself: its subject, and its headers from the raw
    block, parsed on first use (``Inbound`` and the consumer's ``EventDelivery``)."""

    __slots__ = ()
    _subject: bytes | str
    _raw: bytes | None
    _headers: dict[str, str] | None

    @property
    def subject(self) -> str:
        s = self._subject
        return s.decode() if isinstance(s, bytes) else s

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = parse_header_block(self._raw) if self._raw else {}  # type: ignore[misc]  # a subclass's slot
        return self._headers

    def may_have(self, name: bytes) -> bool:
        """False when header ``name`` is certainly absent (the raw block does not contain it)."""
        raw = self._raw
        return self._headers is not None or (raw is not None and raw.find(name) >= 0)

    def header(self, name: str) -> str | None:
        """One header's value; without parsing the block when the name is not in it at all."""
        if not self.may_have(name.encode()):
            return None
        return self.headers.get(name)


class Inbound(Received):
    """A delivered JetStream message, from nats-py's parser directly (raw header block) or from a
    nats-py ``Msg`` (headers already parsed)."""

    __slots__ = ("_headers", "_raw", "_subject", "data", "reply")

    def __init__(self, subject: bytes | str, reply: str, data: bytes, raw_headers: bytes | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._subject = subject
        self.reply = reply
        self.data = data
        self._raw = raw_headers
        self._headers = headers


class EventDecoder:
    """Decodes an event payload, msgpack or JSON, as one of ``tp`` (a type or a union).

    Msgpack unless the payload is not a msgpack map and starts (after JSON whitespace) with ``{``
    or ``[``: then JSON. The msgpack path costs one byte test more than before. ``decode`` raises
    what msgspec raises (RecursionError included): callers decode untrusted bytes inside their
    ``except Exception`` (a dead letter with the reason)."""

    __slots__ = ("_json", "msgpack")

    def __init__(self, tp: Any = Any) -> None:
        self.msgpack = msgspec.msgpack.Decoder(tp)
        """The msgpack decoder alone: for a payload that starts with a msgpack map (``MSGPACK_MAP``)."""
        self._json = msgspec.json.Decoder(tp)

    def decode(self, data: bytes) -> Any:
        if data and data[0] not in MSGPACK_MAP and sniff(data)[1]:
            return self._json.decode(data)
        return self.msgpack.decode(data)


def redacted(headers: dict[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (headers or {}).items()}
