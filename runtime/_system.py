"""ActorSystem: the connection, the hosts of actor classes, spawn, ref, and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Final, TypeVar, final

import anyio
from anyio.abc import TaskGroup

from runtime._actor import Actor
from runtime._client import CorpsClient, Route, subscribe_route
from runtime._codec import Format, WireCodec
from runtime._context import current
from runtime._embedded import EmbeddedServer
from runtime._host import ClassHost
from runtime._inbox import Inbox
from runtime._messages import Message
from runtime._metrics import DeadLetters
from runtime._outbox import Outbox, Tracker
from runtime._ref import ActorRef, encode_error
from runtime._subjects import actor_subject, check_token, inbox_subject
from runtime._transport import connect, flush, max_payload, nats_errors, server_name
from runtime.errors import (
    NatsUnavailable,
    NoResponders,
    SpawnError,
)
from runtime.events._component import Events
from runtime.events._config import EventsConfig
from runtime.events._wire import PubAck
from runtime.saga._api import SagaAPI
from runtime.saga._coordinator import DEFAULT_LEASE, DEFAULT_SCAN_INTERVAL, Coordinator
from runtime.saga._definition import Saga

log = logging.getLogger("corps.system")
_current_get = current.get

A = TypeVar("A", bound=Actor)

DEFAULT_ASK_TIMEOUT: Final = 5.0
DEFAULT_DRAIN_TIMEOUT: Final = 10.0


@final
class ActorSystem(SagaAPI):
    """Hosts actors on one NATS connection. Use as ``async with ActorSystem() as system:``.

    Args:
        url: a NATS URL, or a list of URLs for a cluster. None reads ``NATS_URL``; if that is unset
            too, an embedded nats-server (JetStream on, temp store, free loopback port) is started
            and stopped with the system.
        namespace: the first subject token of everything this system sends and hosts; systems in
            different namespaces on one server do not see each other.
        codec: "msgpack" (default) or "json" for what this system sends; it reads both.
        ask_timeout: default timeout of ``ActorRef.ask``, in seconds.
        drain_timeout: how long leaving the ``async with`` waits for in-flight messages.
        name: the connection name shown by the server (default: ``corps-<node>``).
        coalesce: send messages for one subject within one loop iteration as one NATS message
            (default). Off: one NATS message per message, as a hand-written nats-py client does.
        server_name: refuse the connection unless the server reports this server_name (tests use
            it so that a stale server left on a reused port can never answer).
        sagas: saga classes this system's coordinator runs and resumes after another
            coordinator's crash; starting a saga registers its class too.
        saga_lease: seconds a coordinator holds a saga without renewing before another may take
            it over; saga_scan_interval: how often it looks for such sagas.
        events: stream and consumer settings for events (``EventsConfig``; safe defaults).
    """

    def __init__(
        self,
        url: str | list[str] | None = None,
        *,
        namespace: str = "corps",
        codec: Format = "msgpack",
        ask_timeout: float = DEFAULT_ASK_TIMEOUT,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        name: str | None = None,
        coalesce: bool = True,
        server_name: str | None = None,
        sagas: Iterable[type[Saga[Any]]] = (),
        saga_lease: float = DEFAULT_LEASE,
        saga_scan_interval: float = DEFAULT_SCAN_INTERVAL,
        events: EventsConfig | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get("NATS_URL") or None  # the only place the environment is read
        # A string may list several servers, comma-separated (NATS_URL=nats://a:4222,nats://b:4222).
        urls = url.split(",") if isinstance(url, str) else list(url or [])
        self._servers = [u.strip() for u in urls if u.strip()]
        self.namespace = check_token(namespace, "namespace")
        self.codec = WireCodec(codec)
        self._encode_env = self.codec.encode
        self.ask_timeout = ask_timeout
        self.drain_timeout = drain_timeout
        self.coalesce = coalesce
        self._expected_server = server_name
        self._saga_classes = tuple(sagas)
        self._saga_lease = saga_lease
        self._saga_scan_interval = saga_scan_interval
        self._coordinator: Coordinator | None = None
        self._coordinator_lock = anyio.Lock()
        self.node = secrets.token_hex(6)
        self.name = name or f"corps-{self.node}"
        self.dead_letters = DeadLetters()
        self._embedded: EmbeddedServer | None = None
        self._hosts: dict[type[Actor], ClassHost] = {}
        self._seq = 0
        self._busy = 0
        self._idle = anyio.Event()
        self._closing = False
        self._tg: TaskGroup | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._nc: CorpsClient = None  # type: ignore[assignment]  # set in __aenter__
        self._outbox: Outbox = None  # type: ignore[assignment]
        self._inbox: Inbox = None  # type: ignore[assignment]
        self._events_cfg = events or EventsConfig()
        self._events: Events | None = None

    @property
    def url(self) -> str:
        """The URL of the server this system is connected to."""
        if self._embedded is not None:
            return self._embedded.url
        if self._nc is not None and self._nc.connected_url is not None:
            u = self._nc.connected_url
            return f"{u.scheme}://{u.hostname}:{u.port}"
        return self._servers[0] if self._servers else ""

    @property
    def embedded(self) -> bool:
        """True if this system started its own nats-server."""
        return self._embedded is not None

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        try:
            await self._open()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _open(self) -> None:
        expected_name = self._expected_server
        if not self._servers:
            self._embedded = EmbeddedServer()
            await anyio.to_thread.run_sync(self._embedded.start)
            self._servers = [self._embedded.url]
            expected_name = self._embedded.server_name
        self._nc = await connect(self._servers, self.name, lambda: self._closing)
        if expected_name is not None and server_name(self._nc) != expected_name:
            # A stale server on a reused port must never answer for ours.
            raise NatsUnavailable(self._servers[0], f"server_name is {server_name(self._nc)!r}, "
                                                    f"expected {expected_name!r}")
        inbox = inbox_subject(self.namespace, self.node)
        tracker = Tracker(inbox)
        self._inbox = Inbox(tracker, self._dead_tells)
        self._outbox = Outbox(self._publish, max_payload(self._nc), self.codec.is_json, tracker, self.coalesce)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._outbox.run, name="corps-outbox")
        await subscribe_route(self._nc, f"{inbox}.>", Route(self._inbox.take, self._inbox.on_msg))
        self._events = Events(self._nc, self.namespace, self.node, self._events_cfg)
        await self._events.start()  # event streams provisioned (and checked) at start-up
        await flush(self._nc)
        if self._saga_classes:
            await self.coordinator()

    async def _publish(self, subject: str, payload: bytes, reply: str) -> None:
        try:  # a plain try costs nothing on success; a @contextmanager cost a generator per publish
            if self._nc.publish_now(subject, payload, reply):
                await self._nc._flush_pending(force_flush=True)
        except Exception as exc:  # mapped by the one translation table, re-raised if unknown
            with nats_errors(subject):
                raise exc from None
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Shielded: Ctrl-C or an outer cancellation still drains and stops the embedded server.
        with anyio.CancelScope(shield=True):
            await self._drain()
        for task in list(self._drains):  # only left over if the drain timed out
            task.cancel()
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        if self._tg is not None:  # outside the shield: a task group must exit in its own scope
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            await tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self._disconnect()

    async def _drain(self) -> None:
        """Drain: stop intake, finish in-flight messages, run on_stop, flush, close, stop the server."""
        self._closing = True
        nc = self._nc
        try:
            if nc is not None and nc.is_connected:
                with anyio.move_on_after(self.drain_timeout) as scope:
                    if self._events is not None:
                        await self._events.stop_intake()
                    for host in self._hosts.values():
                        await host.stop_intake()
                    if self._busy:
                        await self._idle.wait()
                if scope.cancelled_caught:
                    log.warning("drain timed out after %ss with %d busy instance(s)", self.drain_timeout, self._busy)
                for host in self._hosts.values():
                    await host.stop_all()
                if self._outbox is not None:
                    await self._outbox.flush()
                with anyio.move_on_after(self.drain_timeout):
                    await flush(nc)
        finally:
            if self._inbox is not None:
                self._inbox.fail_all(lambda s: NoResponders(s, "the actor system closed"))

    async def _disconnect(self) -> None:
        nc = self._nc
        try:
            if nc is not None and not nc.is_closed:
                await nc.close()
        finally:
            if self._embedded is not None:
                await anyio.to_thread.run_sync(lambda: self._embedded.stop(cleanup=True))  # type: ignore[union-attr]

    # -- actors --------------------------------------------------------------------------

    async def spawn(self, actor_cls: type[A], actor_id: str) -> ActorRef[A]:
        """Start an instance and return once it is subscribed and its on_start has run.

        A message sent from any connection after spawn returns reaches the instance. For a
        service class (``ActorOptions(service=True)``) each call adds one instance to the
        queue group of ``actor_id``.

        Raises:
            InvalidActorId: ``actor_id`` would inject subject tokens.
            SpawnError: the id already runs in this system, or ``__init__``/``on_start`` raised.
        """
        subject = actor_subject(self.namespace, actor_cls.actor_name, actor_id)
        if self._closing or self._nc is None:
            raise SpawnError(subject, "the actor system is not running")
        if not (isinstance(actor_cls, type) and issubclass(actor_cls, Actor)):
            raise SpawnError(subject, f"{actor_cls!r} is not an Actor subclass")
        first = actor_cls not in self._hosts
        host = await self._host_for(actor_cls)
        await host.spawn(actor_id, subject)
        if first and self._events is not None:
            await self._events.attach(host)  # its durable event consumer, once the first instance runs
        return ActorRef(self, actor_cls, actor_id, subject)

    def ref(self, actor_cls: type[A], actor_id: str) -> ActorRef[A]:
        """A reference to ``(actor_cls, actor_id)`` wherever it runs on the NATS network.

        Raises:
            InvalidActorId: ``actor_id`` would inject subject tokens.
        """
        return ActorRef(self, actor_cls, actor_id, actor_subject(self.namespace, actor_cls.actor_name, actor_id))

    async def serve_events(self, actor_cls: type[Actor]) -> None:
        """Start the durable event consumer of an entity class without spawning an instance.

        Its keyed ``@on_event`` handlers then activate instances as events for new ids arrive
        (``activate=True``). ``spawn`` does this too, for the first instance of a class.

        Raises:
            EventError: the server has no JetStream. ProvisioningConflict: see ``EventsConfig``.
        """
        await self.events.attach(await self._host_for(actor_cls))

    async def _host_for(self, actor_cls: type[Actor]) -> ClassHost:
        """This node's host of ``actor_cls``, started (subscribed) on first use."""
        host = self._hosts.get(actor_cls)
        if host is None:
            host = ClassHost(self, actor_cls)
            self._hosts[actor_cls] = host
            try:
                await host.start()
            except BaseException:
                del self._hosts[actor_cls]
                raise
        return host

    @property
    def events(self) -> Events:
        """The JetStream side: ``dead_letters()``, ``redrive(seq)``, ``replay(...)``, consumers."""
        if self._events is None:
            raise NatsUnavailable(self.url, "the actor system is not running")
        return self._events

    async def publish(self, event: Message, *, msg_id: str | None = None) -> PubAck:
        """Publish ``event`` to the events stream, on ``{namespace}.events.{EventType}``.

        It carries a ``Nats-Msg-Id``: ``msg_id`` if given (a deterministic id makes a repeated
        publish a no-op within the stream's duplicate window), else a generated one (derived from
        the event being handled, inside an ``@on_event`` handler). 503s and timeouts are retried
        with the same id. Correlation and causation ids of the message being handled, if any,
        travel in headers. Returns the stream's ack (``seq``, ``duplicate``).

        Raises:
            InvalidMessage: ``event`` is not a Message or cannot be encoded.
            PublishFailed: no ack after retries (outcome unknown: publish again with the same msg_id).
            EventError: the server has no JetStream.
        """
        return await self.events.publish(event, msg_id=msg_id)

    def metrics(self) -> dict[str, dict[str, int]]:
        """Counters per hosted actor class, plus ``system`` totals (dead letters, late replies)."""
        out = {name: host.metrics.snapshot() for name, host in
               ((h.name, h) for h in self._hosts.values())}
        out["system"] = {
            "dead_letters": self.dead_letters.count,
            "late_replies": self._inbox.late_replies if self._inbox else 0,
            "nats_messages_out": self._outbox.nats_messages if self._outbox else 0,
        }
        return out

    # -- internals used by ActorRef and ClassHost ----------------------------------------

    def _encode(self, subject: str, msg: Message, rid: int, corr: str = "", key: str = "") -> bytes:
        self._seq += 1
        cur = _current_get()  # inlined current_ids(): this runs once per tell and ask
        ids = cur.ids() if cur is not None and cur.item is not None else None
        env: tuple[Any, ...]
        if key or corr:
            env = (msg, rid, self._seq, corr or (ids[0] if ids else ""), ids[1] if ids else "", key)
        elif ids is None:
            env = (msg, rid, self._seq)
        else:
            env = (msg, rid, self._seq, ids[0], ids[1])
        if not isinstance(msg, Message):
            raise encode_error(subject, msg, TypeError("not a Message"))
        try:
            return self._encode_env(env)
        except Exception as exc:
            raise encode_error(subject, msg, exc) from exc

    def _dead_tells(self, subject: str, n: int) -> None:
        self.dead_letters.record(subject, "no responders: no instance subscribed", n=n)

    def _start_drain(self, fn: Callable[[Any], Coroutine[Any, Any, None]], cell: Any) -> None:
        # Mailbox drain tasks are owned by the system: kept in _drains, awaited (or cancelled)
        # in close. loop.create_task instead of TaskGroup.start_soon: waking an idle actor cost
        # 26 us with start_soon against 8 us on uvloop (bench: ask p50 1.15x raw -> see README).
        self._busy += 1
        task = asyncio.get_running_loop().create_task(fn(cell))
        self._drains.add(task)
        task.add_done_callback(self._drain_done)

    def _drain_done(self, task: asyncio.Task[None]) -> None:
        self._drains.discard(task)
        self._busy -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("mailbox task failed", exc_info=task.exception())
        if self._busy == 0 and self._closing:
            self._idle.set()
