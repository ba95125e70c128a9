"""What a saga leaves behind and what it logs: a late effect is undone, a refusal is one line."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from corps import Actor, ActorSystem, Message, RemoteError, Request, handler
from corps.examples.shop.messages import UNDELIVERABLE, BookCourier, GetBookings, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import Retry, Saga, SagaStatus, Step, StepStatus, compensation, idempotent
from tests.integration.test_sagas import kinds, money, order, stock

Factory = Any
STEP_TIMEOUT = 0.2


class SlowShipping(Shipping):
    """A courier whose bookings take longer than the step waits: each lands after its timeout."""

    landed: list[str] = []

    async def book(self, msg: BookCourier) -> Any:  # type: ignore[override]
        await anyio.sleep(STEP_TIMEOUT * 3)  # the participant is slow; the test waits on the saga
        booked = await super().book(msg)
        type(self).landed.append(msg.order_id)
        return booked


class SlowShipOrder(Saga[OrderRequest]):
    """PlaceOrder with its own ship step (request and undo), given up on after one timeout."""

    steps = (
        PlaceOrder.steps[0],
        PlaceOrder.steps[1],
        Step("ship", to=SlowShipping, key=COURIER, request=PlaceOrder.step_named("ship").request,
             undo=PlaceOrder.step_named("ship").undo, timeout=STEP_TIMEOUT, retry=Retry(max_attempts=1),
             undo_timeout=5.0),
    )


async def test_a_booking_that_lands_after_its_step_timed_out_is_cancelled(
    actor_system_factory: Factory, actor_system: ActorSystem
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(SlowShipping, COURIER)
    SlowShipping.landed = []
    info = await actor_system.wait_saga(await actor_system.start_saga(SlowShipOrder, order("late-1")), timeout=15)
    assert info.status is SagaStatus.COMPENSATED
    ship = next(s for s in info.steps if s.name == "ship")
    assert ship.status is StepStatus.UNCERTAIN
    assert [step for kind, step in kinds(info) if kind == "undone"] == ["ship", "charge", "reserve"]
    assert SlowShipping.landed == ["late-1"]  # the booking did land, after the saga gave up on it...
    assert (await parts.ref(SlowShipping, COURIER).ask(GetBookings())).booked == {}  # ...and was cancelled
    assert await stock(parts) == 100
    assert sum((await money(parts)).values()) == 0


async def test_a_refused_step_is_one_info_line_with_the_saga_step_and_reason_and_no_traceback(
    actor_system_factory: Factory, actor_system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(Shipping, COURIER)
    with caplog.at_level(logging.INFO, logger="corps"):
        sid = await actor_system.start_saga(PlaceOrder, order("r1", address=UNDELIVERABLE))
        assert (await actor_system.wait_saga(sid, timeout=10)).status is SagaStatus.COMPENSATED
    mine = [r for r in caplog.records if sid in r.getMessage() and "'ship'" in r.getMessage()]
    assert [(r.name, r.levelno) for r in mine] == [("corps.saga", logging.INFO)]
    assert mine[0].getMessage() == f"saga {sid}: step 'ship' rejected: no courier delivers to 'nowhere'"
    loud = [r.getMessage() for r in caplog.records if r.name.startswith("corps") and (r.levelno >= logging.WARNING
                                                                                   or r.exc_info)]
    assert loud == []


# -- @compensation without parentheses ---------------------------------------------------------------


class Held(Message):
    order_id: str
    held: bool


class Hold(Request[Held]):
    order_id: str


class Unhold(Request[Held]):
    order_id: str


async def test_a_bare_compensation_fences_the_step_and_runs_the_handler(actor_system: ActorSystem) -> None:
    class Holds(Actor):  # defined here: before the fix, `@compensation` bare raised at class creation
        def __init__(self) -> None:
            self.held: set[str] = set()

        @handler
        @idempotent
        async def hold(self, msg: Hold) -> Held:
            self.held.add(msg.order_id)
            return Held(msg.order_id, True)

        @handler
        @compensation
        async def unhold(self, msg: Unhold) -> Held:  # a no-op by itself for an order never held
            was = msg.order_id in self.held
            self.held.discard(msg.order_id)
            return Held(msg.order_id, was)

    ref = await actor_system.spawn(Holds, "h")
    # Compensating a step that never ran: the handler runs (nothing to undo), the forward is fenced.
    assert await ref.ask(Unhold("o1"), idempotency_key="s1:hold:undo") == Held("o1", False)
    with pytest.raises(RemoteError) as fenced:
        await ref.ask(Hold("o1"), idempotency_key="s1:hold")
    assert fenced.value.type == "StepRejected"
    # A step that ran is undone once; a repeated compensation gets the first reply.
    assert await ref.ask(Hold("o2"), idempotency_key="s2:hold") == Held("o2", True)
    assert await ref.ask(Unhold("o2"), idempotency_key="s2:hold:undo") == Held("o2", True)
    assert await ref.ask(Unhold("o2"), idempotency_key="s2:hold:undo") == Held("o2", True)
