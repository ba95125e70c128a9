"""tell/ask semantics on a real nats-server: typed replies, order, one message at a time."""

from __future__ import annotations

from uuid import uuid4

import anyio
import anyio.lowlevel

from corps import ActorSystem
from tests.integration.domain import (
    GATES,
    Account,
    Balance,
    Deposit,
    Gate,
    GetBalance,
    GetNotes,
    Hold,
    Note,
    Slow,
)


async def test_ask_returns_the_typed_reply(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "acc-1")
    reply = await ref.ask(Deposit("acc-1", 10), timeout=2.0)
    assert reply == Balance("acc-1", 10)
    assert ref.subject == f"{actor_system.namespace}.actor.Account.acc-1"


async def test_tells_then_ask_are_handled_in_send_order(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "acc-1")
    for i in range(500):
        await ref.tell(Note(str(i)))
        if i % 97 == 0:
            await anyio.lowlevel.checkpoint()  # let some batches go out alone: order must hold across frames
    notes = await ref.ask(GetNotes(), timeout=5.0)
    assert notes.texts == [str(i) for i in range(500)]


async def test_order_holds_without_coalescing(actor_system_factory: object) -> None:
    system: ActorSystem = await actor_system_factory(coalesce=False)  # type: ignore[operator]
    ref = await system.spawn(Account, "acc-1")
    for i in range(200):
        await ref.tell(Note(str(i)))
    notes = await ref.ask(GetNotes(), timeout=5.0)
    assert notes.texts == [str(i) for i in range(200)]


async def test_interleaved_tells_and_asks_keep_per_sender_order(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Account, "acc-1")
    expected = 0
    async with anyio.create_task_group() as tg:
        for i in range(1, 101):
            await ref.tell(Deposit("acc-1", i))
            expected += i
            if i % 10 == 0:
                # An ask sent after tells sees all of them.
                seen = await ref.ask(GetBalance("acc-1"), timeout=5.0)
                assert seen.amount == expected
        tg.cancel_scope.cancel()


async def test_tell_from_another_connection_right_after_spawn_is_not_lost(
    actor_system_factory: object,
) -> None:
    host: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    client: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    for round_ in range(10):
        # A new class each round, so every spawn creates (and must flush) a new subscription.
        cls = type(f"Fresh{round_}", (Account,), {})
        await host.spawn(cls, "a")
        ref = client.ref(cls, "a")
        await ref.tell(Deposit("a", 7))
        balance = await ref.ask(GetBalance("a"), timeout=5.0)
        assert balance.amount == 7, f"round {round_}: the tell sent right after spawn was lost"


async def test_one_message_at_a_time_under_concurrent_asks(actor_system: ActorSystem) -> None:
    ref = await actor_system.spawn(Slow, "s")
    names = [f"g{i}-{uuid4().hex}" for i in range(5)]
    gates = [Gate() for _ in names]
    GATES.update(zip(names, gates, strict=True))
    replies: list[Balance] = []

    async def ask(name: str) -> None:
        replies.append(await ref.ask(Hold(name), timeout=10.0))

    async with anyio.create_task_group() as tg:
        for name in names:  # tasks run, and so send, in start order: the actor gets them in this order
            tg.start_soon(ask, name)
        with anyio.fail_after(10):
            for i, gate in enumerate(gates):
                await gate.entered.wait()
                assert not any(g.entered.is_set() for g in gates[i + 1 :]), "a second handler started"
                gate.release.set()
    assert len(replies) == 5
    assert max(r.amount for r in replies) == 1, "two messages were handled at once"


async def test_many_instances_each_keep_their_own_state(actor_system: ActorSystem) -> None:
    refs = [await actor_system.spawn(Account, f"acc-{i}") for i in range(600)]
    for i, ref in enumerate(refs):
        await ref.tell(Deposit(ref.actor_id, i))
    balances = [await ref.ask(GetBalance(ref.actor_id), timeout=5.0) for ref in refs]
    assert [b.amount for b in balances] == list(range(600))
    assert actor_system.metrics()["Account"]["processed"] == 1200


async def test_ref_reaches_an_actor_on_another_system(actor_system_factory: object) -> None:
    host: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    client: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    await host.spawn(Account, "remote")
    reply = await client.ref(Account, "remote").ask(Deposit("remote", 3), timeout=5.0)
    assert reply == Balance("remote", 3)


async def test_json_codec_interoperates_with_msgpack_systems(actor_system_factory: object) -> None:
    host: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    client: ActorSystem = await actor_system_factory(codec="json")  # type: ignore[operator]
    await host.spawn(Account, "j")
    ref = client.ref(Account, "j")
    await ref.tell(Note("from json"))
    assert (await ref.ask(Deposit("j", 2), timeout=5.0)) == Balance("j", 2)
    assert (await ref.ask(GetNotes(), timeout=5.0)).texts == ["from json"]


async def test_a_tight_tell_loop_is_held_at_the_outbox_high_water_mark(actor_system: ActorSystem) -> None:
    """Tells that never yield still wait for the flusher once 8 MiB are queued (ActorRef.tell
    inlines Outbox.push, bound included): 12 MiB of notes never queue more than the bound."""
    from corps.core._outbox import HIGH_WATER

    ref = await actor_system.spawn(Account, "flood")
    text = "x" * (64 * 1024)
    outbox = actor_system._outbox
    most = 0
    for _ in range(200):
        await ref.tell(Note(text))
        most = max(most, outbox._queued)
    assert most > HIGH_WATER // 2  # the loop did queue up
    assert most <= HIGH_WATER + 2 * (len(text) + 16)
    assert (await ref.ask(GetBalance("flood"), timeout=10.0)).amount == 0  # a barrier: all were handled
