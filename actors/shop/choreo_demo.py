"""The ``corps demo`` step for choreography (actors/demo.py lists it in STEPS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from corps import AskError
from corps.examples.shop import choreographed as shop
from corps.examples.shop.messages import GetLedger, OrderPlaced, OrderRequest

if TYPE_CHECKING:
    from corps.examples.walkthrough import Demo, Line


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def choreography(demo: Demo) -> list[Line]:
    """The shop's order flow by choreography: services react to events, nobody coordinates."""
    system = demo.system
    await shop.start(system)
    orders = [OrderRequest("demo-1", "apple", 2, "4242", 100, "1 Main St"),
              OrderRequest("demo-2", "pear", 1, "declined", 65, "2 Main St")]
    for order in orders:
        await system.publish(OrderPlaced(order), msg_id=f"placed-{order.order_id}")
    lines: list[Line] = [("publish", "OrderPlaced demo-1 (good card), demo-2 (declined card)")]
    with anyio.fail_after(10):
        for order in orders:
            state = None
            while state is None or state.status == "placed":  # the flow is asynchronous: poll, bounded
                try:
                    state = await system.ref(shop.Order, order.order_id).ask(shop.GetOrder(), timeout=1.0)
                except AskError:
                    state = None  # not activated by its OrderPlaced yet
                await anyio.sleep(0.02)
            lines.append((order.order_id, f"{state.status} {state.reason}".rstrip()))
    chain = [type(event).__name__ if not isinstance(event, dict) else str(event.get("$type"))
             async for event, _ in system.events.replay()]
    lines.append(("events", _short(" > ".join(dict.fromkeys(chain)))))
    ledger = await system.ref(shop.Payments, shop.PAYMENTS).ask(GetLedger())
    lines.append(("money", f"{ledger.captured}   the declined order took nothing; its stock came back"))
    return lines
