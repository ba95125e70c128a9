"""``corps provision``: the streams, durable consumers and KV buckets an App needs, with its settings.

``plan`` only reads (stream and consumer info) and says, per resource, whether it is missing,
as wanted, or different (each difference listed); ``apply`` creates what is missing and checks
the rest with the same functions a starting ActorSystem uses, so that what a provisioning job
creates is exactly what the application then accepts.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from corps.core._actor import Actor
from corps.errors import ProvisioningConflict
from corps.events._classes import event_handlers_of
from corps.events._config import EventsConfig
from corps.events._provision import (
    _CONSUMER_FIELDS,
    _STREAM_FIELDS,
    consumer_config,
    diff,
    ensure_consumer,
    ensure_stream,
    stream_config,
)
from corps.events._wire import dlq_stream_name, events_subject, kv_bucket_name, stream_name
from corps.saga._config import SagaConfig, bucket_config, ensure_bucket, idempotency_bucket
from corps.saga._log import saga_bucket
from corps.saga._participant_spec import keeps_records_in_kv
from corps.saga._records import RECORD_TTL
from corps.system._app import App
from corps.tools._authz import _is_participant

Status = Literal["missing", "ok", "differs", "created"]


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One stream, consumer or bucket of the App, and how the server has it."""

    kind: Literal["stream", "consumer", "bucket"]
    name: str
    status: Status
    differences: list[str] = []
    why: str = ""
    """What needs it (the event stream, a class's consumer, the saga log...)."""


class _Want(msgspec.Struct, frozen=True):
    kind: Literal["stream", "consumer", "bucket"]
    name: str
    config: Any
    why: str
    stream: str = ""


def wanted(app: App, namespace: str, server_info: dict[str, Any]) -> list[_Want]:
    """What the App's ActorSystem would create, in the order it would."""
    cfg = app.events or EventsConfig()
    saga = app.saga or SagaConfig()
    stream, dlq = stream_name(namespace), dlq_stream_name(namespace)
    out = [_Want("stream", stream, stream_config(stream, [f"{namespace}.events.>"], cfg), "the event stream"),
           _Want("stream", dlq, stream_config(dlq, [f"{namespace}.dlq.>"], cfg, dlq=True), "dead letters")]
    idempotent_events = False
    for c in app.actor_classes:
        specs = event_handlers_of(c)
        if not specs:
            continue
        filters = sorted({events_subject(namespace, tp) for tp in specs})
        max_deliver = max(s.max_deliver for s in specs.values())
        out.append(_Want("consumer", c.actor_name, consumer_config(c.actor_name, filters, cfg, max_deliver),
                         f"{c.actor_name}'s @on_event handlers", stream))
        idempotent_events |= any(s.idempotent for s in specs.values())
    if idempotent_events:
        out.append(_Want("bucket", kv_bucket_name(namespace),
                         KeyValueConfig(bucket=kv_bucket_name(namespace), ttl=cfg.idempotency_ttl,
                                        replicas=cfg.replicas or 1, storage=StorageType.FILE),
                         "processed event ids (idempotent @on_event)"))
    if app.sagas:
        kv, _ = bucket_config(saga, server_info, saga_bucket(namespace), "corps saga log")
        out.append(_Want("bucket", saga_bucket(namespace), kv, "the saga log"))
    if any(_is_participant(c) and keeps_records_in_kv(c) for c in app.actor_classes if issubclass(c, Actor)):
        kv, _ = bucket_config(saga, server_info, idempotency_bucket(namespace),
                              "corps participant idempotency records", ttl=RECORD_TTL)
        out.append(_Want("bucket", idempotency_bucket(namespace), kv, "saga participants' step records"))
    return out


async def plan(js: JetStreamContext, app: App, namespace: str, server_info: dict[str, Any]) -> list[Resource]:
    """How the server differs from what the App needs. Reads only."""
    out = []
    for w in wanted(app, namespace, server_info):
        try:
            if w.kind == "stream":
                problems = diff(w.config, (await js.stream_info(w.name)).config, _STREAM_FIELDS)
            elif w.kind == "consumer":
                problems = diff(w.config, (await js.consumer_info(w.stream, w.name)).config, _CONSUMER_FIELDS)
            else:
                problems = _bucket_diff(w.config, (await js.stream_info(f"KV_{w.name}")).config)
        except nats.js.errors.NotFoundError:
            out.append(Resource(kind=w.kind, name=w.name, status="missing", why=w.why))
            continue
        out.append(Resource(kind=w.kind, name=w.name, status="differs" if problems else "ok",
                            differences=problems, why=w.why))
    return out


def _bucket_diff(want: KeyValueConfig, have: Any) -> list[str]:
    problems = []
    if (have.num_replicas or 1) < want.replicas:
        problems.append(f"replicas is {have.num_replicas or 1} on the server, {want.replicas} in the code")
    have_storage = getattr(have.storage, "value", have.storage) or "file"
    if have_storage != getattr(want.storage, "value", want.storage):
        problems.append(f"storage is {have_storage} on the server, {getattr(want.storage, 'value', '')} in the code")
    return problems


async def apply(js: JetStreamContext, app: App, namespace: str, server_info: dict[str, Any]) -> list[Resource]:
    """Create what is missing, check the rest, as a starting ActorSystem would.

    Raises:
        ProvisioningConflict: a resource exists with other settings (nothing is changed).
        EventError, SagaStoreUnavailable: JetStream refused or did not answer.
    """
    before = {(r.kind, r.name): r for r in await plan(js, app, namespace, server_info)}
    conflicts = [r for r in before.values() if r.status == "differs"]
    if conflicts:
        r = conflicts[0]
        raise ProvisioningConflict(r.kind, r.name, r.differences)
    out = []
    for w in wanted(app, namespace, server_info):
        if w.kind == "stream":
            await ensure_stream(js, w.config)
        elif w.kind == "consumer":
            await ensure_consumer(js, w.stream, w.config)
        else:
            await ensure_bucket(js, w.config)
        was = before[(w.kind, w.name)]
        out.append(msgspec.structs.replace(was, status="created" if was.status == "missing" else "ok"))
    return out
