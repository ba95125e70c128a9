"""End to end on a real nats-server: the shop's PlaceOrder under random faults, crashes and
redeliveries, driven by the SagaMachine (sync hypothesis rules -> an anyio blocking portal).

Few examples (the "ci" profile is derandomized; "soak" runs 20x): each one opens two actor
systems in a namespace of its own, and timeouts and takeovers cost real time.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corps.examples.shop.messages import OrderRequest
from corps.testing import (
    FaultPlan,
    SagaMachine,
    SagaWorld,
    StepFault,
    check_saga_invariants,
    fault_plans,
    run_saga_machine,
    saga_shape,
    shop_orders,
    step_faults,
    step_names,
)
from corps.testing._profiles import examples
from corps.wire._embedded import EmbeddedServer
from tests.property.shop import PARTICIPANTS, STEP_TIMEOUT, FastPlaceOrder, conservation

pytestmark = pytest.mark.slow

E2E = settings(max_examples=examples(25), stateful_step_count=6, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class ShopMachine(SagaMachine):
    saga = FastPlaceOrder
    participants = PARTICIPANTS
    inputs = shop_orders()
    plans = fault_plans(step_names(FastPlaceOrder), faults=step_faults(max_times=2, max_delay=0.05), crashes=False)
    step_timeout = STEP_TIMEOUT
    lease = 0.4

    async def check_domain(self, world: SagaWorld) -> list[str]:
        return await conservation(world)


@pytest.mark.timeout(240)  # 25 examples with crashes, pauses past the lease and takeovers: real time
def test_the_shop_saga_keeps_its_invariants_and_conserves_stock_and_money(nats_server: EmbeddedServer) -> None:
    run_saga_machine(ShopMachine, nats_server, settings=E2E)


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(shop_orders(), min_size=1, max_size=3),
       kinds=st.lists(st.sampled_from(["ok", "duplicate", "timeout_after"]), min_size=3, max_size=3))
def test_duplicated_and_redelivered_requests_have_no_second_effect(
    nats_server: EmbeddedServer, orders: list[OrderRequest], kinds: list[str]
) -> None:
    # Duplicates on every path: the transport delivers twice, the reply comes late and the step
    # is retried, and after the end every request is delivered once more.
    import anyio.from_thread

    plan = FaultPlan({name: StepFault(kind) for name, kind in zip(step_names(FastPlaceOrder), kinds,  # type: ignore[arg-type]
                                                                   strict=True)})

    async def scenario() -> SagaWorld:
        async with SagaWorld(nats_server.url, nats_server.server_name, [FastPlaceOrder], PARTICIPANTS,
                             step_timeout=STEP_TIMEOUT, lease=0.4) as world:
            for order in orders:
                await world.start(FastPlaceOrder, order, plan)
            await world.drain()
            for key in list(world.injector.requests):
                await world.redeliver(key)
            world.history.record("info", "domain", "-", value=await conservation(world))
            return world

    with anyio.from_thread.start_blocking_portal() as portal:
        world = portal.call(scenario)
    stages, undoable = saga_shape(FastPlaceOrder)
    problems = check_saga_invariants(world.history, stages=stages, compensatable=undoable)
    problems += [p for op in world.history if op.f == "domain" for p in op.value]
    assert problems == [], world.history.format()


def test_a_late_copy_of_a_refused_step_request_has_no_effect(nats_server: EmbeddedServer) -> None:
    import anyio.from_thread

    first = OrderRequest("o-a", "plum", 4, "visa", 100, "nowhere")   # holds 4 of 5 plums, then compensates
    second = OrderRequest("o-b", "plum", 2, "visa", 100, "home")     # refused: 1 plum left at the time

    async def scenario() -> SagaWorld:
        async with SagaWorld(nats_server.url, nats_server.server_name, [FastPlaceOrder], PARTICIPANTS,
                             step_timeout=STEP_TIMEOUT, lease=0.4) as world:
            await world.start(FastPlaceOrder, first, FaultPlan(), saga_id="a")
            await world.start(FastPlaceOrder, second, FaultPlan(), saga_id="b")
            await world.drain()
            await world.redeliver("b:reserve")   # the copy arrives once stock is back
            return world

    with anyio.from_thread.start_blocking_portal() as portal:
        world = portal.call(scenario)
    stages, undoable = saga_shape(FastPlaceOrder)
    assert check_saga_invariants(world.history, stages=stages, compensatable=undoable) == []
