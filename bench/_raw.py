"""The raw nats-py side of every comparison: a plain connection, as a hand-written client would make.

One connection per raw scenario, used by both the sending and the receiving side, because a corps
``ActorSystem`` also uses one connection for the caller and the actors it hosts.
"""

from __future__ import annotations

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
