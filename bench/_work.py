"""What corps, raw nats-py and FastStream share: the messages, their msgspec codecs, the tally, the drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from corps import Message, Request
from corps.bench._stats import now

ONE_CONNECTION = "raw nats-py uses one connection for both sides, as corps does (one per ActorSystem)"
FS_NOTE = "faststream: same work through NatsBroker (logger off, handler(body: bytes) + msgspec decode, no pydantic)"


class Ping(Message, frozen=True):
    n: int


class Pong(Message, frozen=True):
    n: int


class Echo(Request[Pong], frozen=True):
    n: int


class Tick(Message):
    n: int
    payload: str


ENCODER = msgspec.msgpack.Encoder()
PING_DECODER = msgspec.msgpack.Decoder(Ping)
PINGS_DECODER = msgspec.msgpack.Decoder(list[Ping])
"""A hand-batched frame: a msgpack array of Pings (``corps.bench._raw.HandBatcher``)."""
ECHO_DECODER = msgspec.msgpack.Decoder(Echo)
PONG_DECODER = msgspec.msgpack.Decoder(Pong)
TICK_DECODER = msgspec.msgpack.Decoder(Tick)


class Tally:
    """Counts handled messages; ``done`` is set when ``target`` is reached."""

    __slots__ = ("count", "done", "target")

    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()

    async def wait(self, timeout: float, what: str) -> None:
        """Wait for ``target`` messages; a timeout reports how many arrived (lost messages or a hang)."""
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{what}: {self.count} of {self.target} messages handled after {timeout:.0f}s "
                               f"(lost messages or a hang)") from None


def tell_timeout(n: int) -> float:
    return 30.0 + n / 10_000  # 50 s for 200k: ~10x the slowest variant measured


async def in_flight(concurrency: int, per_task: int, ask_one: Any) -> float:
    """Run ``concurrency`` tasks each doing ``per_task`` sequential asks; return elapsed seconds."""

    async def worker() -> None:
        for i in range(per_task):
            await ask_one(i)

    t0 = now()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return now() - t0


async def fan_out(senders: int, actors: int, total: int, send: Callable[[int, int], Awaitable[None]]) -> None:
    """``senders`` tasks; sender s sends its share of ``total`` to actors s, s+1, ... round-robin."""

    async def sender(s: int, count: int) -> None:
        for i in range(count):
            await send((s + i) % actors, i)

    share, extra = divmod(total, senders)
    await asyncio.gather(*(sender(s, share + (s < extra)) for s in range(senders)))
