"""``@handler``: collect and validate an actor class's handler table when the class is created."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from corps.core._messages import Message, reply_type
from corps.core._signature import check_signature

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_MARK = "__corps_handler__"

HandlerFn = Callable[[Any, Any], Awaitable[Any]]


def handler(fn: F) -> F:
    """Mark an async method as the handler of the Message type named by its parameter annotation.

    The return annotation must be the request's reply type (``Request[R]`` → ``R``), or ``None``
    for a plain Message. Problems are reported when the actor class is created.
    """
    setattr(fn, _MARK, True)
    return fn


class HandlerSpec:
    __slots__ = ("fn", "msg_type", "name", "reply")

    def __init__(self, name: str, fn: HandlerFn, msg_type: type[Message], reply: Any) -> None:
        self.name = name
        self.fn = fn
        self.msg_type = msg_type
        self.reply = reply


def _is_message_class(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, Message)


def _check_return(name: str, msg_type: type[Message], hints: dict[str, Any], problems: list[str]) -> Any:
    try:
        expected = reply_type(msg_type)
    except NameError as exc:
        problems.append(f"handler {name!r}: {exc}")
        return None
    if "return" not in hints:
        problems.append(f"handler {name!r} has no return annotation (expected {_show(expected)})")
        return expected
    actual = hints["return"]
    if actual is type(None):
        actual = None
    if expected is None:
        if actual is not None:
            problems.append(
                f"handler {name!r} returns {_show(actual)}, but {msg_type.__name__} is not a "
                f"Request; make it Request[{_show(actual)}] or return None"
            )
        return None
    ok = actual == expected or actual is Any or (
        isinstance(actual, type) and isinstance(expected, type) and issubclass(actual, expected)
    )
    if not ok:
        problems.append(
            f"handler {name!r} returns {_show(actual)}, but {msg_type.__name__} expects a "
            f"{_show(expected)} reply"
        )
    return expected


def _show(tp: Any) -> str:
    return "None" if tp is None else getattr(tp, "__name__", repr(tp))


def collect_handlers(cls: type, problems: list[str]) -> dict[type[Message], HandlerSpec]:
    """Build ``{message type: HandlerSpec}`` from the ``@handler`` methods of ``cls`` and its bases.

    Every problem is appended to ``problems`` (the caller raises one ActorDefinitionError).
    """
    table: dict[type[Message], HandlerSpec] = {}
    # A name marked @handler anywhere in the MRO is a handler; the most derived definition of that
    # name is the one that runs, so a subclass overriding a handler needs no second @handler.
    names = {name for klass in cls.__mro__ for name, fn in vars(klass).items() if getattr(fn, _MARK, False)}
    for name in sorted(names):
        _add_handler(cls, name, getattr(cls, name), table, problems)
    return table


def _add_handler(
    cls: type, name: str, fn: Any, table: dict[type[Message], HandlerSpec], problems: list[str]
) -> None:
    checked = check_signature(f"handler {name!r}", "message", fn, problems)
    if checked is None:
        return
    param, hints = checked
    msg_type = hints.get(param)
    if not _is_message_class(msg_type):
        problems.append(f"handler {name!r}: parameter {param!r} must be annotated with a "
                        f"Message subclass, not {_show(msg_type)}")
        return
    assert isinstance(msg_type, type)
    reply = _check_return(name, msg_type, hints, problems)
    other = table.get(msg_type)
    if other is not None:
        problems.append(f"{msg_type.__name__} is handled by both {other.name!r} and {name!r}")
        return
    table[msg_type] = HandlerSpec(name, fn, msg_type, reply)
