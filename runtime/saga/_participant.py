"""Idempotent saga participants: ``@idempotent`` and ``@compensation``, by the request's idempotency key.

Every step request carries an idempotency key (``{saga_id}:{step}``; its compensation
``{saga_id}:{step}:undo``). Two decorators, placed under ``@handler``, use it::

    @handler
    @idempotent(effect="memory")          # the effect is this instance's own state
    async def reserve(self, msg: ReserveStock) -> StockReserved: ...

    @handler
    @compensation(noop=lambda msg: StockReleased(msg.order_id, msg.sku, 0))
    async def release(self, msg: ReleaseStock) -> StockReleased: ...

* ``@idempotent`` writes an *intent* record, runs the handler, then records its reply: a repeated
  key gets that reply without running the handler again. A forward request that comes after its
  compensation fenced it (the compensation found it never started) is refused with StepRejected.
* ``@compensation``: if the step never started, it fences the forward key and answers ``noop(msg)``
  without calling the handler (bare, without ``noop``, it calls the handler, which must then find
  nothing to undo); if the step applied, *or may have* (an intent without an outcome: its process
  died, or its handler was cancelled, mid-step), it runs the handler. A repeated compensation
  gets the first reply. The compensation's own run is recorded the same way (intent, outcome).

Where the records live is the effect's kind, a declared choice (``effect=``): a record is as
durable as the effect it guards.

* ``"external"`` (the default; bare ``@idempotent``): the effect is outside the process (a card
  network, a database); the records are in JetStream KV (``corps.saga._kv_records``) and outlive
  the process. Per step: the intent is created (no read first; read only on a conflict) before
  the handler runs, in mailbox order; the outcome is written off the mailbox, the reply held
  until it is durable (``corps.saga._recording``). The window: a participant killed after its
  effect and before its outcome record leaves an intent. Its compensation then runs the undo
  (never a wrongful no-op); a *retry* of the step runs the handler again (``unfinished="rerun"``,
  the default: the effect may apply twice) or is refused so that the saga compensates
  (``unfinished="compensate"``: applied at most once, then undone, for an undo that is harmless
  when the effect did not apply).
* ``"memory"``: the effect is the instance's own state; the records are kept on the instance
  (``corps.saga._memory_records``, bounded by ``SagaConfig.memory_records`` and
  ``memory_horizon``), so a crash or a restart loses both together: no window, and no I/O. For
  entities only (a service's instances do not share their memory).

Once the handler has run, its reply is the truth: if the outcome cannot be written (the store is
down), the reply is kept on the actor instance, answered from there to duplicates, and written
for up to RECORD_RETRY_FOR seconds. A store error *after* an effect never turns into an error
reply, which the coordinator would retry into a second effect.

Entity actors handle one message at a time, so a step and its compensation never race on one
instance; service actors (queue groups) can, and should keep their own effects idempotent.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from corps.errors import ActorDefinitionError
from corps.saga._idempotency import Handler, M, R, _compensation, _forward
from corps.saga._participant_spec import Effect, ParticipantSpec, Unfinished
from corps.saga._records import RECORD_TTL as RECORD_TTL  # tests/fault reads it here

# -- decorators ----------------------------------------------------------------------------


@typing.overload
def idempotent(fn: Handler[M, R], /) -> Handler[M, R]: ...
@typing.overload
def idempotent(*, effect: Effect = "external",
               unfinished: Unfinished = "rerun") -> Callable[[Handler[M, R]], Handler[M, R]]: ...


def idempotent(fn: Handler[M, R] | None = None, /, *, effect: Effect = "external",
               unfinished: Unfinished = "rerun") -> Any:
    """Make a forward step handler idempotent by the request's idempotency key (see module doc).

    Use bare (``@idempotent``: an external effect) or as ``@idempotent(effect=..., unfinished=...)``.
    Requests without a key run the handler as usual.

    Args:
        effect: ``"external"``: the records live in JetStream KV (the effect is outside the
            process). ``"memory"``: the effect is the instance's state, and so are the records.
        unfinished: what a request does that finds an attempt begun and never finished (its
            process died mid-step): ``"rerun"`` the handler (the effect may apply twice, unless the
            handler checks), or ``"compensate"``: refuse it (StepRejected), so the saga compensates
            and the undo runs.

    Raises:
        StepRejected: the step was fenced by its compensation, refused before, or (with
            ``unfinished="compensate"``) left unfinished by an earlier attempt.
        SagaStoreUnavailable: the records cannot be read or written before the handler runs
            (the asker sees an error and retries; the handler did not run).
    """
    problems = _option_problems(effect, unfinished)

    def decorate(fn: Handler[M, R]) -> Handler[M, R]:
        if problems:
            raise ActorDefinitionError(getattr(fn, "__qualname__", "?"), problems)
        return _forward(fn, ParticipantSpec("forward", effect, unfinished, None, fn))

    if fn is not None:
        if not callable(fn):
            raise TypeError(f"@idempotent takes a handler, or only keywords; not {fn!r}")
        return decorate(fn)
    return decorate


@typing.overload
def compensation(fn: Handler[M, R], /) -> Handler[M, R]: ...
@typing.overload
def compensation(*, noop: Callable[[Any], Any] | None = None,
                 effect: Effect | None = None) -> Callable[[Handler[M, R]], Handler[M, R]]: ...


def compensation(fn: Handler[M, R] | None = None, /, *, noop: Callable[[Any], Any] | None = None,
                 effect: Effect | None = None) -> Any:
    """Make a compensation handler idempotent, and a no-op for a step that never ran.

    Use as ``@compensation(noop=...)``, or bare (``@compensation``) for a handler that is a
    no-op by itself when there is nothing to undo (``self.booked.pop(order_id, None)``).

    Args:
        noop: builds the reply for a compensation whose step never applied (the handler is
            not called then); it gets the compensation message. Without it, the handler is
            called then too, after the forward request has been fenced all the same. A step
            that may have applied (an unfinished attempt) is always undone by the handler.
        effect: where the step's records are; None: as the class's ``@idempotent`` handlers
            say (a class whose forward handlers disagree must say it here).
    """
    problems = _option_problems(effect or "external", "rerun")

    def decorate(fn: Handler[M, R]) -> Handler[M, R]:
        if problems:
            raise ActorDefinitionError(getattr(fn, "__qualname__", "?"), problems)
        return _compensation(fn, ParticipantSpec("compensation", effect, "rerun", noop, fn))

    if fn is not None:
        if not callable(fn):
            raise TypeError(f"@compensation takes a handler, or only keywords; not {fn!r}")
        return decorate(fn)
    return decorate


def _option_problems(effect: object, unfinished: object) -> list[str]:
    found = []
    if effect not in ("external", "memory"):
        found.append(f"effect must be 'external' or 'memory', not {effect!r}")
    if unfinished not in ("rerun", "compensate"):
        found.append(f"unfinished must be 'rerun' or 'compensate', not {unfinished!r}")
    return found
