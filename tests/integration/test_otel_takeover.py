"""One trace per saga across a coordinator takeover, on a real nats-server with the SDK's in-memory exporter."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corps import ActorSystem, Observer
from corps.cli._trace import format_trace
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.observe import Metrics, Tracing
from corps.saga import Coordinator, SagaStatus
from corps.tools._trace import trace
from corps.wire._embedded import EmbeddedServer
from tests.integration.test_otel import Ended, in_memory_tracing
from tests.integration.test_sagas import order

Factory = Callable[..., Any]
Traced = tuple[TracerProvider, InMemorySpanExporter, Ended]
STEPS = ("saga PlaceOrder reserve", "saga PlaceOrder charge", "saga PlaceOrder ship")


@pytest.fixture
def traced() -> Traced:
    return in_memory_tracing()


@pytest.fixture
async def participants(actor_system_factory: Factory,
                       traced: Traced) -> ActorSystem:
    system: ActorSystem = await actor_system_factory(observers=[Tracing(traced[0])])
    await system.spawn(Inventory, WAREHOUSE)
    await system.spawn(Payments, PAYMENTS)
    await system.spawn(Shipping, COURIER)
    return system


@pytest.fixture
async def coordinators(nats_server: EmbeddedServer, corps_namespace: str,
                       traced: Traced) -> AsyncIterator[Factory]:
    """Traced coordinator systems with a short lease, so a takeover happens within a second."""
    provider = traced[0]
    async with contextlib.AsyncExitStack() as stack:

        async def make(*observers: Observer) -> ActorSystem:
            return await stack.enter_async_context(ActorSystem(
                nats_server.url, namespace=corps_namespace, saga_lease=0.6, saga_scan_interval=0.1,
                sagas=(PlaceOrder,), observers=[Tracing(provider), *observers]))

        yield make


async def crashed_after_first_step(coordinators: Factory, provider: TracerProvider) -> tuple[Coordinator, str, int]:
    """A saga started under a span; its coordinator crashed once its first step's outcome is written.
    The crashed coordinator (its system starts no other until asked), the saga id and the span's trace id."""
    first: ActorSystem = await coordinators()
    c1 = await first.coordinator()
    c1.crash_points = {"after_write"}
    with provider.get_tracer("test").start_as_current_span("checkout") as root:
        sid = await first.start_saga(PlaceOrder, order("o1"))
    with anyio.fail_after(5):
        await c1.crashed.wait()
    record, _ = await c1.log.read(sid)  # its system's connection is alive
    assert not record.state.status.terminal
    assert f"-{root.get_span_context().trace_id:032x}-" in record.state.started_in  # the start's trace is stored
    return c1, sid, root.get_span_context().trace_id


async def test_a_saga_taken_over_after_a_crash_keeps_the_trace_it_was_started_in(
    participants: ActorSystem, coordinators: Factory, traced: Traced,
) -> None:
    provider, exporter, ended = traced
    _, sid, trace_id = await crashed_after_first_step(coordinators, provider)
    second: ActorSystem = await coordinators()
    c2 = await second.coordinator()
    assert (await second.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    await ended.wait(STEPS[-1])

    spans = exporter.get_finished_spans()
    steps = [s for s in spans if s.name in STEPS]
    assert {s.name for s in steps} == set(STEPS)
    assert {s.context.trace_id for s in steps} == {trace_id}  # before and after the takeover
    resumed_by = [dict(s.attributes or {}).get("corps.saga.resumed_by") for s in steps]
    assert None in resumed_by  # the first coordinator's step
    assert c2.node in resumed_by  # the second's
    (marker,) = [s for s in spans if s.name == "saga PlaceOrder resumed"]
    assert marker.context.trace_id == trace_id
    assert dict(marker.attributes or {})["corps.saga.resumed_by"] == c2.node
    # What the participants' handlers did after the takeover is in the trace too.
    assert {s.context.trace_id for s in spans if s.name == "process Shipping"} == {trace_id}
    assert c2.bad_traceparents == 0
    assert second.metrics()["system"]["bad_traceparents"] == 0
    # The saga's record names that trace: saga_status, and `corps trace` (its saga is whole by its id).
    assert (await second.saga_status(sid)).trace_id == f"{trace_id:032x}"
    t = await trace(second, sid)
    assert f"opentelemetry trace: {trace_id:032x}" in format_trace(t)
    assert {e.step for e in t.entries if e.kind == "succeeded"} == {"reserve", "charge", "ship"}


@pytest.mark.parametrize("hostile", ["00-" + "A" * 32 + "-" + "b" * 16 + "-01", "x" * 100_000,
                                     "00-" + "0" * 32 + "-" + "b" * 16 + "-01"])
async def test_a_hostile_traceparent_in_a_stored_record_is_ignored_and_counted(
    participants: ActorSystem, coordinators: Factory, traced: Traced,
    hostile: str,
) -> None:
    provider, exporter, ended = traced
    c1, sid, trace_id = await crashed_after_first_step(coordinators, provider)
    saga_log = c1.log  # write the record straight to KV
    record, revision = await saga_log.read(sid)
    state = msgspec.structs.replace(record.state, traceparent=hostile)
    await saga_log.write(msgspec.structs.replace(record, state=state), revision)

    metrics = Metrics()
    second: ActorSystem = await coordinators(metrics)
    c2 = await second.coordinator()
    assert (await second.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    await ended.wait(STEPS[-1])
    assert c2.bad_traceparents == 1
    # Exposed as its siblings are: in metrics() and in the Prometheus exporter.
    assert second.metrics()["system"]["bad_traceparents"] == 1
    _, body = metrics.scrape()
    assert "\ncorps_bad_traceparents_total 1\n" in body.decode()
    assert (await second.saga_status(sid)).trace_id == ""
    after = [s for s in exporter.get_finished_spans() if s.name in STEPS[1:]]
    assert after
    assert all(s.context.trace_id != trace_id for s in after)  # a new trace, not a crash
    assert not [s for s in exporter.get_finished_spans() if s.name == "saga PlaceOrder resumed"]
