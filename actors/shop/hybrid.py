"""The hybrid: orchestration inside the orders context, choreography between contexts.

``OrdersContext`` stands in for the orders bounded context: it decides an order (where the
orchestrated ``PlaceOrder`` saga would run, see actors/shop/orchestrated.py) and publishes the
outcome as a domain event, ``OrderCompleted`` or ``OrderCancelled``, with a deterministic id.
Other contexts only listen: ``Notifications`` tells the customer, and ``SalesProjection`` keeps
analytics that can be rebuilt from the stream at any time with ``rebuild``.
"""

from __future__ import annotations

from corps import Actor, ActorSystem, Message, Request, handler, on_event
from corps.examples.shop.messages import (
    DECLINED_CARDS,
    UNDELIVERABLE,
    OrderCancelled,
    OrderCompleted,
    OrderRequest,
)


class OrderDecided(Message):
    order_id: str
    completed: bool
    reason: str


class SubmitOrder(Request[OrderDecided]):
    order: OrderRequest


class OrdersContext(Actor):
    """Stand-in for the orchestrated saga: decides by the shop's rules, then publishes the outcome."""

    @handler
    async def submit(self, msg: SubmitOrder) -> OrderDecided:
        o = msg.order
        reason = ("card declined" if o.card in DECLINED_CARDS
                  else "undeliverable" if o.address == UNDELIVERABLE else "")
        if reason:
            await self.publish(OrderCancelled(o.order_id, reason), msg_id=f"order-outcome-{o.order_id}")
        else:
            await self.publish(OrderCompleted(o.order_id, f"TRK-{o.order_id}"), msg_id=f"order-outcome-{o.order_id}")
        return OrderDecided(o.order_id, not reason, reason)


class Sent(Message):
    lines: list[str]


class GetSent(Request[Sent]):
    pass


class Notifications(Actor):
    """The notifications context: one message to the customer per outcome (idempotent by event id)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    @on_event(OrderCompleted, idempotent=True)
    async def completed(self, event: OrderCompleted) -> None:
        self.sent.append(f"{event.order_id}: on its way, tracking {event.tracking}")

    @on_event(OrderCancelled, idempotent=True)
    async def cancelled(self, event: OrderCancelled) -> None:
        self.sent.append(f"{event.order_id}: cancelled ({event.reason})")

    @handler
    async def get(self, msg: GetSent) -> Sent:
        return Sent(list(self.sent))


class Sales(Message):
    completed: int
    cancelled: dict[str, int]


class GetSales(Request[Sales]):
    pass


class Projection:
    """The analytics read model, as plain data: the same code folds live events and a replay."""

    def __init__(self) -> None:
        self.completed = 0
        self.cancelled: dict[str, int] = {}

    def apply(self, event: OrderCompleted | OrderCancelled) -> None:
        if isinstance(event, OrderCompleted):
            self.completed += 1
        else:
            self.cancelled[event.reason] = self.cancelled.get(event.reason, 0) + 1

    def snapshot(self) -> Sales:
        return Sales(self.completed, dict(self.cancelled))


class SalesProjection(Actor):
    """The analytics context: counts outcomes as they happen."""

    def __init__(self) -> None:
        self.view = Projection()

    @on_event(OrderCompleted, OrderCancelled)
    async def outcome(self, event: OrderCompleted | OrderCancelled) -> None:
        self.view.apply(event)

    @handler
    async def get(self, msg: GetSales) -> Sales:
        return self.view.snapshot()


async def rebuild(system: ActorSystem, from_seq: int | None = None) -> Sales:
    """Rebuild the sales projection from the stream (a new consumer from ``from_seq``, or the start)."""
    view = Projection()
    async for event, _seq in system.events.replay(OrderCompleted, OrderCancelled, from_seq=from_seq):
        view.apply(event)
    return view.snapshot()
