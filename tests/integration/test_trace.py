"""``corps trace ID`` on a real nats-server: saga transitions, events by correlation, causal nesting, dead letters."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import anyio
import msgspec

from corps import ActorSystem
from corps.cli._trace import format_trace
from corps.examples.shop import choreographed as choreo
from corps.examples.shop import hybrid
from corps.examples.shop.messages import OrderPlaced, OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import NOTHING_TO_UNDO, Saga, SagaStatus, Step
from corps.tools._trace import Entry, Trace, trace
from corps.wire._embedded import EmbeddedServer
from tests.integration.events_domain import DeadLetterWatch, Log, Noted, OutcomeWatcher, Poison, Recorder

ORDERS_CONTEXT = "orders"


class HybridOrder(Saga[OrderRequest]):
    """The hybrid shop: the orchestrated PlaceOrder inside the orders context, whose last step has the
    context publish the outcome as a domain event (OrderCompleted) for the other contexts."""

    steps = (
        *PlaceOrder.steps,
        Step("announce", to=hybrid.OrdersContext, key=ORDERS_CONTEXT,
             request=lambda s: hybrid.SubmitOrder(s.input), undo=NOTHING_TO_UNDO, timeout=5.0,
             uncertain_is_safe=True),  # the last step: a late announcement reports the order as it stands
    )


def order(oid: str) -> OrderRequest:
    return OrderRequest(oid, "apple", 1, "4242", 100, "1 Main St")


async def hybrid_shop(system: ActorSystem) -> None:
    await system.spawn(Inventory, WAREHOUSE)
    await system.spawn(Payments, PAYMENTS)
    await system.spawn(Shipping, COURIER)
    await system.spawn(hybrid.OrdersContext, ORDERS_CONTEXT)


def events(t: Trace) -> list[Entry]:
    return [e for e in t.entries if e.source == "event"]


async def test_a_hybrid_saga_shows_its_transitions_and_the_events_it_published_in_time_order(
    actor_system: ActorSystem,
) -> None:
    await hybrid_shop(actor_system)
    sid = await actor_system.start_saga(HybridOrder, order("o1"), saga_id=f"s-{uuid.uuid4().hex[:8]}")
    other = await actor_system.start_saga(HybridOrder, order("o2"))  # its event must not show up
    info = await actor_system.wait_saga(sid, timeout=20)
    assert info.status is SagaStatus.COMPLETED
    await actor_system.wait_saga(other, timeout=20)

    t = await trace(actor_system, sid)

    assert t.saga is not None
    assert t.saga.status is SagaStatus.COMPLETED
    assert [(e.kind, e.step) for e in t.entries if e.source == "saga"] == [
        (x.kind.value, x.step) for x in info.history]
    assert [(e.kind, e.event_id) for e in events(t)] == [("OrderCompleted", "order-outcome-o1")]
    assert t.scanned == 2  # both sagas' outcomes were read; one is of this saga
    times = [e.at for e in t.entries]
    assert times == sorted(times)
    # Published while the participant handled the "announce" ask: between its send and its reply.
    where = [(e.source, e.kind, e.step) for e in t.entries]
    sent = where.index(("saga", "sent", "announce"))
    published = where.index(("event", "OrderCompleted", None))
    replied = where.index(("saga", "succeeded", "announce"))
    assert sent < published < replied
    # Its cause is the step's idempotency key, so it sits under the step's "sent" transition.
    assert (events(t)[0].cause, events(t)[0].parent, events(t)[0].depth) == (f"{sid}:announce",) * 2 + (1,)
    text = format_trace(t)
    assert f"saga {sid} (HybridOrder): COMPLETED" in text
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "sent" in line and "announce #1" in line)
    assert "  OrderCompleted" in lines[at + 1]  # printed under the step's send, indented
    assert "OrderCompleted" in text
    assert "order-outcome-o2" not in text


async def test_a_choreographed_chain_is_nested_by_cause_and_other_orders_are_left_out(
    actor_system: ActorSystem,
) -> None:
    await choreo.start(actor_system)
    await actor_system.spawn(OutcomeWatcher, "watcher")
    run = uuid.uuid4().hex[:8]
    placed = f"order-placed-{run}-c1"
    await actor_system.publish(OrderPlaced(order("c1")), msg_id=placed)
    await actor_system.publish(OrderPlaced(order("c2")), msg_id=f"order-placed-{run}-c2")
    await OutcomeWatcher.wait_for(actor_system.namespace, {"c1", "c2"})

    t = await trace(actor_system, placed)

    assert t.saga is None
    chain = [(e.kind, e.depth) for e in events(t)]
    assert chain == [("OrderPlaced", 0), ("StockReserved", 1), ("PaymentCaptured", 2), ("ShipmentBooked", 3),
                     ("OrderCompleted", 4)]
    by_id = {e.event_id: e for e in events(t)}
    for e in events(t)[1:]:
        assert e.parent == e.cause
        assert by_id[e.parent].at <= e.at
    assert events(t)[0].event_id == placed
    assert all("c2" not in e.event_id for e in t.entries)
    # Printed as a tree: each event one step of indentation deeper than the event that caused it.
    names = [line.split(" ms  event ", 1)[1] for line in format_trace(t).splitlines() if " seq " in line]
    assert [(n.split()[0], (len(n) - len(n.lstrip())) // 2) for n in names] == chain


async def test_a_dead_lettered_event_appears_under_its_event_with_its_reason(actor_system: ActorSystem) -> None:
    Recorder.log = Log()
    watch = await DeadLetterWatch().start(actor_system)  # subscribed before anything is dead-lettered
    await actor_system.spawn(Recorder, "r")
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    await actor_system.publish(Poison(7), msg_id=poison)
    await actor_system.publish(Noted("unrelated", 1))

    async def dead_lettered() -> bool:
        return len(await actor_system.events.dead_letters()) >= 1

    try:
        await watch.wait_until(dead_lettered, timeout=20)
    finally:
        await watch.stop()

    t = await trace(actor_system, poison)

    assert [(e.source, e.kind, e.depth) for e in t.entries] == [
        ("event", "Poison", 0), ("dead-letter", "handler-error", 1)]
    letter = t.entries[1]
    assert letter.parent == poison
    assert letter.consumer == "Recorder"
    assert letter.attempt == 3
    assert "ValueError: poison 7 can never be handled" in letter.detail
    assert "dead-lettered: handler-error" in format_trace(t)


async def test_an_unknown_id_finds_nothing(actor_system: ActorSystem) -> None:
    await actor_system.publish(Noted("someone else's", 1))
    t = await trace(actor_system, f"nope-{uuid.uuid4().hex[:8]}")
    assert t.empty
    assert t.scanned == 1
    assert (await trace(actor_system, "not a saga id: has spaces")).empty


async def corps_trace(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``corps trace`` in a process of its own, as a user would."""

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corps.cli._main", "trace", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    return await anyio.to_thread.run_sync(call)


async def test_the_command_prints_the_timeline_or_json_and_exits_1_when_nothing_is_found(
    actor_system: ActorSystem, nats_server: EmbeddedServer, corps_namespace: str
) -> None:
    await hybrid_shop(actor_system)
    sid = await actor_system.start_saga(HybridOrder, order("o9"))
    await actor_system.wait_saga(sid, timeout=20)
    where = ("--nats", nats_server.url, "--namespace", corps_namespace)

    shown = await corps_trace(sid, *where)
    assert shown.returncode == 0, shown.stderr
    assert f"saga {sid} (HybridOrder): COMPLETED" in shown.stdout
    assert "OrderCompleted" in shown.stdout
    as_json: Any = await corps_trace(sid, *where, "--json", "--since", "3600")
    assert as_json.returncode == 0, as_json.stderr
    decoded = msgspec.json.decode(as_json.stdout, type=Trace)
    assert decoded.correlation_id == sid
    assert [e.kind for e in events(decoded)] == ["OrderCompleted"]
    missing = await corps_trace("no-such-id", *where)
    assert missing.returncode == 1
    assert f"nothing found for 'no-such-id' in namespace {corps_namespace!r}" in missing.stderr
