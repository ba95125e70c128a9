"""The one observation hook of the runtime: what tracing and metrics attach with.

A node holds ``observer``: None (the default) or one ``Observer``. Every hook site in the core,
events and sagas checks ``if observer is not None`` once and otherwise runs the code it ran
before, so with observation off the hot path pays one attribute load per message (bench:
docs/observability.md). Implementations (``corps.observe.Metrics``, ``corps.observe.Tracing``)
override what they need; every method here does nothing.

Tokens: a ``*_begin`` hook returns whatever its ``*_end`` needs (a span, a start time). Begin and
end run in the same task, so a hook may make something current (an OpenTelemetry context) in
between: what the handler, the step or the send does then sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corps.core._host import ClassHost
    from corps.core._node import Node
    from corps.wire._codec import Envelope


class Observer:
    """Hooks the runtime calls while observation is on. Subclass and override what you need."""

    def bind(self, node: Node) -> None:
        """The node started: what it hosts can be read from now on (``node.metrics()``)."""

    # -- actors ------------------------------------------------------------------------------

    def handle_begin(self, host: ClassHost, subject: str, env: Envelope[Any]) -> Any:
        """An instance of ``host.cls`` at ``subject`` is about to handle ``env`` (a message, or an
        event delivery: ``env.msg`` is then a ``Carrier``)."""
        return None

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        """The handler returned (``error`` None) or raised ``error``."""

    def send_begin(self, subject: str, msg: Any, ask: bool) -> Any:
        """A tell (``ask`` False) or an ask to ``subject`` is about to be sent."""
        return None

    def send_end(self, token: Any, error: BaseException | None) -> None:
        """The tell was handed to the connection, or the ask's reply came (or ``error``)."""

    def traceparent(self) -> str:
        """The W3C ``traceparent`` what is sent now should carry, or "" for none."""
        return ""

    def dead_letter(self, subject: str, message_type: str, n: int) -> None:
        """``n`` messages to ``subject`` were recorded as dead letters."""

    # -- events ------------------------------------------------------------------------------

    def event_dead_lettered(self, consumer: str, event_type: str, reason: str) -> None:
        """Consumer ``consumer`` wrote an ``event_type`` event to the dead-letter stream (``reason``:
        undecodable, no-key, max-deliver, handler-error); before any mailbox, or after its handler."""

    def publish_begin(self, subject: str, event: Any, msg_id: str) -> Any:
        """``event`` is about to be published on ``subject``."""
        return None

    def publish_end(self, token: Any, error: BaseException | None) -> None:
        """The stream acked the publish, or it failed with ``error``."""

    # -- sagas -------------------------------------------------------------------------------

    def saga_started(self, saga: str, saga_id: str) -> None:
        """A saga of class ``saga`` was started (its first record is written)."""

    def saga_ended(self, saga: str, saga_id: str, status: str) -> None:
        """A saga reached ``status`` (COMPLETED, COMPENSATED or FAILED) on this node."""

    def saga_resumed(self, saga: str, saga_id: str, traceparent: str, node: str) -> None:
        """Coordinator ``node`` took a saga over; ``traceparent`` (validated) is where it was started.
        Runs in the context the saga is driven in from now on: what it makes current there, its
        steps see."""

    def step_begin(self, saga: str, saga_id: str, step: str, compensation: bool, target: str) -> Any:
        """A saga step (or its compensation) is about to ask ``target`` (an actor name)."""
        return None

    def step_end(self, token: Any, outcome: str) -> None:
        """The step's ask came to ``outcome``: the engine event's name (StepSucceeded, ...)."""


class Fanout(Observer):
    """Several observers as one: each hook calls each, in order; tokens are their tuple."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers

    def bind(self, node: Node) -> None:
        for o in self.observers:
            o.bind(node)

    def handle_begin(self, host: ClassHost, subject: str, env: Envelope[Any]) -> Any:
        return [o.handle_begin(host, subject, env) for o in self.observers]

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        for o, t in reversed(list(zip(self.observers, token, strict=True))):
            o.handle_end(t, error)

    def send_begin(self, subject: str, msg: Any, ask: bool) -> Any:
        return [o.send_begin(subject, msg, ask) for o in self.observers]

    def send_end(self, token: Any, error: BaseException | None) -> None:
        for o, t in reversed(list(zip(self.observers, token, strict=True))):
            o.send_end(t, error)

    def traceparent(self) -> str:
        for o in self.observers:
            tp = o.traceparent()
            if tp:
                return tp
        return ""

    def dead_letter(self, subject: str, message_type: str, n: int) -> None:
        for o in self.observers:
            o.dead_letter(subject, message_type, n)

    def event_dead_lettered(self, consumer: str, event_type: str, reason: str) -> None:
        for o in self.observers:
            o.event_dead_lettered(consumer, event_type, reason)

    def publish_begin(self, subject: str, event: Any, msg_id: str) -> Any:
        return [o.publish_begin(subject, event, msg_id) for o in self.observers]

    def publish_end(self, token: Any, error: BaseException | None) -> None:
        for o, t in reversed(list(zip(self.observers, token, strict=True))):
            o.publish_end(t, error)

    def saga_started(self, saga: str, saga_id: str) -> None:
        for o in self.observers:
            o.saga_started(saga, saga_id)

    def saga_ended(self, saga: str, saga_id: str, status: str) -> None:
        for o in self.observers:
            o.saga_ended(saga, saga_id, status)

    def saga_resumed(self, saga: str, saga_id: str, traceparent: str, node: str) -> None:
        for o in self.observers:
            o.saga_resumed(saga, saga_id, traceparent, node)

    def step_begin(self, saga: str, saga_id: str, step: str, compensation: bool, target: str) -> Any:
        return [o.step_begin(saga, saga_id, step, compensation, target) for o in self.observers]

    def step_end(self, token: Any, outcome: str) -> None:
        for o, t in reversed(list(zip(self.observers, token, strict=True))):
            o.step_end(t, outcome)


def combine(observers: Observer | Sequence[Observer] | None) -> Observer | None:
    """What a node holds: None for none, the observer itself for one, a Fanout for several."""
    if observers is None:
        return None
    if isinstance(observers, Observer):
        return observers
    items = list(observers)
    for o in items:
        if not isinstance(o, Observer):
            raise TypeError(f"an observer must be a corps Observer, not {type(o).__name__}")
    if not items:
        return None
    return items[0] if len(items) == 1 else Fanout(items)
