"""The examples of docs/testing.md, as written there: type-checked (mypy --strict) by test_testing_doc.py.

Keep the two in step: a change to an example there is made here too, and checked.
"""

from __future__ import annotations

from hypothesis import given, settings

from corps import EmbeddedServer, Message
from corps.examples.shop.messages import (
    BookCourier,
    ChargeCard,
    GetStock,
    OrderRequest,
    PaymentCaptured,
    ReserveStock,
    ShipmentBooked,
    StockReserved,
)
from corps.examples.shop.orchestrated import Inventory, Payments, PlaceOrder, Shipping
from corps.saga import Retry, SendStep
from corps.testing import (
    CoordinatorCrash,
    FaultPlan,
    SagaMachine,
    SagaWorld,
    StepFault,
    check_saga_invariants,
    fast_copy,
    fault_plans,
    run_pure,
    run_saga_machine,
    saga_shape,
    shop_orders,
    step_names,
)

# -- 1. Fault plans are data -----------------------------------------------------------------------

plan = FaultPlan({"charge": StepFault("timeout_after"),          # applied, but the reply is late
                  "ship": StepFault("transient", times=2, undo="timeout")},
                 crash=CoordinatorCrash("after_write", skip=1))  # die at the 2nd log write

# -- 2. The pure level -----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(plan=fault_plans(step_names(PlaceOrder)))
def test_place_order_keeps_the_invariants(plan: FaultPlan) -> None:
    run = run_pure(PlaceOrder, OrderRequest("o1", "apple", 2, "visa", 500, "home"), plan)
    stages, undoable = saga_shape(PlaceOrder)
    assert check_saga_invariants(run.history, stages=stages, compensatable=undoable) == []


def my_reply_for(cmd: SendStep) -> Message:     # replies of your own, where placeholders will not do
    match cmd.request:
        case ReserveStock(order_id=order_id, sku=sku, qty=qty):
            return StockReserved(order_id, sku, qty)
        case ChargeCard(order_id=order_id, card=card, amount=amount):
            return PaymentCaptured(order_id, card, amount)
        case BookCourier(order_id=order_id):
            return ShipmentBooked(order_id, tracking=f"TRK-{order_id}")
    raise LookupError(f"no reply for {cmd.request!r}")


def test_reserve_with_my_replies() -> None:
    run = run_pure(PlaceOrder, OrderRequest("o1", "apple", 2, "visa", 500, "home"), FaultPlan({}),
                   reply=my_reply_for)
    assert run.state.status.terminal


# -- 4. End to end: subclass SagaMachine ------------------------------------------------------------

FAST = Retry(max_attempts=3, interval=0.02, backoff_rate=1.0, max_delay=0.05)
FastPlaceOrder = fast_copy(PlaceOrder, timeout=0.25, retry=FAST, undo_retry=FAST)


class PlaceOrderMachine(SagaMachine):
    saga = FastPlaceOrder                       # your saga, with short step timeouts (0.25 s)
    participants = ((Inventory, "main"), (Payments, "psp"), (Shipping, "courier"))
    inputs = shop_orders()                      # a strategy of saga inputs
    plans = fault_plans(step_names(FastPlaceOrder), crashes=False)
    step_timeout = 0.25

    async def check_domain(self, world: SagaWorld) -> list[str]:   # after heal + drain: conservation
        parts = world.parts                     # the participants' system (None before the world starts)
        assert parts is not None
        stock = await parts.ref(Inventory, "main").ask(GetStock("apple"))
        return [] if stock.available + stock.reserved == 100 else [f"stock leaked: {stock}"]


def test_place_order(nats_server: EmbeddedServer) -> None:   # the plugin's fixture
    run_saga_machine(PlaceOrderMachine, nats_server,
                     settings=settings(max_examples=25, stateful_step_count=6, deadline=None))
