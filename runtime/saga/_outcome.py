"""What an attempt came to: the participant asked, its outcome as an engine event, the log lines.

``ask_participant`` is the coordinator's only contact with participants. Whatever happens
becomes an event, never an exception, so no participant, definition or message can stop the
coordinator:

* a reply: StepSucceeded / UndoSucceeded;
* no reply in time: StepTimedOut / UndoTimedOut (the outcome is unknown);
* StepRejected from the participant: terminal, nothing applied (a business refusal);
* a request that cannot be delivered (an id that is no subject token, a type the class has no
  handler for, one that cannot be encoded): terminal, nothing sent. A participant that could
  not decode it, or a reply we could not decode: terminal and *uncertain* (we cannot tell
  which of the two it was, and the second means the handler ran), so it is compensated; so is
  a handler that raised InvalidMessage itself;
* any other error (the handler raised, no instance yet, a full mailbox): retried per the
  step's policy. Errors corps does not expect are logged with their traceback.

An error's type and message are cut to ``_size.TYPE_MAX`` and ``_size.MESSAGE_MAX`` bytes: they
go into the saga's log record, whose size must stay within one NATS message.

``report`` and ``report_finish`` write what an operator reads: one line per rejected step, one
per finished saga, and for a FAILED one its whole history, at ERROR.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from corps.errors import AskTimeout, CorpsError, InvalidActorId, InvalidMessage, RemoteError
from corps.saga._size import TYPE_MAX, clip
from corps.saga._state import (
    Event,
    Finish,
    Kind,
    SagaState,
    SendStep,
    SendUndo,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    Transition,
    UndoFailed,
    UndoSucceeded,
    UndoTimedOut,
)

if TYPE_CHECKING:
    from corps.core._node import Node

log = logging.getLogger("corps.saga")

TERMINAL_REMOTE_ERRORS: frozenset[str] = frozenset({"StepRejected", "InvalidMessage"})
"""RemoteError types that no retry can change."""


async def ask_participant(system: Node, saga_id: str, to: Any, cmd: SendStep | SendUndo,
                          hook: Callable[[str], None]) -> Event:
    """Send ``cmd`` to ``(to, cmd.actor_id)`` and wait for its outcome, as the engine's event.

    ``hook(point)`` is called after the send and after the reply (crash points, for tests); it
    may raise the cancellation exception, which passes through.
    """
    undo = isinstance(cmd, SendUndo)
    what = f"saga {saga_id}: {'compensation of ' if undo else ''}step {cmd.step!r}"
    try:
        ref = system.ref(to, cmd.actor_id)
        rid, fut = await ref._send_ask(cmd.request, cmd.idempotency_key, saga_id)  # type: ignore[arg-type]
    except (InvalidActorId, InvalidMessage) as exc:
        return _failed(cmd, type(exc).__name__, str(exc), terminal=True)
    except CorpsError as exc:  # the connection, most likely: nothing was sent, try again
        return _failed(cmd, type(exc).__name__, str(exc), terminal=False)
    except Exception as exc:  # a message or class corps cannot send: fails the step, not the coordinator
        log.warning("%s: cannot be sent", what, exc_info=exc)
        return _failed(cmd, type(exc).__name__, str(exc), terminal=True)
    hook("after_send")
    try:
        reply = await ref._wait(rid, fut, cmd.timeout)
        body = b"" if undo else msgspec.msgpack.encode(reply)
    except AskTimeout:
        return (UndoTimedOut if undo else StepTimedOut)(step=cmd.step, attempt=cmd.attempt, at=time.time())
    except RemoteError as exc:
        terminal = exc.type in TERMINAL_REMOTE_ERRORS
        return _failed(cmd, exc.type, exc.message, terminal=terminal,
                       uncertain=terminal and exc.type != "StepRejected")
    except InvalidMessage as exc:
        return _failed(cmd, "InvalidMessage", exc.reason, terminal=True, uncertain=True)
    except CorpsError as exc:  # NoResponders, MailboxFull, ...: not handled, try again
        return _failed(cmd, type(exc).__name__, str(exc), terminal=False)
    except Exception as exc:  # an outcome corps cannot read: unknown, as after a timeout
        log.warning("%s: unexpected error while waiting for the reply", what, exc_info=exc)
        return _failed(cmd, type(exc).__name__, str(exc), terminal=False, uncertain=True)
    hook("mid_compensation" if undo else "after_reply")
    if undo:
        return UndoSucceeded(step=cmd.step, attempt=cmd.attempt, at=time.time())
    return StepSucceeded(step=cmd.step, attempt=cmd.attempt, reply=body, at=time.time())


def _failed(cmd: SendStep | SendUndo, error_type: str, message: str, *, terminal: bool,
            uncertain: bool = False) -> Event:
    error_type, message = clip(error_type, TYPE_MAX), clip(message)
    if isinstance(cmd, SendUndo):
        # An undo that may have applied is retried or given up like any failed undo: a
        # compensation is idempotent, and a FAILED saga goes to an operator either way.
        return UndoFailed(step=cmd.step, attempt=cmd.attempt, error_type=error_type, message=message,
                          terminal=terminal, at=time.time())
    return StepFailed(step=cmd.step, attempt=cmd.attempt, error_type=error_type, message=message,
                      terminal=terminal, uncertain=uncertain, at=time.time())


def report(saga_id: str, transitions: tuple[Transition, ...]) -> None:
    """One line per rejected step: INFO for a participant's refusal (a business outcome, no
    traceback), WARNING for a step that could not be built or delivered (a bug in the saga or its data)."""
    for t in transitions:
        if t.kind is Kind.REJECTED:
            refused = t.detail.startswith("StepRejected: ")
            log.log(logging.INFO if refused else logging.WARNING, "saga %s: step %r %s: %s", saga_id, t.step,
                    "rejected" if refused else "failed for good", t.detail.removeprefix("StepRejected: "))


def report_finish(state: SagaState, finish: Finish) -> None:
    """The end of a saga: INFO, and for FAILED an ERROR with the whole history, for an operator."""
    if finish.status == "FAILED":
        history = "\n".join(f"  {t.seq:3d} {t.kind:<22} {t.step or '':<12} #{t.attempt} {t.detail}"
                            for t in state.history)
        log.error("SAGA FAILED %s (%s): %s; needs an operator (corps saga retry %s)\n%s",
                  state.saga_id, state.saga, finish.reason, state.saga_id, history)
    else:
        log.info("saga %s %s", state.saga_id, finish.status)
