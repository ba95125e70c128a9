"""The record protocol of saga participants: intent, outcome, fence, by the idempotency key.

One idea: what the wrappers of ``@idempotent`` (``_forward``) and ``@compensation``
(``_compensation``) do around the handler, in records (``corps.saga._records``): the forward step
writes its intent first and its reply after; a compensation fences a step that never started and
says what it found (``forward_state``). The decorators, their options and the module doc of the
whole protocol are ``corps.saga._participant``; ``corps.tools._authz`` finds a participant by
its wrapper's code living here.
"""

from __future__ import annotations

import enum
import functools
import logging
import typing
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import msgspec

from corps.core._context import current_idempotency_key
from corps.core._messages import Message
from corps.errors import SagaStoreUnavailable, StepRejected
from corps.saga._participant_spec import _SPEC, ParticipantSpec, class_effect
from corps.saga._recording import answered_from_memory, clear, finish, records_for, settled
from corps.saga._records import FENCE, INTENT, Record, Records, encode

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor

log = logging.getLogger("corps.saga")

M = TypeVar("M", bound=Message)
R = TypeVar("R")
Handler = Callable[[Any, M], Awaitable[R]]

UNDO_SUFFIX: Final = ":undo"
_FENCED: Final = "was compensated before it ran; refusing the late request"


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


# -- the wrapper both share ----------------------------------------------------------------


def _participant(fn: Handler[M, R], spec: ParticipantSpec,
                 run: Callable[[Actor, M, str, Callable[[bytes], R]], Awaitable[R]]) -> Handler[M, R]:
    """The wrapper of ``@idempotent`` and ``@compensation``: with no idempotency key the handler
    runs as is; a reply this instance remembers answers a repeat; otherwise ``run(self, msg, key,
    decode)`` follows the record protocol (``decode`` reads a recorded reply)."""
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
        return await run(self, msg, key, decode)

    setattr(wrapper, _SPEC, spec)
    return wrapper


# -- the forward step ----------------------------------------------------------------------


def _forward(fn: Handler[M, R], spec: ParticipantSpec) -> Handler[M, R]:
    async def run(self: Actor, msg: M, key: str, decode: Callable[[bytes], R]) -> R:
        records = await records_for(self, spec.effect or "external")
        revision, found = await _begin(records, key)  # create first: read only on a conflict
        if found is not None:
            if found.done:
                return decode(found.reply)
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

    return _participant(fn, spec, run)


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
    noop = spec.noop

    async def run(self: Actor, msg: M, key: str, decode: Callable[[bytes], R]) -> R:
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
                return decode(found.reply)
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

    return _participant(fn, spec, run)


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


# -- replies -------------------------------------------------------------------------------


def _reply_decoder(fn: Callable[..., Any]) -> Callable[[bytes], Any]:
    decoder: msgspec.msgpack.Decoder[Any] | None = None

    def decode(data: bytes) -> Any:
        nonlocal decoder
        if decoder is None:  # resolved on first use: the reply class may be defined after the actor
            decoder = msgspec.msgpack.Decoder(typing.get_type_hints(fn)["return"])
        return decoder.decode(data)

    return decode
