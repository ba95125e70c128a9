"""The reference shop rides out a participant outage (issue 11, item 4).

Before: its steps gave up after three attempts ~0.15 s apart, so a Payments restart of a second
or two compensated good orders. Now NoResponders and timeouts are retried for ~12 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from corps import ActorSystem
from corps.examples.shop.messages import GetLedger, GetStock, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import Kind, SagaStatus

Factory = Callable[..., Any]


def test_every_shop_step_retries_for_about_twelve_seconds() -> None:
    for step in PlaceOrder.steps:
        policy = step.retry
        delays = range(1, policy.max_attempts)
        longest = sum(policy.delay(n, 0.0) for n in delays)
        shortest = sum(policy.delay(n, 1.0) for n in delays)  # with the most jitter
        assert 10.0 < shortest <= longest <= 13.5, (step.name, shortest, longest)


async def test_an_order_placed_while_payments_restarts_completes(actor_system_factory: Factory) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Shipping, COURIER)
    shop: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,))
    sid = await shop.start_saga(PlaceOrder, OrderRequest("o1", "apple", 2, "visa", 500, "home"))
    # Payments is down: wait (bounded, reading the log) until the charge has met NoResponders more
    # often than the old policy allowed in all, about 1.4 s into the outage.
    with anyio.fail_after(15):
        while True:
            info = await shop.saga_status(sid)
            refused = [t for t in info.history if t.kind is Kind.FAILED and t.step == "charge"]
            if len(refused) >= 4 or info.terminal:
                break
            await anyio.sleep(0.05)
    assert not info.terminal, f"gave up during a {len(refused)}-attempt outage: {info.status}, {info.reason}"
    assert all("NoResponders" in t.detail for t in refused)
    payments: ActorSystem = await actor_system_factory()  # back up
    await payments.spawn(Payments, PAYMENTS)
    info = await shop.wait_saga(sid, timeout=20)
    assert info.status is SagaStatus.COMPLETED
    assert (await parts.ref(Inventory, WAREHOUSE).ask(GetStock("apple"))).available == 98
    assert (await payments.ref(Payments, PAYMENTS).ask(GetLedger())).captured == {"visa": 500}
