"""``corps demo`` steps for the shop: the orchestrated PlaceOrder saga, every outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corps.examples.shop.messages import UNDELIVERABLE, GetLedger, GetStock, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping

if TYPE_CHECKING:
    from corps.examples.walkthrough import Demo, Line

ORDERS = (
    ("a good order", OrderRequest("order-1", "apple", 3, "visa", 1200, "1 Main St")),
    ("too many plums", OrderRequest("order-2", "plum", 50, "visa", 9900, "1 Main St")),
    ("a declined card", OrderRequest("order-3", "pear", 1, "declined", 300, "1 Main St")),
    ("nowhere to ship", OrderRequest("order-4", "pear", 2, "visa", 600, UNDELIVERABLE)),
)


async def orchestrated_orders(demo: Demo) -> list[Line]:
    """Run four orders through the PlaceOrder saga: one completes, three fail at different steps."""
    system = demo.system
    inventory = await system.spawn(Inventory, WAREHOUSE)
    payments = await system.spawn(Payments, PAYMENTS)
    await system.spawn(Shipping, COURIER)
    lines: list[Line] = []
    for title, order in ORDERS:
        saga_id = await system.start_saga(PlaceOrder, order, saga_id=order.order_id)
        info = await system.wait_saga(saga_id, timeout=10)
        done = [t.step for t in info.history if t.kind == "succeeded" and t.step]
        undone = [t.step for t in info.history if t.kind == "undone" and t.step]
        path = " ".join(done) or "-"
        if undone:
            path += f" | undo {' '.join(undone)}"
        lines.append(("saga", f"{title:<16} {info.status.value:<12} {path}"))
    apples = (await inventory.ask(GetStock("apple"))).available
    pears = (await inventory.ask(GetStock("pear"))).available
    taken = (await payments.ask(GetLedger())).captured
    lines.append(("result", f"apples 100 -> {apples}, pears 50 -> {pears}, money taken {taken}"))
    lines.append(("log", "every transition was written to JetStream KV first: see `corps saga list`"))
    return lines
