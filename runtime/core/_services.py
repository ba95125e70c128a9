"""The NATS services API (ADR-32): every actor class a node hosts is a service that NATS tools find.

``nats micro ls|info|stats``, nats.js's ``Svcm`` and any client of the services API send requests
to ``$SRV.{PING|INFO|STATS}``, ``$SRV.{VERB}.{name}`` and ``$SRV.{VERB}.{name}.{id}``; each hosted
class answers those that name it (or nobody) with the JSON of ``io.nats.micro.v1.*_response``:

* name: the actor name (characters outside ``[A-Za-z0-9_-]`` become ``_``); id: ``{node}-{name}``,
  the same for the life of the node; version: ``ActorOptions.version`` (semver).
* one endpoint per handled message type, named by its wire tag, on the class's subject (the
  wildcard ``{ns}.actor.{Name}.*``, or a service class's instance subject and queue group), with
  the JSON Schemas of the message and of its reply (msgspec) in the endpoint metadata;
* stats per endpoint: requests (asks: tells are counted per class in ``metrics()``), errors among
  them (the handler raised, or returned the wrong type), total and average processing time in
  nanoseconds, and the last error.

A node subscribes once, to ``$SRV.>``, when it hosts its first class. The subscription holds at
most ``MAX_PENDING`` requests (nats-py drops beyond, counted as ``slow_consumer_drops``); replies
go only to the reply prefixes actors answer on (``Security.reply_prefixes``), so a request cannot
make a node publish onto another subject.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Final

import msgspec
import nats.errors

from corps.wire._transport import flush

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from corps.core._host import ClassHost
    from corps.core._node import Node

log = logging.getLogger("corps.services")

PREFIX: Final = "$SRV"
PING_TYPE: Final = "io.nats.micro.v1.ping_response"
INFO_TYPE: Final = "io.nats.micro.v1.info_response"
STATS_TYPE: Final = "io.nats.micro.v1.stats_response"
MAX_PENDING: Final = 1000
"""Services API requests a node holds unanswered; beyond, nats-py drops them (counted)."""

_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def service_name(actor_name: str) -> str:
    """The services API name of an actor class: its actor name, in ``[A-Za-z0-9_-]+``."""
    return _NAME_BAD.sub("_", actor_name) or "_"


# -- the responses (io.nats.micro.v1.*): field names and presence as the services API specifies ---


class _EndpointInfo(msgspec.Struct):
    name: str
    subject: str
    queue_group: str
    metadata: dict[str, str]


class _EndpointStats(msgspec.Struct):
    name: str
    subject: str
    queue_group: str
    num_requests: int
    num_errors: int
    last_error: str
    processing_time: int
    average_processing_time: int
    data: dict[str, Any]


class _Ping(msgspec.Struct, tag_field="type", tag=PING_TYPE):
    name: str
    id: str
    version: str
    metadata: dict[str, str]


class _Info(msgspec.Struct, tag_field="type", tag=INFO_TYPE):
    name: str
    id: str
    version: str
    description: str
    metadata: dict[str, str]
    endpoints: list[_EndpointInfo]


class _Stats(msgspec.Struct, tag_field="type", tag=STATS_TYPE):
    name: str
    id: str
    version: str
    started: str
    metadata: dict[str, str]
    endpoints: list[_EndpointStats]


_encode = msgspec.json.Encoder().encode


def _schema(tp: Any) -> str:
    try:
        return json.dumps(msgspec.json.schema(tp), separators=(",", ":"), sort_keys=True)
    except Exception as exc:  # noqa: BLE001 -- a user type msgspec cannot describe: say so, keep the service
        return json.dumps({"description": f"no JSON Schema: {type(exc).__name__}: {exc}"[:200]})


class ServiceView:
    """One hosted class as a service: its identity and its endpoints' fixed parts, built once."""

    def __init__(self, host: ClassHost) -> None:
        node, cls = host.system, host.cls
        self.host = host
        self.name = service_name(host.name)
        self.id = f"{node.node}-{self.name}"
        self.version = cls.options.version
        doc = (cls.__doc__ or "").strip()
        self.description = doc.splitlines()[0][:200] if doc else ""
        self.metadata = {"corps.namespace": node.namespace, "corps.class": f"{cls.__module__}.{cls.__qualname__}",
                         "corps.kind": "service" if cls.options.service else "entity", "corps.node": node.name}
        self._types: list[tuple[type, str, dict[str, str]]] = []
        for tp, spec in cls._handlers.items():
            tag = tp.__struct_config__.tag
            wire = str(tag) if tag is not None else tp.__name__
            meta = {"corps.message": wire, "corps.handler": spec.name,
                    "corps.pattern": "request" if spec.reply is not None else "tell",
                    "request_schema": _schema(tp)}
            if spec.reply is not None:
                meta["response_schema"] = _schema(spec.reply)
            self._types.append((tp, service_name(wire), meta))

    def _subject(self) -> tuple[str, str]:
        """(subject, queue group): a service class's instance subject if it runs one id here."""
        host = self.host
        subjects = {c.subject for c in host.services}
        if host.options.service and len(subjects) == 1:
            subject = subjects.pop()
            return subject, subject
        return f"{host.system.namespace}.actor.{host.name}.*", ""

    def ping(self) -> _Ping:
        return _Ping(self.name, self.id, self.version, self.metadata)

    def info(self) -> _Info:
        subject, queue = self._subject()
        endpoints = [_EndpointInfo(name, subject, queue, meta) for _, name, meta in self._types]
        return _Info(self.name, self.id, self.version, self.description, self.metadata, endpoints)

    def stats(self) -> _Stats:
        subject, queue = self._subject()
        stats = self.host.endpoints
        endpoints = []
        for tp, name, _ in self._types:
            handled, errors, ns = stats.counts.get(tp, (0, 0, 0))
            endpoints.append(_EndpointStats(name, subject, queue, handled, errors, stats.last_error.get(tp, ""), ns,
                                            ns // handled if handled else 0, {}))
        started = datetime.datetime.fromtimestamp(stats.started, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return _Stats(self.name, self.id, self.version, started, self.metadata, endpoints)


class ServicesApi:
    """A node's answers to the services API, for every class it hosts."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._sub: Subscription | None = None
        self._views: dict[type, ServiceView] = {}
        self._closed = False

    async def start(self) -> None:
        """Subscribe to ``$SRV.>`` and flush (once; a no-op after ``stop``)."""
        if self._sub is not None or self._closed:
            return
        self._sub = await self._node._nc.subscribe(f"{PREFIX}.>", cb=self._on_request, pending_msgs_limit=MAX_PENDING)
        await flush(self._node._nc)  # the server holds the SUB before spawn returns: no 503 to an early request

    async def stop(self) -> None:
        self._closed = True
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    def _view(self, host: ClassHost) -> ServiceView:
        view = self._views.get(host.cls)
        if view is None:
            view = self._views[host.cls] = ServiceView(host)
        return view

    def answers(self, subject: str) -> list[bytes]:
        """The replies to a services API request on ``subject``: one per class it names (none for a
        subject that is not a services API request)."""
        tokens = subject.split(".")
        if not 2 <= len(tokens) <= 4 or tokens[0] != PREFIX or tokens[1] not in ("PING", "INFO", "STATS"):
            return []
        verb = tokens[1]
        name = tokens[2] if len(tokens) > 2 else None
        sid = tokens[3] if len(tokens) > 3 else None
        out = []
        for host in list(self._node._hosts.values()):
            view = self._view(host)
            if (name is None or name == view.name) and (sid is None or sid == view.id):
                body = view.ping() if verb == "PING" else view.info() if verb == "INFO" else view.stats()
                out.append(_encode(body))
        return out

    async def _on_request(self, msg: Msg) -> None:
        reply = msg.reply
        if not reply or not reply.startswith(self._node.security.reply_prefixes):
            return  # nowhere to answer, or a reply subject outside the prefixes: no relay
        for body in self.answers(msg.subject):
            try:
                await self._node._nc.publish(reply, body)
            except nats.errors.Error as exc:  # closing or closed: the requester times out
                log.info("services API reply to %r not sent: %s", reply[:80], exc)
                return
