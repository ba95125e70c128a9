"""How a participant handler was decorated: ``ParticipantSpec``, and what a class's specs say.

One idea: the mark ``@idempotent`` and ``@compensation`` leave on their wrapper, read back by
``participant_spec`` (corps.testing's fault injector, ``class_effect``), ``class_effect`` (which
records a compensation reads) and ``keeps_records_in_kv`` (whether a class needs the bucket).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from corps.errors import ActorDefinitionError

Effect: TypeAlias = Literal["external", "memory"]
Unfinished: TypeAlias = Literal["rerun", "compensate"]

_SPEC: Final = "__corps_participant__"


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
