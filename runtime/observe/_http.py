"""A minimal HTTP endpoint for Prometheus: ``GET /metrics`` answers a scrape handler's output.

For ``corps run --metrics-port``; users with a web server of their own mount the scrape
handler (``Metrics.scrape``) there instead. The request is untrusted bytes: its head is read
within ``HEAD_LIMIT`` bytes and ``READ_TIMEOUT`` seconds, anything else gets a 4xx, and no
exception from a client reaches the server loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

log = logging.getLogger("corps.observe")

HEAD_LIMIT: Final = 8192
READ_TIMEOUT: Final = 5.0

Scrape = Callable[[], tuple[str, bytes]]


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n")
    return head.encode() + body


def answer(head: bytes, scrape: Scrape) -> bytes:
    """The response to one request head (its bytes up to the blank line). Never raises."""
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) != 3 or not line[2].startswith(b"HTTP/"):
        return _response("400 Bad Request", "text/plain", b"bad request\n")
    method, target = line[0], line[1].split(b"?", 1)[0]
    if target != b"/metrics":
        return _response("404 Not Found", "text/plain", b"not found: try /metrics\n")
    if method not in (b"GET", b"HEAD"):
        return _response("405 Method Not Allowed", "text/plain", b"GET only\n")
    content_type, body = scrape()
    response = _response("200 OK", content_type, body)
    return response[: len(response) - len(body)] if method == b"HEAD" else response


async def _serve_one(scrape: Scrape, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(head, scrape))
        await writer.drain()
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        with contextlib.suppress(ConnectionError):
            writer.write(_response("400 Bad Request", "text/plain", b"bad request\n"))
    except Exception:  # a bug in a scrape handler must not stop the endpoint
        log.exception("metrics scrape failed")
        with contextlib.suppress(ConnectionError):
            writer.write(_response("500 Internal Server Error", "text/plain", b"scrape failed\n"))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_metrics(scrape: Scrape, port: int, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve ``scrape`` at ``http://host:port/metrics`` while the block runs; yields the bound port
    (``port=0`` picks a free one).

    Raises:
        OSError: the port cannot be bound.
    """
    server = await asyncio.start_server(lambda r, w: _serve_one(scrape, r, w), host, port, limit=HEAD_LIMIT)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
