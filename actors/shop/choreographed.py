"""The choreographed shop: no coordinator; each service reacts to events and publishes its own.

    OrderPlaced ──> Inventory ──> StockReserved ──> Payments ──> PaymentCaptured ──> Shipping ──> ShipmentBooked
                         └──> OutOfStock                └──> PaymentDeclined            └──> ShipmentFailed
    compensations:  PaymentDeclined ──> Inventory releases ──> StockReleased
                    ShipmentFailed ──> Payments refunds ──> PaymentRefunded ──> Inventory releases ──> StockReleased
    outcome (Order entity, keyed by order_id):  ShipmentBooked -> OrderCompleted;
                    OutOfStock or StockReleased -> OrderCancelled

Same business rules as the orchestrated saga (actors/shop/messages.py), so both reach the same
final stock and money for the same orders. The services' actor names end in ``Events``
(``InventoryEvents``...), so both styles can run side by side in one namespace.

Correct across restarts, the standard way:

* **Each event carries what its consumers need** (event-carried state transfer): StockReserved
  has the card, amount and address; PaymentCaptured the address and the stock to release should
  shipping fail; PaymentDeclined, ShipmentFailed and PaymentRefunded what to refund and release.
  No handler needs an earlier event, so a service restarted from nothing (its earlier events
  acknowledged, never delivered again) takes an order's flow up where it was.
* **A service remembers only its own business state**: Inventory its stock and the reservations
  it holds, Payments its ledger and the charges it took; Shipping nothing.
* **Idempotent by business key.** Each service records, with that state, what it did for each
  order, so an event handled again (redelivered, or an order placed twice under another event id)
  has no second effect. What a handler publishes has an id derived from the event it handles, so
  handling that event again (a crash before its ack) publishes nothing new: the stream's dedupe
  drops the repeat.

Here that state is in memory, standing in for each service's database (where the records would
be written in one transaction with the stock or the ledger, and survive). A restart starts it
afresh: an order in flight at the kill goes on against the new state, a release or refund of
something the process no longer holds still announces it (the event says what it was), and every
order ends once, with its stock and money accounted for in the stream (tests/fault, scenario 5).
"""

from __future__ import annotations

from corps import Actor, ActorOptions, ActorSystem, Message, Request, handler, on_event
from corps.examples.shop.messages import (
    DECLINED_CARDS,
    INITIAL_STOCK,
    UNDELIVERABLE,
    GetLedger,
    GetStock,
    Ledger,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OutOfStock,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentBooked,
    ShipmentFailed,
    StockLevel,
    StockReleased,
    StockReserved,
)

INVENTORY = "inventory"
PAYMENTS = "payments"
SHIPPING = "shipping"


class Inventory(Actor, options=ActorOptions(name="InventoryEvents")):
    """Stock per SKU. Reserves on OrderPlaced; releases what a PaymentDeclined or PaymentRefunded names."""

    def __init__(self) -> None:
        self.available = dict(INITIAL_STOCK)
        self.held: dict[str, tuple[str, int]] = {}
        """Order id -> (sku, qty) reserved by this process and not released."""
        self.settled: set[str] = set()
        """Orders refused or released: placed again, they reserve nothing."""

    @on_event(OrderPlaced)
    async def reserve(self, event: OrderPlaced) -> None:
        o = event.order
        if o.order_id in self.held or o.order_id in self.settled:
            return  # the same order placed again (another event id): decided already
        # Publish, then record: if the publish fails, nothing is recorded and the retry decides again.
        if self.available.get(o.sku, 0) < o.qty:
            await self.publish(OutOfStock(o.order_id, o.sku, o.qty))
            self.settled.add(o.order_id)
            return
        await self.publish(StockReserved(o.order_id, o.sku, o.qty, o.card, o.amount, o.address))
        self.available[o.sku] -= o.qty
        self.held[o.order_id] = (o.sku, o.qty)

    @on_event(PaymentDeclined, PaymentRefunded)
    async def release(self, event: PaymentDeclined | PaymentRefunded) -> None:
        hold = self.held.pop(event.order_id, None)
        if hold is not None:  # else released before, or reserved before a restart: not in this stock
            sku, qty = hold
            self.available[sku] += qty
        self.settled.add(event.order_id)
        await self.publish(StockReleased(event.order_id, event.sku, event.qty))

    @handler
    async def stock(self, msg: GetStock) -> StockLevel:
        reserved = sum(q for s, q in self.held.values() if s == msg.sku)
        return StockLevel(msg.sku, self.available.get(msg.sku, 0), reserved)


class Payments(Actor, options=ActorOptions(name="PaymentsEvents")):
    """Charges the card a StockReserved names; refunds what a ShipmentFailed names."""

    def __init__(self) -> None:
        self.captured: dict[str, int] = {}
        """Money taken per card, net of refunds."""
        self.charges: dict[str, tuple[str, int]] = {}
        """Order id -> (card, amount) charged by this process and not refunded."""
        self.settled: set[str] = set()
        """Orders declined or refunded: reserved again, they are not charged."""

    @on_event(StockReserved)
    async def charge(self, event: StockReserved) -> None:
        e = event
        if e.order_id in self.charges or e.order_id in self.settled:
            return  # the same order again (another event id): decided already
        if e.card in DECLINED_CARDS:
            await self.publish(PaymentDeclined(e.order_id, e.card, "card declined", e.sku, e.qty))
            self.settled.add(e.order_id)
            return
        await self.publish(PaymentCaptured(e.order_id, e.card, e.amount, e.address, e.sku, e.qty))
        self.captured[e.card] = self.captured.get(e.card, 0) + e.amount
        self.charges[e.order_id] = (e.card, e.amount)

    @on_event(ShipmentFailed)
    async def refund(self, event: ShipmentFailed) -> None:
        charge = self.charges.pop(event.order_id, None)
        if charge is not None:  # else refunded before, or charged before a restart: not in this ledger
            card, amount = charge
            self.captured[card] -= amount
        self.settled.add(event.order_id)
        await self.publish(PaymentRefunded(event.order_id, event.card, event.amount, event.sku, event.qty))

    @handler
    async def ledger(self, msg: GetLedger) -> Ledger:
        return Ledger(dict(self.captured))


class Shipping(Actor, options=ActorOptions(name="ShippingEvents")):
    """Books a courier to the address a PaymentCaptured carries. It keeps nothing: the outcome
    follows from the event alone, and handling it again publishes the same event, which the
    stream drops."""

    @on_event(PaymentCaptured)
    async def book(self, event: PaymentCaptured) -> None:
        e = event
        if e.address == UNDELIVERABLE:
            await self.publish(ShipmentFailed(e.order_id, f"no courier delivers to {e.address!r}",
                                              e.card, e.amount, e.sku, e.qty))
        else:
            await self.publish(ShipmentBooked(e.order_id, f"TRK-{e.order_id}"))


class OrderState(Message):
    order_id: str
    status: str
    """placed | completed | cancelled"""
    reason: str


class GetOrder(Request[OrderState]):
    pass


class Order(Actor):
    """One entity per order id, created by its first event on this node (activation); it publishes
    the outcome. Its only state is that outcome: after a restart the entity is created again by
    the next event of its order, and an outcome event it publishes again (its event redelivered)
    has the same derived id, which the stream drops."""

    def __init__(self) -> None:
        self.status = "placed"
        self.reason = ""

    @on_event(OrderPlaced, key="order.order_id")
    async def placed(self, event: OrderPlaced) -> None:
        pass  # the entity exists from here on: GetOrder answers "placed"

    @on_event(ShipmentBooked, key="order_id")
    async def shipped(self, event: ShipmentBooked) -> None:
        if self.status == "placed":
            self.status = "completed"
            await self.publish(OrderCompleted(event.order_id, event.tracking))

    @on_event(OutOfStock, StockReleased, key="order_id")
    async def cancelled(self, event: OutOfStock | StockReleased) -> None:
        if self.status == "placed":
            self.status = "cancelled"
            self.reason = "out of stock" if isinstance(event, OutOfStock) else "compensated"
            await self.publish(OrderCancelled(event.order_id, self.reason))

    @handler
    async def get(self, msg: GetOrder) -> OrderState:
        return OrderState(self.id, self.status, self.reason)


SERVICES: tuple[tuple[type[Actor], str], ...] = ((Inventory, INVENTORY), (Payments, PAYMENTS), (Shipping, SHIPPING))
"""The singletons to spawn; Order entities are activated by their events."""


async def start(system: ActorSystem) -> None:
    """Run the whole choreographed shop on ``system``: the three services and the Order entities."""
    for cls, actor_id in SERVICES:
        await system.spawn(cls, actor_id)
    await system.serve_events(Order)
