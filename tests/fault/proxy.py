"""A small asyncio TCP proxy between NATS clients and one server, to break the link on purpose.

There is no netem or iptables on the test machine, so link faults are made here:

* ``cut()``: reset every connection (RST) and refuse new ones until ``heal()``: a cable pulled.
* ``blackhole()``: keep every socket open and pass no byte either way until ``heal()``, then
  deliver what was held, in order. That is a partition shorter than TCP's retransmission limit:
  neither side sees an error, only silence (nothing is dropped mid-stream, which TCP never does).
* ``delay(seconds)``: every chunk is forwarded ``seconds`` after it was read, in order (a
  delay line per direction, so throughput is not capped by the delay).

``stats`` counts connections accepted and refused, for the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import Counter
from typing import Final

CHUNK: Final = 65536


class Proxy:
    """``async with Proxy(host, port) as p``: clients connect to ``p.url``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._cut = False
        self._delay = 0.0
        self.stats: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    # -- faults ---------------------------------------------------------------------------

    def cut(self) -> None:
        self._cut = True
        self._reset_all()

    def blackhole(self) -> None:
        self._open.clear()

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def heal(self) -> None:
        self._cut = False
        self._delay = 0.0
        self._open.set()

    @property
    def connections(self) -> int:
        return len(self._links) // 2

    # -- plumbing -------------------------------------------------------------------------

    def _reset_all(self) -> None:
        for w in list(self._links):
            _reset(w)
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.stats["refused"] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats["upstream_down"] += 1
            _reset(writer)
            return
        self.stats["accepted"] += 1
        self._links |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, writer, up_writer))  # owned by self._tasks
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    *pair: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, dst))
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + self._delay, data))
            await queue.join()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            for w in pair:  # one side gone: close the other (a reset if we were cut)
                self._links.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the injected delay itself, not a synchronisation
            await self._open.wait()  # blackhole: hold the bytes until healed
            try:
                dst.write(data)
                await dst.drain()
            except OSError:
                pass
            finally:
                queue.task_done()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a pulled cable or a firewall reject looks to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
