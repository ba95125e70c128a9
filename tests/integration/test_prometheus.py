"""Prometheus metrics of a live system, scraped over HTTP and read with prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corps import ActorSystem, Observer, RemoteError
from corps.examples.shop import hybrid
from corps.observe import CONTENT_TYPE, Metrics, serve_metrics
from corps.saga import SagaStatus
from tests.integration.domain import Account, Boom, Deposit, Note
from tests.integration.events_domain import Log, Noted, Poison, Recorder
from tests.integration.test_trace import HybridOrder, hybrid_shop, order


class Handled(Observer):
    """A test barrier: wakes when ``n`` events of one type have been handled."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        self.count = 0
        self.changed = anyio.Event()

    def handle_begin(self, host: Any, subject: str, env: Any) -> Any:
        return type(getattr(env.msg, "event", None)).__name__

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        if token == self.event_type and error is None:
            self.count += 1
            self.changed.set()

    async def wait(self, n: int, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while self.count < n:
                self.changed = anyio.Event()
                await self.changed.wait()


class DeadLettered(Observer):
    """A test barrier: set once a consumer reports an event written to the dead-letter stream."""

    def __init__(self) -> None:
        self.seen = anyio.Event()

    def event_dead_lettered(self, consumer: str, event_type: str, reason: str) -> None:
        self.seen.set()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


async def scrape(port: int) -> Samples:
    content_type, text = await anyio.to_thread.run_sync(fetch, f"http://127.0.0.1:{port}/metrics")
    assert content_type == CONTENT_TYPE
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_handled_errors_latency_dead_letters_and_mailboxes_are_scraped_over_http(
    actor_system_factory: Callable[..., Any],
) -> None:
    metrics = Metrics()
    system: ActorSystem = await actor_system_factory(observers=[metrics])
    acc = await system.spawn(Account, "a1")
    for _ in range(3):
        await acc.ask(Deposit("a1", 1))
    await acc.tell(Note("hello"))
    with pytest.raises(RemoteError):
        await acc.ask(Boom("no"))
    await system.ref(Account, "nobody").tell(Note("lost"))  # no such instance: a dead letter
    await system.dead_letters.wait_for(1)
    async with serve_metrics(metrics.scrape, 0) as port:
        samples = await scrape(port)
    assert value(samples, "corps_messages_handled_total", **{"class": "Account", "type": "Deposit"}) == 3
    assert value(samples, "corps_messages_handled_total", **{"class": "Account", "type": "Note"}) == 1
    assert value(samples, "corps_messages_handled_total", **{"class": "Account", "type": "Boom"}) == 1
    assert value(samples, "corps_handler_errors_total", **{"class": "Account", "type": "Boom"}) == 1
    assert ("corps_handler_errors_total", (("class", "Account"), ("type", "Deposit"))) not in samples
    assert value(samples, "corps_handler_seconds_count", **{"class": "Account", "type": "Deposit"}) == 3
    assert value(samples, "corps_handler_seconds_bucket", **{"class": "Account", "type": "Deposit", "le": "+Inf"}) == 3
    assert value(samples, "corps_dead_letters_total", **{"class": "Account", "type": "Note"}) == 1
    assert value(samples, "corps_dead_letters_node_total") == 1
    assert value(samples, "corps_mailbox_depth", **{"class": "Account"}) == 0
    assert value(samples, "corps_overloads_total", **{"class": "Account"}) == 0
    # No label carries an id: not the instance's, not the dead letter's.
    assert not any("a1" in v or "nobody" in v for (_, labels) in samples for _, v in labels)


async def test_sagas_steps_and_event_consumers_are_counted(actor_system_factory: Callable[..., Any]) -> None:
    metrics, reactions = Metrics(), Handled("OrderCompleted")
    system: ActorSystem = await actor_system_factory(observers=[metrics, reactions])
    await hybrid_shop(system)
    notes = await system.spawn(hybrid.Notifications, "notes")
    ids = [await system.start_saga(HybridOrder, order(f"o{i}")) for i in range(2)]
    for sid in ids:
        assert (await system.wait_saga(sid, timeout=20)).status is SagaStatus.COMPLETED
    await reactions.wait(2)  # both outcomes reached the notifications context
    assert len((await notes.ask(hybrid.GetSent())).lines) == 2
    _, body = metrics.scrape()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert value(samples, "corps_sagas_started_total", saga="HybridOrder") == 2
    assert value(samples, "corps_sagas_completed_total", saga="HybridOrder") == 2
    assert value(samples, "corps_sagas_in_flight", saga="HybridOrder") == 0
    assert ("corps_sagas_failed_total", (("saga", "HybridOrder"),)) not in samples
    assert value(samples, "corps_saga_step_seconds_count", saga="HybridOrder", step="announce") == 2
    assert value(samples, "corps_saga_steps_total", saga="HybridOrder", step="reserve", outcome="StepSucceeded") == 2
    assert value(samples, "corps_messages_handled_total", **{"class": "Notifications", "type": "OrderCompleted"}) == 2
    consumers = [dict(labels)["consumer"] for (name, labels) in samples if name == "corps_consumer_pending"]
    assert consumers
    assert all(value(samples, "corps_consumer_pending", consumer=c) >= 0 for c in consumers)


async def test_a_redelivered_event_is_counted_per_consumer(actor_system_factory: Callable[..., Any]) -> None:
    metrics, handled = Metrics(), Handled("Noted")
    system: ActorSystem = await actor_system_factory(observers=[metrics, handled])
    await system.spawn(Recorder, "r1")
    await system.publish(Noted("k", 1, fail_times=1))  # the first delivery fails: nak'ed, delivered again
    await handled.wait(1)
    _, body = metrics.scrape()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    (consumer,) = [dict(labels)["consumer"] for (name, labels) in samples if name == "corps_consumer_redelivered_total"]
    assert value(samples, "corps_consumer_redelivered_total", consumer=consumer) == 1
    assert value(samples, "corps_messages_handled_total", **{"class": "Recorder", "type": "Noted"}) == 2
    assert value(samples, "corps_handler_errors_total", **{"class": "Recorder", "type": "Noted"}) == 1
    assert value(samples, "corps_consumer_pending", consumer=consumer) == 0


async def test_events_dead_lettered_before_any_mailbox_are_counted_per_consumer_and_in_the_node_total(
    actor_system_factory: Callable[..., Any],
) -> None:
    metrics = Metrics()
    lettered = DeadLettered()
    system: ActorSystem = await actor_system_factory(observers=[metrics, lettered])
    Recorder.log = Log()
    await system.spawn(Recorder, "r")
    await system.publish(Poison(7))  # its handler always raises: dead-lettered after max_deliver attempts
    await system.publish(Noted("fine", 1))
    with anyio.fail_after(20):
        await lettered.seen.wait()
    counts = system.metrics()
    assert counts["events.Recorder"]["dead_lettered"] == 1
    assert counts["system"]["event_dead_letters"] == 1
    assert counts["system"]["dead_letters"] == 0  # no message dead letter: the event's is counted apart
    async with serve_metrics(metrics.scrape, 0) as port:
        samples = await scrape(port)
    assert value(samples, "corps_event_dead_letters_total", consumer="Recorder", type="Poison",
                 reason="handler-error") == 1
    assert value(samples, "corps_dead_letters_node_total") == 1
    assert value(samples, "corps_events_processed_total", consumer="Recorder") >= 1
