"""``corps.wire._transport.flush`` is a barrier for what the client sent before it; nats-py's
``flush()`` is not.

nats-py 2.16's ``subscribe()`` leaves its SUB in the client's pending buffer for the flusher task,
and ``flush()`` writes its PING straight to the socket, ahead of it: the PONG can come back before
the server holds the SUB. A test that subscribes, flushes, then publishes from another connection
loses the message to "no interest" whenever the server reads the SUB late, which a loaded machine
makes likely: test_events_ack_flow timed out so, the server counting every PUB in and none out.
(Measured with the AckBuffer tests' bodies on one server, 2 to 4 busy loops on 2 cores: behind nats-py's
flush, 9 runs in 9000 received nothing; behind corps's, none in 9000.)

A relay between the client and a real nats-server records the bytes the client sent, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import nats
from nats.aio.client import Client

from corps.wire._transport import flush

SUB = b"SUB barrier.> "
PING = b"PING\r\n"


class Recorder:
    """``async with Recorder(url) as r``: clients connect to ``r.url``; ``r.sent`` holds every byte
    they sent, recorded before it is passed on (so the server has seen nothing that is not there)."""

    def __init__(self, upstream_url: str) -> None:
        u = urlparse(upstream_url)
        self._upstream = (u.hostname or "127.0.0.1", u.port or 4222)
        self.sent = bytearray()
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for src, dst, record in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(src, dst, record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
        try:
            while chunk := await src.read(65536):
                if record:
                    self.sent += chunk
                dst.write(chunk)
                await dst.drain()
        finally:
            dst.close()


async def sent_when_barrier_returns(url: str, barrier: Callable[[Client], Awaitable[None]]) -> bytes:
    async with Recorder(url) as relay:
        nc = await nats.connect(relay.url)
        try:
            await nc.subscribe("barrier.>")
            await barrier(nc)
            return bytes(relay.sent)
        finally:
            await nc.close()


async def test_flush_returns_after_the_server_read_the_sub_before_it(nats_server: Any) -> None:
    sent = await sent_when_barrier_returns(nats_server.url, flush)
    assert -1 < sent.find(SUB) < sent.rfind(PING), sent  # the PONG answered a PING behind the SUB


async def test_nats_py_flush_pings_ahead_of_a_pending_sub(nats_server: Any) -> None:
    """Why corps's ``flush`` exists. If this fails, nats-py's ``flush()`` became a barrier."""

    async def nats_py_flush(nc: Client) -> None:
        await nc.flush()

    sent = await sent_when_barrier_returns(nats_server.url, nats_py_flush)
    sub = sent.find(SUB)
    assert sub == -1 or sub > sent.rfind(PING), sent  # the PONG came back for a PING ahead of the SUB
