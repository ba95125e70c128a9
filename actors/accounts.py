"""The demo's domain: an ``Account`` entity and a ``Pricing`` service (``corps demo`` drives them)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import ClassVar, Final

from corps import Actor, ActorOptions, Message, Request, handler


class Balance(Message):
    account: str
    amount: int


class Deposit(Message):
    """A plain Message: sent with ``tell``, no reply."""

    amount: int


class Withdraw(Request[Balance]):
    """A Request names its reply type, so ``ask`` returns a ``Balance``."""

    amount: int


class GetBalance(Request[Balance]):
    pass


class InsufficientFunds(Exception):
    """Raised by a handler: the asker gets a RemoteError naming it."""


class Account(Actor):
    """An entity: one instance per id, holding its own state, one message at a time."""

    def __init__(self) -> None:
        self.balance = 0

    @handler
    async def deposit(self, msg: Deposit) -> None:
        self.balance += msg.amount

    @handler
    async def withdraw(self, msg: Withdraw) -> Balance:
        if msg.amount > self.balance:
            raise InsufficientFunds(f"balance is {self.balance}, cannot withdraw {msg.amount}")
        self.balance -= msg.amount
        return Balance(self.id, self.balance)

    @handler
    async def get_balance(self, msg: GetBalance) -> Balance:
        return Balance(self.id, self.balance)


class Quote(Message):
    sku: str
    cents: int
    instance: int
    """Which Pricing instance answered (a number, so the demo can show the load spread)."""


class PriceOf(Request[Quote]):
    sku: str


PRICES: Final = {"apple": 50, "pear": 65}


class Pricing(Actor, options=ActorOptions(service=True)):
    """A stateless service: instances spawned under one id share a NATS queue group."""

    _numbers: ClassVar[Iterator[int]] = itertools.count(1)

    def __init__(self) -> None:
        self.number = next(Pricing._numbers)

    @handler
    async def price(self, msg: PriceOf) -> Quote:
        return Quote(msg.sku, PRICES.get(msg.sku, 100), self.number)
