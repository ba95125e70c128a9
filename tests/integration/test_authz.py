"""``corps authz`` on a real nats-server: the reference shop runs with each service under its own
login, and an intruder with a valid login is refused by the server at every step, with no effect.

The server runs the config ``corps authz`` prints (plus one intruder user). Each refusal is read
where nats-py reports it, the error callback (the server's ``-ERR 'Permissions Violation ...'``),
after a flush: the server answers the PING only after it handled what came before it. (corps's
flush: nats-py's own writes its PING ahead of commands still in its buffer.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client

from corps import ActorSystem, EmbeddedServer, Security
from corps.cli._authz import to_conf
from corps.examples.shop import choreographed, orchestrated
from corps.examples.shop.messages import (
    GetBookings,
    GetLedger,
    GetStock,
    OrderPlaced,
    OrderRequest,
    PaymentCaptured,
    RefundCard,
    ReserveStock,
)
from corps.tools._authz import Authz, authorize, identities_per_class
from corps.tools._graph import classes_in
from corps.wire._transport import flush

NS = "shop"
INTRUDER = """\
    # intruder: a valid login that may only use its own inbox
    {
      user: "intruder"
      password: $CORPS_PASSWORD_INTRUDER
      permissions: {
        publish: { allow: ["_INBOX.intruder.>"] }
        subscribe: { allow: ["_INBOX.intruder.>"] }
      }
    }
"""
Table = list[tuple[str, str, str]]
TABLE: Table = []
"""(attempt, subject, outcome) of every intruder attempt: printed (pytest -s) for the record."""


def _password(name: str) -> str:
    return f"pw-{name}-{uuid.uuid4().hex[:8]}"


class Shop:
    """The authz-configured server and the passwords of its users."""

    def __init__(self, server: EmbeddedServer, authz: Authz, passwords: dict[str, str]) -> None:
        self.server = server
        self.authz = authz
        self.passwords = passwords

    def security(self, name: str) -> Security:
        ident = self.authz.identity(name)
        return Security(user=name, password=self.passwords[name], inbox_prefix=ident.inbox_prefix)

    def system(self, name: str, **kwargs: Any) -> ActorSystem:
        return ActorSystem(self.server.url, namespace=NS, server_name=self.server.server_name,
                           security=self.security(name), **kwargs)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    services = identities_per_class([*classes_in(orchestrated), *classes_in(choreographed)])
    authz = authorize(services, NS, clients={"web": [orchestrated.Inventory, choreographed.Order, OrderPlaced]})
    conf = to_conf(authz)
    conf = conf[: conf.rindex("  ]")] + INTRUDER + conf[conf.rindex("  ]"):]
    path = tmp_path / "authz.conf"
    path.write_text(conf)
    passwords = {i.name: _password(i.name) for i in authz.identities} | {"intruder": _password("intruder")}
    for name, password in passwords.items():  # nats-server reads $CORPS_PASSWORD_<USER> from its environment
        monkeypatch.setenv("CORPS_PASSWORD_" + name.upper(), password)
    with EmbeddedServer(config=str(path)) as server:
        yield Shop(server, authz, passwords)


class Intruder:
    """A raw nats-py client that records what the server refuses."""

    def __init__(self, nc: Client, refusals: list[str]) -> None:
        self.nc = nc
        self.refusals = refusals

    async def refused(self, what: str, subject: str, action: Callable[[], Awaitable[Any]]) -> bool:
        """Do ``action``, flush, and say whether the server refused ``subject`` meanwhile."""
        before = len(self.refusals)
        await action()
        await flush(self.nc)
        hit = any("permissions violation" in r and subject.lower() in r for r in self.refusals[before:])
        TABLE.append((what, subject, "refused by the server" if hit else "NOT REFUSED"))
        return hit


async def intruder_on(shop: Shop, user: str = "intruder") -> Intruder:
    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        refusals.append(str(exc).lower())

    nc = await nats.connect(shop.server.url, user=user, password=shop.passwords[user], error_cb=on_error,
                            inbox_prefix=f"_INBOX.{user}", allow_reconnect=False)
    return Intruder(nc, refusals)


def envelope(msg: Any, key: str = "") -> bytes:
    """A corps message as a corps sender puts it on the wire (with an idempotency key if given)."""
    return msgspec.msgpack.encode((msg, 0, 1, "intruder", "", key) if key else (msg, 0, 1))


async def snapshot(coordinator: ActorSystem, admin: Client) -> dict[str, Any]:
    """Everything an intruder could want to change: stock, money, bookings, sagas, streams."""
    inv = coordinator.ref(orchestrated.Inventory, orchestrated.WAREHOUSE)
    pay = coordinator.ref(orchestrated.Payments, orchestrated.PAYMENTS)
    ship = coordinator.ref(orchestrated.Shipping, orchestrated.COURIER)
    js = admin.jetstream()
    streams: dict[str, tuple[int, int] | None] = {}
    for name in (f"{NS}_events", f"{NS}_dlq", f"KV_{NS}-sagas", f"KV_{NS}-idempotency"):
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:  # the shop's participants keep their records in memory
            streams[name] = None
            continue
        streams[name] = (info.state.messages, info.state.last_seq)
    return {
        "stock": [await inv.ask(GetStock(sku)) for sku in ("apple", "pear", "plum")],
        "ledger": await pay.ask(GetLedger()),
        "bookings": await ship.ask(GetBookings()),
        "sagas": sorted((s.saga_id, s.status.value) for s in await coordinator.list_sagas()),
        "streams": streams,
    }


def order(order_id: str, **changes: Any) -> OrderRequest:
    fields = {"order_id": order_id, "sku": "apple", "qty": 2, "card": "4242", "amount": 1000, "address": "1 Main St"}
    return OrderRequest(**(fields | changes))


async def test_the_orchestrated_shop_runs_with_each_service_under_its_own_login_and_an_intruder_changes_nothing(
        shop: Shop) -> None:
    async with shop.system("Inventory") as inventory, shop.system("Payments") as payments, \
            shop.system("Shipping") as shipping, \
            shop.system("PlaceOrder", sagas=[orchestrated.PlaceOrder]) as coordinator:
        await inventory.spawn(orchestrated.Inventory, orchestrated.WAREHOUSE)
        await payments.spawn(orchestrated.Payments, orchestrated.PAYMENTS)
        await shipping.spawn(orchestrated.Shipping, orchestrated.COURIER)
        first = await coordinator.start_saga(orchestrated.PlaceOrder, order("o1"))
        assert (await coordinator.wait_saga(first, timeout=15)).status.value == "COMPLETED"
        # Two asks in one loop iteration share one NATS message and one reply subject: the
        # responder's allow_responses must let it answer both (max: 0 is "any number").
        inv = coordinator.ref(orchestrated.Inventory, orchestrated.WAREHOUSE)
        both = await asyncio.gather(inv.ask(GetStock("apple")), inv.ask(GetStock("plum")))
        assert [level.available for level in both] == [98, 5]
        declined = await coordinator.start_saga(orchestrated.PlaceOrder, order("o2", card="declined"))
        assert (await coordinator.wait_saga(declined, timeout=15)).status.value == "COMPENSATED"

        admin = await nats.connect(shop.server.url, user="admin", password=shop.passwords["admin"])
        intruder = await intruder_on(shop)
        try:
            before = await snapshot(coordinator, admin)
            await _every_attempt_is_refused(intruder, first)
            assert await snapshot(coordinator, admin) == before

            # The stolen login of a client that may ask Inventory cannot refund a card either.
            web = await intruder_on(shop, "web")
            refund = RefundCard("o1", "4242", 1000)
            assert await web.refused("client 'web' asks Payments to refund", "shop.actor.Payments.psp",
                                     lambda: web.nc.publish("shop.actor.Payments.psp", envelope(refund, "x:charge~")))
            await web.nc.close()
            # Nor can a participant's login touch the saga log or read the coordinator's replies.
            svc = await intruder_on(shop, "Payments")
            assert await svc.refused("service 'Payments' rewrites a saga record", f"$KV.{NS}-sagas.s.{first}",
                                     lambda: svc.nc.publish(f"$KV.{NS}-sagas.s.{first}", b"x"))
            assert await svc.refused("service 'Payments' reads the coordinator's inbox", "_INBOX.PlaceOrder.>",
                                     lambda: svc.nc.subscribe("_INBOX.PlaceOrder.>"))
            assert await svc.refused("service 'Payments' tells Inventory", "shop.actor.Inventory.main",
                                     lambda: svc.nc.publish("shop.actor.Inventory.main",
                                                            envelope(ReserveStock("evil", "apple", 90))))
            await svc.nc.close()
            print("\n".join(f"| {what} | `{subject}` | {outcome} |" for what, subject, outcome in TABLE))  # -s
            assert await snapshot(coordinator, admin) == before

            # What the intruder tried to read stays silent while the shop goes on working.
            spies = []
            for subject in ("_INBOX.PlaceOrder.>", "shop.actor.>", f"$KV.{NS}-sagas.>", "shop.evack.>", ">"):
                spies.append(await intruder.nc.subscribe(subject))
            await flush(intruder.nc)
            third = await coordinator.start_saga(orchestrated.PlaceOrder, order("o3", sku="pear"))
            assert (await coordinator.wait_saga(third, timeout=15)).status.value == "COMPLETED"
            await flush(intruder.nc)
            assert [s.pending_msgs for s in spies] == [0] * len(spies)
        finally:
            await intruder.nc.close()
            await admin.close()


async def _every_attempt_is_refused(intruder: Intruder, saga_id: str) -> None:
    nc = intruder.nc
    reply = "_INBOX.intruder.r"

    Action = Callable[[], Awaitable[Any]]

    def pub(subject: str, payload: bytes = b"{}", headers: dict[str, str] | None = None) -> Action:
        return lambda: nc.publish(subject, payload, reply=reply, headers=headers)

    def sub(subject: str) -> Action:
        return lambda: nc.subscribe(subject)

    key = base64.urlsafe_b64encode(f"{saga_id}:charge".encode()).decode()
    attempts: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
        ("send a command to an actor (reserve stock)", "shop.actor.Inventory.main",
         pub("shop.actor.Inventory.main", envelope(ReserveStock("evil", "apple", 90)))),
        ("ask a participant to refund (with the saga's key)", "shop.actor.Payments.psp",
         pub("shop.actor.Payments.psp", envelope(RefundCard("o1", "4242", 1000), f"{saga_id}:charge~"))),
        ("publish a forged event", "shop.events.PaymentCaptured",
         pub("shop.events.PaymentCaptured", msgspec.msgpack.encode(PaymentCaptured("o9", "4242", 1)),
             {"Nats-Msg-Id": "forged-1"})),
        ("subscribe to the coordinator's inbox", "_INBOX.PlaceOrder.>", sub("_INBOX.PlaceOrder.>")),
        ("subscribe to every corps inbox", "shop.inbox.>", sub("shop.inbox.>")),
        ("subscribe to an actor's requests", "shop.actor.Payments.*", sub("shop.actor.Payments.*")),
        ("subscribe to event deliveries", "shop.evin.>", sub("shop.evin.>")),
        ("read the saga log (stream get)", f"$JS.API.STREAM.MSG.GET.KV_{NS}-sagas",
         pub(f"$JS.API.STREAM.MSG.GET.KV_{NS}-sagas", f'{{"last_by_subj":"$KV.{NS}-sagas.s.{saga_id}"}}'.encode())),
        ("read the saga log (direct get)", f"$JS.API.DIRECT.GET.KV_{NS}-sagas.$KV.{NS}-sagas.s.{saga_id}",
         pub(f"$JS.API.DIRECT.GET.KV_{NS}-sagas.$KV.{NS}-sagas.s.{saga_id}", b"")),
        ("overwrite a saga record", f"$KV.{NS}-sagas.s.{saga_id}", pub(f"$KV.{NS}-sagas.s.{saga_id}", b"garbage")),
        ("watch the saga log", f"$KV.{NS}-sagas.>", sub(f"$KV.{NS}-sagas.>")),
        ("forge an idempotency record", f"$KV.{NS}-idempotency.k.{key}", pub(f"$KV.{NS}-idempotency.k.{key}")),
        ("read an idempotency record", f"$JS.API.STREAM.MSG.GET.KV_{NS}-idempotency",
         pub(f"$JS.API.STREAM.MSG.GET.KV_{NS}-idempotency")),
        ("JetStream API: account info", "$JS.API.INFO", pub("$JS.API.INFO")),
        ("JetStream API: list streams", "$JS.API.STREAM.LIST", pub("$JS.API.STREAM.LIST")),
        ("JetStream API: stream names", "$JS.API.STREAM.NAMES", pub("$JS.API.STREAM.NAMES")),
        ("JetStream API: purge the dead-letter stream", f"$JS.API.STREAM.PURGE.{NS}_dlq",
         pub(f"$JS.API.STREAM.PURGE.{NS}_dlq")),
        ("JetStream API: delete the event stream", f"$JS.API.STREAM.DELETE.{NS}_events",
         pub(f"$JS.API.STREAM.DELETE.{NS}_events")),
        ("JetStream API: delete the saga log", f"$JS.API.STREAM.DELETE.KV_{NS}-sagas",
         pub(f"$JS.API.STREAM.DELETE.KV_{NS}-sagas")),
        ("JetStream API: a consumer on the events", f"$JS.API.CONSUMER.CREATE.{NS}_events",
         pub(f"$JS.API.CONSUMER.CREATE.{NS}_events", b'{"stream_name":"shop_events","config":{}}')),
        ("ack another service's delivery", f"$JS.ACK.{NS}_events.Order.1.1.1.1.0",
         pub(f"$JS.ACK.{NS}_events.Order.1.1.1.1.0", b"+ACK")),
        ("write a dead letter", f"{NS}.dlq.Inventory", pub(f"{NS}.dlq.Inventory")),
        ("join an actor's presence", f"{NS}.host.Inventory.all", pub(f"{NS}.host.Inventory.all", b"join x")),
    ]
    outcomes = [await intruder.refused(what, subject, action) for what, subject, action in attempts]
    assert all(outcomes), [row for row in TABLE if row[2] != "refused by the server"]


async def test_the_choreographed_shop_runs_with_each_service_under_its_own_login(shop: Shop) -> None:
    admin = await nats.connect(shop.server.url, user="admin", password=shop.passwords["admin"])
    try:
        outcome = await admin.subscribe(f"{NS}.events.OrderCompleted")
        await flush(admin)
        async with contextlib.AsyncExitStack() as stack:
            for cls, actor_id in choreographed.SERVICES:
                system = await stack.enter_async_context(shop.system(cls.actor_name))
                await system.spawn(cls, actor_id)
            orders = await stack.enter_async_context(shop.system("Order"))
            await orders.serve_events(choreographed.Order)
            web = await stack.enter_async_context(shop.system("web"))
            await web.publish(OrderPlaced(order("c1")))
            completed = await outcome.next_msg(timeout=15)
            assert msgspec.msgpack.decode(completed.data)["order_id"] == "c1"
            state = await web.ref(choreographed.Order, "c1").ask(choreographed.GetOrder())
            assert state.status == "completed"
    finally:
        await admin.close()
