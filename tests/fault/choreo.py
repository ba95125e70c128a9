"""The driver's side of an event scenario: publish orders, read the business outcome off the stream.

The choreographed shop has no saga log: an order's outcome is the events its services published
(OrderCompleted or OrderCancelled, published by its Order entity). The driver reads them with
``system.events.replay`` (a new ephemeral consumer each time, never the services' durable ones),
so what it sees is what any other consumer of the stream would see.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any, Final

import anyio

from corps import ActorSystem, CorpsError
from corps.examples.shop.messages import (
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRequest,
    OutOfStock,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentBooked,
    ShipmentFailed,
    StockReleased,
    StockReserved,
)
from tests.fault.driver import KINDS, POLL, Result
from tests.fault.world import SagaWorld

BUSINESS: Final = (OrderPlaced, StockReserved, OutOfStock, PaymentCaptured, PaymentDeclined, ShipmentBooked,
                   ShipmentFailed, PaymentRefunded, StockReleased, OrderCompleted, OrderCancelled)


def order_of(event: Any) -> str:
    return str(event.order.order_id if isinstance(event, OrderPlaced) else event.order_id)


class Outcomes:
    """Business events per (order id, event type), as the stream holds them."""

    def __init__(self, system: ActorSystem, order_ids: set[str]) -> None:
        self.system = system
        self.order_ids = order_ids
        self.counts: Counter[tuple[str, str]] = Counter()
        self.ended_at: dict[str, float] = {}
        self.redriven: set[str] = set()
        """Orders whose OrderPlaced was redriven: the stream holds it twice, by design."""

    async def read(self) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        with contextlib.suppress(CorpsError, TimeoutError):
            async for event, _ in self.system.events.replay(*BUSINESS):
                counts[(order_of(event), type(event).__name__)] += 1
            for oid in self.redriven:
                counts[(oid, "OrderPlaced")] -= 1
            self.counts = counts
        t = time.monotonic()
        for oid in self.order_ids:
            if oid not in self.ended_at and self.ended(oid):
                self.ended_at[oid] = t

    def n(self, oid: str, event: type) -> int:
        return self.counts[(oid, event.__name__)]

    def ended(self, oid: str) -> bool:
        return self.n(oid, OrderCompleted) + self.n(oid, OrderCancelled) > 0

    def all_ended(self) -> bool:
        return all(self.ended(oid) for oid in self.order_ids)

    async def until(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            await self.read()
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            await anyio.sleep(POLL * 4)  # a replay reads the whole stream: poll it less often


async def publish_orders(w: SagaWorld, orders: dict[str, tuple[OrderRequest, str]]) -> set[str]:
    """Publish one OrderPlaced per order (deterministic msg ids); the ids the stream acknowledged."""
    acked = set()
    for oid, (order, _) in orders.items():
        with contextlib.suppress(CorpsError):
            await w.system.publish(OrderPlaced(order), msg_id=f"placed-{oid}")
            acked.add(oid)
    return acked


def check_orders(result: Result, orders: dict[str, tuple[OrderRequest, str]], acked: set[str],
                 out: Outcomes) -> None:
    """Fill ``result``: each order must end once, as its kind says, with every effect undone or standing
    as the outcome requires (stock and money conserved), and no business event twice."""
    result.started = len(orders)
    for oid, (_, kind) in sorted(orders.items()):
        if oid in acked and out.n(oid, OrderPlaced) == 0:
            result.lost += 1
            result.problems.append(f"{oid}: OrderPlaced acknowledged, not in the stream")
            continue
        completed, cancelled = out.n(oid, OrderCompleted), out.n(oid, OrderCancelled)
        held = out.n(oid, StockReserved) - out.n(oid, StockReleased)
        paid = out.n(oid, PaymentCaptured) - out.n(oid, PaymentRefunded)
        if not completed and not cancelled:
            result.stuck += 1
            seen = {t: c for (o, t), c in out.counts.items() if o == oid}
            result.problems.append(f"{oid} ({kind}): no outcome; its events: {seen}")
            continue
        if completed and cancelled:
            result.unexpected += 1
            result.problems.append(f"{oid}: both completed and cancelled")
        elif completed:
            result.completed += 1
            if KINDS[kind][1].value != "COMPLETED" or (held, paid, out.n(oid, ShipmentBooked)) != (1, 1, 1):
                result.unexpected += 1
                result.problems.append(f"{oid} ({kind}): completed with stock {held}, money {paid}")
        else:
            result.compensated += 1
            if kind == "ok" or (held, paid) != (0, 0):
                result.unexpected += 1
                seen = {t: c for (o, t), c in out.counts.items() if o == oid}
                result.problems.append(f"{oid} ({kind}): cancelled with stock held {held}, money kept {paid}: {seen}")
    for (oid, name), count in sorted(out.counts.items()):
        if oid not in orders:
            result.unexpected += 1
            result.problems.append(f"{oid}: a {name} for an order never placed")
        if count > 1:
            result.dup_effects += 1
            result.problems.append(f"{oid}: {name} {count} times in the stream")


def redeliveries(effects: list[dict[str, Any]]) -> int:
    """Handled lines beyond the first for one (handler, event id): deliveries handled again."""
    seen = Counter((e["handler"], e["key"]) for e in effects if e["kind"] == "handled")
    return sum(c - 1 for c in seen.values())
