"""How big a saga's log record may grow: one NATS message, less headroom for what is still to come.

A saga's record is one KV entry, and a KV write is one NATS message: it cannot exceed the server's
``max_payload`` (1 MiB by default), headers included. A write over it is not a store outage: no
retry can make it fit. So size is decided up front, twice:

* ``start_saga`` refuses an input whose first record, plus the **headroom** of its saga class,
  does not fit (InvalidMessage, with the numbers);
* a reply that would make the record that large fails its step terminally (the participant did
  reply, so the step is *uncertain* and compensated) instead of being written.

The headroom is the most that the rest of a saga can add besides replies: for every step, each
forward attempt its ``retry`` allows (sent, failed with an error message, retry scheduled) and
each compensation attempt its ``undo_retry`` allows, with every error message counted at its
cap (``MESSAGE_MAX``, enforced where outcomes become events), plus the per-step fields that fill
in (actor id, error) and the saga's reason. So whatever fits at the start, or after a reply,
leaves room for every retry and the whole compensation. The start's traceparent
(``SagaState.traceparent``, at most ``MAX_TRACEPARENT_LENGTH`` characters) is written with the
first record and never changes, so the start's check counts it and the headroom need not. Only
what has no bound can outgrow it (a step after the pivot retried past its ``max_attempts``,
operator retries): the coordinator then ends the saga FAILED for an operator rather than write
what cannot be stored.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

import msgspec

from corps.saga._definition import Saga
from corps.saga._state import Kind, StepState, StepStatus, Transition, UndoStatus
from corps.wire._subjects import MAX_TOKEN_LENGTH

HEADER_ALLOWANCE: Final = 256
"""Bytes kept for the headers of a KV write (``Nats-Expected-Last-Subject-Sequence``...): the
server counts headers against ``max_payload`` too, and closes a connection that exceeds it."""
MESSAGE_MAX: Final = 512
"""Bytes of a participant's error message kept in a saga's history (the rest is cut)."""
TYPE_MAX: Final = 100
"""Bytes of an error's type name kept."""
DETAIL_BYTES: Final = TYPE_MAX + MESSAGE_MAX + 160
"""An error as a transition's detail or a reason: type, message, and the engine's words around them."""
_FLOAT: Final = 9  # a msgpack float64 where there was nil: due_at, undo_due_at


def _transition_bytes(step: str | None) -> int:
    """The most one transition of ``step`` takes without its detail's text (numbers at their
    widest; the detail's key counted: an empty detail is left out of the encoding)."""
    longest = max(Kind, key=lambda k: len(k.value))
    widest = Transition(seq=2**62, at=1e18, kind=longest, step=step, attempt=2**62, detail="x")
    return len(msgspec.msgpack.encode(widest)) - 1


def _step_fill(step: str) -> int:
    """What a step's state can grow by besides its reply and the texts counted elsewhere: the
    fields left out of the encoding while at their defaults, at their widest."""
    widest = StepState(step, status=max(StepStatus, key=lambda k: len(k.value)), attempt=2**62, actor_id="",
                       uncertain=True, due_at=1e18, undo_status=max(UndoStatus, key=lambda k: len(k.value)),
                       undo_attempt=2**62, undo_round_start=2**62, undo_due_at=1e18, error="")
    return len(msgspec.msgpack.encode(widest)) - len(msgspec.msgpack.encode(StepState(step)))


def _attempts(max_attempts: int, step: str) -> int:
    """Bytes of ``max_attempts`` attempts: each sent, failed (with an error) and rescheduled."""
    small = _transition_bytes(step)
    return max_attempts * (3 * small + DETAIL_BYTES)


_HEADROOM: Final[weakref.WeakKeyDictionary[type[Saga[Any]], int]] = weakref.WeakKeyDictionary()


def headroom(saga: type[Saga[Any]]) -> int:
    """Bytes a saga of class ``saga`` can add to its record besides replies (see the module docstring)."""
    found = _HEADROOM.get(saga)
    if found is not None:
        return found
    total = 4 * _transition_bytes(None) + 4 * DETAIL_BYTES  # started, compensating, the end; the reason
    for stage in saga.stages:
        for step in stage:
            small = _transition_bytes(step.name)
            total += _attempts(step.retry.max_attempts, step.name)
            total += _attempts(step.undo_retry.max_attempts, step.name)
            total += 4 * small + 2 * DETAIL_BYTES  # succeeded, committed, gave up, undone; their error
            total += 4 * MAX_TOKEN_LENGTH + 2 * _FLOAT  # its actor id (UTF-8), its due times
            total += _step_fill(step.name)  # the fields that fill in
    _HEADROOM[saga] = total
    return total


def record_limit(max_payload: int) -> int:
    """The largest record the saga log can write on a server with this ``max_payload``."""
    return max_payload - HEADER_ALLOWANCE


def clip(text: str, limit: int = MESSAGE_MAX) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (marked with an ellipsis when cut)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def too_large(what: str, size: int, max_payload: int, room: int, saga: str) -> str:
    """The reason given when ``what`` makes a record of ``size`` bytes that does not fit."""
    limit = record_limit(max_payload) - room
    return (f"{what} makes the saga's log record {size} bytes, over the {limit}-byte limit of a {saga} saga "
            f"(the server's max_payload of {max_payload} bytes, less {HEADER_ALLOWANCE} for headers and {room} "
            f"kept for the transitions still to come: retries and compensation)")
