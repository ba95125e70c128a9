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
from corps.events._wire import CAUSE, Delivery, Inbound, event_id_of
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


class EventDelivery(Carrier):
    """A delivered, decoded event held by this node until it is acked, nak'ed or terminated."""

    __slots__ = ("attempts", "consumer", "event", "key", "meta", "msg", "publishes", "spec", "touched")

    def __init__(self, consumer: EventConsumer, msg: Inbound, meta: Delivery, event: Any,
                 spec: EventHandlerSpec | None, key: str | None) -> None:
        self.consumer = consumer
        self.msg = msg
        self.meta = meta
        self.event = event
        self.spec = spec
        self.key = key
        self.attempts = 0
        """Handler runs on this node for this delivery (keyed handlers retry in place)."""
        self.touched = time.monotonic()
        self.publishes = itertools.count()

    @property
    def headers(self) -> dict[str, str]:
        return self.msg.headers

    @property
    def event_id(self) -> str:
        return event_id_of(self.headers, self.meta.stream, self.meta.stream_seq)

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
