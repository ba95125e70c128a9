"""Message and Request: the typed, frozen msgspec Structs that cross NATS."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, ClassVar, ForwardRef, Generic, TypeVar, dataclass_transform, get_args, get_origin

import msgspec

from corps.wire._codec import TAG_FIELD as TAG_FIELD

R = TypeVar("R", bound="Message")



if TYPE_CHECKING:
    # msgspec's Struct is a dataclass_transform without frozen_default: type checkers would make
    # every user write `class Ping(Message, frozen=True)`. This tells them subclasses are frozen.
    @dataclass_transform(frozen_default=True, field_specifiers=(msgspec.field,))
    class Message(msgspec.Struct, frozen=True):
        """Anything that crosses NATS."""

else:

    class Message(msgspec.Struct, frozen=True, tag=True, tag_field=TAG_FIELD):
        """Anything that crosses NATS: a frozen msgspec Struct tagged by its class name.

        Frozen, because a sent message may be retried, coalesced or logged after it was sent.
        Pass ``tag="..."`` in the class statement to choose another wire name.
        """


class Request(Message, Generic[R], frozen=True):
    """A message that expects a reply of type ``R``: ``class Deposit(Request[Balance])``.

    ``ActorRef.ask`` is typed by ``R``, and the handler's return annotation is checked against it.
    """

    __corps_reply__: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Request:
                (reply,) = get_args(base)
                if not isinstance(reply, TypeVar):
                    cls.__corps_reply__ = reply


def reply_type(request_cls: type[Message]) -> Any:
    """The reply type a Request subclass names, or None for a plain Message.

    A forward reference (``Request["Pong"]``, for a reply class defined further down) is
    resolved on first use, in the request's module.

    Raises:
        NameError: the forward reference names nothing in the request's module.
    """
    if not (isinstance(request_cls, type) and issubclass(request_cls, Request)):
        return None
    reply = request_cls.__corps_reply__
    if isinstance(reply, str | ForwardRef):
        name = reply if isinstance(reply, str) else reply.__forward_arg__
        namespace = vars(sys.modules[request_cls.__module__])
        try:
            reply = eval(name, namespace)
        except NameError:
            raise NameError(f"{request_cls.__name__} names reply type {name!r}, which is not defined "
                            f"in {request_cls.__module__}") from None
        request_cls.__corps_reply__ = reply
    return reply
