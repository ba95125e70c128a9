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

import enum
import functools
import logging
import typing
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from corps.core._context import current_idempotency_key
from corps.core._messages import Message
from corps.errors import ActorDefinitionError, SagaStoreUnavailable, StepRejected
from corps.saga._recording import answered_from_memory, clear, finish, records_for, settled
from corps.saga._records import FENCE, INTENT, Record, Records, encode
from corps.saga._records import RECORD_TTL as RECORD_TTL  # tests/fault reads it here

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor

log = logging.getLogger("corps.saga")

M = TypeVar("M", bound=Message)
R = TypeVar("R")
Handler = Callable[[Any, M], Awaitable[R]]
Effect: TypeAlias = Literal["external", "memory"]
Unfinished: TypeAlias = Literal["rerun", "compensate"]

UNDO_SUFFIX: Final = ":undo"
_SPEC: Final = "__corps_participant__"
_FENCED: Final = "was compensated before it ran; refusing the late request"


@dataclass(frozen=True)
class ParticipantSpec:
    """How a handler was decorated (read by corps.testing's fault injector, which rebuilds it)."""

    role: Literal["forward", "compensation"]
    effect: Effect | None
    """None (a compensation only): the kind of the class's ``@idempotent`` handlers."""
    unfinished: Unfinished
    noop: Callable[[Any], Any] | None
    handler: Callable[..., Any]
    """The undecorated handler."""


def participant_spec(fn: object) -> ParticipantSpec | None:
    """The spec of a function made by ``@idempotent`` or ``@compensation``, or None.

    A wrapper around one of them (``functools.wraps`` copies attributes) is not one of them.
    """
    spec = getattr(fn, _SPEC, None)
    ok = isinstance(spec, ParticipantSpec) and getattr(fn, "__wrapped__", None) is spec.handler
    return spec if ok else None


class ForwardState(enum.Enum):
    """What a compensation found of the step it undoes."""

    NEVER = "never"
    """Never started (now fenced), or refused: nothing to undo."""
    APPLIED = "applied"
    MAYBE = "maybe"
    """An attempt began and recorded no outcome: it may have applied."""


_forward_state: ContextVar[ForwardState | None] = ContextVar("corps_forward_state", default=None)


def forward_state() -> ForwardState | None:
    """Inside a ``@compensation`` handler: what became of the step it undoes (None elsewhere)."""
    return _forward_state.get()


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


# -- the forward step ----------------------------------------------------------------------


def _forward(fn: Handler[M, R], spec: ParticipantSpec) -> Handler[M, R]:
    decode = _reply_decoder(fn)

    @functools.wraps(fn)
    async def wrapper(self: Actor, msg: M) -> R:
        key = current_idempotency_key()
        if key is None:
            return await fn(self, msg)
        remembered = await answered_from_memory(self, key)
        if remembered is not None:
            result: R = decode(remembered)
            return result
        records = await records_for(self, spec.effect or "external")
        revision, found = await _begin(records, key)  # create first: read only on a conflict
        if found is not None:
            if found.done:
                result = decode(found.reply)
                return result
            if found.refusal:
                raise StepRejected(found.refusal)  # refused before: a late copy is refused the same way
            if not found.intent:
                raise StepRejected(f"{key} {_FENCED}")
            if spec.unfinished == "compensate":
                reason = (f"{key}: an earlier attempt began and recorded no outcome (its process died?); "
                          "it may have applied, so the step is refused and compensated")
                await records.update(key, Record(False, refusal=reason, intent=True), revision)
                raise StepRejected(reason)
            log.warning("%s: an earlier attempt began and recorded no outcome (its process died, or it still "
                        "runs on another instance); running the handler again: its effect may apply twice", key)
        try:
            reply = await fn(self, msg)
        except StepRejected as refusal:
            # A refusal is an outcome too: recorded, so a late duplicate of this request cannot
            # apply once conditions change (say, stock came back) under a saga that compensated.
            # After an unfinished attempt the intent stays: that attempt may have applied.
            await records.update(key, Record(False, refusal=str(refusal) or "refused", intent=found is not None),
                                 revision)
            raise
        except Exception:
            if found is None:  # the handler raised: by its contract nothing applied; retry afresh
                await clear(records, key, revision)
            raise
        # Cancellation (BaseException) leaves the intent: the handler may have applied its effect.
        await finish(self, records, key, revision, encode(reply))
        return reply

    setattr(wrapper, _SPEC, spec)
    return wrapper


async def _begin(records: Records, key: str, *, undo: bool = False) -> tuple[int, Record | None]:
    """Write the intent of ``key``; or, if it has a record, that record. With the revision to update."""
    for _ in range(3):
        revision = await records.create(key, INTENT, undo=undo)
        if revision is not None:
            return revision, None
        found = await records.get(key)
        if found is not None:
            return found[1], found[0]
        # Cleared between the two (a failed attempt elsewhere): try to begin again.
    raise SagaStoreUnavailable(f"idempotency record {key!r} keeps changing")


# -- the compensation ----------------------------------------------------------------------


def _compensation(fn: Handler[M, R], spec: ParticipantSpec) -> Handler[M, R]:
    decode = _reply_decoder(fn)
    noop = spec.noop

    @functools.wraps(fn)
    async def wrapper(self: Actor, msg: M) -> R:
        key = current_idempotency_key()
        if key is None:
            return await fn(self, msg)
        remembered = await answered_from_memory(self, key)
        if remembered is not None:
            result: R = decode(remembered)
            return result
        records = await records_for(self, spec.effect or class_effect(type(self)))
        forward = key.removesuffix(UNDO_SUFFIX)
        await settled(self, forward)  # the step's outcome, still being written here, lands first
        state = await _fence(records, forward)
        token = _forward_state.set(state)
        try:
            if state is ForwardState.NEVER and noop is not None:
                reply: R = noop(msg)
                created = await records.create(key, Record(True, encode(reply)), undo=True)
                if created is None:  # a copy of this compensation ran before: its reply is the answer
                    result = await _first_reply(records, key, decode)
                    return result
                return reply
            # The handler runs: an intent first, so a retry after a crash in it runs it again.
            revision, found = await _begin(records, key, undo=True)
            if found is not None and found.done:
                result = decode(found.reply)
                return result
            if found is not None:
                log.warning("%s: an earlier compensation began and recorded no outcome (its process died?); "
                            "running the handler again", key)
            try:
                reply = await fn(self, msg)
            except Exception:
                if found is None:
                    await clear(records, key, revision)
                raise
            await finish(self, records, key, revision, encode(reply))
            return reply
        finally:
            _forward_state.reset(token)

    setattr(wrapper, _SPEC, spec)
    return wrapper


async def _first_reply(records: Records, key: str, decode: Callable[[bytes], R]) -> R:
    """The recorded reply of ``key``, which a create just found there."""
    found = await records.get(key)
    if found is None or not found[0].done:
        raise SagaStoreUnavailable(f"idempotency record {key!r} keeps changing")
    return decode(found[0].reply)


async def _fence(records: Records, forward: str) -> ForwardState:
    """What became of the step ``forward``; a step that did not finish is fenced on the way.

    Never started: a fence, so a late forward request is refused. Unfinished: refused from now on
    (a late copy must not apply after its undo), the intent kept: it may have applied. The fence
    is written first (the usual case, a compensation of a step that never reached this
    participant, is one write); a record already there is read on the conflict.
    """
    for _ in range(3):
        if await records.create(forward, FENCE, undo=True) is not None:
            return ForwardState.NEVER
        found = await records.get(forward)
        if found is None:
            continue  # cleared meanwhile (a failed attempt): fence again
        record, revision = found
        if record.done:
            return ForwardState.APPLIED
        if not record.intent:
            return ForwardState.NEVER  # fenced before, or refused by the handler: nothing applied
        if record.refusal:
            return ForwardState.MAYBE  # fenced after an unfinished attempt, or refused after one
        refusal = f"{forward} was compensated after an attempt that may have applied; refusing the late request"
        if await records.update(forward, Record(False, refusal=refusal, intent=True), revision):
            return ForwardState.MAYBE
    raise SagaStoreUnavailable(f"idempotency record {forward!r} keeps changing")


_class_effects: weakref.WeakKeyDictionary[type, Effect] = weakref.WeakKeyDictionary()


def class_effect(cls: type) -> Effect:
    """The effect kind of ``cls``'s ``@idempotent`` handlers (external if it has none).

    Raises:
        ActorDefinitionError: they disagree, and the compensation did not say which it undoes.
    """
    found = _class_effects.get(cls)
    if found is None:
        kinds: dict[Effect, str] = {}
        for name in dir(cls):
            # Along the MRO: a subclass may override a handler without its decorators (it calls
            # super()), and the wrapped base method is the one that records.
            for klass in cls.__mro__:
                spec = participant_spec(vars(klass).get(name))
                if spec is not None:
                    break
            if spec is not None and spec.role == "forward" and spec.effect is not None:
                kinds.setdefault(spec.effect, name)
        if len(kinds) > 1:
            raise ActorDefinitionError(cls.__qualname__, [
                f"its @idempotent handlers have effects {sorted(kinds)} ({', '.join(sorted(kinds.values()))}): "
                "say which one each compensation undoes, @compensation(effect=...)"])
        found = _class_effects[cls] = next(iter(kinds), "external")
    return found



def keeps_records_in_kv(cls: type) -> bool:
    """Whether any ``@idempotent`` handler of ``cls`` (along its MRO) guards an external effect, so
    its step records live in the idempotency bucket (a memory-effect class needs no bucket)."""
    for klass in cls.__mro__:
        for value in vars(klass).values():
            spec = participant_spec(value)
            if spec is not None and spec.role == "forward" and spec.effect in (None, "external"):
                return True
    return False

# -- replies -------------------------------------------------------------------------------


def _reply_decoder(fn: Callable[..., Any]) -> Callable[[bytes], Any]:
    decoder: msgspec.msgpack.Decoder[Any] | None = None

    def decode(data: bytes) -> Any:
        nonlocal decoder
        if decoder is None:  # resolved on first use: the reply class may be defined after the actor
            decoder = msgspec.msgpack.Decoder(typing.get_type_hints(fn)["return"])
        return decoder.decode(data)

    return decode
