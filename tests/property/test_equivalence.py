"""Invariant 5 (S12): the orchestrated and choreographed shops reach the same final business state.

For the same orders and the same faults, the PlaceOrder saga (orchestration) and the event-driven
shop (choreography) must end with the same stock, the same money taken and the same outcome per
order. Orders go one at a time, each to its end, in both flows: with contention for stock, the
outcome depends on the order of reservations, and one-at-a-time makes it the same in both.

The fault plan, per order, is what both flows can express:

* duplicate delivery: choreography republishes OrderPlaced under a new Nats-Msg-Id (the stream's
  dedupe does not catch it); orchestration starts the saga again and delivers its first step
  request again with the same idempotency key;
* a transient failure at one service (reserve, charge or ship) for that order: the service's
  handler raises once; orchestration retries the step, choreography redelivers the event;
* the business refusals the orders themselves carry (stock, declined cards, undeliverable).

Not expressed: timeouts (choreography has no request to time out; a slow consumer is redelivered
after ack_wait, 4 s by default, too slow for a property test).
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import anyio
import anyio.from_thread
from hypothesis import given, settings
from hypothesis import strategies as st

from corps import ActorOptions, ActorSystem, RemoteError
from corps.examples.shop import choreographed as choreo
from corps.examples.shop.messages import (
    INITIAL_STOCK,
    BookCourier,
    ChargeCard,
    GetLedger,
    GetStock,
    OrderPlaced,
    OrderRequest,
    PaymentCaptured,
    ReserveStock,
    StockReserved,
)
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import SagaStatus
from corps.testing import shop_orders
from corps.wire._embedded import EmbeddedServer
from tests.integration.events_domain import OutcomeWatcher

Outcome = tuple[dict[str, int], dict[str, int], dict[str, str], set[tuple[str, str]]]
"""(stock per sku, money taken per card, status per order id, injected faults that fired)"""

async def choreographed(url: str, orders: list[OrderRequest], duplicates: list[bool],
                        flaky: list[str | None]) -> Outcome:
    namespace = f"c{secrets.token_hex(4)}"
    _inject(namespace, orders, flaky)
    async with ActorSystem(url, namespace=namespace) as system:
        for cls in (FlakyInventoryEvents, FlakyPaymentsEvents, FlakyShippingEvents):
            await system.spawn(cls, {"InventoryEvents": choreo.INVENTORY, "PaymentsEvents": choreo.PAYMENTS,
                                     "ShippingEvents": choreo.SHIPPING}[cls.actor_name])
        await system.serve_events(choreo.Order)
        await system.spawn(OutcomeWatcher, "watcher")
        for order, duplicate in zip(orders, duplicates, strict=True):
            await system.publish(OrderPlaced(order), msg_id=f"placed-{order.order_id}")
            if duplicate:
                await system.publish(OrderPlaced(order), msg_id=f"again-{order.order_id}")
            seen = await OutcomeWatcher.wait_for(namespace, {order.order_id})  # one order at a time
        inventory = system.ref(choreo.Inventory, choreo.INVENTORY)
        stock = {sku: (await inventory.ask(GetStock(sku))).available for sku in INITIAL_STOCK}
        money = (await system.ref(choreo.Payments, choreo.PAYMENTS).ask(GetLedger())).captured
    return stock, {card: v for card, v in money.items() if v}, dict(seen), _FIRED.pop(namespace, set())


async def orchestrated(url: str, orders: list[OrderRequest], duplicates: list[bool],
                       flaky: list[str | None]) -> Outcome:
    namespace = f"o{secrets.token_hex(4)}"
    _inject(namespace, orders, flaky)
    statuses: dict[str, str] = {}
    async with ActorSystem(url, namespace=namespace) as system:
        inventory = await system.spawn(FlakyInventory, WAREHOUSE)
        payments = await system.spawn(FlakyPayments, PAYMENTS)
        await system.spawn(FlakyShipping, COURIER)
        for order, duplicate in zip(orders, duplicates, strict=True):
            saga_id = await system.start_saga(PlaceOrder, order, saga_id=order.order_id)
            if duplicate:
                await system.start_saga(PlaceOrder, order, saga_id=order.order_id)  # one saga still
            info = await system.wait_saga(saga_id, timeout=20)
            if duplicate:  # the first step's request, delivered again after the saga ended
                with contextlib.suppress(RemoteError):  # a refused step is refused again: effects matter
                    await inventory.ask(ReserveStock(order.order_id, order.sku, order.qty),
                                        idempotency_key=f"{saga_id}:reserve")
            statuses[order.order_id] = "completed" if info.status is SagaStatus.COMPLETED else "cancelled"
        stock = {sku: (await inventory.ask(GetStock(sku))).available for sku in INITIAL_STOCK}
        money = (await payments.ask(GetLedger())).captured
    return stock, {card: v for card, v in money.items() if v}, statuses, _FIRED.pop(namespace, set())


# -- transient faults, injected into both shops by subclasses with the same actor names ---------

_FLAKY: dict[tuple[str, str, str], int] = {}
"""(namespace, service, order id) -> failures still to inject."""


_FIRED: dict[str, set[tuple[str, str]]] = {}
"""namespace -> the (service, order id) faults that fired: they must be the same in both flows."""


def _trip(namespace: str, service: str, order_id: str) -> None:
    left = _FLAKY.get((namespace, service, order_id), 0)
    if left:
        _FLAKY[(namespace, service, order_id)] = left - 1
        _FIRED.setdefault(namespace, set()).add((service, order_id))
        raise ConnectionError(f"injected: {service} unavailable for {order_id}")


class FlakyInventory(Inventory, options=ActorOptions(name="Inventory")):
    async def reserve(self, msg: ReserveStock) -> Any:  # type: ignore[override]
        _trip(self.system.namespace, "reserve", msg.order_id)
        return await super().reserve(msg)


class FlakyPayments(Payments, options=ActorOptions(name="Payments")):
    async def charge(self, msg: ChargeCard) -> Any:  # type: ignore[override]
        _trip(self.system.namespace, "charge", msg.order_id)
        return await super().charge(msg)


class FlakyShipping(Shipping, options=ActorOptions(name="Shipping")):
    async def book(self, msg: BookCourier) -> Any:  # type: ignore[override]
        _trip(self.system.namespace, "ship", msg.order_id)
        return await super().book(msg)


class FlakyInventoryEvents(choreo.Inventory, options=ActorOptions(name="InventoryEvents")):
    async def reserve(self, event: OrderPlaced) -> None:
        _trip(self.system.namespace, "reserve", event.order.order_id)
        await super().reserve(event)


class FlakyPaymentsEvents(choreo.Payments, options=ActorOptions(name="PaymentsEvents")):
    async def charge(self, event: StockReserved) -> None:
        _trip(self.system.namespace, "charge", event.order_id)
        await super().charge(event)


class FlakyShippingEvents(choreo.Shipping, options=ActorOptions(name="ShippingEvents")):
    async def book(self, event: PaymentCaptured) -> None:
        _trip(self.system.namespace, "ship", event.order_id)
        await super().book(event)


def _inject(namespace: str, orders: list[OrderRequest], flaky: list[str | None]) -> None:
    for order, service in zip(orders, flaky, strict=True):
        if service is not None:
            _FLAKY[(namespace, service, order.order_id)] = 1


def _unique(orders: list[Any]) -> list[Any]:
    return [o for i, o in enumerate(orders) if o.order_id not in {p.order_id for p in orders[:i]}]


@settings(max_examples=15, deadline=None)
@given(
    orders=st.lists(shop_orders(), min_size=1, max_size=5).map(_unique),
    data=st.data(),
)
def test_orchestrated_and_choreographed_shops_agree_for_the_same_orders_and_faults(
    nats_server: EmbeddedServer, orders: list[OrderRequest], data: st.DataObject
) -> None:
    n = len(orders)
    duplicates = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="duplicates")
    flaky = data.draw(st.lists(st.sampled_from([None, None, "reserve", "charge", "ship"]), min_size=n, max_size=n),
                      label="flaky")
    with anyio.from_thread.start_blocking_portal() as portal:
        by_saga = portal.call(orchestrated, nats_server.url, orders, duplicates, flaky)
        by_events = portal.call(choreographed, nats_server.url, orders, duplicates, flaky)
    assert by_events == by_saga
