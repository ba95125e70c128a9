"""``corps trace ID``: what happened under one correlation id, across orchestration and choreography.

It is recorded in three places, and read from each:

* the saga log, if the id is a saga's: every transition, with its time (a saga's step asks carry
  the saga id as correlation id, so what participants publish while handling them carries it too);
* the event stream: every event whose correlation is the id. That is its ``Corps-Corr`` header,
  or, without one, its own event id: the first event of a choreographed chain is usually
  published outside any handler, and its handlers take its id as their correlation id
  (``EventDelivery.correlation_id``), so a chain is traced by the id of the event that started it;
* the dead-letter stream: events of that correlation a consumer gave up on, with the reason.

``Corps-Cause`` names the event (or message) that caused an event, so entries form a tree: each
event sits under the event that caused it, a dead letter under the event it is a copy of, and an
event a saga step's participant published under the step's "sent" transition (the cause of what
a keyed ask's handler sends is the idempotency key, ``{saga_id}:{step}``, ``...:undo`` for its
compensation). Other messages (tells, plain asks) are in no stream: their events are roots.

The event stream is read headers-only (no payloads cross the wire) by an ephemeral consumer in
memory, from the start or from ``since`` seconds ago, and ends by count (``corps.wire._snapshot``):
the consumer's delivered-plus-pending when it starts is what is read. Never a quiet
timeout: a slow server must not shorten the trace. Events published during the scan may be left out.
Records are untrusted (anyone can publish on the streams' subjects): one that cannot be read is
skipped, logged and counted (``Trace.unreadable``), and the trace goes on.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from corps.errors import EventError, SagaNotFound, SagaStoreUnavailable
from corps.events._dlq import DeadLetterEvent
from corps.events._wire import CAUSE, CORR, REDRIVE_FOR, event_id_of, parse_ack_subject, stream_name
from corps.saga._info import SagaInfo
from corps.saga._log import SAGA_ID, SagaLog, saga_bucket
from corps.saga._state import step_key
from corps.wire._snapshot import scan

if TYPE_CHECKING:
    from corps.system._system import ActorSystem

log = logging.getLogger("corps.trace")

SCAN_TIMEOUT: Final = 60.0
"""Seconds the event scan, and the dead-letter listing, may each take; past it, EventError
(never a silently shorter trace)."""
FLOW_HEARTBEAT: Final = 2.0
"""Idle heartbeat of the scanning consumer; required by flow control, which keeps a long stream
from being pushed into this process faster than it is read."""

Source = Literal["saga", "event", "dead-letter"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a timeline: a saga transition, an event, or a dead letter."""

    at: float
    """Unix time: the transition's time, the event's stream timestamp, or when it was dead-lettered."""
    source: Source
    kind: str
    """The transition's kind, the event's type, or the dead letter's reason."""
    step: str | None = None
    """The saga step a transition is about."""
    consumer: str = ""
    """The consumer (actor class) that dead-lettered an event."""
    attempt: int = 0
    """The transition's attempt; a dead letter's handler attempts."""
    detail: str = ""
    event_id: str = ""
    cause: str = ""
    """Id of the event or message that caused this event ("" for saga transitions)."""
    seq: int = 0
    """Transition number, stream sequence (events), or dead-letter stream sequence."""
    parent: str = ""
    """Event id of the entry this one is nested under ("" for a root)."""
    depth: int = 0


class Trace(msgspec.Struct, frozen=True, kw_only=True):
    """Everything found for one correlation id; ``entries`` in time order."""

    correlation_id: str
    namespace: str
    saga: SagaInfo | None
    entries: tuple[Entry, ...]
    scanned: int
    """Events read from the event stream to find these (the cost of the scan)."""
    unreadable: int = 0
    """Records (events, dead letters) skipped because they could not be read."""

    @property
    def empty(self) -> bool:
        """True if nothing at all was found: the CLI's "nothing found for ID"."""
        return self.saga is None and not self.entries


async def trace(system: ActorSystem, correlation_id: str, *, since: float | None = None,
                timeout: float = SCAN_TIMEOUT) -> Trace:
    """Collect the saga, events and dead letters of ``correlation_id`` in ``system``'s namespace.

    ``since``: only events (and dead letters) of the last ``since`` seconds; the saga, if any,
    is read whole. An id with nothing found gives a Trace whose ``empty`` is True.

    Raises:
        EventError: no JetStream, or the streams could not be read within ``timeout`` seconds.
        SagaStoreUnavailable: the saga log exists but could not be read.
    """
    events = system.events
    if not events.available:
        raise EventError("corps trace needs a nats-server with JetStream enabled (nats-server -js)")
    return await trace_in(events.js, system.namespace, correlation_id, events.dead_letters, since=since,
                          timeout=timeout)


async def trace_in(js: JetStreamContext, namespace: str, correlation_id: str,
                   letters_of: Callable[[], Awaitable[list[DeadLetterEvent]]], *, since: float | None = None,
                   timeout: float = SCAN_TIMEOUT) -> Trace:
    """``trace`` on a JetStream context (``corps trace`` reads without an ActorSystem);
    ``letters_of()`` lists the dead-letter stream."""
    cutoff = time.time() - since if since is not None else None
    info = await _saga(js, namespace, correlation_id)
    skipped: list[int] = []
    found, scanned = await scan_events(js, namespace, correlation_id, cutoff=cutoff, timeout=timeout,
                                       skipped=skipped)
    try:
        with anyio.fail_after(timeout):
            letters = await letters_of()
    except (nats.errors.Error, TimeoutError) as exc:
        raise EventError(f"cannot read the dead-letter stream: {exc!r}") from exc
    for d in letters:
        if (d.headers.get(CORR) or d.event_id) == correlation_id and (cutoff is None or d.at >= cutoff):
            detail = f"{d.error} [unreadable entry: {d.problem}]" if d.problem else d.error
            found.append(Entry(at=d.at, source="dead-letter", kind=d.reason, consumer=d.consumer, attempt=d.attempts,
                               detail=detail, event_id=d.event_id, cause=d.headers.get(CAUSE, ""), seq=d.dlq_seq))
    saga_entries = [Entry(at=t.at, source="saga", kind=t.kind.value, step=t.step, attempt=t.attempt, detail=t.detail,
                          seq=t.seq, event_id=_step_key(correlation_id, t.kind.value, t.step))
                    for t in (info.history if info is not None else ())]
    # Stable sort: transitions sharing a time keep their log order, events their stream order.
    entries = sorted([*saga_entries, *found], key=lambda e: e.at)
    return Trace(correlation_id=correlation_id, namespace=namespace, saga=info,
                 entries=tuple(nest(entries)), scanned=scanned, unreadable=len(skipped))


async def _saga(js: JetStreamContext, namespace: str, saga_id: str) -> SagaInfo | None:
    """The saga with this id, or None: not a saga id, no saga log in the namespace, no such saga."""
    if not SAGA_ID.fullmatch(saga_id):
        return None
    bucket = saga_bucket(namespace)  # not SagaLog.open, which creates the bucket: a trace only reads
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return None
    except (nats.errors.Error, TimeoutError) as exc:
        raise SagaStoreUnavailable(f"cannot open KV bucket {bucket!r}: {exc!r}") from exc
    try:
        record, _ = await (await SagaLog.attach(js, bucket, kv)).read(saga_id)
    except SagaNotFound:
        return None
    return SagaInfo.of(record)


async def scan_events(js: JetStreamContext, namespace: str, correlation_id: str, *, cutoff: float | None = None,
                      timeout: float = SCAN_TIMEOUT, skipped: list[int] | None = None) -> tuple[list[Entry], int]:
    """The events of ``correlation_id`` stored from ``cutoff`` (unix time; None: the start) until
    the scan began, in stream order, and how many events were read. The stream sequence of each
    event that could not be read is appended to ``skipped`` (it is logged and left out).

    Raises:
        EventError: the stream could not be read within ``timeout`` seconds.
    """
    stream = stream_name(namespace)
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, headers_only=True, mem_storage=True, num_replicas=1,
        inactive_threshold=max(timeout, 5.0),  # the server removes it even if this process dies
        deliver_policy=DeliverPolicy.ALL if cutoff is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=None if cutoff is None else datetime.datetime.fromtimestamp(cutoff, datetime.UTC),
    )
    found: list[Entry] = []

    def on_msg(msg: Msg) -> None:
        try:
            entry = _event_entry(stream, msg.subject, msg.reply, msg.headers or {}, correlation_id)
        except Exception as exc:  # noqa: BLE001 -- an untrusted record: skipped, counted, the trace goes on
            meta = parse_ack_subject(msg.reply)
            seq = meta.stream_seq if meta is not None else 0
            log.warning("trace: event at seq %d of %s skipped: %s: %s", seq, stream, type(exc).__name__, exc)
            if skipped is not None:
                skipped.append(seq)
            return
        if entry is not None:
            found.append(entry)

    try:
        scanned = await scan(js, stream, f"{namespace}.events.>", config, on_msg, timeout=timeout,
                             flow_control=True, idle_heartbeat=FLOW_HEARTBEAT)
    except (nats.errors.Error, TimeoutError) as exc:
        raise EventError(f"cannot scan stream {stream!r}: {exc!r}") from exc
    return found, scanned


def _event_entry(stream: str, subject: str, reply: str, headers: dict[str, str], corr: str) -> Entry | None:
    meta = parse_ack_subject(reply)
    seq = meta.stream_seq if meta is not None else 0
    event_id = event_id_of(headers, stream, seq)
    if (headers.get(CORR) or event_id) != corr:  # as EventDelivery.correlation_id
        return None
    redrive = headers.get(REDRIVE_FOR)
    return Entry(at=meta.timestamp_ns / 1e9 if meta is not None else 0.0, source="event",
                 kind=subject.rpartition(".")[2], detail=f"redriven for {redrive}" if redrive else "",
                 event_id=event_id, cause=headers.get(CAUSE, ""), seq=seq)


def _step_key(saga_id: str, kind: str, step: str | None) -> str:
    """The idempotency key of the ask a "sent" / "undo_sent" transition stands for, else ""."""
    if step and kind in ("sent", "undo_sent"):
        return step_key(saga_id, step, undo=kind == "undo_sent")
    return ""


def nest(entries: list[Entry]) -> list[Entry]:
    """``entries`` with ``parent`` and ``depth`` set: an event under the event (or saga step)
    that caused it, a dead letter under the event it is a copy of (else under that event's cause)."""
    holders = {e.event_id for e in entries if e.source in ("event", "saga") and e.event_id}
    parent_of: dict[str, str] = {}
    for e in entries:
        if e.source == "event" and e.cause in holders and e.cause != e.event_id:
            parent_of.setdefault(e.event_id, e.cause)
    out = []
    for e in entries:
        if e.source == "event":
            parent = parent_of.get(e.event_id, "")
        elif e.source == "dead-letter":
            parent = e.event_id if e.event_id in holders else e.cause if e.cause in holders else ""
        else:
            parent = ""
        depth, up, seen = 0, parent, set()
        while up and up not in seen:  # a cycle cannot come from corps, but headers can be forged
            seen.add(up)
            depth += 1
            up = parent_of.get(up, "")
        out.append(msgspec.structs.replace(e, parent=parent, depth=depth))
    return out
