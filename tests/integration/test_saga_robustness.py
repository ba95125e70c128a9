"""Nothing a saga's definition, input, replies or log records hold can stop a coordinator.

Each test names a way one saga (or one record) used to end the whole ActorSystem; now that saga
alone fails, for good and with its reason, and the system goes on with the others.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from corps import Actor, ActorOptions, ActorSystem, Message, Request, SagaUnreadable, handler
from corps.examples.shop.messages import CancelCourier, OrderRequest, ShipmentCancelled
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import (
    Engine,
    Retry,
    Saga,
    SagaStatus,
    Started,
    Step,
    StepStatus,
    StepSucceeded,
    compensation,
    idempotent,
)
from corps.saga._log import SagaRecord, saga_bucket
from corps.wire._embedded import EmbeddedServer
from tests.integration.test_sagas import kinds, order, stock

Factory = Any
FAST = Retry(max_attempts=3, interval=0.01, backoff_rate=1.0, max_delay=0.02)


# -- a sign-up saga whose second step is keyed by the user's e-mail address -------------------------


class SignUp(Message):
    email: str


class Created(Message):
    email: str


class CreateAccount(Request[Created]):
    email: str


class Deleted(Message):
    email: str
    existed: bool


class DeleteAccount(Request[Deleted]):
    email: str


class Sent(Message):
    email: str


class SendWelcome(Request[Sent]):
    email: str


class Recalled(Message):
    email: str


class RecallWelcome(Request[Recalled]):
    email: str


class Count(Message):
    n: int


class CountAccounts(Request[Count]):
    pass


class Accounts(Actor):
    def __init__(self) -> None:
        self.emails: set[str] = set()

    @handler
    @idempotent
    async def create(self, msg: CreateAccount) -> Created:
        self.emails.add(msg.email)
        return Created(msg.email)

    @handler
    @compensation(noop=lambda msg: Deleted(msg.email, False))
    async def delete(self, msg: DeleteAccount) -> Deleted:
        existed = msg.email in self.emails
        self.emails.discard(msg.email)
        return Deleted(msg.email, existed)

    @handler
    async def count(self, msg: CountAccounts) -> Count:
        return Count(len(self.emails))


class Mailbox(Actor):
    @handler
    @idempotent
    async def send(self, msg: SendWelcome) -> Sent:
        return Sent(msg.email)

    @handler
    @compensation(noop=lambda msg: Recalled(msg.email))
    async def recall(self, msg: RecallWelcome) -> Recalled:
        return Recalled(msg.email)


ACCOUNT = Step("account", to=Accounts, key="main", request=lambda s: CreateAccount(s.input.email),
               undo=lambda s: DeleteAccount(s.input.email), timeout=2.0, retry=FAST)


class Welcome(Saga[SignUp]):
    steps = (
        ACCOUNT,
        Step("welcome", to=Mailbox, key=lambda s: s.input.email, request=lambda s: SendWelcome(s.input.email),
             undo=lambda s: RecallWelcome(s.input.email), timeout=2.0, retry=FAST),
    )


@pytest.fixture
async def signups(actor_system_factory: Factory) -> ActorSystem:
    """Participants and a coordinator in one system: were it to die, the test would see it."""
    system: ActorSystem = await actor_system_factory(sagas=(Welcome,))
    await system.spawn(Accounts, "main")
    await system.spawn(Mailbox, "ada")
    return system


async def accounts(system: ActorSystem) -> int:
    return (await system.ref(Accounts, "main").ask(CountAccounts())).n


async def test_a_key_that_is_not_an_actor_id_fails_its_step_and_the_system_carries_on(signups: ActorSystem) -> None:
    bad = await signups.start_saga(Welcome, SignUp("ada.lovelace@example.com"))
    info = await signups.wait_saga(bad, timeout=10)
    assert info.status is SagaStatus.COMPENSATED
    assert info.reason is not None
    assert "step 'welcome'" in info.reason
    assert "its key gave 'ada.lovelace@example.com', which is not an actor id" in info.reason
    welcome = next(s for s in info.steps if s.name == "welcome")
    assert (welcome.status, welcome.attempt) == (StepStatus.FAILED, 1)  # for good: no retry
    assert [step for kind, step in kinds(info) if kind == "undone"] == ["account"]
    # The system and its coordinator go on: another saga, and an ask to one of its actors.
    coordinator = await signups.coordinator()
    assert not coordinator.dead
    good = await signups.start_saga(Welcome, SignUp("ada"))
    assert (await signups.wait_saga(good, timeout=10)).status is SagaStatus.COMPLETED
    assert await accounts(signups) == 1  # ada's; the first account was deleted again


class OldWelcome(Saga[SignUp]):
    """Welcome as a coordinator ran it before ids were checked: the log it wrote names the address."""

    saga_name = "Welcome"
    steps = (ACCOUNT, Step("welcome", to=Mailbox, key="placeholder", request=lambda s: SendWelcome(s.input.email),
                           undo=lambda s: RecallWelcome(s.input.email), timeout=2.0, retry=FAST))


async def test_a_coordinator_resuming_a_step_sent_to_no_address_fails_it_and_compensates(
    actor_system_factory: Factory, nats_server: EmbeddedServer, corps_namespace: str
) -> None:
    """A saga logged by a coordinator that died sending 'welcome' to an e-mail address as an actor
    id (as every coordinator did before): its successor resumes it, and only that saga fails."""
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Accounts, "main")
    await parts.spawn(Mailbox, "ada")
    email, sid = "ada.lovelace@example.com", "resumed-1"
    # The account step ran (its effect is there, recorded under the step's idempotency key)...
    await parts.ref(Accounts, "main").ask(CreateAccount(email), idempotency_key=f"{sid}:account")
    # ...and the log says 'welcome' was sent to the address, by a coordinator whose lease ran out.
    engine = Engine(OldWelcome)
    state, _ = engine.advance(None, Started.of(sid, SignUp(email), at=0.0))
    state, _ = engine.advance(state, StepSucceeded(step="account", attempt=1,
                                                   reply=msgspec.msgpack.encode(Created(email)), at=0.1))
    logged = msgspec.structs.replace(state, steps=tuple(
        msgspec.structs.replace(s, actor_id=email) if s.name == "welcome" else s for s in state.steps))
    assert [(t.kind.value, t.step) for t in logged.history][-1] == ("sent", "welcome")
    async with raw_kv(nats_server, corps_namespace) as kv:
        await kv.put(f"a.{sid}", b"")
        await kv.create(f"s.{sid}", msgspec.msgpack.encode(SagaRecord(state=logged, owner="dead", lease_until=0.0)))
    successor: ActorSystem = await actor_system_factory(sagas=(Welcome,), saga_scan_interval=0.05)
    info = await successor.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPENSATED
    assert "step 'welcome' could not be built" in (info.reason or "")
    assert await accounts(parts) == 0
    assert not (await successor.coordinator()).dead
    again = await successor.start_saga(Welcome, SignUp("ada"))
    assert (await successor.wait_saga(again, timeout=10)).status is SagaStatus.COMPLETED


class BookExpress(Request[Sent]):
    order_id: str


class NewShipping(Actor, options=ActorOptions(name="Shipping")):
    """A newer Shipping that also books express; the running participant is the older one."""

    @handler
    @idempotent
    async def express(self, msg: BookExpress) -> Sent:
        return Sent(msg.order_id)

    @handler
    @compensation(noop=lambda msg: ShipmentCancelled(msg.order_id, ""))
    async def cancel(self, msg: CancelCourier) -> ShipmentCancelled:
        return ShipmentCancelled(msg.order_id, "")


class ExpressOrder(Saga[OrderRequest]):
    steps = (
        PlaceOrder.steps[0],
        Step("express", to=NewShipping, key=COURIER, request=lambda s: BookExpress(s.input.order_id),
             undo=lambda s: CancelCourier(s.input.order_id), timeout=2.0, retry=FAST),
    )


async def test_a_request_the_participant_cannot_decode_fails_for_good_and_is_compensated(
    actor_system_factory: Factory, actor_system: ActorSystem
) -> None:
    parts: ActorSystem = await actor_system_factory()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Shipping, COURIER)  # the older class: no handler for BookExpress
    info = await actor_system.wait_saga(await actor_system.start_saga(ExpressOrder, order("x1")), timeout=10)
    assert info.status is SagaStatus.COMPENSATED
    express = next(s for s in info.steps if s.name == "express")
    assert express.attempt == 1  # terminal: retrying the same bytes cannot help
    assert express.status is StepStatus.UNCERTAIN  # we cannot tell it from a reply we could not decode
    assert "InvalidMessage" in (info.reason or "")
    assert [step for kind, step in kinds(info) if kind == "undone"] == ["express", "reserve"]
    assert await stock(parts) == 100


# -- an undecodable record in the saga log ----------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_kv(server: EmbeddedServer, namespace: str) -> AsyncIterator[KeyValue]:
    """The namespace's saga bucket through a plain nats-py connection, as another program sees it."""
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        yield await js.create_key_value(KeyValueConfig(bucket=saga_bucket(namespace), history=1,
                                                       storage=StorageType.FILE))
    finally:
        await nc.close()


GARBAGE = {"garbage": b"\x00 not msgpack at all", "wrong-shape": msgspec.msgpack.encode({"state": [1, 2, 3]}),
           "deep": b"\x91" * 100_000 + b"\xc0", "empty": b""}


@pytest.fixture
async def bad_records(nats_server: EmbeddedServer, corps_namespace: str) -> list[str]:
    async with raw_kv(nats_server, corps_namespace) as kv:
        for saga_id, data in GARBAGE.items():
            await kv.put(f"a.{saga_id}", b"")  # in the active index: every coordinator's scan reads it
            await kv.put(f"s.{saga_id}", data)
    return sorted(GARBAGE)


async def test_an_undecodable_saga_record_is_skipped_and_listed_as_unreadable(
    bad_records: list[str], actor_system_factory: Factory, nats_server: EmbeddedServer, corps_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="corps.saga"):
        system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,), saga_scan_interval=0.05)
        for cls, actor_id in ((Inventory, WAREHOUSE), (Payments, PAYMENTS), (Shipping, COURIER)):
            await system.spawn(cls, actor_id)
        coordinator = await system.coordinator()
        sid = await system.start_saga(PlaceOrder, order("o1"))
        assert (await system.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
        for _ in range(3):  # scans as barriers: each meets the bad records again
            assert await coordinator.scan() == []
    assert not coordinator.dead
    assert sorted(coordinator.unreadable) == bad_records
    skipped = [r.getMessage() for r in caplog.records if "skipped by the scan" in r.getMessage()]
    assert sorted(m.split()[1].rstrip(":") for m in skipped) == bad_records  # once each, with its key
    listed = {info.saga_id: info for info in await system.list_sagas()}
    assert listed[sid].status is SagaStatus.COMPLETED
    assert {k for k, info in listed.items() if info.status is SagaStatus.UNREADABLE} == set(bad_records)
    assert listed["garbage"].reason
    with pytest.raises(SagaUnreadable) as unreadable:
        await system.saga_status("garbage")
    assert unreadable.value.saga_id == "garbage"
    with pytest.raises(SagaUnreadable):
        await system.wait_saga("garbage", timeout=5)
    cli = [sys.executable, "-m", "corps.cli._main", "saga", "--nats", nats_server.url, "--namespace", corps_namespace]
    listing = await anyio.to_thread.run_sync(lambda: subprocess.run([*cli, "list"], capture_output=True, text=True,
                                                                    timeout=60, check=False))
    assert listing.returncode == 0, listing.stderr
    assert sum("UNREADABLE" in line for line in listing.stdout.splitlines()) == len(bad_records)
    shown = await anyio.to_thread.run_sync(lambda: subprocess.run([*cli, "show", "garbage"], capture_output=True,
                                                                  text=True, timeout=60, check=False))
    assert shown.returncode == 1, shown.stderr
    assert "saga garbage (?): UNREADABLE" in shown.stdout
    assert "cannot be decoded" in shown.stdout


# -- bookkeeping ------------------------------------------------------------------------------------


class Pong(Message):
    n: int


class Ping(Request[Pong]):
    n: int


class Echo(Actor):
    @handler
    async def ping(self, msg: Ping) -> Pong:
        return Pong(msg.n)


class PingSaga(Saga[Ping]):
    steps = (Step("ping", to=Echo, key="e", request=lambda s: Ping(s.input.n), undo=lambda s: Ping(-s.input.n)),)


SAGAS = 2000


async def test_a_coordinator_keeps_nothing_per_finished_saga(actor_system_factory: Factory) -> None:
    system: ActorSystem = await actor_system_factory(sagas=(PingSaga,))
    await system.spawn(Echo, "e")
    coordinator = await system.coordinator()

    async def one(n: int) -> None:
        sid = await system.start_saga(PingSaga, Ping(n))
        assert (await system.wait_saga(sid, timeout=30)).status is SagaStatus.COMPLETED

    first = await system.start_saga(PingSaga, Ping(-1))
    with anyio.fail_after(60):
        for batch in range(SAGAS // 200):
            async with anyio.create_task_group() as tg:
                for n in range(200):
                    tg.start_soon(one, batch * 200 + n)
        for drive in list(coordinator._drives.values()):  # none should be left; if one is, its end
            await drive.ended.wait()
    sizes = {name: len(value) for name, value in vars(coordinator).items() if isinstance(value, dict | set | list)}
    assert max(sizes.values()) <= 8, sizes  # thousands of sagas, and nothing kept per finished saga
    # A finished saga is not forgotten: wait_saga finds its outcome in the log.
    assert (await system.wait_saga(first, timeout=5)).status is SagaStatus.COMPLETED
