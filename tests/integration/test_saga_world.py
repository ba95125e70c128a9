"""corps.testing's SagaWorld with several instances of one participant class (two warehouses)."""

from __future__ import annotations

from corps.examples.shop.messages import INITIAL_STOCK, GetStock, OrderRequest, ReleaseStock, ReserveStock
from corps.examples.shop.orchestrated import Inventory
from corps.saga import Retry, Saga, SagaStatus, Step
from corps.testing import FaultPlan, SagaWorld, StepFault, check_saga_invariants, saga_shape
from corps.wire._embedded import EmbeddedServer

FAST = Retry(max_attempts=3, interval=0.02, backoff_rate=1.0, max_delay=0.05)
TIMEOUT = 0.25


def _reserve(key: str, name: str) -> Step:
    return Step(name, to=Inventory, key=key, timeout=TIMEOUT, retry=FAST, undo_retry=FAST,
                request=lambda s: ReserveStock(s.input.order_id, s.input.sku, s.input.qty),
                undo=lambda s: ReleaseStock(s.input.order_id, s.input.sku, s.input.qty))


class ReserveTwice(Saga[OrderRequest]):
    """Reserve the same goods at two warehouses: two instances of one participant class."""

    steps = (_reserve("wh-a", "reserve-a"), _reserve("wh-b", "reserve-b"))


async def test_two_instances_of_one_participant_class_are_recorded_and_compensated_apart(
        nats_server: EmbeddedServer) -> None:
    order = OrderRequest("o1", "apple", 2, "4242", 100, "street 1")
    sku, qty = order.sku, order.qty
    plans = {
        "ok": FaultPlan(),
        "duplicated": FaultPlan({"reserve-a": StepFault("duplicate")}),
        "rejected-at-b": FaultPlan({"reserve-b": StepFault("reject")}),
        "timeout-after-at-b": FaultPlan({"reserve-b": StepFault("timeout_after")}),
    }
    async with SagaWorld(nats_server.url, nats_server.server_name, [ReserveTwice],
                         [(Inventory, "wh-a"), (Inventory, "wh-b")], step_timeout=TIMEOUT) as world:
        ids = {name: await world.start(ReserveTwice, OrderRequest(f"o-{name}", sku, qty, "4242", 100, "x"), plan,
                                       saga_id=f"s-{name}") for name, plan in plans.items()}
        assert world.system is not None
        for saga_id in ids.values():  # under their faults: drain() heals every fault first
            await world.system.wait_saga(saga_id, timeout=10)
        await world.drain()
        stages, undoable = saga_shape(ReserveTwice)
        assert check_saga_invariants(world.history, stages=stages, compensatable=undoable) == []
        infos = await world.observe()
        assert infos[ids["ok"]].status is SagaStatus.COMPLETED
        assert infos[ids["duplicated"]].status is SagaStatus.COMPLETED
        assert infos[ids["rejected-at-b"]].status is SagaStatus.COMPENSATED
        assert world.parts is not None
        # Each warehouse holds exactly the reservations of the two completed sagas (a duplicate
        # delivery applied once); the compensated ones gave theirs back, at both warehouses.
        completed = sum(1 for i in infos.values() if i.status is SagaStatus.COMPLETED)
        for warehouse in ("wh-a", "wh-b"):
            level = await world.parts.ref(Inventory, warehouse).ask(GetStock(sku))
            assert level.available == INITIAL_STOCK[sku] - completed * qty, warehouse
        effects = {(op.process, op.saga_id) for op in world.history if op.f == "effect"}
        assert {p for p, _ in effects} == {"Inventory/wh-a", "Inventory/wh-b"}
