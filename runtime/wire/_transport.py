"""Every direct nats-py connection concern: connecting (with ``Security``), flushing, and error mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final

import anyio
import nats.errors
from nats.aio.client import Client

from corps.errors import AskTimeout, InvalidMessage, NatsUnavailable, NoResponders
from corps.wire._client import CorpsClient
from corps.wire._security import Security, TlsRequired, connect_options, explain, is_fatal, redact_urls

log = logging.getLogger("corps.transport")

CONNECT_TIMEOUT: Final = 5.0
PING_INTERVAL: Final = 10
"""nats-py's default is 120 s with 2 outstanding pings: minutes to notice a dead link."""
MAX_OUTSTANDING_PINGS: Final = 3
RECONNECT_WAIT: Final = 0.5
INITIAL_CONNECT_ATTEMPTS: Final = 3
INFO_WAIT: Final = 1.0
"""Seconds the first connect waits for the server's INFO (after the TLS handshake when TLS is
first) before it is refused as a TLS-first mismatch (``OpeningTransport``): a NATS server sends
INFO as it accepts; a TLS-first one says nothing until its TLS timeout (2 s by default)."""


CONNECT_DEADLINE: Final = CONNECT_TIMEOUT * (INITIAL_CONNECT_ATTEMPTS + 1)
"""The first connect ends by then whatever nats-py does (it can wait for ever on a socket whose
TLS handshake failed: its close waiter is never woken after ``start_tls`` raised)."""


async def connect(servers: list[str], name: str, closing: Callable[[], bool] = lambda: False,
                  security: Security | None = None) -> CorpsClient:
    """Connect with runtime-tuned options and ``security`` (credentials, TLS, inbox prefix).

    A refusal that retrying cannot change (wrong or expired credentials, a certificate the other
    side does not trust, TLS first on one side only) ends the attempt at once, with a message
    saying which and no secret. For a client that asked for TLS, a server that sends no INFO within
``INFO_WAIT`` is one of them (it expects TLS first).

    Raises:
        NatsUnavailable: no server in ``servers`` accepted the connection, or ``security`` is
            unusable (a file missing, an expired user JWT...). ``url`` has its user info hidden.
    """
    security = security or Security()
    where = redact_urls(servers)
    options = connect_options(security, servers)
    seen: list[BaseException] = []
    settled = anyio.Event()
    up = False

    async def error_cb(exc: Exception) -> None:
        if not up:  # the first connect: kept for the error it ends with
            seen.append(exc)
            if is_fatal(exc):
                settled.set()
            log.debug("connecting %s: %s", name, explain(exc, security, servers))
            return
        if isinstance(exc, nats.errors.SlowConsumerError):  # a subscription nats-py bounds: counted
            nc.slow_consumer_drops += 1
            nc._quiet.warning("slow-consumer", "nats dropped a message for a slow subscription on %s: %s", name, exc)
            return
        log.warning("nats error on %s: %s", name, exc)  # e.g. a permissions violation

    async def disconnected_cb() -> None:
        if not closing():
            log.warning("disconnected from NATS (%s)", name)

    async def reconnected_cb() -> None:
        log.info("reconnected to NATS (%s)", name)

    nc = CorpsClient()
    # Only a client that asked for TLS can meet a TLS-first server: a plain client keeps nats-py's
    # wait, so that a server slow to greet (paused, overloaded) at start is not taken for one.
    nc.info_wait = INFO_WAIT if security.wants_tls(servers) else None
    if security.wants_tls(servers) and not security.tls_handshake_first:
        _refuse_plaintext(nc)
    failed: list[BaseException] = []

    async def attempt() -> None:
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
                **options,
            )
        except Exception as exc:  # noqa: BLE001 -- the connect boundary: mapped to NatsUnavailable below
            failed.append(exc)
        finally:
            settled.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt)
        with anyio.move_on_after(CONNECT_DEADLINE):
            await settled.wait()
        tg.cancel_scope.cancel()  # a fatal refusal or the deadline: stop nats-py's retries
    fatal = next((e for e in seen if is_fatal(e)), None)
    if nc.is_connected and fatal is None and not failed:
        up = True
        # A connected service keeps trying through any outage; it never closes for good on its own,
        # and gives a server that is slow to greet it (a storm of reconnects) nats-py's connect_timeout.
        nc.options["max_reconnect_attempts"] = -1
        nc.info_wait = None
        return nc
    _abandon(nc)
    cause = fatal or next((e for e in reversed(seen) if not isinstance(e, nats.errors.NoServersError)), None)
    cause = cause or (failed[0] if failed else None)
    if cause is None:
        raise NatsUnavailable(where, f"no connection within {CONNECT_DEADLINE:g}s")
    raise NatsUnavailable(where, explain(cause, security, servers)) from cause


def _refuse_plaintext(nc: Client) -> None:
    """Refuse a server whose INFO offers no TLS when TLS was asked for, before CONNECT is sent.

    nats-py upgrades to TLS only if the server says it requires TLS, so a ``tls://`` URL (or a
    CA) would otherwise send the password in clear to a server, or a man in the middle, that
    does not offer it. nats-py has no option for this check: it is its INFO hook, per client.
    """
    process_info = nc._process_info

    async def guarded(info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection and not info.get("tls_required"):
            raise TlsRequired
        await process_info(info, initial_connection=initial_connection)

    nc._process_info = guarded  # type: ignore[method-assign]


def _abandon(nc: Client) -> None:
    """Release what a cancelled or failed first connect left: the socket and any started task.

    Not ``nc.close()``: after a failed TLS handshake it waits for ever (see CONNECT_DEADLINE).
    """
    for attr in ("_reading_task", "_ping_interval_task", "_flusher_task", "_reconnection_task"):
        task = getattr(nc, attr, None)
        if task is not None and not task.done():
            task.cancel()
    transport = getattr(nc, "_transport", None)
    if transport:
        with contextlib.suppress(Exception):
            transport.close()
    nc._status = Client.CLOSED


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
