"""Checked by mypy in test_ask_typing.py, never run: the typed surface of ask and Message."""

from typing import reveal_type

from corps import Actor, ActorSystem, Message, Request, handler


class Balance(Message):
    amount: int


class Deposit(Request[Balance]):
    amount: int


class Ping(Message):  # no frozen=True: Message subclasses are frozen by default for type checkers
    n: int


class Account(Actor):
    @handler
    async def deposit(self, msg: Deposit) -> Balance:
        return Balance(msg.amount)

    @handler
    async def ping(self, msg: Ping) -> None:
        reveal_type(msg.n)


async def use(system: ActorSystem) -> None:
    ref = await system.spawn(Account, "acc-1")
    reveal_type(await ref.ask(Deposit(amount=5)))
    await ref.tell(Ping(n=1))
    ping = Ping(n=2)
    ping.n = 3  # READ-ONLY: the one error this file must produce
