"""Prometheus metrics of one node: an ``Observer`` that counts, and a scrape handler.

Counted as it happens (hooks): handled messages, handler errors and latency per class and
message type; dead letters per class and type; consumer redeliveries and pending counts (from
each delivery's ``$JS.ACK`` subject); sagas started and ended per class; saga step latency and
outcomes per class and step. Read at scrape: mailbox depth and overloads per class, sagas in
flight per class, node totals (dead letters, events processed, stored traceparents refused).
Labels are class, message type, saga, step and consumer names: finite sets, never ids, and
bounded all the same (``_exposition.MAX_SERIES``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from corps.core._observe import Observer
from corps.events._delivery import EventDelivery
from corps.observe._exposition import CONTENT_TYPE, Family, render

if TYPE_CHECKING:
    from corps.core._host import ClassHost
    from corps.core._node import Node
    from corps.wire._codec import Envelope

_CLASS_TYPE = ("class", "type")


def actor_name_of(subject: str) -> str:
    """The actor name in ``{ns}.actor.{name}.{id}``, or "?" for any other subject."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) >= 3 and parts[1] == "actor" else "?"


def pending_of(reply: str) -> int | None:
    """The consumer's pending count in a ``$JS.ACK`` subject (v1, or v2 with domain and account)."""
    t = reply.split(".")
    if len(t) >= 12:
        t = t[2:]
    if len(t) < 9 or t[0] != "$JS" or t[1] != "ACK":
        return None
    try:
        return int(t[8])
    except ValueError:
        return None


class Metrics(Observer):
    """Prometheus metrics of the node it observes: ``ActorSystem(observers=[Metrics()])``.

    ``scrape()`` returns ``(content_type, body)`` for any HTTP server to serve at /metrics;
    ``corps run --metrics-port N`` serves it with ``serve_metrics``.
    """

    def __init__(self) -> None:
        self._node: Node | None = None
        f = Family
        self.handled = f("corps_messages_handled_total", "messages and events handled, per actor class and "
                         "message type", "counter", _CLASS_TYPE)
        self.errors = f("corps_handler_errors_total", "handlers that raised", "counter", _CLASS_TYPE)
        self.latency = f("corps_handler_seconds", "handler latency (reply included)", "histogram", _CLASS_TYPE)
        self.dead = f("corps_dead_letters_total", "messages recorded as dead letters", "counter", _CLASS_TYPE)
        self.redelivered = f("corps_consumer_redelivered_total", "events delivered more than once", "counter",
                             ("consumer",))
        self.pending = f("corps_consumer_pending", "events in the stream not yet delivered to the consumer, as of "
                         "its last delivery", "gauge", ("consumer",))
        self.event_dead = f("corps_event_dead_letters_total", "events a consumer wrote to the dead-letter stream, "
                            "by reason", "counter", ("consumer", "type", "reason"))
        self.started = f("corps_sagas_started_total", "sagas started on this node", "counter", ("saga",))
        self.ended = {status: f(f"corps_sagas_{status.lower()}_total", f"sagas that ended {status} on this node",
                                "counter", ("saga",)) for status in ("COMPLETED", "COMPENSATED", "FAILED")}
        self.step_latency = f("corps_saga_step_seconds", "saga step (and compensation) latency, from ask to outcome",
                              "histogram", ("saga", "step"))
        self.steps = f("corps_saga_steps_total", "saga step attempts by outcome", "counter",
                       ("saga", "step", "outcome"))
        self._counted = [self.handled, self.errors, self.latency, self.dead, self.redelivered, self.pending,
                         self.event_dead, self.started, *self.ended.values(), self.step_latency, self.steps]

    def bind(self, node: Node) -> None:
        self._node = node

    # -- hooks -----------------------------------------------------------------------------

    def handle_begin(self, host: ClassHost, subject: str, env: Envelope[Any]) -> Any:
        msg = env.msg
        if isinstance(msg, EventDelivery):
            name = msg.consumer.name
            if msg.attempts == 0 and msg.meta.delivered > 1:
                self.redelivered.inc((name,))
            pending = pending_of(msg.msg.reply)
            if pending is not None:
                self.pending.set((name,), pending)
            tp = type(msg.event).__name__
        else:
            tp = type(msg).__name__
        return (host.name, tp), time.perf_counter()

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        key, began = token
        self.latency.observe(key, time.perf_counter() - began)
        self.handled.inc(key)
        if error is not None:
            self.errors.inc(key)

    def dead_letter(self, subject: str, message_type: str, n: int) -> None:
        self.dead.inc((actor_name_of(subject), message_type), n)

    def event_dead_lettered(self, consumer: str, event_type: str, reason: str) -> None:
        self.event_dead.inc((consumer, event_type, reason))

    def saga_started(self, saga: str, saga_id: str) -> None:
        self.started.inc((saga,))

    def saga_ended(self, saga: str, saga_id: str, status: str) -> None:
        family = self.ended.get(status)
        if family is not None:
            family.inc((saga,))

    def step_begin(self, saga: str, saga_id: str, step: str, compensation: bool, target: str) -> Any:
        return (saga, f"{step} (undo)" if compensation else step), time.perf_counter()

    def step_end(self, token: Any, outcome: str) -> None:
        key, began = token
        self.step_latency.observe(key, time.perf_counter() - began)
        self.steps.inc((*key, outcome))

    # -- scrape ----------------------------------------------------------------------------

    def scrape(self) -> tuple[str, bytes]:
        """The metrics now, as ``(content_type, body)`` in the Prometheus text format."""
        return CONTENT_TYPE, render([*self._counted, *self._read()])

    def _read(self) -> list[Family]:
        """What the node holds now: mailbox depths, overloads, sagas in flight, totals, refused traceparents."""
        depth = Family("corps_mailbox_depth", "messages waiting in the mailboxes of a class's instances", "gauge",
                       ("class",))
        overloads = Family("corps_overloads_total", "messages refused by a full or overloaded mailbox", "counter",
                           ("class",))
        in_flight = Family("corps_sagas_in_flight", "sagas this node's coordinator drives now", "gauge", ("saga",))
        dead_total = Family("corps_dead_letters_node_total",
                            "all dead letters of this node (messages, and events written to the dead-letter stream)",
                            "counter", ())
        event_done = Family("corps_events_processed_total", "events a consumer handled and acknowledged", "counter",
                            ("consumer",))
        bad_traceparents = Family("corps_bad_traceparents_total", "sagas taken over whose stored traceparent was "
                                  "malformed: refused, they went on in a new trace", "counter", ())
        node = self._node
        if node is not None:
            for host in list(node._hosts.values()):
                cells = [*host.cells.values(), *host.services]
                depth.set((host.name,), sum(c.depth for c in cells))
                overloads.set((host.name,), host.metrics.overloaded)
            coordinator = getattr(node, "_coordinator", None)
            for saga in getattr(coordinator, "definitions", {}).values():
                in_flight.set((saga.__name__,), 0)
            for d in list(getattr(coordinator, "_drives", {}).values()):
                key = (d.engine.saga.__name__,)
                in_flight.set(key, in_flight.values.get(key, 0) + 1)
            counts = node.metrics()
            for name, c in counts.items():
                if name.startswith("events."):
                    event_done.set((name.removeprefix("events."),), c["processed"])
            dead_total.set((), node.dead_letters.count + counts["system"].get("event_dead_letters", 0))
            bad_traceparents.set((), counts["system"].get("bad_traceparents", 0))
        return [depth, overloads, in_flight, dead_total, event_done, bad_traceparents]
