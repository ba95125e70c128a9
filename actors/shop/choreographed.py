"""The choreographed shop: no coordinator; each service reacts to events and publishes its own.

    OrderPlaced ──> Inventory ──> StockReserved ──> Payments ──> PaymentCaptured ──> Shipping ──> ShipmentBooked
                         └──> OutOfStock                └──> PaymentDeclined            └──> ShipmentFailed
    compensations:  PaymentDeclined ──> Inventory releases ──> StockReleased
                    ShipmentFailed ──> Payments refunds ──> PaymentRefunded ──> Inventory releases ──> StockReleased
    outcome (Order entity, keyed by order_id):  ShipmentBooked -> OrderCompleted;
                    OutOfStock or StockReleased -> OrderCancelled

Same business rules as the orchestrated saga (actors/shop/messages.py), so both reach the same
final stock and money for the same orders. The services' actor names end in ``Events``
(``InventoryEvents``...), so both styles can run side by side in one namespace. Every effect is
keyed by order id, so a redelivered or duplicated event has no second effect (the handlers are
idempotent by business key).
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
    OrderRequest,
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
    """Stock per SKU. Reserves on OrderPlaced; releases when the payment fails or is refunded."""

    def __init__(self) -> None:
        self.available = dict(INITIAL_STOCK)
        self.holds: dict[str, tuple[str, int]] = {}
        self.done: set[str] = set()  # orders already decided here: a duplicate event is ignored

    @on_event(OrderPlaced)
    async def reserve(self, event: OrderPlaced) -> None:
        o = event.order
        if o.order_id in self.done:
            return
        self.done.add(o.order_id)
        if self.available.get(o.sku, 0) < o.qty:
            await self.publish(OutOfStock(o.order_id, o.sku, o.qty))
            return
        self.available[o.sku] -= o.qty
        self.holds[o.order_id] = (o.sku, o.qty)
        await self.publish(StockReserved(o.order_id, o.sku, o.qty))

    @on_event(PaymentDeclined, PaymentRefunded)
    async def release(self, event: PaymentDeclined | PaymentRefunded) -> None:
        hold = self.holds.pop(event.order_id, None)
        if hold is None:
            return  # released before (a duplicate), or never reserved
        sku, qty = hold
        self.available[sku] += qty
        await self.publish(StockReleased(event.order_id, sku, qty))

    @handler
    async def stock(self, msg: GetStock) -> StockLevel:
        reserved = sum(q for s, q in self.holds.values() if s == msg.sku)
        return StockLevel(msg.sku, self.available.get(msg.sku, 0), reserved)


class Payments(Actor, options=ActorOptions(name="PaymentsEvents")):
    """Charges once the stock is reserved; refunds when shipping fails."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderRequest] = {}
        self.captured: dict[str, int] = {}
        self.charged: dict[str, tuple[str, int]] = {}
        self.decided: set[str] = set()

    @on_event(OrderPlaced)
    async def remember(self, event: OrderPlaced) -> None:
        self.orders[event.order.order_id] = event.order

    @on_event(StockReserved)
    async def charge(self, event: StockReserved) -> None:
        order = self.orders[event.order_id]  # KeyError: OrderPlaced not seen yet; retried
        if order.order_id in self.decided:
            return
        self.decided.add(order.order_id)
        if order.card in DECLINED_CARDS:
            await self.publish(PaymentDeclined(order.order_id, order.card, "card declined"))
            return
        self.captured[order.card] = self.captured.get(order.card, 0) + order.amount
        self.charged[order.order_id] = (order.card, order.amount)
        await self.publish(PaymentCaptured(order.order_id, order.card, order.amount))

    @on_event(ShipmentFailed)
    async def refund(self, event: ShipmentFailed) -> None:
        charge = self.charged.pop(event.order_id, None)
        if charge is None:
            return
        card, amount = charge
        self.captured[card] -= amount
        await self.publish(PaymentRefunded(event.order_id, card, amount))

    @handler
    async def ledger(self, msg: GetLedger) -> Ledger:
        return Ledger(dict(self.captured))


class Shipping(Actor, options=ActorOptions(name="ShippingEvents")):
    """Books a courier once the payment is captured."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.decided: set[str] = set()

    @on_event(OrderPlaced)
    async def remember(self, event: OrderPlaced) -> None:
        self.addresses[event.order.order_id] = event.order.address

    @on_event(PaymentCaptured)
    async def book(self, event: PaymentCaptured) -> None:
        address = self.addresses[event.order_id]
        if event.order_id in self.decided:
            return
        self.decided.add(event.order_id)
        if address == UNDELIVERABLE:
            await self.publish(ShipmentFailed(event.order_id, f"no courier delivers to {address!r}"))
        else:
            await self.publish(ShipmentBooked(event.order_id, f"TRK-{event.order_id}"))


class OrderState(Message):
    order_id: str
    status: str
    """placed | completed | cancelled"""
    reason: str


class GetOrder(Request[OrderState]):
    pass


class Order(Actor):
    """One entity per order id, created by its OrderPlaced (activation); it publishes the outcome."""

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
