"""One delivered event: running its handler in the instance's mailbox, and what happens after.

An ``EventDelivery`` goes into the target instance's mailbox like a tell, so one message at a
time per instance holds across tells, asks and events. The mailbox calls ``run_delivery``.
"""

from __future__ import annotations

import itertools
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from corps.core._context import Carrier
from corps.events._wire import CAUSE, CORR, Delivery, Inbound, event_id_of

if TYPE_CHECKING:
    from corps.core._actor import Actor
    from corps.events._consumer import EventConsumer
    from corps.events._spec import EventHandlerSpec


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
        return self.headers.get(CORR) or self.event_id

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
    if spec.idempotent and await consumer.seen(d):
        consumer.complete(d, b"+ACK")
        return
    token = current_event.set(d)
    try:
        await spec.fn(actor, d.event)
    except Exception as exc:
        await consumer.failed(d, exc)
        raise  # on to the host: logged, counted, and the class's supervision policy applies
    finally:
        current_event.reset(token)
    if spec.idempotent:
        await consumer.remember(d)
    consumer.processed += 1
    consumer.complete(d, b"+ACK")
