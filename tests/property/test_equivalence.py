"""Invariant 5 (S12): the orchestrated and choreographed shops reach the same final business state.

For the same orders and the same faults, the PlaceOrder saga (orchestration) and the event-driven
shop (choreography) must end with the same stock, the same money taken and the same outcome per
order. Orders go one at a time, each to its end, in both flows: with contention for stock, the
outcome depends on the order of reservations, and one-at-a-time makes it the same in both.

The faults both flows can express today are duplicate delivery (choreography: an OrderPlaced
republished under a new Nats-Msg-Id, so the stream's dedupe does not catch it; orchestration: the
saga started again and its first step request delivered again with the same idempotency key) and
the business refusals the orders themselves carry (stock, declined cards, undeliverable addresses).
Transient handler failures and timeouts on the choreographed side need fault injection into
``@on_event`` consumers, which does not exist yet.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import anyio
import anyio.from_thread
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.shop import choreographed as choreo
from actors.shop.messages import (
    INITIAL_STOCK,
    GetLedger,
    GetStock,
    OrderPlaced,
    OrderRequest,
    ReserveStock,
)
from actors.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from runtime import ActorSystem, RemoteError
from runtime._embedded import EmbeddedServer
from runtime.saga import SagaStatus
from runtime.testing import shop_orders
from tests.integration.events_domain import OutcomeWatcher

Outcome = tuple[dict[str, int], dict[str, int], dict[str, str]]
"""(stock per sku, money taken per card, status per order id)"""

async def choreographed(url: str, orders: list[OrderRequest], duplicates: list[bool]) -> Outcome:
    namespace = f"c{secrets.token_hex(4)}"
    async with ActorSystem(url, namespace=namespace) as system:
        await choreo.start(system)
        await system.spawn(OutcomeWatcher, "watcher")
        for order, duplicate in zip(orders, duplicates, strict=True):
            await system.publish(OrderPlaced(order), msg_id=f"placed-{order.order_id}")
            if duplicate:
                await system.publish(OrderPlaced(order), msg_id=f"again-{order.order_id}")
            seen = await OutcomeWatcher.wait_for(namespace, {order.order_id})  # one order at a time
        inventory = system.ref(choreo.Inventory, choreo.INVENTORY)
        stock = {sku: (await inventory.ask(GetStock(sku))).available for sku in INITIAL_STOCK}
        money = (await system.ref(choreo.Payments, choreo.PAYMENTS).ask(GetLedger())).captured
    return stock, {card: v for card, v in money.items() if v}, dict(seen)


async def orchestrated(url: str, orders: list[OrderRequest], duplicates: list[bool]) -> Outcome:
    namespace = f"o{secrets.token_hex(4)}"
    statuses: dict[str, str] = {}
    async with ActorSystem(url, namespace=namespace) as system:
        inventory = await system.spawn(Inventory, WAREHOUSE)
        payments = await system.spawn(Payments, PAYMENTS)
        await system.spawn(Shipping, COURIER)
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
    return stock, {card: v for card, v in money.items() if v}, statuses


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
    duplicates = data.draw(st.lists(st.booleans(), min_size=len(orders), max_size=len(orders)), label="duplicates")
    with anyio.from_thread.start_blocking_portal() as portal:
        by_saga = portal.call(orchestrated, nats_server.url, orders, duplicates)
        by_events = portal.call(choreographed, nats_server.url, orders, duplicates)
    assert by_events == by_saga
