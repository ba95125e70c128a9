"""One trace per saga, across coordinators: the traceparent of its start, kept in its record.

The coordinator that starts a saga stores the W3C traceparent current at the start in the first
record (``SagaState.traceparent``; left out while tracing is off: the observer has none). Until
its end, the saga's tasks on that coordinator run in the start's context, so its steps are spans
of that trace. A coordinator that takes the saga over has none of that context: it reads the
stored value back, as untrusted input (anyone who may write the KV bucket can put anything
there). A malformed value is dropped, counted (``Coordinator.bad_traceparents``) and logged,
never raised: the saga goes on, in a new trace. A valid one is given to the observer
(``Observer.saga_resumed``) in a context of its own, the one the saga's drive task runs in:
tracing makes it the parent of every step from then on, so one trace holds the saga before and
after the takeover.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Protocol

from corps.wire._headers import valid_traceparent

if TYPE_CHECKING:
    from corps.core._observe import Observer
    from corps.saga._state import SagaState

log = logging.getLogger("corps.saga")


class TraceCount(Protocol):
    """What a coordinator counts here: stored traceparents refused as malformed."""

    bad_traceparents: int


def start_traceparent(observer: Observer | None) -> str:
    """The traceparent to store in a saga's first record: the current one, or "" for none (or for
    a value that is not one: an observer of the user's may return anything). At most
    ``MAX_TRACEPARENT_LENGTH`` characters, so the record's size stays bounded."""
    if observer is None:
        return ""
    current = observer.traceparent()
    return current if current and valid_traceparent(current) is not None else ""


def resumed_context(owner: TraceCount, observer: Observer, saga: str, state: SagaState,
                    node: str) -> contextvars.Context | None:
    """The context a saga (of class ``saga``) taken over by ``node`` is driven in: its stored
    trace's, made current by ``observer``; None when it has none, or a malformed one (counted in
    ``owner`` and logged)."""
    stored = state.started_in
    if not stored:
        return None
    if valid_traceparent(stored) is None:
        owner.bad_traceparents += 1
        log.warning("saga %s: its stored traceparent is malformed (%d characters); ignored, it goes on in a new "
                    "trace", state.saga_id, len(stored))
        return None
    context = contextvars.copy_context()
    context.run(observer.saga_resumed, saga, state.saga_id, stored, node)
    return context
