"""OpenTelemetry spans and traceparent propagation on a real nats-server, with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from corps import ActorSystem, RemoteError
from corps.examples.shop import hybrid
from corps.observe import Tracing
from corps.saga import SagaStatus
from tests.integration.domain import Account, Balance, Boom, Forward, GetBalance, Relay
from tests.integration.test_trace import HybridOrder, hybrid_shop, order


class Ended(SpanProcessor):
    """Wakes a test when a span with a given name has ended (a bounded wait, no sleeps)."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self._waiters: list[tuple[str, anyio.Event]] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.names[span.name] = self.names.get(span.name, 0) + 1
        for name, event in self._waiters:
            if name == span.name:
                event.set()

    async def wait(self, name: str, timeout: float = 10.0) -> None:
        if name in self.names:
            return
        event = anyio.Event()
        self._waiters.append((name, event))
        with anyio.fail_after(timeout):
            await event.wait()


def in_memory_tracing() -> tuple[TracerProvider, InMemorySpanExporter, Ended]:
    """A provider whose spans go to an in-memory exporter, and an ``Ended`` to wait on them."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    ended = Ended()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(ended)
    return provider, exporter, ended


@pytest.fixture
def tracing() -> tuple[TracerProvider, InMemorySpanExporter, Ended]:
    return in_memory_tracing()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(spans: tuple[ReadableSpan, ...], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


async def test_one_trace_connects_a_saga_its_steps_handlers_and_the_choreographed_reaction(
    actor_system_factory: Callable[..., Any], tracing: tuple[TracerProvider, InMemorySpanExporter, Ended],
    corps_namespace: str,
) -> None:
    provider, exporter, ended = tracing
    system: ActorSystem = await actor_system_factory(observers=[Tracing(provider)])
    await hybrid_shop(system)
    notes = await system.spawn(hybrid.Notifications, "notes")
    with provider.get_tracer("test").start_as_current_span("checkout") as root:
        sid = await system.start_saga(HybridOrder, order("o1"))
    assert (await system.wait_saga(sid, timeout=20)).status is SagaStatus.COMPLETED
    await ended.wait("process OrderCompleted")  # the choreographed reaction, in another context
    assert (await notes.ask(hybrid.GetSent())).lines == ["o1: on its way, tracking TRK-o1"]

    spans = exporter.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    reaction = by_name(spans, "process OrderCompleted")[0]
    # The chain, child to parent: reaction <- publish <- the announce handler <- the step <- the root.
    publish = parent_of(spans, reaction)
    handler = parent_of(spans, publish)
    step = parent_of(spans, handler)
    assert (publish.name, handler.name, step.name) == ("send OrderCompleted", "process OrdersContext",
                                                       "saga HybridOrder announce")
    assert parent_of(spans, step).context.span_id == root.get_span_context().span_id
    assert {s.context.trace_id for s in (reaction, publish, handler, step)} == {trace_id}
    # Every step of the saga and every participant's handler is in the one trace.
    in_trace = {s.name for s in spans if s.context.trace_id == trace_id}
    assert {"saga HybridOrder reserve", "saga HybridOrder charge", "saga HybridOrder ship",
            "process Inventory", "process Payments", "process Shipping"} <= in_trace
    # Semantic conventions.
    assert (reaction.kind, handler.kind, publish.kind, step.kind) == (SpanKind.CONSUMER, SpanKind.SERVER,
                                                                      SpanKind.PRODUCER, SpanKind.CLIENT)
    attrs = dict(reaction.attributes or {})
    assert attrs["messaging.system"] == "nats"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == f"{corps_namespace}.events.OrderCompleted"
    assert attrs["messaging.message.id"] == "order-outcome-o1"
    assert attrs["messaging.consumer.group.name"]
    assert dict(publish.attributes or {})["messaging.operation.type"] == "send"
    assert dict(step.attributes or {})["corps.saga.id"] == sid
    assert dict(step.attributes or {})["corps.saga.outcome"] == "StepSucceeded"


async def test_an_ask_a_nested_tell_and_ask_and_a_failure_are_spans_of_one_trace(
    actor_system_factory: Callable[..., Any], tracing: tuple[TracerProvider, InMemorySpanExporter, Ended],
) -> None:
    provider, exporter, ended = tracing
    system: ActorSystem = await actor_system_factory(observers=[Tracing(provider)])
    relay = await system.spawn(Relay, "r1")
    await system.spawn(Relay, "r2")
    await system.spawn(Account, "r2")
    with provider.get_tracer("test").start_as_current_span("request") as root:
        assert await relay.ask(Forward("r2", 5)) == Balance("r2", 5)
        with pytest.raises(RemoteError):
            await system.ref(Account, "r2").ask(Boom("no"))
    await ended.wait("process Relay")  # the nested tell's handler may end after the ask's reply
    spans = exporter.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    assert all(s.context.trace_id == trace_id for s in spans)
    forward = next(s for s in by_name(spans, "process Relay") if s.kind is SpanKind.SERVER)
    assert parent_of(spans, forward).name == "send Relay"
    assert parent_of(spans, parent_of(spans, forward)).name == "request"
    traced = next(s for s in by_name(spans, "process Relay") if s.kind is SpanKind.CONSUMER)
    assert parent_of(spans, traced) == forward  # the handler's tell carries its span's context
    deposit = next(s for s in by_name(spans, "process Account") if s.status.status_code is StatusCode.UNSET)
    assert parent_of(spans, parent_of(spans, deposit)) == forward
    failed = [s for s in by_name(spans, "process Account") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert dict(failed[0].attributes or {})["error.type"] == "ValueError"
    client = parent_of(spans, failed[0])
    assert client.status.status_code is StatusCode.ERROR  # the ask raised RemoteError at the caller
    assert dict(client.attributes or {})["error.type"] == "RemoteError"


async def test_a_hostile_traceparent_starts_a_new_trace_and_the_message_is_handled(
    actor_system_factory: Callable[..., Any], tracing: tuple[TracerProvider, InMemorySpanExporter, Ended],
) -> None:
    provider, exporter, _ = tracing
    system: ActorSystem = await actor_system_factory(observers=[Tracing(provider)])
    ref = await system.spawn(Account, "a1")
    for tp in ["", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 100_000, "00-zz", "\u00e9" * 10]:
        frame = system.codec.encode([(GetBalance("a1"), 0, 1, "", "", "", tp)])  # a tell with that traceparent
        await system._nc.publish(ref.subject, frame)
    assert await ref.ask(GetBalance("a1")) == Balance("a1", 0)  # the barrier: the tells were handled before it
    spans = by_name(exporter.get_finished_spans(), "process Account")
    assert len(spans) == 6
    assert all(s.parent is None for s in spans if s.kind is SpanKind.CONSUMER)


async def test_without_observers_nothing_is_traced_and_envelopes_stay_short(
    actor_system: ActorSystem, tracing: tuple[TracerProvider, InMemorySpanExporter, Ended],
) -> None:
    provider, exporter, _ = tracing
    ref = await actor_system.spawn(Account, "a1")
    with provider.get_tracer("test").start_as_current_span("request"):
        assert actor_system._encode(ref.subject, GetBalance("a1"), 0) == actor_system.codec.encode((GetBalance("a1"), 0,
                                                                                                actor_system._outbox.seq))
        await ref.ask(GetBalance("a1"))
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]
