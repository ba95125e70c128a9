"""Node: one NATS connection hosting actor classes: spawn, ref, and graceful drain.

The core of ``ActorSystem`` (corps.system), which composes events and sagas on top of it through
the one extension point, ``Node.extend``: the core never imports them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
from anyio.abc import TaskGroup

from corps.core._actor import Actor
from corps.core._context import current
from corps.core._extension import Extension
from corps.core._host import ClassHost
from corps.core._inbox import Inbox
from corps.core._messages import Message
from corps.core._metrics import DeadLetters
from corps.core._observe import Observer, combine
from corps.core._outbox import Outbox, Tracker
from corps.core._ref import ActorRef, encode_error
from corps.core._services import ServicesApi
from corps.errors import (
    NatsUnavailable,
    NoResponders,
    SpawnError,
)
from corps.wire._client import CorpsClient, Route, subscribe_route
from corps.wire._codec import Format, WireCodec
from corps.wire._embedded import EmbeddedServer
from corps.wire._security import Security, redact_url
from corps.wire._subjects import actor_class_wildcard, actor_subject, check_token, inbox_subject
from corps.wire._transport import connect, flush, max_payload, nats_errors, server_name

log = logging.getLogger("corps.system")
_current_get = current.get

A = TypeVar("A", bound=Actor)

DEFAULT_ASK_TIMEOUT: Final = 5.0
DEFAULT_DRAIN_TIMEOUT: Final = 10.0


class Node:
    """Hosts actors on one NATS connection; the base of ``ActorSystem``, which users create.

    The arguments are ``ActorSystem``'s (see its docstring) but for ``sagas``, ``saga_*`` and
    ``events``, which belong to the parts that ``ActorSystem`` attaches with ``extend``.
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
        security: Security | None = None,
        observers: Observer | Sequence[Observer] | None = None,
    ) -> None:
        # The only place the environment is read: the server(s), and unless ``security`` is given,
        # the credentials and TLS files of the nats CLI's variables (Security.from_env).
        if url is None:
            url = os.environ.get("NATS_URL") or None
        self.security = Security.from_env(os.environ) if security is None else security
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
        self.node = secrets.token_hex(6)
        self.name = name or f"corps-{self.node}"
        self.dead_letters = DeadLetters()
        self.observer: Observer | None = combine(observers)
        """Tracing and metrics (``corps.observe``), or None: every hook site checks it once."""
        self.dead_letters.observer = self.observer
        self._embedded: EmbeddedServer | None = None
        self._hosts: dict[type[Actor], ClassHost] = {}
        self._seq = 0  # ids of messages from clients that are not corps (ext-{node}-{n}); own sends: Outbox.seq
        self._busy = 0
        self._idle = anyio.Event()
        self._closing = False
        self._tg: TaskGroup | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._nc: CorpsClient = None  # type: ignore[assignment]  # set in __aenter__
        self._outbox: Outbox = None  # type: ignore[assignment]
        self._inbox: Inbox = None  # type: ignore[assignment]
        self._extensions: list[Extension] = []
        self._services = ServicesApi(self)  # $SRV.PING/INFO/STATS, from the first hosted class on

    @property
    def url(self) -> str:
        """The URL of the server this system is connected to; never with its user info (password)."""
        if self._embedded is not None:
            return self._embedded.url
        if self._nc is not None and self._nc.connected_url is not None:
            u = self._nc.connected_url
            return f"{u.scheme}://{u.hostname}:{u.port}"
        return redact_url(self._servers[0]) if self._servers else ""

    @property
    def embedded(self) -> bool:
        """True if this system started its own nats-server."""
        return self._embedded is not None

    # -- lifecycle -----------------------------------------------------------------------

    def extend(self, extension: Extension) -> None:
        """Attach an extension (events, sagas): started with the node, told of hosted classes."""
        self._extensions.append(extension)

    async def __aenter__(self) -> Self:
        try:
            await self._open()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _open(self) -> None:
        expected_name = self._expected_server
        security = self.security
        if not self._servers:
            self._embedded = EmbeddedServer()
            await anyio.to_thread.run_sync(self._embedded.start)
            self._servers = [self._embedded.url]
            expected_name = self._embedded.server_name
            security = Security()  # our own loopback server: no users, no TLS; the environment's are for others
        self._nc = await connect(self._servers, self.name, lambda: self._closing, security)
        if expected_name is not None and server_name(self._nc) != expected_name:
            # A stale server on a reused port must never answer for ours.
            raise NatsUnavailable(redact_url(self._servers[0]), f"server_name is {server_name(self._nc)!r}, "
                                                                f"expected {expected_name!r}")
        # With an inbox prefix (a login that may subscribe only to its own inbox, see corps authz),
        # the node's reply inbox lives under it too: no other login can read this node's replies.
        inbox = inbox_subject(security.inbox_prefix or self.namespace, self.node)
        tracker = Tracker(inbox)
        self._inbox = Inbox(tracker, self._dead_tells)
        self._outbox = Outbox(self._publish, max_payload(self._nc), self.codec.is_json, tracker, self.coalesce)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._outbox.run, name="corps-outbox")
        await subscribe_route(self._nc, f"{inbox}.>", Route(self._inbox.take, self._inbox.on_msg))
        for extension in self._extensions:
            await extension.start(self)
        if self.observer is not None:
            self.observer.bind(self)
        await flush(self._nc)

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
                    await self._services.stop()
                    for extension in self._extensions:
                        await extension.stop_intake()
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
        if actor_cls.options.virtual:
            raise SpawnError(subject, "a virtual class is never spawned: host it (system.host(cls)) and send to "
                                      "system.ref(cls, id); its first message activates the id")
        first = actor_cls not in self._hosts
        host = await self.host_for(actor_cls)
        await host.spawn(actor_id, subject)
        if first:
            for extension in self._extensions:
                await extension.attach(host)  # e.g. its durable event consumer, once the first instance runs
        return ActorRef(self, actor_cls, actor_id, subject)

    def ref(self, actor_cls: type[A], actor_id: str) -> ActorRef[A]:
        """A reference to ``(actor_cls, actor_id)`` wherever it runs on the NATS network.

        Raises:
            InvalidActorId: ``actor_id`` would inject subject tokens.
        """
        return ActorRef(self, actor_cls, actor_id, actor_subject(self.namespace, actor_cls.actor_name, actor_id))

    async def host_for(self, actor_cls: type[Actor]) -> ClassHost:
        """This node's host of ``actor_cls``, started (subscribed) on first use.

        Raises:
            SpawnError: another class with the same actor name is hosted here (their subjects
                would be one: each would answer for the other's ids).
        """
        host = self._hosts.get(actor_cls)
        if host is None:
            clash = next((c for c in self._hosts if c.actor_name == actor_cls.actor_name), None)
            if clash is not None:
                raise SpawnError(actor_class_wildcard(self.namespace, actor_cls.actor_name),
                                 f"actor name {actor_cls.actor_name!r} is already hosted by "
                                 f"{clash.__module__}.{clash.__qualname__}; {actor_cls.__module__}."
                                 f"{actor_cls.__qualname__} needs another (ActorOptions(name=...))")
            host = ClassHost(self, actor_cls)
            self._hosts[actor_cls] = host
            try:
                await host.start()
            except BaseException:
                del self._hosts[actor_cls]
                raise
            await self._services.start()
        return host

    def metrics(self) -> dict[str, dict[str, int]]:
        """Counters per hosted actor class, plus ``system`` totals (dead letters, late replies)."""
        out = {name: host.metrics.snapshot() for name, host in
               ((h.name, h) for h in self._hosts.values())}
        out["system"] = {
            "dead_letters": self.dead_letters.count,
            "late_replies": self._inbox.late_replies if self._inbox else 0,
            "nats_messages_out": self._outbox.nats_messages if self._outbox else 0,
            # hostile or broken input, refused and counted (never raised into the protocol parser)
            "undecodable_replies": (self._inbox.undecodable + self._inbox.bad_replies) if self._inbox else 0,
            "dropped_messages": self._nc.dropped if self._nc is not None else 0,
            "read_loop_restarts": self._nc.read_loop_restarts if self._nc is not None else 0,
            "slow_consumer_drops": self._nc.slow_consumer_drops if self._nc is not None else 0,
            "reconnects": self._nc.stats["reconnects"] if self._nc is not None else 0,
        }
        return out

    # -- internals used by ActorRef and ClassHost ----------------------------------------

    def _encode(self, subject: str, msg: Message, rid: int, corr: str = "", key: str = "") -> bytes:
        seq = self._outbox.next_id(subject)  # (after the root tells sent to subject before)
        cur = _current_get()  # inlined current_ids(): this runs once per tell and ask
        ids = cur.ids() if cur is not None and cur.item is not None else None
        env: tuple[Any, ...]
        if key or corr:
            env = (msg, rid, seq, corr or (ids[0] if ids else ""), ids[1] if ids else "", key)
        elif ids is None:
            env = (msg, rid, seq)
        else:
            env = (msg, rid, seq, ids[0], ids[1])
        if self.observer is not None:
            tp = self.observer.traceparent()
            if tp:  # all seven fields (Envelope): the trace context rides in the payload, as the ids do
                env = (*env, *("", "", "", "")[: 6 - len(env)], tp)
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
