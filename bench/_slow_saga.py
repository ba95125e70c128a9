"""A saga whose participants wait on something outside (``STEP_LATENCY`` per step), for the
latency-bound scale-out row (``bench/saga_scale.py``).

``SlowOrder`` has PlaceOrder's three requests, each sent to one of ``INSTANCES`` keyed instances
of ``Remote`` (the key: the order id's CRC32 modulo ``INSTANCES``). A handler holds its
instance's mailbox while it waits, as any handler does, so one instance takes at most
1 / STEP_LATENCY requests a second: the class scales by instances, and each key's requests stay
one at a time, in order. ``Remote`` counts what it sees: handlers in flight per instance (never
more than one: the per-key order) and across the class (how many instances worked at once).
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

from corps import Actor, ActorOptions, handler
from corps.examples.shop.messages import (
    BookCourier,
    ChargeCard,
    OrderRequest,
    PaymentCaptured,
    ReserveStock,
    ShipmentBooked,
    StockReserved,
)
from corps.saga import NOTHING_TO_UNDO, Saga, SagaContext, Step, idempotent

STEP_LATENCY: Final = 0.02
"""Seconds a participant waits per step: a call to a service outside (a card network, a courier)."""
INSTANCES: Final = 512
"""Keyed instances of ``Remote``: enough that sagas in flight rarely share one (two that do take
turns: the per-key order), so the participants are not what limits the coordinators."""


class Gauge:
    """Handlers in flight, now and at most: per instance and across the class."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.most_per_key = 0

    def reset(self) -> None:
        self.now = self.most = self.most_per_key = 0


GAUGE: Final = Gauge()


class Remote(Actor, options=ActorOptions(name="BenchRemote")):
    """A participant that waits ``STEP_LATENCY`` per request (records in memory: its effect is a read)."""

    def __init__(self) -> None:
        self.busy = 0

    async def _call(self) -> None:
        self.busy += 1
        GAUGE.now += 1
        GAUGE.most, GAUGE.most_per_key = max(GAUGE.most, GAUGE.now), max(GAUGE.most_per_key, self.busy)
        try:
            await asyncio.sleep(STEP_LATENCY)  # the outside service's answer time, not a synchronisation
        finally:
            self.busy -= 1
            GAUGE.now -= 1

    @handler
    @idempotent(effect="memory")
    async def reserve(self, msg: ReserveStock) -> StockReserved:
        await self._call()
        return StockReserved(msg.order_id, msg.sku, msg.qty)

    @handler
    @idempotent(effect="memory")
    async def charge(self, msg: ChargeCard) -> PaymentCaptured:
        await self._call()
        return PaymentCaptured(msg.order_id, msg.card, msg.amount)

    @handler
    @idempotent(effect="memory")
    async def book(self, msg: BookCourier) -> ShipmentBooked:
        await self._call()
        return ShipmentBooked(msg.order_id, f"TRK-{msg.order_id}")


def instance(s: SagaContext[OrderRequest]) -> str:
    """The ``Remote`` instance an order's steps go to."""
    return f"k{zlib.crc32(s.input.order_id.encode()) % INSTANCES}"


class SlowOrder(Saga[OrderRequest]):
    """PlaceOrder's requests against ``Remote`` (nothing to undo: the bench's sagas all complete)."""

    steps = (
        Step("reserve", to=Remote, key=instance, undo=NOTHING_TO_UNDO, uncertain_is_safe=True,
             request=lambda s: ReserveStock(s.input.order_id, s.input.sku, s.input.qty)),
        Step("charge", to=Remote, key=instance, undo=NOTHING_TO_UNDO, uncertain_is_safe=True,
             request=lambda s: ChargeCard(s.input.order_id, s.input.card, s.input.amount)),
        Step("ship", to=Remote, key=instance, undo=NOTHING_TO_UNDO, uncertain_is_safe=True,
             request=lambda s: BookCourier(s.input.order_id, s.input.address)),
    )


REMOTES: Final = tuple((Remote, f"k{i}") for i in range(INSTANCES))
"""What the participants' system spawns: every keyed instance."""
