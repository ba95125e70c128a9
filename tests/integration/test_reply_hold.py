"""``hold_reply`` (runtime/core/_context.py): a reply that waits for work done off the mailbox."""

from __future__ import annotations

from typing import ClassVar

import anyio
import pytest

from corps import Actor, ActorSystem, Message, RemoteError, Request, handler
from corps.core._context import hold_reply


class Done(Message):
    n: int


class Slow(Request[Done]):
    n: int


class Quick(Request[Done]):
    n: int


class Broken(Request[Done]):
    pass


class Holder(Actor):
    gate: ClassVar[anyio.Event]
    entered: ClassVar[anyio.Event]
    log: ClassVar[list[str]]

    @handler
    async def slow(self, msg: Slow) -> Done:
        async def work() -> None:
            await self.gate.wait()
            self.log.append(f"work {msg.n}")

        self.log.append(f"slow {msg.n}")
        self.entered.set()
        hold_reply(work())
        return Done(msg.n)

    @handler
    async def quick(self, msg: Quick) -> Done:
        self.log.append(f"quick {msg.n}")
        self.gate.set()  # lets the held work of an earlier message finish
        return Done(msg.n)

    @handler
    async def broken(self, msg: Broken) -> Done:
        async def work() -> None:
            raise OSError("the write failed")

        hold_reply(work())
        return Done(0)


@pytest.fixture
def holder() -> type[Holder]:
    Holder.gate, Holder.entered, Holder.log = anyio.Event(), anyio.Event(), []
    return Holder


async def test_the_next_message_runs_while_a_reply_waits_for_held_work(
    actor_system: ActorSystem, holder: type[Holder]
) -> None:
    ref = await actor_system.spawn(holder, "h")
    got: list[Done] = []

    async def slow() -> None:
        got.append(await ref.ask(Slow(1), timeout=10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await Holder.entered.wait()  # the slow message is being handled
            assert await ref.ask(Quick(2), timeout=10) == Done(2)  # held work did not hold the mailbox
    assert got == [Done(1)]
    assert Holder.log == ["slow 1", "quick 2", "work 1"]  # the reply went out after the work


async def test_held_work_that_fails_turns_the_reply_into_an_error(
    actor_system: ActorSystem, holder: type[Holder]
) -> None:
    ref = await actor_system.spawn(holder, "h")
    with pytest.raises(RemoteError) as failed:
        await ref.ask(Broken(), timeout=10)
    assert (failed.value.type, failed.value.message) == ("OSError", "the write failed")


def test_hold_reply_outside_a_handler_is_refused() -> None:
    async def work() -> None: ...

    coro = work()
    with pytest.raises(RuntimeError, match="outside a handler"):
        hold_reply(coro)
    coro.close()
