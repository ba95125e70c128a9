"""Typed errors and bad input: nothing crashes an actor, nothing is dropped silently."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from uuid import uuid4

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client

from corps import (
    Actor,
    ActorOptions,
    ActorSystem,
    AskTimeout,
    InvalidActorId,
    InvalidMessage,
    MailboxFull,
    Message,
    NoResponders,
    RemoteError,
    Request,
    SpawnError,
    handler,
)
from corps.wire._embedded import EmbeddedServer
from corps.wire._transport import flush
from tests.integration.domain import GATES, Account, Balance, Boom, Deposit, Gate, GetBalance, Hold, Note, Slow


@pytest.fixture
async def raw(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    """A plain nats-py client, as a service in another language would be."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_handler_error_reaches_the_asker_as_remote_error(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    await ref.tell(Deposit("a", 5))
    with pytest.raises(RemoteError) as info:
        await ref.ask(Boom("bad things"), timeout=2.0)
    assert (info.value.type, info.value.message) == ("ValueError", "bad things")
    # Resume (the default): the instance keeps its state and takes the next message.
    assert (await ref.ask(GetBalance("a"), timeout=2.0)).amount == 5
    assert actor_system.metrics()["Account"]["failed"] == 1


async def test_ask_times_out_with_a_typed_timeout(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Slow, "s")
    name = f"never-{uuid4().hex}"
    GATES[name] = Gate()
    with pytest.raises(AskTimeout) as info:
        await ref.ask(Hold(name), timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert info.value.subject == ref.subject
    assert info.value.timeout == 0.2
    GATES[name].release.set()


async def test_ask_to_a_class_nobody_hosts_is_no_responders(actor_system: ActorSystem) -> None:
    class Nowhere(Account):
        pass

    with anyio.fail_after(2):  # a 503 from the server, not a timeout
        with pytest.raises(NoResponders):
            await actor_system.ref(Nowhere, "x").ask(GetBalance("x"), timeout=30.0)


async def test_ask_to_an_unknown_id_is_no_responders(actor_system: ActorSystem) -> None:
    await actor_system.spawn(Account, "known")
    with anyio.fail_after(2):
        with pytest.raises(NoResponders, match="no instance"):
            await actor_system.ref(Account, "unknown").ask(GetBalance("unknown"), timeout=30.0)


async def test_tell_to_an_unknown_id_is_a_dead_letter_and_creates_nothing(actor_system: ActorSystem) -> None:
    known = await actor_system.spawn(Account, "known")
    await actor_system.ref(Account, "ghost").tell(Deposit("ghost", 1))
    await known.ask(GetBalance("known"), timeout=2.0)  # barrier: same sender, same class subscription
    letter = actor_system.dead_letters.recent[-1]
    assert letter.subject.endswith(".Account.ghost")
    assert "NoResponders" in letter.reason
    with pytest.raises(NoResponders):
        await actor_system.ref(Account, "ghost").ask(GetBalance("ghost"), timeout=2.0)


async def test_tell_to_a_class_nobody_hosts_is_a_dead_letter(actor_system: ActorSystem) -> None:
    class Nobody(Account):
        pass

    await actor_system.ref(Nobody, "x").tell(Note("lost"))
    await actor_system.dead_letters.wait_for(1, timeout=2.0)
    assert "no responders" in actor_system.dead_letters.recent[-1].reason


@pytest.mark.parametrize("bad_id", ["a.b", "a*", ">", "a b", "tab\t", ""])
async def test_ids_that_would_inject_subject_tokens_are_refused(actor_system: ActorSystem, bad_id: str) -> None:
    with pytest.raises(InvalidActorId):
        actor_system.ref(Account, bad_id)
    with pytest.raises(InvalidActorId):
        await actor_system.spawn(Account, bad_id)


async def test_spawning_a_running_id_twice_is_refused(actor_system: ActorSystem) -> None:
    await actor_system.spawn(Account, "once")
    with pytest.raises(SpawnError, match="already running"):
        await actor_system.spawn(Account, "once")


async def test_failing_on_start_fails_spawn(actor_system: ActorSystem) -> None:
    class Broken(Account):
        async def on_start(self) -> None:
            raise RuntimeError("no database")

    with pytest.raises(SpawnError, match="no database"):
        await actor_system.spawn(Broken, "b")
    with pytest.raises(NoResponders):
        await actor_system.ref(Broken, "b").ask(GetBalance("b"), timeout=2.0)


async def test_ask_with_a_plain_message_is_refused(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    with pytest.raises(InvalidMessage, match="Request"):
        await ref.ask(Note("not a request"), timeout=1.0)  # type: ignore[arg-type]


async def test_sending_a_non_message_is_refused_at_the_sender(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    with pytest.raises(InvalidMessage, match="expected a Message"):
        await ref.tell({"amount": 1})  # type: ignore[arg-type]


async def test_a_message_over_the_servers_max_payload_is_refused_at_the_sender(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    with pytest.raises(InvalidMessage, match="over the"):
        await ref.tell(Note("x" * (2 * 1024 * 1024)))
    assert (await ref.ask(GetBalance("a"), timeout=2.0)).amount == 0


class Tiny(Account, options=ActorOptions(max_message_bytes=100)):
    pass


async def test_oversized_message_is_refused_before_decoding_and_the_next_is_processed(
    actor_system: ActorSystem,
) -> None:
    ref = await actor_system.spawn(Tiny, "t")
    big = "x" * 500
    with pytest.raises(InvalidMessage, match="over the 100-byte limit"):
        await ref.ask(Deposit(big, 1), timeout=2.0)
    await ref.tell(Note(big))
    assert (await ref.ask(Deposit("t", 2), timeout=2.0)).amount == 2
    assert "over the 100-byte limit" in actor_system.dead_letters.recent[-1].reason


class Other(Message):
    x: int


class Impostor(Message, tag="Deposit"):
    """Same wire tag as Deposit, different fields: a wrong-typed message on the wire."""

    account: int
    amount: str


class OldDeposit(Request[Balance], tag="Deposit"):
    """An older version of Deposit, as a stale peer would still send it."""

    account: int
    amount: int


class StaleTeller(Actor, options=ActorOptions(name="Account")):
    """A stale peer's declaration of Account: it still believes Deposit looks like Impostor."""

    @handler
    async def deposit(self, msg: Impostor) -> None: ...


class StaleAsker(Actor, options=ActorOptions(name="Account")):
    @handler
    async def deposit(self, msg: OldDeposit) -> Balance: ...


async def test_wrong_typed_message_from_a_corps_sender_gets_invalid_message(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    # A stale peer's refs (its own, older declaration of the class) send the wrong shape.
    await actor_system.ref(StaleTeller, "a").tell(Impostor(1, "lots"))  # same frame as the ask: only it is refused
    with pytest.raises(InvalidMessage, match="Expected `str`"):
        await actor_system.ref(StaleAsker, "a").ask(OldDeposit(1, 1), timeout=2.0)
    assert (await ref.ask(Deposit("a", 4), timeout=2.0)).amount == 4
    assert actor_system.metrics()["Account"]["invalid"] >= 1


class Unhandled(Request[Balance]):
    account: str


async def test_a_type_the_class_does_not_handle_is_refused_before_anything_is_sent(
        actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "a")
    sent = actor_system.metrics()["system"]["nats_messages_out"]
    with pytest.raises(InvalidMessage, match=r"Account has no handler for Unhandled; it handles Boom, Deposit"):
        await ref.ask(Unhandled("a"), timeout=2.0)
    with pytest.raises(InvalidMessage, match=r"Account has no handler for Other; it handles Boom, Deposit"):
        await ref.tell(Other(1))
    with pytest.raises(InvalidMessage, match="expected a Message, got dict"):
        await ref.tell({"$type": "Note", "text": "x"})  # type: ignore[arg-type]
    assert actor_system.metrics()["system"]["nats_messages_out"] == sent
    assert actor_system.metrics()["Account"]["invalid"] == 0
    assert (await ref.ask(Deposit("a", 4), timeout=2.0)).amount == 4


async def test_unknown_message_type_gets_invalid_message(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Account, "a")
    reply = await raw.request(ref.subject, msgspec.msgpack.encode({"$type": "Withdraw", "amount": 1}), timeout=2)
    err = msgspec.msgpack.decode(reply.data)
    assert err["$type"] == "corps.Error"
    assert err["kind"] == "InvalidMessage"
    assert "Withdraw" in err["message"]


@pytest.mark.parametrize(
    "payload",
    [b"\xc1garbage", b"", b"\x05", b"not json at all", b'{"$type": "Deposit", "account": 5}', b"[1, 2, 3]"],
)
async def test_garbage_from_a_raw_client_gets_an_error_reply_not_silence(
    actor_system: ActorSystem, raw: Client, payload: bytes
) -> None:
    ref = await actor_system.spawn(Account, "a")
    reply = await raw.request(ref.subject, payload, timeout=2)
    err = msgspec.json.decode(reply.data) if payload[:1] in (b"{", b"[") else msgspec.msgpack.decode(reply.data)
    assert err["$type"] == "corps.Error"
    assert err["kind"] == "InvalidMessage"
    assert err["message"]
    # The actor is unharmed and takes the next message.
    assert (await ref.ask(Deposit("a", 1), timeout=2.0)).amount == 1
    assert actor_system.dead_letters.count >= 1


async def test_raw_json_client_gets_a_json_reply(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Account, "a")
    msg = b'{"$type": "Deposit", "account": "a", "amount": 9}'
    reply = await raw.request(ref.subject, msg, timeout=2)
    assert msgspec.json.decode(reply.data) == {"$type": "Balance", "account": "a", "amount": 9}


async def test_raw_msgpack_tell_is_handled(actor_system: ActorSystem, raw: Client) -> None:
    ref = await actor_system.spawn(Account, "a")
    await raw.publish(ref.subject, msgspec.msgpack.encode(Deposit("a", 3)))
    await flush(raw)
    reply = await raw.request(ref.subject, msgspec.msgpack.encode(GetBalance("a")), timeout=2)
    assert msgspec.msgpack.decode(reply.data, type=Balance) == Balance("a", 3)


class Narrow(Slow, options=ActorOptions(mailbox_size=2, overload_wait=0.05)):
    pass


async def test_a_full_mailbox_refuses_with_mailbox_full_and_counts_it(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Narrow, "n")
    name = f"hold-{uuid4().hex}"
    GATES[name] = gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.ask, Hold(name), timeout=10.0))
        await gate.entered.wait()  # the handler holds one message; two more fill the mailbox
        for _ in range(2):
            await ref.tell(Hold(name))
        await ref.tell(Hold(name))  # a dead letter: no room
        with pytest.raises(MailboxFull):
            await ref.ask(Hold(name), timeout=5.0)
        gate.release.set()
    assert actor_system.metrics()["Narrow"]["overloaded"] == 2
    assert any("mailbox full" in d.reason for d in actor_system.dead_letters.recent)


class Four(Slow, options=ActorOptions(mailbox_size=4, overload_wait=60.0)):
    pass


async def test_the_mailbox_bound_counts_messages_not_frames(actor_system: ActorSystem) -> None:
    """A frame is one entry of the mailbox, but the bound counts its messages: behind a held
    handler, 3 tells fill 3 of 4 places, the next 3 tells get 1, and the bound is freed message
    by message as the mailbox drains."""
    ref = await actor_system.spawn(Four, "f")
    name = f"hold-{uuid4().hex}"
    GATES[name] = gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.ask, Hold(name), timeout=10.0))
        await gate.entered.wait()
        for _ in range(2):
            for _ in range(3):  # one lone frame, then one of two
                await ref.tell(Hold(name))
            await actor_system._outbox.flush()
        with pytest.raises(MailboxFull):  # and a barrier: everything before it was admitted or refused
            await ref.ask(Hold(name), timeout=5.0)
        assert actor_system.metrics()["Four"]["overloaded"] == 3
        gate.release.set()
    assert (await ref.ask(Hold(name), timeout=5.0)) is not None  # drained: admitted again
    assert actor_system.metrics()["Four"]["overloaded"] == 3


async def test_a_second_class_with_a_hosted_actor_name_is_refused_at_spawn(actor_system: ActorSystem) -> None:
    await actor_system.spawn(Account, "a")
    with pytest.raises(SpawnError, match=r"actor name 'Account' is already hosted by tests\.integration\.domain\."
                                         r"Account; tests\.integration\.test_errors\.StaleTeller needs another"):
        await actor_system.spawn(StaleTeller, "b")
    assert (await actor_system.ref(Account, "a").ask(Deposit("a", 1), timeout=2.0)).amount == 1


class HeldAboveMark(Slow, options=ActorOptions(mailbox_size=10, overload_wait=0.0)):
    pass


async def test_a_mailbox_held_above_its_high_water_mark_sheds_until_it_drains_below(
        actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(HeldAboveMark, "h")
    name = f"hold-{uuid4().hex}"
    GATES[name] = gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.ask, Hold(name), timeout=10.0))
        await gate.entered.wait()  # the handler holds one; the mailbox fills behind it
        for _ in range(6):  # above the mark (5): with overload_wait 0, held at once
            await ref.tell(Hold(name))
        await actor_system._outbox.flush()  # the tells leave as one frame, the ask in the next
        with pytest.raises(MailboxFull):  # held above the mark: refused though the mailbox has room
            await ref.ask(Hold(name), timeout=5.0)
        gate.release.set()
    # Drained below the mark: admitted again (this ask waits behind nothing).
    assert (await ref.ask(Hold(name), timeout=5.0)) is not None
    assert actor_system.metrics()["HeldAboveMark"]["overloaded"] == 1
