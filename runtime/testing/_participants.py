"""Fault-injecting, effect-recording participants for end-to-end runs.

``injector.participant(Inventory)`` returns a subclass of your participant with the same actor
name (so your saga's steps reach it unchanged). Its ``@idempotent`` and ``@compensation``
handlers are rebuilt around the same decorators with two layers added:

* outside, the fault of the saga's :class:`FaultPlan` for that step, per delivery of the
  idempotency key (``{saga_id}:{step}``): a retryable error, StepRejected, a reply after the
  step's timeout (with or without the effect), a second delivery, a delay;
* inside (under the idempotency decorator, around your handler body), a record of the real
  effect in the :class:`History`: ``effect``, ``compensate``, ``noop`` (compensating what never
  ran), ``refused`` (a late forward request, fenced) - the ground truth the checker compares with.

Only handlers written with ``@idempotent`` / ``@compensation`` are instrumented, and rebuilt with
the same options (``effect``, ``unfinished``, ``noop``; a bare ``@compensation`` stays bare).
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import msgspec

from corps.core._actor import Actor
from corps.core._context import current_idempotency_key
from corps.core._messages import Message
from corps.errors import StepRejected
from corps.saga import compensation, idempotent
from corps.saga._idempotency import ForwardState, forward_state
from corps.saga._participant_spec import ParticipantSpec, class_effect, participant_spec
from corps.testing._history import History
from corps.testing._plans import FaultPlan, StepFault

UNDO: Final = ":undo"
_OK: Final = StepFault()


class InjectedFault(RuntimeError):
    """The retryable error a ``transient`` (or late ``timeout_before``) fault raises."""


class FaultInjector:
    """The plans of a run's sagas, and the participants that obey them.

    Args:
        history: where participants record their effects.
        timeout: the steps' timeout in seconds: ``timeout_*`` faults answer after ``1.5 x`` it.
    """

    def __init__(self, history: History, *, timeout: float) -> None:
        self.history = history
        self.timeout = timeout
        self.plans: dict[str, FaultPlan] = {}
        self.deliveries: dict[str, int] = {}
        self.requests: dict[str, tuple[type[Actor], str, Message]] = {}
        """idempotency key -> (actor class, id, request) as last delivered: for redelivery."""
        self.healed = False
        self._made: dict[type[Actor], type[Actor]] = {}
        self.rejected: set[str] = set()
        """Keys whose forward request was refused (StepRejected), injected or by the handler."""

    def heal(self) -> None:
        """From now on every step just works (the STABILIZE phase before the final checks)."""
        self.healed = True

    def fault(self, saga_id: str, step: str) -> StepFault:
        if self.healed:
            return _OK
        plan = self.plans.get(saga_id)
        return plan.fault(step) if plan is not None else _OK

    def participant(self, cls: type[Actor]) -> type[Actor]:
        """A subclass of ``cls`` (same actor name) whose saga handlers inject faults and record effects.

        One per class, however many instances run: a system hosts one class per actor name.
        """
        made = self._made.get(cls)
        if made is None:
            made = self._made[cls] = self._subclass(cls)
        return made

    def _subclass(self, cls: type[Actor]) -> type[Actor]:
        namespace: dict[str, Any] = {}
        for name in dir(cls):
            fn = getattr(cls, name, None)
            spec = participant_spec(fn)
            if spec is None:
                continue
            assert fn is not None
            if spec.role == "forward":
                namespace[name] = self._forward(cls, fn, spec)
            else:
                namespace[name] = self._undo(cls, fn, spec)
        options = msgspec.structs.replace(cls.options, name=cls.actor_name)
        meta: Any = type(cls)
        made: type[Actor] = meta(f"Faulty{cls.__name__}", (cls,), namespace, options=options)
        return made

    def _deliver(self, actor: Actor, msg: Message) -> tuple[str, str, str, int] | None:
        key = current_idempotency_key()
        if key is None:
            return None
        saga_id, _, step = key.removesuffix(UNDO).partition(":")
        self.deliveries[key] = d = self.deliveries.get(key, 0) + 1
        if not key.endswith(UNDO):
            self.requests[key] = (type(actor), actor.id, msg)
        return key, saga_id, step, d

    def _record(self, what: str, saga_id: str, step: str, actor: Actor) -> None:
        self.history.record("ok", what, saga_id, step, process=f"{type(actor).actor_name}/{actor.id}")

    def _forward(self, cls: type[Actor], original: Callable[..., Any], spec: ParticipantSpec) -> Any:
        injector = self
        raw = spec.handler

        async def effect(actor: Actor, msg: Message) -> Any:
            saga_id, _, step = (current_idempotency_key() or "").partition(":")
            if injector.fault(saga_id, step).kind == "reject":
                # Refused inside @idempotent, as a participant's own refusal is: it is recorded,
                # and a late copy of the request gets the refusal again, even once healed.
                raise StepRejected(f"injected: {step} rejected")
            reply = await raw(actor, msg)
            injector._record("effect", saga_id, step, actor)
            return reply

        effect.__annotations__ = typing.get_type_hints(raw)
        inner = idempotent(effect=spec.effect or "external", unfinished=spec.unfinished)(effect)

        async def handle(actor: Actor, msg: Message) -> Any:
            delivery = injector._deliver(actor, msg)
            if delivery is None:
                return await original(actor, msg)
            key, saga_id, step, d = delivery
            f = injector.fault(saga_id, step)
            late = injector.timeout * 1.5
            if f.kind == "transient" and d <= f.times:
                raise InjectedFault(f"injected: {step} failed (delivery {d})")
            if f.kind == "timeout_before" and d <= f.times:
                await anyio.sleep(late)
                raise InjectedFault(f"injected: {step} timed out before its effect")
            try:
                reply = await inner(actor, msg)
                if f.kind == "duplicate":
                    await inner(actor, msg)  # the same request, delivered again
            except StepRejected as exc:
                injector.rejected.add(key)
                if " was compensated " in str(exc):  # fenced (before it ran, or after an unfinished attempt)
                    injector._record("refused", saga_id, step, actor)
                raise
            if f.kind == "timeout_after" and d <= f.times:
                await anyio.sleep(late)
            elif f.kind == "delay":
                await anyio.sleep(f.delay)
            return reply

        return _like(original, handle)

    def _undo(self, cls: type[Actor], original: Callable[..., Any], spec: ParticipantSpec) -> Any:
        injector = self
        raw, noop = spec.handler, spec.noop

        async def undo(actor: Actor, msg: Message) -> Any:
            reply = await raw(actor, msg)
            saga_id, _, step = (current_idempotency_key() or "").removesuffix(UNDO).partition(":")
            # A bare @compensation calls the handler for a step that never ran too: a no-op by itself.
            what = "noop" if forward_state() is ForwardState.NEVER else "compensate"
            injector._record(what, saga_id, step, actor)
            return reply

        def recorded_noop(msg: Any) -> Any:
            saga_id, _, step = (current_idempotency_key() or "").removesuffix(UNDO).partition(":")
            injector.history.record("ok", "noop", saga_id, step, process="participant")
            assert noop is not None
            return noop(msg)

        undo.__annotations__ = typing.get_type_hints(raw)
        # The effect kind as on ``cls``: the subclass's forward handlers are this module's wrappers.
        effect = spec.effect or class_effect(cls)
        inner = compensation(noop=recorded_noop if noop is not None else None, effect=effect)(undo)

        async def handle(actor: Actor, msg: Message) -> Any:
            delivery = injector._deliver(actor, msg)
            if delivery is None:
                return await original(actor, msg)
            _, saga_id, step, d = delivery
            f = injector.fault(saga_id, step)
            if f.undo == "reject":
                raise StepRejected(f"injected: the compensation of {step} was rejected")
            if f.undo == "transient" and d <= f.undo_times:
                raise InjectedFault(f"injected: the compensation of {step} failed (delivery {d})")
            reply = await inner(actor, msg)
            if f.undo == "timeout" and d <= f.undo_times:
                await anyio.sleep(injector.timeout * 1.5)
            return reply

        return _like(original, handle)


def _like(original: Callable[..., Any], fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Give ``fn`` the name and annotations of the handler it replaces (handler checks read them)."""
    fn.__name__ = original.__name__
    fn.__qualname__ = original.__qualname__
    fn.__annotations__ = typing.get_type_hints(original)
    fn.__module__ = original.__module__
    return fn
