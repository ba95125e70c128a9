"""``corps authz``: least-privilege NATS permissions for each service, derived from the declarations.

A service identity is one login: the classes one process runs (``--service``), or by default one
identity per class. What each may publish and subscribe follows from what corps does for those
classes (the subjects are built by ``corps.wire._subjects``, ``corps.events._wire`` and the saga
log and participant stores):

* every system: its inboxes ``_INBOX.<identity>.>`` (replies to its asks and its JetStream API
  requests: it runs with that inbox prefix, so no other login can read them), publish acks
  ``{ns}.evack.<node>.*`` (shared by the corps logins of a namespace: node ids are random), and
  the event streams' INFO (checked at start);
* a hosted actor class: its subjects ``{ns}.actor.{Class}.*``, presence ``{ns}.host.{Class}.>``
  (entities), and replies to what it receives (``allow_responses``, never the others' inboxes);
* ``@on_event`` handlers: its own durable consumer only (INFO, CREATE pinned to its name, MSG.NEXT,
  ``$JS.ACK.{stream}.{Class}.>``), its deliveries ``{ns}.evin.*.{Class}.*``, its dead letters
  ``{ns}.dlq.{Class}``, and with ``idempotent=True`` its own keys of the processed-ids bucket;
* events it publishes and actors it tells or asks, as ``corps graph`` reads them from the source;
* a saga coordinator (a Saga class, or an actor that starts one): the saga log bucket and the
  subjects of its steps' participants; a participant (``@idempotent``/``@compensation``): the
  idempotency bucket.

Creating streams and buckets is granted (pinned to their names) unless ``provision=False``: then an
operator creates them first, with the ``admin`` identity. Pure: nothing connects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.events._classes import event_handlers_of
from corps.events._wire import dlq_stream_name, event_tag, kv_bucket_name, stream_name
from corps.saga import _idempotency
from corps.saga._definition import Saga
from corps.saga._log import saga_bucket
from corps.tools._graph import build_graph, is_actor_class, is_saga_class
from corps.wire._subjects import check_token

DEFAULT_REPLY_WINDOW: Final = "1m"
"""How long after receiving a request a service may still reply to it (``allow_responses``)."""

_ENV_BAD = re.compile(r"[^A-Za-z0-9]")


class Grant(msgspec.Struct, frozen=True):
    """One subject an identity may publish to or subscribe to, and why."""

    subject: str
    why: str


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """One login and its permissions; ``classes`` are the ``module:Class`` names it runs or asks."""

    name: str
    role: str
    """``service``, ``client`` or ``admin``."""
    classes: tuple[str, ...]
    inbox_prefix: str
    """The nats-py inbox prefix it must run with (``NATS_INBOX_PREFIX``, ``Security(inbox_prefix=...)``)."""
    publish: tuple[Grant, ...]
    subscribe: tuple[Grant, ...]
    responses: bool
    """May reply to the requests it receives (``allow_responses``): services that host actors."""

    @property
    def password_variable(self) -> str:
        """The environment variable of the nats-server that holds this identity's password."""
        return "CORPS_PASSWORD_" + _ENV_BAD.sub("_", self.name).upper()


class Authz(msgspec.Struct, frozen=True):
    namespace: str
    identities: tuple[Identity, ...]
    reply_window: str = DEFAULT_REPLY_WINDOW
    notes: tuple[str, ...] = ()

    def identity(self, name: str) -> Identity:
        for ident in self.identities:
            if ident.name == name:
                return ident
        raise KeyError(name)


class _Grants:
    def __init__(self) -> None:
        self.pub: dict[str, str] = {}
        self.sub: dict[str, str] = {}

    def p(self, subject: str, why: str) -> None:
        self.pub.setdefault(subject, why)

    def s(self, subject: str, why: str) -> None:
        self.sub.setdefault(subject, why)

    def bucket(self, bucket: str, why: str, provision: bool, keys: str = ">", listing: bool = False) -> None:
        """Read and write ``keys`` of a KV bucket (a stream ``KV_{bucket}``), and list them if asked."""
        stream = f"KV_{bucket}"
        self.p(f"$JS.API.STREAM.INFO.{stream}", f"{why}: open the bucket")
        if provision:
            self.p(f"$JS.API.STREAM.CREATE.{stream}", f"{why}: create the bucket if missing")
        self.p(f"$KV.{bucket}.{keys}", f"{why}: write")
        self.p(f"$JS.API.STREAM.MSG.GET.{stream}", f"{why}: read a key")
        self.p(f"$JS.API.DIRECT.GET.{stream}.$KV.{bucket}.{keys}", f"{why}: read a key (direct get)")
        if listing:
            self.p(f"$JS.API.CONSUMER.CREATE.{stream}", f"{why}: list keys (an ephemeral consumer)")
            self.p(f"$JS.API.CONSUMER.CREATE.{stream}.>", f"{why}: list keys (an ephemeral consumer)")
            self.p(f"$JS.API.CONSUMER.INFO.{stream}.*", f"{why}: list keys")
            self.p(f"$JS.API.CONSUMER.DELETE.{stream}.*", f"{why}: list keys (removing the consumer)")
            self.p(f"$JS.API.STREAM.PURGE.{stream}", f"{why}: purge the delete markers a listing met")


def authorize(services: Mapping[str, Sequence[type]], namespace: str = "corps", *,
              clients: Mapping[str, Sequence[type]] | None = None, provision: bool = True,
              admin: str | None = "admin", reply_window: str = DEFAULT_REPLY_WINDOW) -> Authz:
    """The permissions of each service (a name and the Actor and Saga classes one process runs),
    of each client (a name, the actor classes it may ask and the event types it may publish), and
    of an admin identity (all of the namespace and the JetStream API: for operators, not services).

    Raises:
        ValueError: a name is not one subject token, a service class is neither an Actor nor a
            Saga, a client names anything but actors and events, or two identities share a name.
    """
    check_token(namespace, "namespace")
    clients = clients or {}
    names = [*services, *clients, *([admin] if admin else [])]
    for name in names:
        check_token(name, "identity name")
    if len(set(names)) != len(names):
        raise ValueError(f"identity names must differ: {', '.join(sorted(names))}")
    everything = {cls for group in services.values() for cls in group}
    for cls in everything:
        if not (is_actor_class(cls) or is_saga_class(cls)):
            raise ValueError(f"{_qualified(cls)} is neither an Actor nor a Saga subclass")
    graph = build_graph(everything)
    by_name = {node.name: node for node in graph.nodes}
    by_id = {node.id: node for node in graph.nodes}
    sends: dict[str, set[tuple[str, str]]] = {}  # module:Class -> (kind, target label)
    for edge in graph.edges:
        source = by_id[edge.source]
        sends.setdefault(source.name, set()).add((edge.kind, by_id[edge.target].label))
    sagas = {_qualified(cls): cls for cls in everything if is_saga_class(cls)}
    notes = [*graph.notes]
    out = [_service(name, group, namespace, sends, sagas, by_name, provision, notes)
           for name, group in services.items()]
    for name, group in clients.items():
        for cls in group:
            if not (is_actor_class(cls) or (isinstance(cls, type) and issubclass(cls, Message))):
                raise ValueError(f"client {name!r}: {_qualified(cls)} is neither an actor class to ask nor "
                                 f"an event type to publish")
        out.append(_client(name, group, namespace))
    if admin:
        out.append(_admin(admin, namespace))
    if not provision:
        notes.append("no identity but admin may create streams or buckets: create them first "
                     "(start each service once with the admin login)")
    return Authz(namespace, tuple(out), reply_window, tuple(notes))


def identities_per_class(classes: Iterable[type]) -> dict[str, list[type]]:
    """The default grouping: one identity per class, named by its actor (or saga) name."""
    return {(cls.actor_name if is_actor_class(cls) else getattr(cls, "saga_name", cls.__name__)): [cls]
            for cls in classes}


def _common(g: _Grants, ns: str, inbox: str, provision: bool) -> None:
    g.s(f"{inbox}.>", "its inboxes: replies to its asks and to its JetStream API requests")
    g.s(f"{ns}.evack.*.*", "stream acks of the events this system publishes")
    g.s(f"{ns}.nodes", "corps ps: every node answers what it hosts")
    for stream in (stream_name(ns), dlq_stream_name(ns)):
        g.p(f"$JS.API.STREAM.INFO.{stream}", "the event streams are checked at start")
        if provision:
            g.p(f"$JS.API.STREAM.CREATE.{stream}", "the event streams are created at start if missing")


def _service(name: str, group: Sequence[type], ns: str, sends: Mapping[str, set[tuple[str, str]]],
             sagas: Mapping[str, type[Saga[Any]]], nodes: Mapping[str, Any], provision: bool,
             notes: list[str]) -> Identity:
    g = _Grants()
    inbox = f"_INBOX.{name}"
    _common(g, ns, inbox, provision)
    stream = stream_name(ns)
    responses = False
    coordinates: dict[str, type[Saga[Any]]] = {}
    for cls in group:
        if is_saga_class(cls):
            coordinates[_qualified(cls)] = cls
            continue
        assert issubclass(cls, Actor)
        actor = cls.actor_name
        responses = True
        g.s("$SRV.>", "the NATS services API: $SRV.PING/INFO/STATS of the classes it hosts (answered to _INBOX.)")
        g.s(f"{ns}.actor.{actor}.*", f"the instances of {actor}")
        if not cls.options.service:
            g.p(f"{ns}.host.{actor}.>", f"presence: which nodes host {actor}")
            g.s(f"{ns}.host.{actor}.>", f"presence: which nodes host {actor}")
        specs = event_handlers_of(cls)
        if specs:
            why = f"{actor}'s durable consumer"
            g.p(f"$JS.API.CONSUMER.INFO.{stream}.{actor}", why)
            g.p(f"$JS.API.CONSUMER.CREATE.{stream}.{actor}", f"{why} (created if missing)")
            g.p(f"$JS.API.CONSUMER.CREATE.{stream}.{actor}.>", f"{why} (created if missing, one filter)")
            g.p(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{actor}", f"{why}: pull")
            g.p(f"$JS.ACK.{stream}.{actor}.>", f"{why}: ack, nak, in progress")
            g.s(f"{ns}.evin.*.{actor}.*", f"{why}: deliveries")
            g.p(f"{ns}.dlq.{actor}", f"{actor}'s dead letters")
            if any(spec.idempotent for spec in specs.values()):
                g.bucket(kv_bucket_name(ns), f"{actor}'s processed event ids", provision, keys=f"{actor}.>")
        if _is_participant(cls):
            g.bucket(f"{ns}-idempotency", f"{actor}'s saga step records (@idempotent)", provision)
        for kind, target in sorted(sends.get(_qualified(cls), ())):
            if kind == "publishes":
                g.p(f"{ns}.events.{target}", f"{actor} publishes {target}")
            elif kind in ("tells", "asks"):
                g.p(f"{ns}.actor.{target}.*", f"{actor} {kind} {target}")
            elif kind == "starts":
                found = next((s for q, s in sagas.items() if nodes.get(q) is not None and nodes[q].label == target),
                             None)
                if found is not None:
                    coordinates[_qualified(found)] = found
                else:
                    notes.append(f"{name}: {actor} starts saga {target}, which is not among the classes given: "
                                 f"give its module too, or the steps' participants cannot be granted")
    for saga in coordinates.values():
        g.bucket(saga_bucket(ns), f"the saga log ({saga.saga_name})", provision, listing=True)
        for stage in saga.stages:
            for step in stage:
                g.p(f"{ns}.actor.{step.to.actor_name}.*", f"{saga.saga_name} step {step.name!r}")
    return Identity(name=name, role="service", classes=tuple(_qualified(c) for c in group), inbox_prefix=inbox,
                    publish=_sorted(g.pub), subscribe=_sorted(g.sub), responses=responses)


def _client(name: str, group: Sequence[type], ns: str) -> Identity:
    g = _Grants()
    inbox = f"_INBOX.{name}"
    _common(g, ns, inbox, provision=False)
    for cls in group:
        if is_actor_class(cls):
            g.p(f"{ns}.actor.{cls.actor_name}.*", f"asks and tells {cls.actor_name}")
        else:
            tag = event_tag(cls)
            g.p(f"{ns}.events.{tag}", f"publishes {tag}")
    return Identity(name=name, role="client", classes=tuple(_qualified(c) for c in group), inbox_prefix=inbox,
                    publish=_sorted(g.pub), subscribe=_sorted(g.sub), responses=False)


def _admin(name: str, ns: str) -> Identity:
    g = _Grants()
    g.p(f"{ns}.>", "every subject of the namespace (redrive, tests)")
    g.p("$JS.API.>", "the JetStream API: create, inspect, purge streams, consumers and buckets")
    g.p("$JS.ACK.>", "acks of any consumer (corps events tail, replay)")
    for bucket in (saga_bucket(ns), f"{ns}-idempotency", kv_bucket_name(ns)):
        g.p(f"$KV.{bucket}.>", "the namespace's buckets (corps saga retry)")
    g.s(f"{ns}.>", "every subject of the namespace")
    g.s("_INBOX.>", "replies (JetStream API, replay consumers)")
    return Identity(name=name, role="admin", classes=(), inbox_prefix="_INBOX", publish=_sorted(g.pub),
                    subscribe=_sorted(g.sub), responses=True)


def _is_participant(cls: type) -> bool:
    """A handler is wrapped by ``@idempotent`` or ``@compensation`` (their wrappers' code lives in ``_idempotency``)."""
    where = _idempotency.__file__
    for klass in cls.__mro__:
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)
            while fn is not None:
                code = getattr(fn, "__code__", None)
                if code is not None and code.co_filename == where:
                    return True
                fn = getattr(fn, "__wrapped__", None)
    return False


def _sorted(grants: Mapping[str, str]) -> tuple[Grant, ...]:
    return tuple(Grant(subject, why) for subject, why in sorted(grants.items()))


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
