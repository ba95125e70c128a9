"""The NATS services API (issue 16, item 1): every hosted actor class answers ``$SRV.PING``,
``$SRV.INFO`` and ``$SRV.STATS`` (all, by name, by name and id), in the services API's formats.

nats-py's ``nats.micro`` has no client side, so the requests are raw, and each response is checked
against the services API's JSON Schemas (``io.nats.micro.v1.{ping,info,stats}_response``, restated
below as msgspec types with the schemas' required fields, types, patterns and constants), and its
keys against a ``nats.micro`` service answering on the same server.
"""

from __future__ import annotations

import datetime
import json
from typing import Annotated, Any, Literal

import msgspec
import nats
import pytest
from msgspec import Meta
from nats.aio.client import Client
from nats.micro import ServiceConfig, add_service
from nats.micro.request import Request as MicroRequest

from corps import Actor, ActorOptions, ActorSystem, Message, Request, handler
from corps.core._services import MAX_PENDING

# -- the services API's JSON Schemas (nats-io/jsm.go schemas/micro/v1), as types ---------------------

Name = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]+$", min_length=1)]
SemVer = Annotated[str, Meta(min_length=5, pattern=(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*"
    r"[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"))]
NonEmpty = Annotated[str, Meta(min_length=1)]
Int64 = Annotated[int, Meta(ge=-(2**63) + 1, le=2**63 - 1)]


class PingResponse(msgspec.Struct):
    type: Literal["io.nats.micro.v1.ping_response"]
    name: Name
    id: NonEmpty
    version: SemVer
    metadata: dict[str, str] | None = None


class EndpointInfo(msgspec.Struct):
    name: Name
    subject: NonEmpty
    metadata: dict[str, str] | None = None
    queue_group: str = ""


class InfoResponse(msgspec.Struct):
    type: Literal["io.nats.micro.v1.info_response"]
    name: Name
    id: NonEmpty
    version: SemVer
    description: str
    metadata: dict[str, str] | None = None
    endpoints: list[EndpointInfo] = []


class EndpointStats(msgspec.Struct):
    name: Name
    subject: NonEmpty
    num_requests: Int64
    num_errors: Int64
    last_error: str
    processing_time: Int64
    average_processing_time: Int64
    data: dict[str, Any] = {}
    queue_group: str = ""


class StatsResponse(msgspec.Struct):
    type: Literal["io.nats.micro.v1.stats_response"]
    name: Name
    id: NonEmpty
    version: SemVer
    started: datetime.datetime  # RFC 3339 ("format": "date-time"), with its time zone
    endpoints: list[EndpointStats]
    metadata: dict[str, str] | None = None


# -- the actors -------------------------------------------------------------------------------


class Balance(Message):
    amount: int


class Deposit(Request[Balance]):
    amount: int


class Audit(Message):
    note: str


class Ledger(Actor, options=ActorOptions(version="1.4.2")):
    """A ledger of deposits."""

    @handler
    async def deposit(self, msg: Deposit) -> Balance:
        if msg.amount < 0:
            raise ValueError("negative deposit")
        return Balance(msg.amount)

    @handler
    async def audit(self, msg: Audit) -> None: ...


class Quote(Request[Balance]):
    sku: str


class Pricer(Actor, options=ActorOptions(service=True, name="Pricer:v2")):
    @handler
    async def quote(self, msg: Quote) -> Balance:
        return Balance(len(msg.sku))


async def collect(nc: Client, subject: str, expect: int) -> list[dict[str, Any]]:
    """The first ``expect`` replies to a request on ``subject`` (other systems of the session may
    answer ``$SRV.PING`` too: the tests filter by name or id, or by their own namespace)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    out = [json.loads((await sub.next_msg(timeout=5)).data) for _ in range(expect)]
    await sub.unsubscribe()
    return out


def ours(replies: list[dict[str, Any]], system: ActorSystem) -> list[dict[str, Any]]:
    return [r for r in replies if (r.get("metadata") or {}).get("corps.namespace") == system.namespace]


async def test_each_hosted_class_answers_ping_in_the_services_api_format(
    actor_system: ActorSystem, raw: Client
) -> None:
    await actor_system.spawn(Ledger, "l1")
    await actor_system.spawn(Ledger, "l2")  # one service per class, not per instance
    await actor_system.spawn(Pricer, "eu")
    replies = await collect(raw, f"$SRV.PING.Ledger.{actor_system.node}-Ledger", 1)
    ping = msgspec.convert(replies[0], PingResponse)
    assert (ping.name, ping.id, ping.version) == ("Ledger", f"{actor_system.node}-Ledger", "1.4.2")
    (pricer,) = await collect(raw, "$SRV.PING.Pricer_v2", 1)  # ":" is not allowed in a service name: "_"
    assert msgspec.convert(pricer, PingResponse).version == "0.0.0"
    # Both classes answer the all-services form (other tests' systems may answer too).
    everyone: list[dict[str, Any]] = []
    inbox = raw.new_inbox()
    sub = await raw.subscribe(inbox)
    await raw.publish("$SRV.PING", b"", reply=inbox)
    while len(ours(everyone, actor_system)) < 2:
        everyone.append(json.loads((await sub.next_msg(timeout=5)).data))
    assert sorted(r["name"] for r in ours(everyone, actor_system)) == ["Ledger", "Pricer_v2"]


async def test_info_lists_one_endpoint_per_message_type_with_its_json_schemas(
    actor_system: ActorSystem, raw: Client
) -> None:
    await actor_system.spawn(Ledger, "l1")
    await actor_system.spawn(Pricer, "eu")
    (ledger,) = await collect(raw, f"$SRV.INFO.Ledger.{actor_system.node}-Ledger", 1)
    info = msgspec.convert(ledger, InfoResponse)
    assert info.description == "A ledger of deposits."
    assert info.metadata is not None
    assert info.metadata["corps.kind"] == "entity"
    by_name = {e.name: e for e in info.endpoints}
    assert sorted(by_name) == ["Audit", "Deposit"]
    wildcard = f"{actor_system.namespace}.actor.Ledger.*"
    assert {e.subject for e in info.endpoints} == {wildcard}
    assert {e.queue_group for e in info.endpoints} == {""}
    deposit = by_name["Deposit"].metadata
    assert deposit is not None
    assert deposit["corps.pattern"] == "request"
    assert json.loads(deposit["request_schema"]) == msgspec.json.schema(Deposit)
    assert json.loads(deposit["response_schema"]) == msgspec.json.schema(Balance)
    audit = by_name["Audit"].metadata
    assert audit is not None
    assert audit["corps.pattern"] == "tell"
    assert "response_schema" not in audit
    (pricer,) = await collect(raw, "$SRV.INFO.Pricer_v2", 1)
    (quote,) = msgspec.convert(pricer, InfoResponse).endpoints
    subject = actor_system.ref(Pricer, "eu").subject
    assert (quote.subject, quote.queue_group) == (subject, subject)  # a service class's queue group


async def test_stats_count_requests_errors_and_processing_time(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Ledger, "l1")
    for n in (1, 2, 3):
        await ref.ask(Deposit(n))
    await ref.tell(Audit("x"))
    await raw.request(ref.subject, msgspec.json.encode(Deposit(-1)), timeout=5)  # fails: an error
    (reply,) = await collect(raw, f"$SRV.STATS.Ledger.{actor_system.node}-Ledger", 1)
    stats = msgspec.convert(reply, StatsResponse)
    assert stats.started.tzinfo is not None
    by_name = {e.name: e for e in stats.endpoints}
    deposit, audit = by_name["Deposit"], by_name["Audit"]
    assert (deposit.num_requests, deposit.num_errors, deposit.last_error) == (4, 1, "ValueError: negative deposit")
    assert 0 < deposit.average_processing_time <= deposit.processing_time
    assert deposit.average_processing_time == deposit.processing_time // 4
    assert (audit.num_requests, audit.num_errors, audit.last_error) == (0, 0, "")  # a tell is no request


async def test_a_request_for_another_name_or_id_gets_no_answer(actor_system: ActorSystem, raw: Client) -> None:
    await actor_system.spawn(Ledger, "l1")
    inbox = raw.new_inbox()
    sub = await raw.subscribe(inbox)
    for subject in ("$SRV.PING.Nobody", "$SRV.PING.Ledger.not-this-id", "$SRV.SCHEMA.Ledger", "$SRV.PING.a.b.c"):
        await raw.publish(subject, b"", reply=inbox)
    # One node answers requests in order: the answer to this one comes first if none came before.
    await raw.publish(f"$SRV.INFO.Ledger.{actor_system.node}-Ledger", b"", reply=inbox)
    first = json.loads((await sub.next_msg(timeout=5)).data)
    assert first["type"] == "io.nats.micro.v1.info_response"


async def test_a_request_with_a_reply_subject_outside_the_reply_prefixes_is_not_answered(
    actor_system: ActorSystem, raw: Client
) -> None:
    await actor_system.spawn(Ledger, "l1")
    sub = await raw.subscribe(f"{actor_system.namespace}.events.>")
    inbox = raw.new_inbox()
    answers = await raw.subscribe(inbox)
    target = f"$SRV.PING.Ledger.{actor_system.node}-Ledger"
    await raw.publish(target, b"", reply=f"{actor_system.namespace}.events.Forged")  # a relay attempt
    await raw.publish(target, b"", reply=inbox)
    await answers.next_msg(timeout=5)  # the barrier: the node answered the second, so it saw the first
    try:
        got = await sub.next_msg(timeout=0.05)
    except nats.errors.TimeoutError:
        pass
    else:
        pytest.fail(f"relayed: {got.subject} {got.data[:200]!r} {got.headers}")
    assert MAX_PENDING > 0


async def test_corps_answers_with_the_keys_a_nats_micro_service_answers_with(
    actor_system: ActorSystem, raw: Client
) -> None:
    await actor_system.spawn(Ledger, "l1")

    async def echo(req: MicroRequest) -> None:
        await req.respond(req.data)

    svc = await add_service(raw, ServiceConfig(name="MicroEcho", version="1.0.0", description="d"))
    await svc.add_endpoint(name="echo", handler=echo, subject="micro.echo")
    try:
        for verb in ("PING", "INFO", "STATS"):
            (micro,) = await collect(raw, f"$SRV.{verb}.MicroEcho", 1)
            (corps,) = await collect(raw, f"$SRV.{verb}.Ledger.{actor_system.node}-Ledger", 1)
            assert set(corps) == set(micro), verb
            if verb != "PING":
                assert set(corps["endpoints"][0]) == set(micro["endpoints"][0]), verb
    finally:
        await svc.stop()


def test_a_version_that_is_not_semver_fails_when_the_options_are_made() -> None:
    with pytest.raises(ValueError, match="semantic version"):
        ActorOptions(version="1.0")
