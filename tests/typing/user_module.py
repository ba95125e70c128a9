"""A user's service module, outside the package, type-checked in CI (`dev.py lint`) as a user would:
``mypy --strict`` finding ``corps`` in the environment that the quick start installs."""

from __future__ import annotations

from corps import Actor, ActorSystem, Message, Request, handler, on_event
from corps.saga import NOTHING_TO_UNDO, Saga, Step, idempotent


class Greeting(Message):
    text: str


class Greet(Request[Greeting]):
    name: str


class Greeted(Message):
    name: str


class Greeter(Actor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    @handler
    @idempotent
    async def greet(self, msg: Greet) -> Greeting:
        self.seen.append(msg.name)
        await self.publish(Greeted(msg.name))
        return Greeting(f"hello {msg.name}")

    @on_event(Greeted)
    async def greeted(self, event: Greeted) -> None:
        self.seen.append(event.name)


class Welcome(Saga[Greet]):
    steps = (Step("greet", to=Greeter, key="main", request=lambda s: Greet(s.input.name), undo=NOTHING_TO_UNDO,
                  uncertain_is_safe=True),)


async def main() -> str:
    async with ActorSystem() as system:
        ref = await system.spawn(Greeter, "main")
        reply = await ref.ask(Greet("ada"), timeout=1.0)
        saga_id = await system.start_saga(Welcome, Greet("bob"))
        await system.wait_saga(saga_id)
        return reply.text
