"""The orchestrated shop: participants answer requests; a PlaceOrder saga coordinates them.

Inventory, Payments and Shipping are ordinary actors. Their forward handlers are
``@idempotent`` (a retried step has no second effect) and their compensations are
``@compensation`` (undoing a step that never ran is a recorded no-op). Their effects are their
own state (stock, a ledger, bookings held in the instance), so they declare
``effect="memory"``: the idempotency records live and die with that state, with no KV round trip
per step. A participant whose effect is outside the process (a real card network) keeps the
default, ``effect="external"``: records in JetStream KV, as durable as the effect. A refusal that no retry
can fix (out of stock, a declined card, an address no courier serves) raises StepRejected:
the saga compensates at once.
"""

from __future__ import annotations

from corps import Actor, StepRejected, handler
from corps.examples.shop.messages import (
    DECLINED_CARDS,
    INITIAL_STOCK,
    UNDELIVERABLE,
    BookCourier,
    Bookings,
    CancelCourier,
    ChargeCard,
    GetBookings,
    GetLedger,
    GetStock,
    Ledger,
    OrderRequest,
    PaymentCaptured,
    PaymentRefunded,
    RefundCard,
    ReleaseStock,
    ReserveStock,
    ShipmentBooked,
    ShipmentCancelled,
    StockLevel,
    StockReleased,
    StockReserved,
)
from corps.saga import Retry, Saga, Step, compensation, idempotent


class Inventory(Actor):
    """Stock of every SKU, one instance per warehouse."""

    def __init__(self) -> None:
        self.available = dict(INITIAL_STOCK)
        self.reserved: dict[str, int] = {}

    @handler
    @idempotent(effect="memory")
    async def reserve(self, msg: ReserveStock) -> StockReserved:
        if self.available.get(msg.sku, 0) < msg.qty:
            raise StepRejected(f"out of stock: {msg.qty} x {msg.sku}, {self.available.get(msg.sku, 0)} left")
        self.available[msg.sku] -= msg.qty
        self.reserved[msg.sku] = self.reserved.get(msg.sku, 0) + msg.qty
        return StockReserved(msg.order_id, msg.sku, msg.qty)

    @handler
    @compensation(noop=lambda msg: StockReleased(msg.order_id, msg.sku, 0))
    async def release(self, msg: ReleaseStock) -> StockReleased:
        self.available[msg.sku] = self.available.get(msg.sku, 0) + msg.qty
        self.reserved[msg.sku] -= msg.qty
        return StockReleased(msg.order_id, msg.sku, msg.qty)

    @handler
    async def stock(self, msg: GetStock) -> StockLevel:
        return StockLevel(msg.sku, self.available.get(msg.sku, 0), self.reserved.get(msg.sku, 0))


class Payments(Actor):
    """Charges and refunds cards; some cards decline."""

    def __init__(self) -> None:
        self.captured: dict[str, int] = {}

    @handler
    @idempotent(effect="memory")
    async def charge(self, msg: ChargeCard) -> PaymentCaptured:
        if msg.card in DECLINED_CARDS:
            raise StepRejected(f"card {msg.card} declined")
        self.captured[msg.card] = self.captured.get(msg.card, 0) + msg.amount
        return PaymentCaptured(msg.order_id, msg.card, msg.amount)

    @handler
    @compensation(noop=lambda msg: PaymentRefunded(msg.order_id, msg.card, 0))
    async def refund(self, msg: RefundCard) -> PaymentRefunded:
        self.captured[msg.card] = self.captured.get(msg.card, 0) - msg.amount
        return PaymentRefunded(msg.order_id, msg.card, msg.amount)

    @handler
    async def ledger(self, msg: GetLedger) -> Ledger:
        return Ledger(dict(self.captured))


class Shipping(Actor):
    """Books couriers; one address is never served. Cancelling an order never booked is a no-op."""

    def __init__(self) -> None:
        self.booked: dict[str, str] = {}

    @handler
    @idempotent(effect="memory")
    async def book(self, msg: BookCourier) -> ShipmentBooked:
        if msg.address == UNDELIVERABLE:
            raise StepRejected(f"no courier delivers to {msg.address!r}")
        tracking = f"TRK-{msg.order_id}"
        self.booked[msg.order_id] = tracking
        return ShipmentBooked(msg.order_id, tracking)

    @handler
    @compensation(noop=lambda msg: ShipmentCancelled(msg.order_id, ""))
    async def cancel(self, msg: CancelCourier) -> ShipmentCancelled:
        return ShipmentCancelled(msg.order_id, self.booked.pop(msg.order_id, ""))

    @handler
    async def bookings(self, msg: GetBookings) -> Bookings:
        return Bookings(dict(self.booked))


WAREHOUSE = "main"
PAYMENTS = "psp"
COURIER = "courier"

# Rides out a participant that is down for up to ~10 s (a restart, a rolling deploy): its requests
# fail at once with NoResponders (or time out) and are retried 0.2, 0.4, 0.8, 1.6 s apart, then
# every 2 s: 13 s of delays in all, at least 11.7 s with the jitter. A refusal (StepRejected: out
# of stock, a declined card) is never retried, so business outcomes do not change.
_RETRY = Retry(max_attempts=10, interval=0.2, backoff_rate=2.0, max_delay=2.0, jitter=0.1)


class PlaceOrder(Saga[OrderRequest]):
    """Reserve stock, charge the card, book a courier; on failure undo what was done, in reverse."""

    steps = (
        Step("reserve", to=Inventory, key=WAREHOUSE,
             request=lambda s: ReserveStock(s.input.order_id, s.input.sku, s.input.qty),
             undo=lambda s: ReleaseStock(s.input.order_id, s.input.sku, s.input.qty),
             timeout=2.0, retry=_RETRY),
        Step("charge", to=Payments, key=PAYMENTS,
             request=lambda s: ChargeCard(s.input.order_id, s.input.card, s.input.amount),
             undo=lambda s: RefundCard(s.input.order_id, s.input.card, s.input.amount),
             timeout=2.0, retry=_RETRY),
        # The last step, and still compensated: a booking that timed out may land after the saga
        # gave up on it (the step ends UNCERTAIN), so its undo cancels whatever was booked.
        Step("ship", to=Shipping, key=COURIER,
             request=lambda s: BookCourier(s.input.order_id, s.input.address),
             undo=lambda s: CancelCourier(s.input.order_id),
             timeout=2.0, retry=_RETRY),
    )
