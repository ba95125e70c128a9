"""Every direct nats-py connection concern: connecting, options, flushing, and error mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client

from corps.errors import AskTimeout, InvalidMessage, NatsUnavailable, NoResponders
from corps.wire._client import CorpsClient

log = logging.getLogger("corps.transport")

CONNECT_TIMEOUT: Final = 5.0
PING_INTERVAL: Final = 10
"""nats-py's default is 120 s with 2 outstanding pings: minutes to notice a dead link."""
MAX_OUTSTANDING_PINGS: Final = 3
RECONNECT_WAIT: Final = 0.5
INITIAL_CONNECT_ATTEMPTS: Final = 3


async def connect(servers: list[str], name: str, closing: Callable[[], bool] = lambda: False) -> CorpsClient:
    """Connect with runtime-tuned options.

    Raises:
        NatsUnavailable: no server in ``servers`` accepted the connection.
    """

    async def error_cb(exc: Exception) -> None:
        log.warning("nats error on %s: %r", name, exc)

    async def disconnected_cb() -> None:
        if not closing():
            log.warning("disconnected from NATS (%s)", name)

    async def reconnected_cb() -> None:
        log.info("reconnected to NATS (%s)", name)

    nc = CorpsClient()
    try:
        await nc.connect(
            servers=servers,
            name=name,
            connect_timeout=int(CONNECT_TIMEOUT),
            ping_interval=PING_INTERVAL,
            max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # annotated int, used as seconds
            # Bounded for the first connect (nats-py applies this to it too, and -1 would retry a
            # wrong URL forever); unlimited once connected, below.
            max_reconnect_attempts=INITIAL_CONNECT_ATTEMPTS,
            allow_reconnect=True,
            # Every subject corps publishes to is built (and its tokens checked) in _subjects.py,
            # or is a reply subject the server handed us: nats-py's per-publish regex is redundant.
            skip_subject_validation=True,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
        )
    except Exception as exc:
        raise NatsUnavailable(",".join(servers), f"{type(exc).__name__}: {exc}") from exc
    # A connected service keeps trying through any outage; it never closes for good on its own.
    nc.options["max_reconnect_attempts"] = -1
    return nc


async def flush(nc: Client, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the server has processed every command sent so far (SUB, PUB, UNSUB).

    nats-py 2.16's ``flush()`` is not enough: ``_send_ping`` writes PING straight to the socket,
    ahead of commands still in the client's pending buffer, so the PONG can come back before a
    SUB reached the server (seen in a server trace: a tell sent right after spawn got a 503).
    Write the pending buffer out first, then ping.
    """
    await nc._flush_pending(force_flush=True)
    await nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py annotates it as int


def server_name(nc: Client) -> str:
    info: dict[str, Any] = nc._server_info  # no public accessor in nats-py
    return str(info.get("server_name", ""))


def max_payload(nc: Client) -> int:
    return int(nc.max_payload)


@contextlib.contextmanager
def nats_errors(subject: str, timeout: float = 0.0) -> Iterator[None]:
    """Translate nats-py errors into the corps tree at this one boundary."""
    try:
        yield
    except nats.errors.NoRespondersError as exc:
        raise NoResponders(subject) from exc
    except nats.errors.TimeoutError as exc:
        raise AskTimeout(subject, timeout) from exc
    except nats.errors.MaxPayloadError as exc:
        raise InvalidMessage(subject, "payload exceeds the server's max_payload") from exc
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
        raise NatsUnavailable(subject, f"connection is {type(exc).__name__}") from exc
    except nats.errors.OutboundBufferLimitError as exc:
        raise NatsUnavailable(subject, "disconnected and the reconnect buffer is full") from exc
