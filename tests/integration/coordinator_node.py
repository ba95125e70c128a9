"""A coordinator in a process of its own, for tests that SIGKILL it: ``python -m tests.integration.coordinator_node
URL NAMESPACE SAGA_ID`` starts one HeldOrder saga, prints ``started <node>`` and serves until killed.

HeldOrder's courier booking goes to HeldShipping, which the test process hosts and holds until it
opens its gate: the saga is mid-flight, owned by this process, when the test kills it.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from corps import ActorSystem
from corps.examples.shop.messages import BookCourier, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PlaceOrder, Shipping
from corps.saga import Saga, Step


class HeldShipping(Shipping):
    """Holds every booking until the test opens the gate; ``arrived`` wakes on each arrival."""

    gate: anyio.Event
    arrived: anyio.Event

    async def book(self, msg: BookCourier) -> Any:  # type: ignore[override]
        type(self).arrived.set()
        await type(self).gate.wait()
        return await super().book(msg)


class HeldOrder(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        PlaceOrder.steps[1],
        Step("ship", to=HeldShipping, key=COURIER, request=PlaceOrder.step_named("ship").request,
             undo=PlaceOrder.step_named("ship").undo, timeout=30.0, retry=PlaceOrder.step_named("ship").retry),
    )


async def main(url: str, namespace: str, saga_id: str) -> None:
    async with ActorSystem(url, namespace=namespace, sagas=(HeldOrder,)) as system:  # default SagaConfig
        await system.start_saga(HeldOrder, OrderRequest(saga_id, "apple", 2, "visa", 500, "home"), saga_id)
        print("started", system.node, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
