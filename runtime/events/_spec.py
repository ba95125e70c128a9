"""``@on_event``: declare durable event handlers on actor classes, validated when the class is created."""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import msgspec

from corps.core._messages import Message
from corps.core._signature import check_signature

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_MARK: Final = "__corps_on_event__"

DEFAULT_MAX_DELIVER: Final = 5


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The delay before attempt n+1 after attempt n failed: ``initial * factor**(n-1)``, capped.

    The runtime applies it itself (a ``nak`` with a delay, or a timed retry for keyed handlers):
    JetStream's consumer ``BackOff`` does not apply to ``nak``.
    """

    initial: float = 0.2
    factor: float = 2.0
    max: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max, self.initial * self.factor ** max(0, attempt - 1)))


class EventHandlerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One ``@on_event`` method, as the consumer sees it."""

    def key_of(self, event: Any) -> str | None:
        if self.key is None:
            return None
        value = event
        for part in self.key.split("."):
            value = getattr(value, part)
        return str(value)

    name: str
    event_type: type[Message]
    fn: Callable[[Any, Any], Awaitable[None]]
    key: str | None
    max_deliver: int
    backoff: Backoff
    idempotent: bool
    activate: bool


class _Declared(msgspec.Struct, frozen=True):
    types: tuple[Any, ...]
    key: str | None
    max_deliver: int
    backoff: Backoff
    idempotent: bool
    activate: bool


def on_event(
    *event_types: type[Message],
    key: str | None = None,
    max_deliver: int = DEFAULT_MAX_DELIVER,
    backoff: Backoff | None = None,
    idempotent: bool = False,
    activate: bool = True,
) -> Callable[[F], F]:
    """Make an async method a durable, at-least-once handler of the given event types.

    The class gets one durable JetStream consumer, named after the class. The method is acked only
    after it returns; if it raises, the event is retried after ``backoff`` until ``max_deliver``
    attempts, then copied to the dead-letter stream with the error and terminated.

    Args:
        event_types: the Message classes handled; none means the method's parameter annotation.
        key: a field of the event (or a dotted path into it, ``"order.order_id"``) naming the
            actor instance that handles it (entity routing): one event at a time per key, in
            stream order per key, different keys concurrently. A failed keyed event holds back
            later events of its key until it succeeds or is dead-lettered.
            None: any instance this node runs takes it (round robin), and a failure is nak'ed with
            a delay, so later events may overtake it.
        max_deliver: attempts before the dead-letter stream (at least 1; always finite).
        backoff: delays between attempts (default ``Backoff()``: 0.2 s doubling, at most 30 s).
        idempotent: mark each event in a KV bucket (with a TTL): begun before the handler runs,
            done after it returned. A delivery of an event marked done is acked without running
            the handler (a redelivery after a crash between the handler and the ack). One marked
            begun (a crash *inside* the handler) runs the handler again, with a warning: an
            in-memory effect died with that process, an external one may apply twice (write it
            with the event id as its key, in one transaction: README, "Transactional outbox").
        activate: with ``key``, an event for an id this node does not run spawns that instance
            (its first event creates the entity). False: such an event is retried, then dead-lettered.
    """

    def mark(fn: F) -> F:
        setattr(fn, _MARK, _Declared(tuple(event_types), key, max_deliver, backoff or Backoff(),
                                     idempotent, activate))
        return fn

    return mark


def collect_event_handlers(cls: type, problems: list[str]) -> dict[type[Message], EventHandlerSpec]:
    """Build ``{event type: spec}`` from the ``@on_event`` methods of ``cls`` and its bases."""
    table: dict[type[Message], EventHandlerSpec] = {}
    # As for @handler: a name declared @on_event anywhere in the MRO is an event handler (the most
    # derived declaration counts), and the most derived definition of that name is what runs, so a
    # subclass overriding it needs no second decorator.
    declared: dict[str, _Declared] = {}
    for klass in cls.__mro__:
        for name, fn in vars(klass).items():
            mark = getattr(fn, _MARK, None)
            if isinstance(mark, _Declared) and name not in declared:
                declared[name] = mark
    for name in sorted(declared):
        _add(name, getattr(cls, name), declared[name], table, problems)
    return table


def _accepts(annotation: Any, tp: type) -> bool:
    """Can a parameter annotated ``annotation`` take an event of type ``tp``? (Unknown forms: yes.)"""
    if annotation is Any or annotation is object:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_accepts(arg, tp) for arg in get_args(annotation))
    if isinstance(annotation, type):
        return issubclass(tp, annotation)
    return True  # a form we cannot judge (a TypeVar, Annotated...): not refused on a guess


def _name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation).replace("typing.", "")


def _add(name: str, fn: Any, d: _Declared, table: dict[type[Message], EventHandlerSpec], problems: list[str]) -> None:
    where = f"event handler {name!r}"
    if getattr(fn, "__corps_handler__", False):
        problems.append(f"{where} is also a @handler; an event handler is not called by tell or ask")
        return
    checked = check_signature(where, "event", fn, problems)
    if checked is None:
        return
    param, hints = checked
    types = list(d.types) or [hints.get(param)]
    ok = True
    for tp in types:
        if not (isinstance(tp, type) and issubclass(tp, Message)):
            problems.append(f"{where}: {getattr(tp, '__name__', tp)!r} is not a Message subclass")
            ok = False
        elif d.types and not _accepts(hints.get(param, Any), tp):
            problems.append(f"{where} is declared for {tp.__name__}, but its parameter {param!r} is annotated "
                            f"{_name(hints[param])}: the handler would get an event of a type it does not take")
            ok = False
    if hints.get("return", None) not in (None, type(None)):
        problems.append(f"{where} must return None (an event has no reply; publish instead)")
        ok = False
    if not isinstance(d.max_deliver, int) or d.max_deliver < 1:
        problems.append(f"{where}: max_deliver must be an int >= 1, not {d.max_deliver!r}")
        ok = False
    if not isinstance(d.backoff, Backoff):
        problems.append(f"{where}: backoff must be a Backoff, not {type(d.backoff).__name__}")  # type: ignore[unreachable,unused-ignore]
        ok = False
    for tp in types:
        if not ok:
            break
        if d.key is not None and d.key.split(".")[0] not in getattr(tp, "__struct_fields__", ()):
            problems.append(f"{where}: key {d.key!r} is not a field of {tp.__name__}")
            ok = False
        elif tp in table:
            problems.append(f"event {tp.__name__} is handled by both {table[tp].name!r} and {name!r}")
            ok = False
    if not ok:
        return
    for tp in types:
        table[tp] = EventHandlerSpec(name=name, event_type=tp, fn=fn, key=d.key, max_deliver=d.max_deliver,
                                     backoff=d.backoff, idempotent=d.idempotent, activate=d.activate)
