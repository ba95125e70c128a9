"""A tiny HTTP/1.0 server for ``corps run --http-port``: GET routes answering JSON, nothing else.

No dependency: asyncio streams. Every request is bounded (its head in bytes and in time) and
anything malformed is answered 400 and closed: the port may face a network.
A route is a function returning ``(status, JSON-able body)``; ``/healthz`` and ``/readyz`` are
registered by ``corps run`` and other parts may add theirs (``routes[path] = fn``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger("corps.http")

MAX_HEAD: Final = 8192
"""Bytes of request line and headers read; a longer head is refused (431)."""
READ_TIMEOUT: Final = 5.0
"""Seconds a client has to send its request head."""
MAX_CLIENTS: Final = 32
"""Connections served at once; more are closed unanswered (a probe needs one)."""
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                   431: "Request Header Fields Too Large", 503: "Service Unavailable"}

Route = Callable[[], tuple[int, Any]]


async def serve_http(routes: dict[str, Route], host: str, port: int, *,
                     task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve ``routes`` on ``host:port`` until cancelled; ``task_status.started(port)`` with the
    bound port (``port`` 0: any free one) once it accepts connections.

    Raises:
        OSError: the port cannot be bound.
    """

    clients = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal clients
        if clients >= MAX_CLIENTS:
            log.warning("http: %d connections open; one more closed unanswered", clients)
            writer.close()
            return
        clients += 1
        try:
            status, body = await _answer(reader, routes)
            data = json.dumps(body).encode() + b"\n"
            head = (f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + data)
            await writer.drain()
        except Exception as exc:  # noqa: BLE001 -- a client that went away or sent garbage: its problem
            log.debug("http client: %s", exc)
        finally:
            clients -= 1
            writer.close()

    server = await asyncio.start_server(on_client, host, port, limit=MAX_HEAD)
    try:
        task_status.started(server.sockets[0].getsockname()[1])
        await anyio.sleep_forever()
    finally:
        server.close()
        with anyio.CancelScope(shield=True):
            await server.wait_closed()


async def _answer(reader: asyncio.StreamReader, routes: dict[str, Route]) -> tuple[int, Any]:
    try:
        with anyio.fail_after(READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.LimitOverrunError, ValueError):
        return 431, {"error": f"request head over {MAX_HEAD} bytes"}
    except (asyncio.IncompleteReadError, TimeoutError):
        return 400, {"error": "incomplete request"}
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return 400, {"error": "not an HTTP request line"}
    if parts[0] not in (b"GET", b"HEAD"):
        return 405, {"error": "only GET"}
    path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
    route = routes.get(path)
    if route is None:
        return 404, {"error": f"no route {path}", "routes": sorted(routes)}
    return route()
