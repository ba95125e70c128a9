"""One delivered event: running its handler in the instance's mailbox, and what happens after.

An ``EventDelivery`` goes into the target instance's mailbox like a tell, so one message at a
time per instance holds across tells, asks and events. The mailbox calls ``run_delivery``.

An ``idempotent=True`` handler's event gets a mark in the events' KV bucket, per consumer and
event id: INTENT before the handler runs, DONE after it returned (then the event is acked). A
delivery that finds DONE is acked without running the handler. One that finds INTENT is the
redelivery of an event whose handler began and never finished (its process died, or it was
cancelled, between the two writes): the handler runs again, with a warning, and ``unfinished``
is counted: an in-memory effect died with that process, but an external one may apply twice.
A handler that raises clears its INTENT (nothing applied, by its contract): the retry is a first
attempt again.
"""

from __future__ import annotations

import itertools
import logging
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import nats.errors

from corps.core._context import Carrier
from corps.events._wire import CAUSE, Delivery, Inbound, Received, event_id_of, parse_ack_subject
from corps.wire._headers import ids_from_map

if TYPE_CHECKING:
    from corps.core._actor import Actor
    from corps.events._consumer import EventConsumer
    from corps.events._spec import EventHandlerSpec

log = logging.getLogger("corps.events")

MARK_DONE: Final = b"1"
"""The handler returned. (The only mark written before intents existed: old marks read as done.)"""
MARK_INTENT: Final = b"intent"
"""The handler began; with no DONE after it, it may or may not have applied its effects."""
_STORE_ERRORS: Final = (nats.errors.Error, TimeoutError)


_new = object.__new__


class EventDelivery(Received, Carrier):
    """A delivered, decoded event held by this node until it is acked, nak'ed or terminated.

    It is its own message (``msg`` is the delivery: subject, reply, data, headers): one object
    per delivery, built by ``received`` on the consumer's hot path. What only failures, dead
    letters, observers and publishing handlers read is worked out when first read: ``meta``
    (the ``$JS.ACK`` subject parsed), ``headers``, ``subject``, ``reply`` and ``publishes``.
    """

    __slots__ = ("_headers", "_meta", "_publishes", "_raw", "_subject", "ack_to", "attempts", "consumer", "data",
                 "event", "key", "seq", "spec", "touched")
    consumer: EventConsumer
    _subject: bytes | str
    ack_to: bytes
    """The reply subject as the server sent it: what acks and naks are published to."""
    data: bytes
    _raw: bytes | None
    _headers: dict[str, str] | None
    seq: int
    """The stream sequence: what the consumer keys the deliveries it holds by."""
    event: Any
    spec: EventHandlerSpec | None
    key: str | None
    attempts: int
    """Handler runs on this node for this delivery (keyed handlers retry in place)."""
    touched: float
    """When this node last told the server it still works on it (received, or +WPI)."""
    _meta: Delivery | None
    _publishes: itertools.count[int] | None

    def __new__(cls, consumer: EventConsumer, msg: Inbound, meta: Delivery, event: Any,
                spec: EventHandlerSpec | None, key: str | None) -> EventDelivery:
        """A delivery of ``msg``, whose reply subject ``meta`` was parsed from (the partitioned
        consumer's way; ``EventConsumer`` calls ``received``)."""
        d = cls.received(consumer, msg._subject, msg.reply.encode(), msg.data, msg._raw, msg._headers,
                         meta.stream_seq, time.monotonic(), event, spec, key)
        d._meta = meta
        return d

    @classmethod
    def received(cls, consumer: EventConsumer, subject: bytes | str, reply: bytes, data: bytes,
                 raw_headers: bytes | None, headers: dict[str, str] | None, seq: int, now: float, event: Any,
                 spec: EventHandlerSpec | None, key: str | None) -> EventDelivery:
        """A delivery as it came off the wire: ``reply`` a ``$JS.ACK`` subject whose stream
        sequence is ``seq`` (``ack_numbers`` took it), headers raw or parsed, received at ``now``."""
        d: EventDelivery = _new(cls)
        d.consumer = consumer
        d._subject = subject
        d.ack_to = reply
        d.data = data
        d._raw = raw_headers
        d._headers = headers
        d.seq = seq
        d.event = event
        d.spec = spec
        d.key = key
        d.attempts = 0
        d.touched = now
        d._meta = None
        d._publishes = None
        return d

    @property
    def msg(self) -> EventDelivery:
        """The delivered message: the delivery itself (subject, reply, data, headers)."""
        return self

    @property
    def reply(self) -> str:
        return self.ack_to.decode()

    @property
    def meta(self) -> Delivery:
        """Where the delivery came from, parsed from its reply subject on first use."""
        meta = self._meta
        if meta is None:
            meta = self._meta = parse_ack_subject(self.reply)
            if meta is None:  # received() takes only what ack_numbers took, and so does this parse
                raise ValueError(f"not a JetStream ack subject: {self.reply!r}")
        return meta

    @property
    def publishes(self) -> itertools.count[int]:
        """Numbers the events the handler publishes (their ids stay the same on a retry)."""
        if self._publishes is None:
            self._publishes = itertools.count()
        return self._publishes

    @property
    def event_id(self) -> str:
        meta = self.meta
        return event_id_of(self.headers, meta.stream, meta.stream_seq)

    @property
    def correlation_id(self) -> str:
        """``Corps-Corr``, else the trace id of a ``traceparent`` (both validated: a malformed
        value is ignored), else the event's id."""
        return ids_from_map(self.headers).corr or self.event_id

    def traceparent(self) -> str:
        return ids_from_map(self.headers).traceparent

    @property
    def causation_id(self) -> str:
        return self.headers.get(CAUSE, "")

    def ids(self) -> tuple[str, str]:
        """What a tell or ask sent by the handler carries: this event's correlation, and the
        event as its cause."""
        return self.correlation_id, self.event_id

    @property
    def attempt(self) -> int:
        """This attempt's number, counting earlier deliveries (a crash or a nak) and local retries."""
        return self.meta.delivered - 1 + self.attempts


current_event: ContextVar[EventDelivery | None] = ContextVar("corps_current_event", default=None)
"""The event whose handler is running, so that what it publishes carries its ids."""


async def run_delivery(actor: Actor, d: EventDelivery) -> None:
    """Called by the mailbox: run the handler, then ack, or retry / nak / dead-letter."""
    consumer = d.consumer
    spec = d.spec
    assert spec is not None
    d.attempts += 1
    began = False
    if spec.idempotent:
        try:
            mark = await consumer.mark(d)
            if mark is not None and mark != MARK_INTENT:
                consumer.complete(d, b"+ACK")  # handled before: a duplicate delivery
                return
            if mark == MARK_INTENT:
                consumer.unfinished += 1
                log.warning("event consumer %s: event %s was begun by an earlier delivery that never finished "
                            "(its process died?); handling it again: its external effects may apply twice",
                            consumer.name, d.event_id)
            else:
                await consumer.put_mark(d, MARK_INTENT)
                began = True
        except _STORE_ERRORS as exc:  # the bucket is unreachable: retried like a failed attempt
            await consumer.failed(d, exc)
            return
    token = current_event.set(d)
    try:
        await spec.fn(actor, d.event)
    except Exception as exc:
        if began:
            await _clear(consumer, d)
        await consumer.failed(d, exc)
        raise  # on to the host: logged, counted, and the class's supervision policy applies
    finally:
        current_event.reset(token)
    # Cancellation (a BaseException) leaves the INTENT: the handler may have applied its effects.
    if spec.idempotent:
        try:
            await consumer.put_mark(d, MARK_DONE)
        except _STORE_ERRORS as exc:
            # Acked all the same (the handler ran): only a redrive of this event could see the INTENT.
            log.warning("event consumer %s: event %s handled, but its mark not written: %r", consumer.name,
                        d.event_id, exc)
    consumer.processed += 1
    consumer.complete(d, b"+ACK")


async def _clear(consumer: EventConsumer, d: EventDelivery) -> None:
    try:
        await consumer.clear_mark(d)
    except _STORE_ERRORS as exc:  # the INTENT stays: the retry runs the handler all the same, with a warning
        log.warning("event consumer %s: the mark of failed event %s not cleared: %r", consumer.name, d.event_id, exc)
