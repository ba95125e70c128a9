"""The opening of a connection: the server's INFO within a bound, and never in clear to a TLS-first client.

A NATS server speaks first: it sends INFO as soon as it accepts a connection, unless it expects TLS
first (``tls { handshake_first: true }``), when it waits, silent, for a ClientHello. nats-py waits
``connect_timeout`` for that INFO and retries, so a client without TLS-first meets a TLS-first
server as a few silent seconds per attempt. The other mismatch is a race: a TLS-first client
that starts its handshake after the server's INFO came in clear leaves that INFO in the plain
reader, completes the handshake (the server does TLS right after its INFO), then waits for an
INFO that already came. ``OpeningTransport`` tells both apart from a slow network at once:
bytes in clear before a TLS-first handshake are ``InfoInClear``, and silence for ``info_wait``
after connecting is ``NoInfo``. A server that closes at once without a word (a container's port
proxy whose server is not up yet) is neither: nats-py retries it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from nats.aio.transport import TcpTransport

from corps.wire._security import InfoInClear, NoInfo


class OpeningTransport(TcpTransport):
    """nats-py's TCP transport, with the opening checked (see the module docstring).

    ``info_wait`` bounds the wait for the server's first line (the INFO; after the handshake when
    TLS is first); ``None`` leaves it to nats-py's ``connect_timeout``. One object serves every
    connection of a client: nats-py keeps it across reconnects and calls ``connect`` again.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # nats-py's transport is untyped
        self.info_wait: float | None = None
        self._opening = False  # connected; the server's INFO not read yet

    async def connect(self, uri: Any, buffer_size: int, connect_timeout: int) -> None:
        self._opening = False
        await super().connect(uri, buffer_size, connect_timeout)
        self._opening = True

    async def connect_tls(self, uri: Any, ssl_context: ssl.SSLContext, buffer_size: int,
                          connect_timeout: int) -> None:
        if not self._opening:  # the upgrade after the INFO: nothing to check
            await super().connect_tls(uri, ssl_context, buffer_size, connect_timeout)
            return
        # TLS first: a TLS-first server sends nothing before our ClientHello. (If the handshake fails,
        # the server's INFO or -ERR reached the TLS layer: "wrong version number", explained alike.)
        plain = self._io_reader
        await super().connect_tls(uri, ssl_context, buffer_size, connect_timeout)
        if _heard(plain):
            raise InfoInClear

    async def readline(self) -> bytes:
        wait, self._opening = (self.info_wait if self._opening else None), False
        line = super().readline()  # type: ignore[no-untyped-call]  # nats-py's transport is untyped
        if wait is None:
            return await line  # type: ignore[no-any-return]
        try:
            return await asyncio.wait_for(line, wait)
        except TimeoutError:
            raise NoInfo(wait) from None


def _heard(reader: asyncio.StreamReader | None) -> bool:
    """Bytes came on ``reader`` and wait there: once ``start_tls`` took the socket over, what the
    plain reader holds is all that came before the handshake (asyncio keeps it in ``_buffer``)."""
    return bool(getattr(reader, "_buffer", b""))
