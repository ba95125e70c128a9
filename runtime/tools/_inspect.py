"""Read-only views of a deployment, for ``corps saga``, ``dlq list|show``, ``trace``, ``events tail``
and ``ps``: never an embedded server, never a stream, consumer or bucket created.

A plain connection (no ``ActorSystem``, whose start provisions streams and buckets) to the server
given by ``--nats`` or ``NATS_URL``; a stream or bucket that is missing raises NotProvisioned.
Reading uses stream info, direct gets by sequence and KV gets. Listing a bucket's keys (and
``corps trace``'s scan) goes through an ephemeral consumer deleted when the listing ends
(``corps.wire._snapshot``); tests compare the server's streams, consumers and buckets before and after.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final, cast

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from corps.errors import NatsUnavailable, NotProvisioned
from corps.events._component import Events
from corps.events._config import EventsConfig
from corps.events._dlq import DeadLetterEvent, dead_letter, dead_letters
from corps.events._wire import CORR, dlq_stream_name, event_id_of, stream_name
from corps.saga._info import SagaInfo, read_infos
from corps.saga._log import SagaLog, saga_bucket
from corps.system._nodeinfo import NodeReport
from corps.wire._client import CorpsClient
from corps.wire._security import Security
from corps.wire._subjects import nodes_subject
from corps.wire._transport import connect

NO_SERVER: Final = ("no server given: pass --nats URL or set NATS_URL (inspection never starts an "
                    "embedded nats-server: an empty one would answer 'nothing there')")
PS_WAIT: Final = 1.0
"""How long ``corps ps`` collects answers from nodes (each answers at once; the wait bounds a slow one)."""
MAX_NODES: Final = 10_000
"""Node reports ``corps ps`` keeps; more (forged: anyone may answer) are counted as not readable."""
TAIL_POLL: Final = 1.0
"""``events tail`` looks for a new event at least this often (a core subscription wakes it sooner)."""


def server_urls(url: str | None) -> list[str]:
    """The servers of ``--nats`` or else ``NATS_URL``.

    Raises:
        NatsUnavailable: neither is given.
    """
    url = url or os.environ.get("NATS_URL") or ""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise NatsUnavailable("", NO_SERVER)
    return servers


@contextlib.asynccontextmanager
async def inspector(url: str | None, namespace: str, security: Security | None = None) -> AsyncIterator[Inspector]:
    """Connect read-only to ``url`` (else ``NATS_URL``) and yield an Inspector of ``namespace``.

    Raises:
        NatsUnavailable: no server given, or none answers.
    """
    servers = server_urls(url)
    sec = Security.from_env(os.environ) if security is None else security
    closing = False
    nc = await connect(servers, f"corps-inspect-{secrets.token_hex(3)}", lambda: closing, security=sec)
    try:
        yield Inspector(nc, namespace)
    finally:
        closing = True
        with anyio.CancelScope(shield=True):
            await nc.close()


class _Reader:
    """What the dead-letter readers of ``corps.events._dlq`` use of ``Events``: its JetStream
    context and namespace (an ``Events`` would provision when started; this reads only)."""

    def __init__(self, js: JetStreamContext, namespace: str) -> None:
        self.js = js
        self.namespace = namespace


class Inspector:
    """Reads one namespace of a deployment; changes nothing on the server."""

    def __init__(self, nc: CorpsClient, namespace: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.namespace = namespace

    async def stream(self, name: str) -> StreamInfo:
        """The stream's info.

        Raises:
            NotProvisioned: it does not exist. NatsUnavailable: no JetStream answers.
        """
        try:
            return await self.js.stream_info(name)
        except nats.js.errors.NotFoundError:
            raise NotProvisioned("stream", name) from None
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise NatsUnavailable(self.nc.connected_url.netloc if self.nc.connected_url else "",
                                  f"JetStream does not answer ({type(exc).__name__}): is it enabled?") from exc

    # -- sagas ------------------------------------------------------------------------------

    async def saga_log(self) -> SagaLog:
        """The namespace's saga log, opened without creating it.

        Raises:
            NotProvisioned: no saga log bucket in the namespace.
        """
        bucket = saga_bucket(self.namespace)
        try:
            await self.stream(f"KV_{bucket}")
        except NotProvisioned:
            raise NotProvisioned("KV bucket", bucket) from None
        return await SagaLog.attach(self.js, bucket, await self.js.key_value(bucket))

    async def sagas(self, *, active_only: bool = False) -> list[SagaInfo]:
        """As ``ActorSystem.list_sagas``, read-only."""
        return await read_infos(await self.saga_log(), active_only=active_only)

    async def saga(self, saga_id: str) -> SagaInfo:
        """One saga.

        Raises:
            NotProvisioned: no saga log. SagaNotFound, SagaUnreadable: as ``saga_status``.
        """
        record, _ = await (await self.saga_log()).read(saga_id)
        return SagaInfo.of(record)

    # -- events -----------------------------------------------------------------------------

    def _reader(self) -> Events:
        return cast(Events, _Reader(self.js, self.namespace))

    async def dead_letters(self, consumer: str | None = None) -> list[DeadLetterEvent]:
        await self.stream(dlq_stream_name(self.namespace))
        return await dead_letters(self._reader(), consumer)

    async def dead_letter(self, seq: int) -> DeadLetterEvent | None:
        await self.stream(dlq_stream_name(self.namespace))
        return await dead_letter(self._reader(), seq)

    async def tail(self, subject: str, *, from_start: bool, follow: bool,
                   ready: Callable[[], None] = lambda: None) -> AsyncGenerator[Tailed, None]:
        """Events on ``subject`` (a filter of the event stream), by get-next-by-subject requests: no consumer.

        ``from_start``: from the first stored event, else only events stored from now on (after
        ``ready()`` is called). Without ``follow`` it stops at the last event stored when it started.

        Raises:
            NotProvisioned: no event stream in the namespace.
        """
        stream = stream_name(self.namespace)
        info = await self.stream(stream)
        last = info.state.last_seq
        seq = max(1, info.state.first_seq) if from_start else last + 1
        bell = anyio.Event()

        async def ring(_msg: Any) -> None:
            bell.set()

        sub = await self.nc.subscribe(subject, cb=ring) if follow else None
        ready()
        try:
            while follow or seq <= last:
                try:
                    raw = await self.js.get_msg(stream, seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    if not follow:
                        return
                    with anyio.move_on_after(TAIL_POLL):
                        await bell.wait()
                    bell = anyio.Event()
                    continue
                got = raw.seq or seq
                if not follow and got > last:
                    return
                seq = got + 1
                yield Tailed.of(stream, got, raw.subject or "", raw.data or b"", dict(raw.headers or {}))
        finally:
            if sub is not None:
                with anyio.CancelScope(shield=True):
                    await sub.unsubscribe()

    async def publisher(self, config: EventsConfig | None = None) -> Events:
        """An ``Events`` that publishes (and redrives) to streams that must exist: never started,
        since its start provisions; its publisher's ack subscription only.

        Raises:
            NotProvisioned: the event or dead-letter stream is missing.
        """
        await self.stream(stream_name(self.namespace))
        await self.stream(dlq_stream_name(self.namespace))
        events = Events(self.nc, self.namespace, secrets.token_hex(6), config or EventsConfig())
        await events.publisher.start()
        events.available = True  # checked above, in place of start()
        return events

    # -- nodes ------------------------------------------------------------------------------

    async def nodes(self, wait: float = PS_WAIT) -> tuple[list[NodeReport], int]:
        """Every node of the namespace that answers within ``wait`` seconds, by node id, and how
        many answers were not readable (counted, skipped: anyone can answer on a subject)."""
        inbox = self.nc.new_inbox()
        reports: dict[str, NodeReport] = {}
        bad = 0

        def on_msg(data: bytes) -> None:
            nonlocal bad
            try:
                r = msgspec.json.decode(data, type=NodeReport)
            except Exception:  # noqa: BLE001 -- untrusted bytes: any answer may be forged or broken
                bad += 1
                return
            if len(reports) >= MAX_NODES and r.node not in reports:
                bad += 1
                return
            reports[r.node] = r

        async def cb(msg: Any) -> None:
            if msg.headers and msg.headers.get("Status"):  # the server's 503: nobody listens (yet)
                return
            on_msg(msg.data)

        sub = await self.nc.subscribe(inbox, cb=cb)
        try:
            await self.nc.publish(nodes_subject(self.namespace), b"", reply=inbox)
            await self.nc.flush()
            await anyio.sleep(wait)  # a collection window, not synchronisation: nodes answer once each
        finally:
            await sub.unsubscribe()
        return sorted(reports.values(), key=lambda r: (r.name, r.node)), bad


class Tailed(msgspec.Struct, frozen=True, kw_only=True):
    """One event as ``corps events tail`` prints it."""

    seq: int
    type: str
    subject: str
    event_id: str
    correlation_id: str
    event: Any
    """The payload decoded without a schema (a dict), or a short repr of bytes that do not decode."""

    @classmethod
    def of(cls, stream: str, seq: int, subject: str, data: bytes, headers: dict[str, str]) -> Tailed:
        event_id = event_id_of(headers, stream, seq)
        return cls(seq=seq, type=subject.rpartition(".")[2], subject=subject, event_id=event_id,
                   correlation_id=headers.get(CORR) or event_id, event=_payload(data))


SHOWN_BYTES: Final = 200


def _payload(data: bytes, decode: Callable[[bytes], Any] = msgspec.msgpack.decode) -> Any:
    try:
        value = decode(data)
        msgspec.json.encode(value)  # ext types, non-string keys: not printable as JSON
        return value
    except Exception:  # noqa: BLE001 -- untrusted bytes: RecursionError on deep nesting, ext types
        more = f" ... ({len(data)} bytes)" if len(data) > SHOWN_BYTES else ""
        return {"undecodable": repr(data[:SHOWN_BYTES]) + more}
