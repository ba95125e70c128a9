"""OpenTelemetry spans for corps, following the messaging semantic conventions.

Spans: ``send`` (an ask: CLIENT, until its reply; a tell has none and carries the current
context), ``process`` (a handler, a
message's: CONSUMER, or SERVER for an ask; an event's: CONSUMER), ``send`` of an event (PRODUCER,
until the stream's ack) and one per saga step attempt (CLIENT, until its outcome). Attributes:
``messaging.system`` = nats, ``messaging.destination.name`` (the subject), ``messaging.operation.type``
and ``.name``, ``messaging.message.id``, ``messaging.message.conversation_id`` (the correlation id),
``messaging.consumer.group.name`` (an event consumer), and ``corps.*`` for actor, message type and saga.

Propagation: the W3C ``traceparent`` of the current span rides in the envelope (``Envelope.tp``)
of tells and asks, and in the ``traceparent`` header of events; a handler's span continues it, and
what the handler sends continues the handler's. A saga's steps continue the context its start ran
in (the coordinator's tasks are started from it), so one trace holds an orchestrated saga, its
steps' handlers, the events they publish and the choreographed reactions to them. The start's
traceparent is also kept in the saga's record: a coordinator that takes the saga over after a
crash continues that trace (``saga_resumed``): a ``saga NAME resumed`` span marks the takeover,
and every later step is a child of the start's context, with ``corps.saga.resumed_by`` (the node).

OpenTelemetry is an optional extra (``pip install 'corps[otel]'``); nothing here is imported
until a ``Tracing`` is made.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from corps.core._observe import Observer
from corps.errors import ExtraNotInstalled
from corps.events._delivery import EventDelivery
from corps.observe._metrics import actor_name_of
from corps.observe._traceparent import format_traceparent, parse_traceparent

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from corps.core._host import ClassHost
    from corps.wire._codec import Envelope

_OK_OUTCOMES = frozenset({"StepSucceeded", "UndoSucceeded"})
_RESUMED_BY: contextvars.ContextVar[str] = contextvars.ContextVar("corps_saga_resumed_by", default="")
"""The node that took over the saga whose drive runs in this context ("" for its own coordinator)."""


class Tracing(Observer):
    """OpenTelemetry tracing of the node it observes: ``ActorSystem(observers=[Tracing()])``.

    Args:
        tracer_provider: where spans go; None uses the global one (``trace.set_tracer_provider``).

    Raises:
        ExtraNotInstalled: opentelemetry-api is not installed (``pip install 'corps[otel]'``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as exc:
            raise ExtraNotInstalled("corps.observe.Tracing", "otel", "opentelemetry-api") from exc
        self._context = context
        self._trace = trace
        self._tracer = trace.get_tracer("corps", tracer_provider=tracer_provider)
        self._namespace = "corps"

    def bind(self, node: Any) -> None:
        self._namespace = node.namespace

    # -- spans -----------------------------------------------------------------------------

    def _remote(self, parent: str) -> Any:
        """The OpenTelemetry context whose span is the remote ``parent`` (a traceparent); None if invalid."""
        trace = self._trace
        ids = parse_traceparent(parent) if parent else None
        if ids is None:
            return None
        remote = trace.SpanContext(ids.trace_id, ids.span_id, is_remote=True, trace_flags=trace.TraceFlags(
            ids.flags & 0x01))
        return trace.set_span_in_context(trace.NonRecordingSpan(remote))

    def _start(self, name: str, kind: Any, attributes: dict[str, Any], parent: str = "") -> Any:
        """Start a span, make it current in this task; the token for ``_end``."""
        trace = self._trace
        ctx = self._remote(parent) if parent else None
        span = self._tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)
        return span, self._context.attach(trace.set_span_in_context(span))

    def _end(self, token: Any, error: BaseException | None, error_type: str = "") -> None:
        span: Span = token[0]
        if error is not None or error_type:
            from opentelemetry.trace import Status, StatusCode

            error_type = error_type or type(error).__name__
            span.set_attribute("error.type", error_type)
            if error is not None:
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error) if error is not None else error_type))
        self._context.detach(token[1])
        span.end()

    def traceparent(self) -> str:
        ctx = self._trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return ""
        return format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))

    # -- actors ----------------------------------------------------------------------------

    def handle_begin(self, host: ClassHost, subject: str, env: Envelope[Any]) -> Any:
        kind = self._trace.SpanKind
        msg = env.msg
        if isinstance(msg, EventDelivery):
            event_type = type(msg.event).__name__
            return self._start(f"process {event_type}", kind.CONSUMER, {
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": msg.msg.subject,
                "messaging.consumer.group.name": msg.consumer.name,
                "messaging.message.id": msg.event_id,
                "messaging.message.conversation_id": msg.correlation_id,
                "corps.actor": host.name,
                "corps.message.type": event_type,
            }, msg.headers.get("traceparent", ""))
        return self._start(f"process {host.name}", kind.SERVER if env.rid else kind.CONSUMER, {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": subject,
            "messaging.destination.template": f"{self._namespace}.actor.{host.name}.*",
            "messaging.message.conversation_id": env.corr,
            "corps.actor": host.name,
            "corps.message.type": type(msg).__name__,
        }, env.tp)

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        self._end(token, error)

    def send_begin(self, subject: str, msg: Any, ask: bool) -> Any:
        if not ask:
            # No span of its own: a tell carries the current span's context (the handler's, or the
            # caller's), and its handler's span continues it. A span per tell doubled the cost of
            # a traced tell (SDK work, ~30 us on 2 busy cores) and says nothing the handler's does not.
            return None
        name = actor_name_of(subject)
        return self._start(f"send {name}", self._trace.SpanKind.CLIENT, {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "ask",
            "messaging.destination.name": subject,
            "messaging.destination.template": f"{self._namespace}.actor.{name}.*",
            "corps.message.type": type(msg).__name__,
        })

    def send_end(self, token: Any, error: BaseException | None) -> None:
        if token is not None:
            self._end(token, error)

    # -- events ----------------------------------------------------------------------------

    def publish_begin(self, subject: str, event: Any, msg_id: str) -> Any:
        event_type = type(event).__name__
        return self._start(f"send {event_type}", self._trace.SpanKind.PRODUCER, {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": subject,
            "messaging.message.id": msg_id,
            "corps.message.type": event_type,
        })

    def publish_end(self, token: Any, error: BaseException | None) -> None:
        self._end(token, error)

    # -- sagas -----------------------------------------------------------------------------

    def saga_started(self, saga: str, saga_id: str) -> None:
        self._trace.get_current_span().add_event("corps.saga.started", {"corps.saga.name": saga,
                                                                        "corps.saga.id": saga_id})

    def saga_resumed(self, saga: str, saga_id: str, traceparent: str, node: str) -> None:
        ctx = self._remote(traceparent)
        if ctx is None:
            return
        attributes = {"corps.saga.name": saga, "corps.saga.id": saga_id, "corps.saga.resumed_by": node}
        self._tracer.start_span(f"saga {saga} resumed", context=ctx, attributes=attributes).end()
        # The rest of this context (the saga's drive on this node) is a child of the start's.
        self._context.attach(ctx)
        _RESUMED_BY.set(node)

    def step_begin(self, saga: str, saga_id: str, step: str, compensation: bool, target: str) -> Any:
        attributes: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "ask",
            "messaging.destination.template": f"{self._namespace}.actor.{target}.*",
            "messaging.message.conversation_id": saga_id,
            "corps.saga.name": saga,
            "corps.saga.id": saga_id,
            "corps.saga.step": step,
            "corps.saga.compensation": compensation,
            "corps.actor": target,
        }
        resumed_by = _RESUMED_BY.get()
        if resumed_by:
            attributes["corps.saga.resumed_by"] = resumed_by
        return self._start(f"saga {saga} {'undo ' if compensation else ''}{step}", self._trace.SpanKind.CLIENT,
                           attributes)

    def step_end(self, token: Any, outcome: str) -> None:
        token[0].set_attribute("corps.saga.outcome", outcome)
        self._end(token, None, "" if outcome in _OK_OUTCOMES else outcome)
