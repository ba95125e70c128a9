"""Which records a compensation reads (runtime/saga/_participant_spec.py ``class_effect``)."""

from __future__ import annotations

from corps import Actor, Message, Request, handler
from corps.saga import compensation, idempotent
from corps.saga._participant_spec import class_effect


class Booked(Message):
    order_id: str


class Book(Request[Booked]):
    order_id: str


class Cancelled(Message):
    order_id: str


class Cancel(Request[Cancelled]):
    order_id: str


class MemoryCourier(Actor):
    @handler
    @idempotent(effect="memory")
    async def book(self, msg: Book) -> Booked:
        return Booked(msg.order_id)

    @handler
    @compensation(noop=lambda msg: Cancelled(msg.order_id))
    async def cancel(self, msg: Cancel) -> Cancelled:
        return Cancelled(msg.order_id)


class SlowMemoryCourier(MemoryCourier):
    """Overrides the forward handler without its decorators and calls super(): the recording
    wrapper is the base's, so its compensation must read the base's (memory) records."""

    async def book(self, msg: Book) -> Booked:
        return await super().book(msg)


def test_a_subclass_that_overrides_a_handler_keeps_its_bases_effect_for_compensations() -> None:
    # Before the fix: "external" for the subclass, so its compensation read KV records that the
    # memory-recording forward never wrote, found nothing, and answered the noop: the effect stood.
    assert class_effect(MemoryCourier) == "memory"
    assert class_effect(SlowMemoryCourier) == "memory"
