"""The raw nats-py side of every comparison: a plain connection, as a hand-written client would make.

One connection per raw scenario, used by both the sending and the receiving side, because a corps
``ActorSystem`` also uses one connection for the caller and the actors it hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.aio.client import Client

RAW_SUBJECT = "bench.raw"


@contextlib.asynccontextmanager
async def raw_connection(url: str) -> AsyncIterator[Client]:
    """A nats-py connection with default options, closed on exit, as a script would make it."""
    nc: Client = await nats.connect(servers=[url], name="bench-raw", connect_timeout=5)
    try:
        yield nc
    finally:
        await nc.close()


async def server_version(url: str) -> str:
    """The nats-server version, from the INFO the server sends on connect."""
    async with raw_connection(url) as nc:
        info: dict[str, Any] = nc._server_info  # the public accessor parses it into a tuple
        return str(info.get("version", "?"))


class HandBatcher:
    """What a throughput-minded user writes on raw nats-py: per subject, one buffer of encoded
    messages, published as one msgpack array when the event loop gets to run (a flusher task woken
    once per loop iteration) or when it reaches the server's ``max_payload``.

    No envelope, no request ids, no ordering across chunks, no dead letters: the cheapest batching
    that still delivers every message, the yardstick corps's coalescing outbox is read against.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._limit = nc.max_payload - 5  # the array header
        self._bufs: dict[str, list[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.published = 0

    async def send(self, subject: str, part: bytes) -> None:
        buf = self._bufs.get(subject)
        if buf is None:
            buf = self._bufs[subject] = []
            self._sizes[subject] = 0
            self._wake.set()
        size = self._sizes[subject] = self._sizes[subject] + len(part)
        buf.append(part)
        if size > self._limit:  # full: this chunk goes now, from the sender
            del self._bufs[subject]
            buf.pop()
            await self._publish(subject, buf)
            await self.send(subject, part)

    async def _publish(self, subject: str, parts: list[bytes]) -> None:
        self.published += 1
        await self._nc.publish(subject, array_header(len(parts)) + b"".join(parts))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            bufs, self._bufs = self._bufs, {}
            for subject, parts in bufs.items():
                await self._publish(subject, parts)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (the parts follow, already encoded)."""
    if n < 16:
        return bytes((0x90 | n,))
    return b"\xdc" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdd" + n.to_bytes(4, "big")
