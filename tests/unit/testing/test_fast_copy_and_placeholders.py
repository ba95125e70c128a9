"""corps.testing helpers: fast_copy (a saga with short timeouts) and run_pure's placeholder replies."""

from __future__ import annotations

import enum
from typing import Literal

import msgspec
import pytest

from corps import Message, Request
from corps.examples.shop.messages import OrderRequest
from corps.examples.shop.orchestrated import PlaceOrder
from corps.saga import Parallel, Retry, Saga, SagaStatus
from corps.testing import FaultPlan, fast_copy, run_pure
from corps.testing._placeholder import placeholder_reply

ORDER = OrderRequest("o1", "apple", 2, "visa", 500, "home")
QUICK = Retry(max_attempts=2, interval=0.01, backoff_rate=1.0, max_delay=0.01)


# -- fast_copy ---------------------------------------------------------------------------------------


class Fanned(Saga[OrderRequest]):
    """PlaceOrder with charge and ship in one Parallel group: what copying `Step(s.name, ...) for s in
    steps` breaks on (a Parallel has no name)."""

    steps = (PlaceOrder.steps[0], Parallel(PlaceOrder.steps[1], PlaceOrder.steps[2]))
    deadline = 120.0


def test_a_fast_copy_retimes_every_step_parallel_groups_included_and_keeps_the_rest() -> None:
    fast = fast_copy(Fanned, timeout=0.25, retry=QUICK, undo_retry=QUICK)
    assert (fast.__name__, fast.saga_name, fast.input_type, fast.deadline) == (
        "FastFanned", "FastFanned", OrderRequest, 120.0)
    assert [len(stage) for stage in fast.stages] == [1, 2]
    for original, copied in zip([s for st in Fanned.stages for s in st], [s for st in fast.stages for s in st],
                                strict=True):
        assert (copied.timeout, copied.retry, copied.undo_retry, copied.compensation_timeout()) == (
            0.25, QUICK, QUICK, 0.25)
        assert (copied.name, copied.to, copied.key, copied.request, copied.undo, copied.pivot) == (
            original.name, original.to, original.key, original.request, original.undo, original.pivot)
    assert Fanned.step_named("charge").timeout == 2.0  # the original is untouched


def test_a_fast_copy_keeps_each_steps_own_retry_unless_told_and_runs() -> None:
    fast = fast_copy(PlaceOrder, timeout=0.1, name="QuickOrder")
    assert fast.saga_name == "QuickOrder"
    assert [s.retry for st in fast.stages for s in st] == [s.retry for st in PlaceOrder.stages for s in st]
    assert run_pure(fast, ORDER, FaultPlan({})).state.status is SagaStatus.COMPLETED


# -- run_pure's placeholder replies ----------------------------------------------------------------------


def test_run_pure_without_reply_builds_the_shops_replies_from_their_requests() -> None:
    # Before: TypeError: Missing required argument 'order_id' (the reply type called with no arguments).
    run = run_pure(PlaceOrder, ORDER, FaultPlan({}))
    assert run.state.status is SagaStatus.COMPLETED
    reserve = msgspec.msgpack.decode(run.state.steps[0].reply or b"")
    assert reserve == {"$type": "StockReserved", "order_id": "o1", "sku": "apple", "qty": 2}


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(Message):
    n: int
    tags: list[str]


class Rich(Message):
    order_id: str
    shade: Colour
    kind: Literal["a", "b"]
    inner: Inner
    note: str | None
    count: int = 7


class Enrich(Request[Rich]):
    order_id: int  # same name, another type: not copied


def test_a_placeholder_has_zero_values_for_what_the_request_does_not_give() -> None:
    assert placeholder_reply(Enrich(5)) == Rich("", Colour.RED, "a", Inner(0, []), None, 7)


class Stamped(Message):
    at: msgspec.Raw


class Stamp(Request[Stamped]):
    order_id: str


class Note(Message):
    text: str


def test_a_reply_with_no_zero_value_or_no_reply_type_fails_naming_reply() -> None:
    with pytest.raises(TypeError, match=r"cannot build a Stamped reply to Stamp by itself \(Stamped.at has no "
                                        r"zero value\): pass reply="):
        placeholder_reply(Stamp("o1"))
    with pytest.raises(TypeError, match=r"Note names no reply type .*: pass reply= to run_pure"):
        placeholder_reply(Note("x"))

