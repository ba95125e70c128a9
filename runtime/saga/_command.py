"""Building a step's command from its definition, and checking it before anything is sent.

A step's ``key``, ``request`` and ``undo`` are user code, and what they build comes from the
saga's input and replies. Everything that can be checked without the network is checked here:
the target is an Actor class, the key gives an actor id (one subject token), the request is a
Request the target class has a handler for. A problem found here is the same on every attempt,
so the engine gives the step up at once (no retry) with the reason, and the saga compensates;
nothing a definition, an input or a reply holds can reach the coordinator's sending code.

The same checks run when a saga class is created (``_definition``), on whatever is known then:
the class, a static key, a builder's return annotation. Pure: no I/O.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from corps.core._actor import Actor
from corps.core._messages import Message, Request
from corps.errors import InvalidActorId
from corps.wire._subjects import check_token


class Unbuildable(Exception):  # a signal between this module and the engine, never seen by users
    """A step's command cannot be built or addressed; ``str()`` is the reason."""


def handled(to: type[Actor]) -> str:
    """The message types ``to`` has handlers for, as a sentence part."""
    names = sorted(tp.__name__ for tp in to._handlers)
    return ", ".join(names) or "nothing (it has no @handler)"


def target_problem(to: object) -> str | None:
    """Why ``to`` cannot be a step's target, or None."""
    if isinstance(to, type) and issubclass(to, Actor):
        return None
    return f"'to' must be an Actor subclass, not {to!r}"


def actor_id_problem(actor_id: object) -> str | None:
    """Why ``actor_id`` cannot address an actor, or None."""
    try:
        check_token(actor_id)  # type: ignore[arg-type]  # any object: check_token says what is wrong
    except InvalidActorId as exc:
        return exc.reason
    return None


def message_problem(to: type[Actor], message_type: type[Message]) -> str | None:
    """Why ``to`` cannot be asked a ``message_type``, or None."""
    if not issubclass(message_type, Request):
        return f"{message_type.__name__} is not a Request[...]: a step asks, and waits for the reply"
    if message_type not in to._handlers:
        return f"{to.__name__} has no handler for {message_type.__name__}; it handles {handled(to)}"
    return None


def build_step(to: object, key: object, request: Callable[[Any], object], ctx: Any) -> tuple[str, Message]:
    """The actor id and the request of one attempt of a step, checked.

    Raises:
        Unbuildable: a builder raised, or what it gave cannot be sent (see the module docstring).
    """
    target = _target(to)
    actor_id = _call("the key", key, ctx) if callable(key) else key
    problem = actor_id_problem(actor_id)
    if problem is not None or not isinstance(actor_id, str):
        raise Unbuildable(f"its key gave {actor_id!r}, which is not an actor id: {problem}")
    return actor_id, _checked(target, _call("the request", request, ctx), "request")


def build_undo(to: object, actor_id: object, undo: Callable[[Any], object], ctx: Any) -> Message:
    """The compensating request of a step whose request went to ``actor_id``, checked.

    Raises:
        Unbuildable: as for build_step.
    """
    target = _target(to)
    problem = actor_id_problem(actor_id)
    if problem is not None:
        raise Unbuildable(f"its request went to {actor_id!r}, which is not an actor id: {problem}")
    return _checked(target, _call("the compensation", undo, ctx), "compensation")


def _target(to: object) -> type[Actor]:
    if isinstance(to, type) and issubclass(to, Actor):
        return to
    raise Unbuildable(target_problem(to))


def _call(what: str, fn: Callable[[Any], object], ctx: Any) -> object:
    try:
        return fn(ctx)
    except Exception as exc:  # user code: whatever it raises fails the step, never the coordinator
        raise Unbuildable(f"building {what} raised {type(exc).__name__}: {exc}") from exc


def _checked(to: type[Actor], message: object, what: str) -> Message:
    if not isinstance(message, Message):
        raise Unbuildable(f"its {what} must be a Message, not {type(message).__name__}")
    problem = message_problem(to, type(message))
    if problem is not None:
        raise Unbuildable(f"its {what}: {problem}")
    return message


# -- at definition time: the message type a builder gives, where it can be known -----------------


def built_type_problem(to: type[Actor], fn: object) -> str | None:
    """Why the message ``fn`` builds cannot be sent to ``to``, if that can be known before a run.

    Known from ``fn``'s return annotation when it names a Message class that ``to`` handles
    neither itself nor any subclass of. A function without one (a lambda) is read instead: if
    its code names Request classes and ``to`` handles none of them, it cannot build one that
    ``to`` handles. Otherwise nothing is said; the run checks.
    """
    annotated = _return_annotation(fn)
    if isinstance(annotated, type) and issubclass(annotated, Message):
        if any(issubclass(tp, annotated) for tp in to._handlers):
            return None  # `-> Message`, a base class: which one is left to the run
        return message_problem(to, annotated)
    if annotated is not None:
        return None  # a union, a TypeVar, ...: left to the run
    named = _requests_named(fn)
    if named and not any(tp in to._handlers for tp in named):
        names = ", ".join(sorted(tp.__name__ for tp in named))
        return (f"it builds {names} (read from its code; annotate its return type if that is wrong), "
                f"and {to.__name__} has no handler for it; it handles {handled(to)}")
    return None


def _return_annotation(fn: object) -> object:
    if not callable(fn) or "return" not in getattr(fn, "__annotations__", {}):
        return None
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 -- an annotation that does not resolve (yet): left to the run
        return None


def _requests_named(fn: object) -> set[type[Request[Any]]]:
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return set()
    scope: dict[str, Any] = getattr(fn, "__globals__", {})
    found = {scope.get(name) for name in _names(code)}
    found |= {cell.cell_contents for cell in getattr(fn, "__closure__", None) or () if _filled(cell)}
    return {tp for tp in found if isinstance(tp, type) and issubclass(tp, Request)}


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # a nested lambda or comprehension
            names |= _names(const)
    return names


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- an empty cell raises ValueError
    except ValueError:
        return False
    return True
