"""Orchestrated sagas end to end on a real nats-server: outcomes, retries, idempotency, crashes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from corps import ActorSystem, RemoteError, SagaNotFound, SagaTimeout
from corps.examples.shop.messages import (
    UNDELIVERABLE,
    BookCourier,
    ChargeCard,
    GetLedger,
    GetStock,
    OrderRequest,
    RefundCard,
    ReleaseStock,
    ReserveStock,
    StockReleased,
)
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import CRASH_POINTS, Coordinator, Kind, SagaStatus
from corps.wire._embedded import EmbeddedServer

Factory = Callable[..., Any]


def order(oid: str, *, sku: str = "apple", qty: int = 2, card: str = "visa", amount: int = 500,
          address: str = "home") -> OrderRequest:
    return OrderRequest(oid, sku, qty, card, amount, address)


@pytest.fixture
async def shop(actor_system_factory: Factory) -> ActorSystem:
    """The participants, in a system of their own (coordinators come and go around them)."""
    system: ActorSystem = await actor_system_factory()
    await system.spawn(Inventory, WAREHOUSE)
    await system.spawn(Payments, PAYMENTS)
    await system.spawn(Shipping, COURIER)
    return system


async def stock(system: ActorSystem, sku: str = "apple") -> int:
    return (await system.ref(Inventory, WAREHOUSE).ask(GetStock(sku))).available


async def money(system: ActorSystem) -> dict[str, int]:
    return (await system.ref(Payments, PAYMENTS).ask(GetLedger())).captured


def kinds(info: Any) -> list[tuple[str, str | None]]:
    return [(t.kind.value, t.step) for t in info.history]


async def test_a_saga_completes_and_records_every_step(shop: ActorSystem, actor_system: ActorSystem) -> None:
    sid = await actor_system.start_saga(PlaceOrder, order("o1"))
    info = await actor_system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPLETED
    assert [s.status.value for s in info.steps] == ["SUCCEEDED"] * 3
    assert [k for k in kinds(info) if k[0] in ("sent", "succeeded")] == [
        ("sent", "reserve"), ("succeeded", "reserve"), ("sent", "charge"), ("succeeded", "charge"),
        ("sent", "ship"), ("succeeded", "ship")]
    times = [t.at for t in info.history]
    assert times == sorted(times)
    assert await stock(shop) == 98
    assert await money(shop) == {"visa": 500}


@pytest.mark.parametrize(
    ("bad", "undone"),
    [
        ({"qty": 1000}, []),                                   # reserve rejected: nothing to undo
        ({"card": "declined"}, ["reserve"]),                   # charge rejected: undo reserve
        ({"address": UNDELIVERABLE}, ["charge", "reserve"]),   # ship rejected: undo both, in reverse
    ],
)
async def test_a_rejected_step_compensates_exactly_the_completed_steps_in_reverse(
    shop: ActorSystem, actor_system: ActorSystem, bad: dict[str, Any], undone: list[str]
) -> None:
    sid = await actor_system.start_saga(PlaceOrder, order("o1", **bad))
    info = await actor_system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPENSATED
    assert [step for kind, step in kinds(info) if kind == "undone"] == undone
    assert await stock(shop) == 100
    assert sum((await money(shop)).values()) == 0


async def test_starting_the_same_saga_id_twice_gives_one_saga(shop: ActorSystem, actor_system: ActorSystem) -> None:
    a = await actor_system.start_saga(PlaceOrder, order("o1"), saga_id="order-1")
    b = await actor_system.start_saga(PlaceOrder, order("o1"), saga_id="order-1")
    assert a == b == "order-1"
    await actor_system.wait_saga(a, timeout=10)
    assert await stock(shop) == 98  # reserved once


async def test_unknown_and_invalid_saga_ids(actor_system: ActorSystem) -> None:
    with pytest.raises(SagaNotFound):
        await actor_system.saga_status("nope")
    with pytest.raises(ValueError, match="invalid saga id"):
        await actor_system.start_saga(PlaceOrder, order("o1"), saga_id="a.b")
    with pytest.raises(TypeError, match="takes OrderRequest"):
        await actor_system.start_saga(PlaceOrder, ReserveStock("o", "apple", 1))  # type: ignore[arg-type]


async def test_duplicate_step_requests_have_no_second_effect(shop: ActorSystem) -> None:
    inv = shop.ref(Inventory, WAREHOUSE)
    first = await inv.ask(ReserveStock("o9", "apple", 3), idempotency_key="s9:reserve")
    again = await inv.ask(ReserveStock("o9", "apple", 3), idempotency_key="s9:reserve")
    assert first == again
    assert await stock(shop) == 97


async def test_compensating_a_step_that_never_ran_is_a_no_op_and_fences_it(shop: ActorSystem) -> None:
    inv = shop.ref(Inventory, WAREHOUSE)
    undo = await inv.ask(ReleaseStock("o8", "apple", 5), idempotency_key="s8:reserve:undo")
    assert undo == StockReleased("o8", "apple", 0)
    assert await stock(shop) == 100  # nothing was added back
    with pytest.raises(RemoteError) as info:  # the late forward request is refused
        await inv.ask(ReserveStock("o8", "apple", 5), idempotency_key="s8:reserve")
    assert info.value.type == "StepRejected"
    assert await stock(shop) == 100


class FlakyPayments(Payments):
    """Fails the first charges with a transient error, then works."""

    failures = 0

    async def on_start(self) -> None:
        type(self).failures = 0

    async def charge(self, msg: ChargeCard) -> Any:  # type: ignore[override]
        if type(self).failures < 2:
            type(self).failures += 1
            raise ConnectionError("bank unreachable")
        return await super().charge(msg)


async def test_transient_failures_are_retried_per_the_step_policy(
    actor_system_factory: Factory, actor_system: ActorSystem
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Shipping, COURIER)
    await parts.spawn(FlakyPayments, PAYMENTS)
    sid = await actor_system.start_saga(FlakySaga, order("o1"))
    info = await actor_system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPLETED
    charge = next(s for s in info.steps if s.name == "charge")
    assert charge.attempt == 3
    assert [k for k in kinds(info) if k == ("retry_scheduled", "charge")] == [("retry_scheduled", "charge")] * 2


class MuteShipping(Shipping):
    """Never answers in time: every booking outlives the step's timeout."""

    async def book(self, msg: BookCourier) -> Any:  # type: ignore[override]
        await anyio.sleep(1.0)  # the participant is slow; the test waits on the saga, not on this
        return await super().book(msg)


async def test_timeouts_retry_then_compensate_the_uncertain_step_too(
    actor_system_factory: Factory, actor_system: ActorSystem
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(MuteShipping, COURIER)
    sid = await actor_system.start_saga(MuteSaga, order("o1"))
    info = await actor_system.wait_saga(sid, timeout=15)
    assert info.status is SagaStatus.COMPENSATED
    assert [k for k in kinds(info) if k == ("timed_out", "ship")] == [("timed_out", "ship")] * 2
    assert [step for kind, step in kinds(info) if kind in ("undone", "undo_skipped")] == ["ship", "charge", "reserve"]
    assert await stock(parts) == 100
    assert sum((await money(parts)).values()) == 0


# Variants of PlaceOrder with test participants and short timeouts.
from corps.saga import NOTHING_TO_UNDO, Parallel, Retry, Saga, Step  # noqa: E402

_FAST = Retry(max_attempts=3, interval=0.01, backoff_rate=1.0, max_delay=0.05)


class FlakySaga(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        Step("charge", to=FlakyPayments, key=PAYMENTS,
             request=lambda s: ChargeCard(s.input.order_id, s.input.card, s.input.amount),
             undo=PlaceOrder.step_named("charge").undo, timeout=2.0, retry=_FAST),
        PlaceOrder.steps[2],
    )


class MuteSaga(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        PlaceOrder.steps[1],
        Step("ship", to=MuteShipping, key=COURIER,
             request=lambda s: BookCourier(s.input.order_id, s.input.address),
             undo=PlaceOrder.step_named("ship").undo, timeout=0.2,
             retry=Retry(max_attempts=2, interval=0.01, max_delay=0.05)),
    )


# -- crashes and takeover ----------------------------------------------------------------------


@pytest.fixture
async def coordinators(nats_server: EmbeddedServer, corps_namespace: str) -> AsyncIterator[Factory]:
    """Coordinator systems with a short lease, so a takeover happens within a second."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> ActorSystem:
            kwargs.setdefault("saga_lease", 0.6)
            kwargs.setdefault("saga_scan_interval", 0.1)
            kwargs.setdefault("sagas", (PlaceOrder,))
            return await stack.enter_async_context(
                ActorSystem(nats_server.url, namespace=corps_namespace, **kwargs))

        yield make


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
async def test_another_coordinator_finishes_a_saga_after_a_crash(
    shop: ActorSystem, coordinators: Factory, point: str, caplog: pytest.LogCaptureFixture
) -> None:
    first: ActorSystem = await coordinators()
    c1 = await first.coordinator()
    c1.crash_points = {point}
    # mid_compensation needs a compensation: make the last step fail.
    address = UNDELIVERABLE if point == "mid_compensation" else "home"
    sid = await first.start_saga(PlaceOrder, order("o1", address=address))
    with anyio.fail_after(5):
        await c1.crashed.wait()
    before = await first.saga_status(sid)
    assert not before.terminal, f"the saga finished before the crash point {point}"

    second: ActorSystem = await coordinators()
    with caplog.at_level(logging.WARNING, logger="corps.saga"):
        info = await second.wait_saga(sid, timeout=10)
    assert any("taken over" in r.getMessage() for r in caplog.records)
    if point == "mid_compensation":
        assert info.status is SagaStatus.COMPENSATED
        assert await stock(shop) == 100
        assert sum((await money(shop)).values()) == 0
    else:
        assert info.status is SagaStatus.COMPLETED
        assert await stock(shop) == 98          # reserved once, though a request may have been resent
        assert await money(shop) == {"visa": 500}  # charged once


async def test_a_coordinator_that_stops_while_a_start_is_written_leaves_the_saga_to_a_takeover(
    shop: ActorSystem, coordinators: Factory
) -> None:
    """Found by the state machine: a start whose log write outlived its coordinator raised
    RuntimeError (a task group no longer active) for a saga that was durably started."""
    first: ActorSystem = await coordinators()
    c1 = await first.coordinator()
    create = c1.log.create
    writing, go_on = anyio.Event(), anyio.Event()

    async def slow_create(record: Any) -> int | None:
        writing.set()
        await go_on.wait()
        return await create(record)

    c1.log.create = slow_create  # type: ignore[method-assign]
    started: list[str] = []

    async def start() -> None:
        started.append(await first.start_saga(PlaceOrder, order("o1"), saga_id="stopped-mid-start"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await writing.wait()
            assert c1._tg is not None
            c1._tg.cancel_scope.cancel()  # the coordinator stops, as on shutdown
            await c1.crashed.wait()
            go_on.set()
    assert started == ["stopped-mid-start"]
    second: ActorSystem = await coordinators()
    info = await second.wait_saga("stopped-mid-start", timeout=10)
    assert info.status is SagaStatus.COMPLETED
    assert await money(shop) == {"visa": 500}


async def test_two_coordinators_racing_for_one_saga_end_with_one_owner(
    shop: ActorSystem, coordinators: Factory
) -> None:
    first: ActorSystem = await coordinators()
    c1 = await first.coordinator()
    c1.crash_points = {"after_write"}
    sid = await first.start_saga(PlaceOrder, order("o1"))
    with anyio.fail_after(5):
        await c1.crashed.wait()
    b: ActorSystem = await coordinators(saga_scan_interval=3600)  # they scan only when told to
    c: ActorSystem = await coordinators(saga_scan_interval=3600)
    cb, cc = await b.coordinator(), await c.coordinator()
    # The dead coordinator's lease must have expired: that is the condition under test, in wall time.
    await anyio.sleep(max(0.0, (await b.saga_status(sid)).lease_until - time.time()) + 0.05)
    taken: dict[str, list[str]] = {}

    async def scan(name: str, coordinator: Any) -> None:
        taken[name] = await coordinator.scan()

    async with anyio.create_task_group() as tg:
        tg.start_soon(scan, "b", cb)
        tg.start_soon(scan, "c", cc)
    assert sorted(len(t) for t in taken.values()) == [0, 1], f"both or neither took the saga: {taken}"
    owner = b if taken["b"] == [sid] else c
    assert (await owner.saga_status(sid)).owner in ("", owner.node)
    info = await owner.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPLETED
    assert await stock(shop) == 98


async def test_a_failed_compensation_ends_failed_and_an_operator_retry_finishes_it(
    actor_system_factory: Factory, actor_system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(StubbornPayments, PAYMENTS)
    await parts.spawn(Shipping, COURIER)
    StubbornPayments.refusing = True
    with caplog.at_level(logging.ERROR, logger="corps.saga"):
        sid = await actor_system.start_saga(StubbornSaga, order("o1", address=UNDELIVERABLE))
        info = await actor_system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.FAILED
    assert any("SAGA FAILED" in r.getMessage() for r in caplog.records)
    StubbornPayments.refusing = False  # the operator fixed the payment provider
    await actor_system.retry_saga(sid)
    info = await actor_system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPENSATED
    assert Kind.OPERATOR_RETRY in [t.kind for t in info.history]
    assert sum((await parts.ref(StubbornPayments, PAYMENTS).ask(GetLedger())).captured.values()) == 0
    assert await stock(parts) == 100


class StubbornPayments(Payments):
    refusing = True

    async def refund(self, msg: RefundCard) -> Any:  # type: ignore[override]
        if type(self).refusing:
            raise ConnectionError("refunds are down")
        return await super().refund(msg)


class StubbornSaga(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        Step("charge", to=StubbornPayments, key=PAYMENTS,
             request=PlaceOrder.step_named("charge").request, undo=PlaceOrder.step_named("charge").undo,
             timeout=2.0, undo_retry=Retry(max_attempts=2, interval=0.01, max_delay=0.02)),
        PlaceOrder.steps[2],
    )


async def test_wait_saga_times_out_with_a_typed_error(actor_system_factory: Factory, actor_system: ActorSystem) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(MuteShipping, COURIER)
    sid = await actor_system.start_saga(MuteSaga, order("o1"))
    with pytest.raises(SagaTimeout):
        await actor_system.wait_saga(sid, timeout=0.05)
    assert (await actor_system.wait_saga(sid, timeout=15)).terminal


async def test_every_saga_reaches_a_terminal_state_across_a_nats_server_restart(
    nats_server_factory: Factory, corps_namespace: str
) -> None:
    server: EmbeddedServer = nats_server_factory()
    url, port, store = server.url, server.port, server.store_dir
    async with ActorSystem(url, namespace=corps_namespace) as parts, \
            ActorSystem(url, namespace=corps_namespace, sagas=(PlaceOrder,), saga_lease=5.0) as coordinator:
        await parts.spawn(Inventory, WAREHOUSE)
        await parts.spawn(Payments, PAYMENTS)
        await parts.spawn(Shipping, COURIER)
        ids = [await coordinator.start_saga(PlaceOrder, order(f"o{i}", qty=1, amount=100)) for i in range(10)]
        server.kill()  # SIGKILL mid-flight: in-flight asks and log writes fail, and are retried
        nats_server_factory(port=port, store_dir=store)  # the same port and JetStream store
        infos = [await coordinator.wait_saga(sid, timeout=30) for sid in ids]
        assert all(info.terminal for info in infos)
        completed = sum(info.status is SagaStatus.COMPLETED for info in infos)
        assert completed + sum(info.status is SagaStatus.COMPENSATED for info in infos) == 10
        # Conservation: whatever mix of outcomes, no step applied twice and none was left undone.
        assert await stock(parts) == 100 - completed
        assert sum((await money(parts)).values()) == 100 * completed


class ParallelOrder(Saga[OrderRequest]):
    """Charge and book at once, after the reservation; the courier booking is the pivot."""

    steps = (
        PlaceOrder.steps[0],
        Parallel(PlaceOrder.step_named("charge"), PlaceOrder.step_named("ship")),
    )


class PivotOrder(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        Step("charge", to=Payments, key=PAYMENTS, request=PlaceOrder.step_named("charge").request,
             undo=PlaceOrder.step_named("charge").undo, pivot=True),
        Step("ship", to=Shipping, key=COURIER, request=PlaceOrder.step_named("ship").request,
             undo=NOTHING_TO_UNDO, retry=Retry(max_attempts=2, interval=0.01, max_delay=0.02)),
    )


async def test_a_parallel_group_runs_together_and_is_compensated_together(
    shop: ActorSystem, actor_system: ActorSystem
) -> None:
    ok = await actor_system.wait_saga(await actor_system.start_saga(ParallelOrder, order("p1")), timeout=10)
    assert ok.status is SagaStatus.COMPLETED
    sent = [step for kind, step in kinds(ok) if kind == "sent"]
    assert sent[0] == "reserve"
    assert sorted(sent[1:3]) == ["charge", "ship"]  # both sent before either replied
    k = kinds(ok)
    assert max(k.index(("sent", "charge")), k.index(("sent", "ship"))) < min(
        k.index(("succeeded", "charge")), k.index(("succeeded", "ship")))
    bad = await actor_system.wait_saga(
        await actor_system.start_saga(ParallelOrder, order("p2", address=UNDELIVERABLE)), timeout=10)
    assert bad.status is SagaStatus.COMPENSATED
    assert [step for kind, step in kinds(bad) if kind == "undone"] == ["charge", "reserve"]
    assert await stock(shop) == 98
    assert await money(shop) == {"visa": 500}


async def test_after_the_pivot_a_rejection_is_not_compensated_but_fails_loudly(
    shop: ActorSystem, actor_system: ActorSystem
) -> None:
    info = await actor_system.wait_saga(
        await actor_system.start_saga(PivotOrder, order("v1", address=UNDELIVERABLE)), timeout=10)
    assert info.status is SagaStatus.FAILED  # committed at the pivot: an operator must decide
    assert "committed" in [k for k, _ in kinds(info)]
    assert "undone" not in [k for k, _ in kinds(info)]
    assert await money(shop) == {"visa": 500}


class GatedShipping(Shipping):
    """Holds every booking until the test opens the gate."""

    gate: anyio.Event = anyio.Event()
    arrived: list[str] = []

    async def book(self, msg: BookCourier) -> Any:  # type: ignore[override]
        type(self).arrived.append(msg.order_id)
        await type(self).gate.wait()
        return await super().book(msg)


class GatedOrder(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        PlaceOrder.steps[1],
        Step("ship", to=GatedShipping, key=COURIER, request=PlaceOrder.step_named("ship").request,
             undo=PlaceOrder.step_named("ship").undo, timeout=10.0),
    )


async def taken_over_while_paused(
    actor_system_factory: Factory, coordinators: Factory, order_id: str
) -> tuple[ActorSystem, Coordinator, str, ActorSystem, ActorSystem]:
    """A GatedOrder whose coordinator stopped renewing while its ship request is held, taken
    over by a fresh coordinator: (stale system, its coordinator, saga id, fresh system, parts)."""
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(GatedShipping, COURIER)
    GatedShipping.gate, GatedShipping.arrived = anyio.Event(), []
    stale: ActorSystem = await coordinators(sagas=(GatedOrder,))
    c1 = await stale.coordinator()
    c1.renewing = False  # paused: its lease runs out while its ship request is still out
    sid = await stale.start_saga(GatedOrder, order(order_id))
    fresh: ActorSystem = await coordinators(sagas=(GatedOrder,))
    with anyio.fail_after(10):  # the fresh coordinator takes the saga over and re-sends the step
        await (await fresh.coordinator()).taken.setdefault(sid, anyio.Event()).wait()
    return stale, c1, sid, fresh, parts


async def test_a_paused_coordinator_that_lost_its_lease_cannot_write(
    actor_system_factory: Factory, coordinators: Factory
) -> None:
    _, c1, sid, fresh, parts = await taken_over_while_paused(actor_system_factory, coordinators, "g1")
    GatedShipping.gate.set()  # both copies (one idempotency key) go through: one effect
    info = await fresh.wait_saga(sid, timeout=10)
    with anyio.fail_after(10):  # the stale coordinator's late reply must lose the CAS
        await c1.lost.setdefault(sid, anyio.Event()).wait()
    assert info.status is SagaStatus.COMPLETED
    assert not c1.drives(sid)
    assert GatedShipping.arrived == ["g1", "g1"]  # the handler ran twice; @idempotent applied it once
    assert await stock(parts) == 98
    assert await money(parts) == {"visa": 500}


async def test_a_resumed_coordinator_that_finds_its_lease_taken_drops_only_that_saga(
    actor_system_factory: Factory, coordinators: Factory
) -> None:
    # Found by the state machine's pause rule: a renewal that lost its CAS closed the saga's
    # event stream, and the EndOfStream in its drive loop killed the whole coordinator.
    stale, c1, sid, fresh, _ = await taken_over_while_paused(actor_system_factory, coordinators, "r1")
    c1.renewing = True  # resumed: its next renewal finds the saga rewritten by the other one
    with anyio.fail_after(10):
        await c1.lost.setdefault(sid, anyio.Event()).wait()
    assert not c1.dead
    GatedShipping.gate.set()
    assert (await fresh.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    assert not c1.drives(sid)
    again = await stale.start_saga(GatedOrder, order("r2"))  # and it goes on driving other sagas
    assert (await stale.wait_saga(again, timeout=10)).status is SagaStatus.COMPLETED
