"""Messages of the reference shop, shared by the orchestrated and choreographed flows."""

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


class StockReserved(Message):
    order_id: str
    sku: str
    qty: int


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


class PaymentCaptured(Message):
    order_id: str
    card: str
    amount: int


class PaymentRefunded(Message):
    order_id: str
    card: str
    amount: int


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
