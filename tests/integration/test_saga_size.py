"""A saga's size is decided, never retried (issue 12, item 1): its record is one NATS message.

Before: a 2 MB input raised SagaStoreUnavailable from start_saga (nats-py's MaxPayloadError taken
for an unavailable store), an input just under max_payload was accepted, and a reply that pushed
the record over max_payload left the saga RUNNING for ever, its coordinator retrying the write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from corps import Actor, ActorSystem, InvalidMessage, Message, Request, SagaNotFound, handler
from corps.saga import Kind, Saga, SagaStatus, Step
from corps.saga._log import SagaLog, SagaRecord, TooLarge
from corps.saga._size import HEADER_ALLOWANCE, headroom, record_limit

Factory = Callable[..., Any]


class Parcel(Message):
    """A saga input carrying ``data`` (a scanned document, say)."""

    parcel_id: str
    data: bytes
    echo: bool = False


class Noted(Message):
    parcel_id: str


class Note(Request[Noted]):
    parcel_id: str


class Unnote(Request[Noted]):
    parcel_id: str


class Stored(Message):
    parcel_id: str
    data: bytes


class Store(Request[Stored]):
    parcel_id: str
    data: bytes
    echo: bool


class Unstore(Request[Stored]):
    parcel_id: str


class Held(Message):
    notes: list[str]
    stored: dict[str, int]


class Contents(Request[Held]):
    pass


class Vault(Actor):
    """Notes parcels, and stores them; a reply echoes the stored bytes if asked to."""

    def __init__(self) -> None:
        self.notes: set[str] = set()
        self.stored: dict[str, int] = {}

    @handler
    async def note(self, msg: Note) -> Noted:
        self.notes.add(msg.parcel_id)
        return Noted(msg.parcel_id)

    @handler
    async def unnote(self, msg: Unnote) -> Noted:
        self.notes.discard(msg.parcel_id)
        return Noted(msg.parcel_id)

    @handler
    async def store(self, msg: Store) -> Stored:
        self.stored[msg.parcel_id] = len(msg.data)
        return Stored(msg.parcel_id, msg.data if msg.echo else b"")

    @handler
    async def unstore(self, msg: Unstore) -> Stored:
        self.stored.pop(msg.parcel_id, None)
        return Stored(msg.parcel_id, b"")

    @handler
    async def contents(self, msg: Contents) -> Held:
        return Held(sorted(self.notes), dict(self.stored))


class Deposit(Saga[Parcel]):
    steps = (
        Step("note", to=Vault, key="v", request=lambda s: Note(s.input.parcel_id),
             undo=lambda s: Unnote(s.input.parcel_id), timeout=5.0),
        Step("store", to=Vault, key="v", request=lambda s: Store(s.input.parcel_id, s.input.data, s.input.echo),
             undo=lambda s: Unstore(s.input.parcel_id), timeout=5.0),
    )


def limit_for(system: ActorSystem) -> int:
    """The largest record a Deposit saga may start with on this system's server."""
    return record_limit(system._nc.max_payload) - headroom(Deposit)


async def test_an_input_over_max_payload_is_refused_by_start_saga_with_the_limit(actor_system: ActorSystem) -> None:
    # Before: SagaStoreUnavailable ("saga log unavailable: create ...: MaxPayloadError").
    with pytest.raises(InvalidMessage) as refused:
        await actor_system.start_saga(Deposit, Parcel("p1", b"x" * 2_000_000), saga_id="p1")
    reason = refused.value.reason
    assert f"over the {limit_for(actor_system)}-byte limit" in reason
    assert f"max_payload of {actor_system._nc.max_payload} bytes" in reason
    assert f"{headroom(Deposit)} kept for the transitions still to come" in reason
    with pytest.raises(SagaNotFound):  # nothing was written
        await actor_system.saga_status("p1")


async def test_an_input_that_leaves_no_room_for_compensation_is_refused_too(actor_system: ActorSystem) -> None:
    # Under max_payload, but not with the headroom a Deposit needs. Before: accepted.
    data = b"x" * (actor_system._nc.max_payload - HEADER_ALLOWANCE - headroom(Deposit) // 2)
    with pytest.raises(InvalidMessage, match=r"over the \d+-byte limit of a Deposit saga"):
        await actor_system.start_saga(Deposit, Parcel("p2", data), saga_id="p2")
    fits = b"x" * (limit_for(actor_system) - 4096)
    sid = await actor_system.start_saga(Deposit, Parcel("p3", fits), saga_id="p3")
    assert sid == "p3"


async def test_a_reply_that_would_outgrow_the_log_fails_its_step_and_the_saga_compensates(
        actor_system_factory: Factory, actor_system: ActorSystem) -> None:
    parts: ActorSystem = await actor_system_factory()
    vault = await parts.spawn(Vault, "v")
    # 600 kB in, accepted; the reply echoes it, which would make the record 1.2 MB.
    sid = await actor_system.start_saga(Deposit, Parcel("p4", b"x" * 600_000, echo=True))
    # Before: SagaTimeout (RUNNING for ever: the write retried as if the store were down).
    info = await actor_system.wait_saga(sid, timeout=20)
    assert info.status is SagaStatus.COMPENSATED
    assert info.reason is not None
    assert "ReplyTooLarge: its reply of 600" in info.reason
    assert "bytes, over the" in info.reason
    kinds = [(t.kind, t.step) for t in info.history]
    assert (Kind.REJECTED, "store") in kinds
    # The participant replied, so the step may have applied: it is compensated, and so is the first.
    assert (Kind.UNDONE, "store") in kinds
    assert (Kind.UNDONE, "note") in kinds
    assert await vault.ask(Contents()) == Held([], {})
    record, _ = await (await actor_system.coordinator()).log.read(sid)
    assert SagaLog.size(record) <= limit_for(actor_system) + headroom(Deposit)


async def test_a_record_over_the_limit_is_never_sent_to_the_server(actor_system: ActorSystem) -> None:
    # The server counts headers against max_payload and closes a connection that exceeds it; nats-py
    # checks the payload alone. The log refuses the record itself, and says why: not the store.
    coordinator = await actor_system.coordinator()
    sid = await actor_system.start_saga(Deposit, Parcel("p5", b"x"), saga_id="p5")
    record, revision = await coordinator.log.read(sid)
    state = msgspec.structs.replace(record.state, input=b"x" * actor_system._nc.max_payload)
    big = SagaRecord(state=state, owner=record.owner, lease_until=record.lease_until)
    with pytest.raises(TooLarge) as refused:
        await coordinator.log.write(big, revision)
    assert refused.value.limit == record_limit(actor_system._nc.max_payload)
    assert actor_system._nc.is_connected
    assert (await actor_system.saga_status(sid)).saga_id == sid
