"""The choreographed shop reaches the business outcome of the orchestrated saga for the same orders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import nats

from corps import ActorSystem
from corps.examples.shop import choreographed as choreo
from corps.examples.shop.messages import INITIAL_STOCK, GetLedger, GetStock, OrderPlaced, OrderRequest
from tests.integration.events_domain import Log, OutcomeWatcher, WatchedNotifications, WatchedSales

ORDERS = [
    OrderRequest("o1", "apple", 3, "4242", 300, "1 Main St"),         # completes
    OrderRequest("o2", "pear", 2, "declined", 130, "2 Main St"),      # card declined: stock released
    OrderRequest("o3", "plum", 6, "4242", 600, "3 Main St"),          # out of stock (5 in stock)
    OrderRequest("o4", "apple", 1, "5555", 50, "nowhere"),            # no courier: refund, release
    OrderRequest("o5", "pear", 4, "5555", 260, "5 Main St"),          # completes
    OrderRequest("o6", "plum", 5, "4242", 500, "6 Main St"),          # completes (exactly the stock)
]
EXPECTED_STATUS = {"o1": "completed", "o2": "cancelled", "o3": "cancelled", "o4": "cancelled",
                   "o5": "completed", "o6": "completed"}


async def choreographed_outcome(system: ActorSystem) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    await choreo.start(system)
    await system.spawn(OutcomeWatcher, "watcher")
    for order in ORDERS:
        await system.publish(OrderPlaced(order), msg_id=f"order-placed-{order.order_id}")
    # A duplicate that escapes the stream's dedupe (new Nats-Msg-Id): no second effect.
    nc = await nats.connect(system.url)
    try:
        await nc.jetstream().publish(f"{system.namespace}.events.OrderPlaced",
                                     msgspec.msgpack.encode(OrderPlaced(ORDERS[0])),
                                     headers={"Nats-Msg-Id": "a-republish-of-o1"})
    finally:
        await nc.close()
    # Each Order entity publishes its end (OrderCompleted / OrderCancelled): wait on those events.
    statuses = dict(await OutcomeWatcher.wait_for(system.namespace, {o.order_id for o in ORDERS}))
    inventory = system.ref(choreo.Inventory, choreo.INVENTORY)
    stock = {sku: (await inventory.ask(GetStock(sku))).available for sku in INITIAL_STOCK}
    money = (await system.ref(choreo.Payments, choreo.PAYMENTS).ask(GetLedger())).captured
    return stock, {k: v for k, v in money.items() if v}, statuses


def expected_by_the_rules() -> tuple[dict[str, int], dict[str, int]]:
    stock = dict(INITIAL_STOCK)
    money: dict[str, int] = {}
    for o in ORDERS:
        if EXPECTED_STATUS[o.order_id] == "completed":
            stock[o.sku] -= o.qty
            money[o.card] = money.get(o.card, 0) + o.amount
    return stock, money


async def orchestrated_outcome(system: ActorSystem) -> tuple[dict[str, int], dict[str, int]]:
    from corps.examples.shop import orchestrated as orch

    await system.spawn(orch.Inventory, orch.WAREHOUSE)
    await system.spawn(orch.Payments, orch.PAYMENTS)
    await system.spawn(orch.Shipping, orch.COURIER)
    ids = [await system.start_saga(orch.PlaceOrder, order, saga_id=f"s-{order.order_id}") for order in ORDERS]
    for saga_id in ids:
        await system.wait_saga(saga_id, timeout=20)
    inventory = system.ref(orch.Inventory, orch.WAREHOUSE)
    stock = {sku: (await inventory.ask(GetStock(sku))).available for sku in INITIAL_STOCK}
    money = (await system.ref(orch.Payments, orch.PAYMENTS).ask(GetLedger())).captured
    return stock, {k: v for k, v in money.items() if v}


async def test_choreographed_and_orchestrated_shops_agree_on_stock_and_money(
    actor_system_factory: Callable[..., Any],
) -> None:
    choreo_system = await actor_system_factory()
    stock, money, statuses = await choreographed_outcome(choreo_system)
    assert statuses == EXPECTED_STATUS
    assert (stock, money) == expected_by_the_rules()
    orch_system = await actor_system_factory(namespace=f"{choreo_system.namespace}o")
    assert await orchestrated_outcome(orch_system) == (stock, money)


async def test_the_hybrid_orders_context_publishes_outcomes_that_other_contexts_consume(
    actor_system: ActorSystem,
) -> None:
    from corps.examples.shop import hybrid

    WatchedNotifications.log = notified = Log()
    WatchedSales.log = counted = Log()
    orders = await actor_system.spawn(hybrid.OrdersContext, "orders")
    notifications = await actor_system.spawn(WatchedNotifications, "notify")
    sales = await actor_system.spawn(WatchedSales, "sales")
    for order in ORDERS:
        await orders.ask(hybrid.SubmitOrder(order))
    await orders.ask(hybrid.SubmitOrder(ORDERS[0]))  # submitted twice: one event (same msg id)
    await notified.wait_for(len(ORDERS))  # the other contexts follow asynchronously
    await counted.wait_for(len(ORDERS))
    assert len((await notifications.ask(hybrid.GetSent())).lines) == len(ORDERS)
    live = await sales.ask(hybrid.GetSales())
    assert live == hybrid.Sales(4, {"card declined": 1, "undeliverable": 1})
    assert await hybrid.rebuild(actor_system) == live  # the projection rebuilt by replay agrees
