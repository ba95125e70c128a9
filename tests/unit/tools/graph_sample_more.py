"""More sample actors for tests/unit/tools/test_graph_reader.py: the reader's finer rules, one case each.

A ``ref(...)`` naming one of two handlers, a method overridden in a subclass, an annotated local
(``x: A = A(...)``) and a ``A | B`` annotation, a send to nobody, and saga steps whose request is
named through a module, a closure or a nested lambda, or beside another Message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corps.examples.shop.messages as shop
from corps import Actor, Message, Request, handler
from corps.saga import NOTHING_TO_UNDO, Saga, Step


class Pong(Message):
    text: str


class Ping(Request[Pong]):
    text: str


class Orphan(Message):
    """Handled by no actor."""


class Left(Message):
    text: str


class Right(Message):
    text: str


class Front(Actor):
    @handler
    async def ping(self, msg: Ping) -> Pong:
        return Pong(msg.text)


class Back(Actor):
    @handler
    async def ping(self, msg: Ping) -> Pong:
        return Pong(msg.text)


class Sink(Actor):
    @handler
    async def left(self, msg: Left) -> None:
        pass

    @handler
    async def right(self, msg: Right) -> None:
        pass


class Caller(Actor):
    @handler
    async def call(self, msg: Pong) -> None:
        await self.system.ref(Front, "f").ask(Ping("hi"))  # named: Front only, though Back handles Ping too

    async def send(self) -> None:
        await self.system.ref(Sink, "s").tell(Left("base"))  # overridden below: not drawn for Override


class Override(Caller):
    async def send(self) -> None:
        note: Right = Right("sub")
        await self.system.ref(Sink, "s").tell(note)

    async def either(self, side: Left | Right) -> None:
        await self.system.ref(Sink, "s").tell(side)

    async def nowhere(self, peer: Any) -> None:
        await peer.tell(Orphan())  # no ref naming a target, and no actor handles Orphan


def _request_of(tp: Any) -> Callable[[Any], Any]:
    return lambda s: tp("closure")


class Steps(Saga[Pong]):
    steps = (
        Step("module", to=Sink, key="s", request=lambda s: shop.OrderPlaced(s.input), undo=NOTHING_TO_UNDO,
             uncertain_is_safe=True),
        Step("closure", to=Sink, key="s", request=_request_of(Left), undo=NOTHING_TO_UNDO, uncertain_is_safe=True),
        Step("nested", to=Sink, key="s", request=lambda s: (lambda: Right("x"))(), undo=NOTHING_TO_UNDO,
             uncertain_is_safe=True),
        Step("beside", to=Front, key="f", request=lambda s: Ping(Pong("x").text), undo=NOTHING_TO_UNDO,
             uncertain_is_safe=True),
    )
