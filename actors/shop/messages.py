"""Messages of the reference shop, shared by the orchestrated and choreographed flows.

In the choreography these messages are events, and each carries what its consumers need
(event-carried state transfer): no service has to remember an earlier event to handle a later
one, so a service restarted from nothing handles the rest of an order's flow. The fields only the
choreography needs have defaults where the orchestrated saga uses the same message as a reply:
the saga has the order in its input and leaves them empty, and empty they stay off the wire
(``omit_defaults``), so the saga's replies are what they always were.
"""

from __future__ import annotations

from corps import Message, Request

# -- the order ---------------------------------------------------------------------------


class OrderRequest(Message):
    """What a customer orders: the input of the PlaceOrder saga and of the OrderPlaced event."""

    order_id: str
    sku: str
    qty: int
    card: str
    amount: int
    """Price in cents."""
    address: str


# -- inventory ---------------------------------------------------------------------------


class StockReserved(Message, omit_defaults=True):
    order_id: str
    sku: str
    qty: int
    # choreography: what the payment needs, and the shipping after it
    card: str = ""
    amount: int = 0
    address: str = ""


class StockReleased(Message):
    order_id: str
    sku: str
    qty: int


class ReserveStock(Request[StockReserved]):
    order_id: str
    sku: str
    qty: int


class ReleaseStock(Request[StockReleased]):
    order_id: str
    sku: str
    qty: int


class StockLevel(Message):
    sku: str
    available: int
    reserved: int


class GetStock(Request[StockLevel]):
    sku: str


# -- payments ----------------------------------------------------------------------------


class PaymentCaptured(Message, omit_defaults=True):
    order_id: str
    card: str
    amount: int
    # choreography: where to ship, and what to release if no courier takes the order
    address: str = ""
    sku: str = ""
    qty: int = 0


class PaymentRefunded(Message, omit_defaults=True):
    order_id: str
    card: str
    amount: int
    # choreography: the stock to release once the money is back
    sku: str = ""
    qty: int = 0


class ChargeCard(Request[PaymentCaptured]):
    order_id: str
    card: str
    amount: int


class RefundCard(Request[PaymentRefunded]):
    order_id: str
    card: str
    amount: int


class Ledger(Message):
    """Money taken in, per card, net of refunds."""

    captured: dict[str, int]


class GetLedger(Request[Ledger]):
    pass


# -- shipping ----------------------------------------------------------------------------


class ShipmentBooked(Message):
    order_id: str
    tracking: str


class ShipmentCancelled(Message):
    order_id: str
    tracking: str


class BookCourier(Request[ShipmentBooked]):
    order_id: str
    address: str


class CancelCourier(Request[ShipmentCancelled]):
    order_id: str


class Bookings(Message):
    booked: dict[str, str]
    """order id -> tracking number, for every booking that stands."""


class GetBookings(Request[Bookings]):
    pass


# -- events of the choreographed flow (and domain events of the hybrid) ------------------


class OrderPlaced(Message):
    order: OrderRequest


class OutOfStock(Message):
    order_id: str
    sku: str
    qty: int


class PaymentDeclined(Message):
    order_id: str
    card: str
    reason: str
    sku: str
    """The stock to release (with ``qty``)."""
    qty: int


class OrderCompleted(Message):
    order_id: str
    tracking: str


class OrderCancelled(Message):
    order_id: str
    reason: str


# -- the business rules both styles share ------------------------------------------------

DECLINED_CARDS = frozenset({"4000-0000-0000-0002", "declined"})
"""Cards the payment provider refuses (as test card numbers do)."""

UNDELIVERABLE = "nowhere"
"""An address no courier accepts."""

INITIAL_STOCK: dict[str, int] = {"apple": 100, "pear": 50, "plum": 5}


# -- added for the choreographed flow -----------------------------------------------------


class ShipmentFailed(Message):
    """No courier took the order (choreography: triggers the refund, then the stock release)."""

    order_id: str
    reason: str
    card: str
    """The charge to refund (with ``amount``), then the stock to release (``sku``, ``qty``)."""
    amount: int
    sku: str
    qty: int
