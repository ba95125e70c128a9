"""``ActorSystem``: a core Node with events and sagas attached: what users create."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, final

import anyio
import msgspec

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.core._node import DEFAULT_ASK_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, Node
from corps.core._observe import Observer
from corps.events._classes import event_handlers_of
from corps.events._component import Events
from corps.events._config import EventsConfig
from corps.events._extension import EventsExtension
from corps.events._partitioned import PartitionedConsumer
from corps.events._wire import PubAck
from corps.saga._api import SagaAPI, SagaExtension
from corps.saga._config import SagaConfig
from corps.saga._coordinator import Coordinator
from corps.saga._definition import Saga
from corps.system._nodeinfo import NodeInfo
from corps.virtual._config import VirtualConfig
from corps.virtual._extension import Virtual
from corps.wire._codec import Format
from corps.wire._security import Security

if TYPE_CHECKING:
    from corps.core._cell import Cell
    from corps.core._host import ClassHost


@final
class ActorSystem(Node, SagaAPI):
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
        saga: saga state and coordination (``SagaConfig``: the replicas and storage of the saga
            log and idempotency buckets, leases, scans, liveness; safe defaults).
        saga_lease, saga_scan_interval: kept for older code; when given, they replace ``saga``'s
            ``lease`` and ``scan_interval``.
        events: stream and consumer settings for events (``EventsConfig``; safe defaults).
        virtual: membership and hand-over timing of virtual actors (``VirtualConfig``; see ``host``).
        security: credentials, TLS and inbox prefix (``Security``). None reads the nats CLI's
            variables (``NATS_CREDS``, ``NATS_NKEY``, ``NATS_USER``/``NATS_PASSWORD``, ``NATS_TOKEN``,
            ``NATS_CA``, ``NATS_CERT``/``NATS_KEY``); ``Security()`` connects with none. Not used
            for the embedded server. A wrong credential or certificate raises NatsUnavailable at start.
        observers: tracing and metrics (``corps.observe.Tracing``, ``corps.observe.Metrics``, or
            any ``Observer``), one or several. None (default): no observation, no cost.
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
        saga: SagaConfig | None = None,
        saga_lease: float | None = None,
        saga_scan_interval: float | None = None,
        events: EventsConfig | None = None,
        security: Security | None = None,
        observers: Observer | Sequence[Observer] | None = None,
        virtual: VirtualConfig | None = None,
    ) -> None:
        super().__init__(url, namespace=namespace, codec=codec, ask_timeout=ask_timeout, drain_timeout=drain_timeout,
                         name=name, coalesce=coalesce, server_name=server_name, security=security,
                         observers=observers)
        self._saga_classes = tuple(sagas)
        saga = saga or SagaConfig()
        if saga_lease is not None:
            saga = msgspec.structs.replace(saga, lease=saga_lease)
        if saga_scan_interval is not None:
            saga = msgspec.structs.replace(saga, scan_interval=saga_scan_interval)
        self._saga_config = saga
        self._coordinator: Coordinator | None = None
        self._coordinator_lock = anyio.Lock()
        self._events_ext = EventsExtension(events or EventsConfig())
        self.extend(self._events_ext)
        self.extend(SagaExtension(self))
        self._virtual = Virtual(virtual or VirtualConfig())
        self.extend(NodeInfo(self._virtual.stats))  # answers corps ps
        self.extend(self._virtual)

    @property
    def virtual(self) -> Virtual:
        """Virtual actors on this node: ``token(cls, id)``, ``members``, ``stats()``, ``history``."""
        return self._virtual

    async def host(self, actor_cls: type[Actor]) -> None:
        """Host a virtual class (``ActorOptions(virtual=True)``) here: its ids may be placed on
        this node, activated by their first message and deactivated when idle. Every node that
        hosts the class shares its ids (one activation per id, cluster-wide).

        A class with keyed ``@on_event`` handlers has its events split into
        ``VirtualConfig.partitions`` partitions, each handled by one hosting node at a time (see
        docs/virtual.md); an id is placed with its partition.

        Raises:
            PlacementError: the class is not virtual, or JetStream KV is unusable.
            EventError: its event handlers are not all keyed, the server has no JetStream, or the
                event stream has interest retention (partitions re-read it from a checkpoint).
        """
        reader: Callable[[ClassHost, Callable[[Any], Cell | None]], PartitionedConsumer] | None = None
        if isinstance(actor_cls, type) and issubclass(actor_cls, Actor) and event_handlers_of(actor_cls):
            events, partitions = self.events, self._virtual.cfg.partitions
            events._check()

            def reader(host: ClassHost, route: Callable[[Any], Cell | None]) -> PartitionedConsumer:
                return PartitionedConsumer(events, host, partitions, route)

        await self._virtual.host(actor_cls, reader)

    def metrics(self) -> dict[str, dict[str, int]]:
        """``Node.metrics``, plus ``events.{Class}`` per event consumer (processed, dead_lettered,
        stalls, unfinished, outstanding; ``system.event_dead_letters`` sums them) and
        ``virtual.{Class}`` (see ``Virtual.stats``) per virtual class; ``system.bad_traceparents``:
        sagas its coordinator took over whose stored traceparent was malformed (ignored, counted)."""
        out = super().metrics()
        coordinator = self._coordinator
        out["system"]["bad_traceparents"] = coordinator.bad_traceparents if coordinator is not None else 0
        consumers = self._events_ext.consumers()
        for name, c in consumers.items():
            out[f"events.{name}"] = {"processed": c.processed, "dead_lettered": c.dead_lettered,
                                     "stalls": c.stalls, "unfinished": c.unfinished,
                                     "outstanding": len(c.outstanding)}
        out["system"]["event_dead_letters"] = sum(c.dead_lettered for c in consumers.values())
        out.update({f"virtual.{name}": counts for name, counts in self._virtual.stats().items()})
        return out

    @property
    def events(self) -> Events:
        """The JetStream side: ``dead_letters()``, ``redrive(seq)``, ``replay(...)``, consumers."""
        return self._events_ext.events

    async def serve_events(self, actor_cls: type[Actor]) -> None:
        """Start the durable event consumer of an entity class without spawning an instance.

        Its keyed ``@on_event`` handlers then activate instances as events for new ids arrive
        (``activate=True``). ``spawn`` does this too, for the first instance of a class.

        Raises:
            EventError: the server has no JetStream. ProvisioningConflict: see ``EventsConfig``.
        """
        await self.events.attach(await self.host_for(actor_cls))

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
