"""The reference shop under test: a fast PlaceOrder (short timeouts) and its conservation check."""

from __future__ import annotations

from corps import ActorSystem
from corps.examples.shop.messages import INITIAL_STOCK, GetLedger, GetStock, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import Retry, Saga, Step
from corps.testing import History, SagaWorld

STEP_TIMEOUT = 0.25
FAST = Retry(max_attempts=3, interval=0.02, backoff_rate=1.0, max_delay=0.05)

PARTICIPANTS = ((Inventory, WAREHOUSE), (Payments, PAYMENTS), (Shipping, COURIER))


class FastPlaceOrder(Saga[OrderRequest]):
    """PlaceOrder with short timeouts and quick retries, so timeouts and crashes cost little."""

    steps = tuple(Step(s.name, to=s.to, key=s.key, request=s.request, undo=s.undo, timeout=STEP_TIMEOUT,
                       retry=FAST, undo_retry=FAST) for s in PlaceOrder.steps)


def standing(history: History, step: str) -> set[str]:
    """Saga ids whose ``step`` effect applied and was not compensated (the participants' truth)."""
    applied = {op.saga_id for op in history if op.f == "effect" and op.step == step}
    undone = {op.saga_id for op in history if op.f == "compensate" and op.step == step}
    return applied - undone


async def conservation(world: SagaWorld) -> list[str]:
    """Stock and money add up: what the actors hold equals the initial stock and no money, moved by
    exactly the reservations and charges that stand."""
    parts: ActorSystem | None = world.parts
    assert parts is not None
    inputs: dict[str, OrderRequest] = {k: v for k, v in world.inputs.items() if isinstance(v, OrderRequest)}
    reserved, charged = standing(world.history, "reserve"), standing(world.history, "charge")
    problems = []
    inventory = parts.ref(Inventory, WAREHOUSE)
    for sku, initial in INITIAL_STOCK.items():
        level = await inventory.ask(GetStock(sku))
        expect = initial - sum(o.qty for sid, o in inputs.items() if sid in reserved and o.sku == sku)
        if level.available != expect or level.available + level.reserved != initial:
            problems.append(f"stock of {sku}: {level.available} available + {level.reserved} reserved; "
                            f"expected {expect} available of {initial}")
    ledger = (await parts.ref(Payments, PAYMENTS).ask(GetLedger())).captured
    expected: dict[str, int] = {}
    for sid, o in inputs.items():
        if sid in charged:
            expected[o.card] = expected.get(o.card, 0) + o.amount
    if {k: v for k, v in ledger.items() if v} != expected:
        problems.append(f"money: captured {ledger}, expected {expected}")
    return problems
