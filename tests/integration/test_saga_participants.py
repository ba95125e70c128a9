"""@idempotent and @compensation around a crash inside the step: intents, effect kinds, the named window.

A participant "dies" at an exact point of its handler: the handler applies its effect (or not yet)
and is then cancelled, as a process killed there would be: nothing after that point runs, no
outcome is recorded and no reply is sent. The ask that sent it is abandoned once the handler
says it died. The SIGKILL versions of these runs are in tests/fault.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import nats.js.errors
import pytest

from corps import Actor, ActorDefinitionError, ActorRef, ActorSystem, Message, RemoteError, Request, handler
from corps.saga import compensation, idempotent
from corps.saga._kv_records import KvRecords
from corps.testing import FaultInjector, History
from corps.wire._embedded import EmbeddedServer

Factory = Callable[..., Any]


class Charged(Message):
    order_id: str
    amount: int


class Charge(Request[Charged]):
    order_id: str
    amount: int


class Refunded(Message):
    order_id: str
    amount: int


class Refund(Request[Refunded]):
    order_id: str


class Card:
    """The outside world (a card network): it outlives any participant process."""

    def __init__(self) -> None:
        self.charged: dict[str, int] = {}
        self.calls: list[str] = []

    def charge(self, order_id: str, amount: int) -> None:
        self.calls.append(f"charge {order_id}")
        self.charged[order_id] = self.charged.get(order_id, 0) + amount

    def refund(self, order_id: str) -> int:
        """Refund what was charged for the order: nothing, if nothing was (a no-op by itself)."""
        self.calls.append(f"refund {order_id}")
        return self.charged.pop(order_id, 0)


class Dies:
    """Where a participant dies: 'before' or 'after' its effect, once; and the event that says it did."""

    def __init__(self) -> None:
        self.point = ""
        self.died = anyio.Event()

    async def maybe(self, point: str) -> None:
        if self.point == point:
            self.point = ""
            self.died.set()
            raise asyncio.CancelledError  # as a kill there: nothing after this line runs


class Payments(Actor):
    """External effects (the default): records in JetStream KV."""

    card: ClassVar[Card]
    dies: ClassVar[Dies]

    @handler
    @idempotent
    async def charge(self, msg: Charge) -> Charged:
        await self.dies.maybe("before")
        self.card.charge(msg.order_id, msg.amount)
        await self.dies.maybe("after")
        return Charged(msg.order_id, msg.amount)

    @handler
    @compensation(noop=lambda msg: Refunded(msg.order_id, 0))
    async def refund(self, msg: Refund) -> Refunded:
        return Refunded(msg.order_id, self.card.refund(msg.order_id))


class CarefulPayments(Payments, options=Payments.options):
    """The same, but a step left unfinished by a crash is refused and compensated, never re-run."""

    @handler
    @idempotent(unfinished="compensate")
    async def charge(self, msg: Charge) -> Charged:
        await self.dies.maybe("before")
        self.card.charge(msg.order_id, msg.amount)
        await self.dies.maybe("after")
        return Charged(msg.order_id, msg.amount)


@pytest.fixture
def card() -> Card:
    Payments.card, Payments.dies = Card(), Dies()
    return Payments.card


async def dies_while_asked(ref: ActorRef[Any], msg: Message, key: str, point: str) -> None:
    """Ask with ``key``; the handler dies at ``point``; return then (the ask would get no reply)."""
    Payments.dies.point, Payments.dies.died = point, anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.ask, msg, idempotency_key=key, timeout=30.0))
        with anyio.fail_after(10):
            await Payments.dies.died.wait()
        tg.cancel_scope.cancel()


async def test_a_compensation_after_a_death_between_effect_and_record_runs_the_undo(
    actor_system: ActorSystem, card: Card
) -> None:
    ref = await actor_system.spawn(Payments, "psp")
    await dies_while_asked(ref, Charge("o1", 500), "s1:charge", "after")
    assert card.charged == {"o1": 500}  # applied, and no outcome recorded
    # The saga gives up on the step and compensates: the intent says it may have applied.
    # (Before intents, the compensation found no record, fenced the step as never run and
    # answered the noop: the charge stood under a saga reported COMPENSATED.)
    assert await ref.ask(Refund("o1"), idempotency_key="s1:charge:undo") == Refunded("o1", 500)
    assert card.charged == {}
    # A late copy of the step is refused: it must not apply after its undo.
    with pytest.raises(RemoteError) as late:
        await ref.ask(Charge("o1", 500), idempotency_key="s1:charge")
    assert late.value.type == "StepRejected"
    assert "may have applied" in late.value.message
    assert card.calls == ["charge o1", "refund o1"]


async def test_a_death_before_the_effect_also_runs_the_undo_which_finds_nothing(
    actor_system: ActorSystem, card: Card
) -> None:
    ref = await actor_system.spawn(Payments, "psp")
    await dies_while_asked(ref, Charge("o2", 500), "s2:charge", "before")
    # Whether it applied is unknown to the records: the undo runs, and must be harmless.
    assert await ref.ask(Refund("o2"), idempotency_key="s2:charge:undo") == Refunded("o2", 0)
    assert card.calls == ["refund o2"]


async def test_a_retry_after_a_death_mid_step_runs_the_handler_again_and_warns_of_the_window(
    actor_system: ActorSystem, card: Card, caplog: pytest.LogCaptureFixture
) -> None:
    ref = await actor_system.spawn(Payments, "psp")
    await dies_while_asked(ref, Charge("o3", 500), "s3:charge", "after")
    with caplog.at_level(logging.WARNING, logger="corps.saga"):
        again = await ref.ask(Charge("o3", 500), idempotency_key="s3:charge")
    assert again == Charged("o3", 500)
    assert card.charged == {"o3": 1000}  # the window README names: an external effect applied twice
    assert any("s3:charge: an earlier attempt began and recorded no outcome" in r.getMessage()
               and "may apply twice" in r.getMessage() for r in caplog.records)
    # From then on the outcome is recorded: a third copy is answered from it.
    assert await ref.ask(Charge("o3", 500), idempotency_key="s3:charge") == Charged("o3", 500)
    assert card.charged == {"o3": 1000}


async def test_with_unfinished_compensate_a_retry_is_refused_and_the_undo_runs(
    actor_system: ActorSystem, card: Card
) -> None:
    ref = await actor_system.spawn(CarefulPayments, "psp")
    await dies_while_asked(ref, Charge("o4", 500), "s4:charge", "after")
    for _ in range(2):  # the retry, and a later copy: refused the same way
        with pytest.raises(RemoteError) as refused:
            await ref.ask(Charge("o4", 500), idempotency_key="s4:charge")
        assert refused.value.type == "StepRejected"
        assert "may have applied, so the step is refused and compensated" in refused.value.message
    assert await ref.ask(Refund("o4"), idempotency_key="s4:charge:undo") == Refunded("o4", 500)
    assert card.calls == ["charge o4", "refund o4"]  # applied once, undone once


async def test_a_handler_that_raises_leaves_no_intent_so_its_compensation_is_the_noop(
    actor_system: ActorSystem, card: Card
) -> None:
    class Flaky(Payments, options=Payments.options):
        failures = 1

        @handler
        @idempotent
        async def charge(self, msg: Charge) -> Charged:
            if type(self).failures:
                type(self).failures -= 1
                raise RuntimeError("card network unreachable")  # nothing applied, by contract
            self.card.charge(msg.order_id, msg.amount)
            return Charged(msg.order_id, msg.amount)

    ref = await actor_system.spawn(Flaky, "psp")
    with pytest.raises(RemoteError):
        await ref.ask(Charge("o5", 500), idempotency_key="s5:charge")
    assert await ref.ask(Refund("o5"), idempotency_key="s5:charge:undo") == Refunded("o5", 0)
    assert card.calls == []  # the noop: the handler was not called
    with pytest.raises(RemoteError) as fenced:  # and the step is fenced
        await ref.ask(Charge("o5", 500), idempotency_key="s5:charge")
    assert "compensated before it ran" in fenced.value.message


# -- effects in the actor's memory ---------------------------------------------------------------


class Wallet(Actor):
    """An in-memory effect: the balance dies with the instance, and so do its records."""

    def __init__(self) -> None:
        self.balance = 0

    @handler
    @idempotent(effect="memory")
    async def charge(self, msg: Charge) -> Charged:
        self.balance += msg.amount
        return Charged(msg.order_id, self.balance)

    @handler
    @compensation(noop=lambda msg: Refunded(msg.order_id, 0))  # memory too: as the class's @idempotent
    async def refund(self, msg: Refund) -> Refunded:
        self.balance -= 500
        return Refunded(msg.order_id, 500)


async def idempotency_record(system: ActorSystem, namespace: str, key: str) -> bytes | None:
    js = system._nc.jetstream()
    try:
        kv = await js.key_value(f"{namespace}-idempotency")
        return (await kv.get(KvRecords.key(key))).value
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError):
        return None


async def test_memory_effects_keep_their_records_on_the_instance_not_in_kv(
    actor_system: ActorSystem, corps_namespace: str
) -> None:
    ref = await actor_system.spawn(Wallet, "w")
    assert await ref.ask(Charge("o1", 500), idempotency_key="s1:charge") == Charged("o1", 500)
    assert await ref.ask(Charge("o1", 500), idempotency_key="s1:charge") == Charged("o1", 500)  # first reply
    assert await ref.ask(Refund("o2"), idempotency_key="s2:charge:undo") == Refunded("o2", 0)  # never ran
    with pytest.raises(RemoteError) as fenced:
        await ref.ask(Charge("o2", 500), idempotency_key="s2:charge")
    assert fenced.value.type == "StepRejected"
    for key in ("s1:charge", "s2:charge", "s2:charge:undo"):
        assert await idempotency_record(actor_system, corps_namespace, key) is None


async def test_a_fresh_instance_of_a_memory_participant_has_neither_the_effect_nor_its_record(
    nats_server: EmbeddedServer, corps_namespace: str
) -> None:
    async def node() -> ActorSystem:
        return ActorSystem(nats_server.url, namespace=corps_namespace, server_name=nats_server.server_name)

    async with await node() as first:
        ref = await first.spawn(Wallet, "w")
        await ref.ask(Charge("o1", 500), idempotency_key="s1:charge")
    # The process died (here: its system stopped) before the reply reached the saga. Another runs the entity.
    async with await node() as second:
        ref = await second.spawn(Wallet, "w")
        # The compensation has nothing to undo in this instance: the noop, not a refund below zero.
        assert await ref.ask(Refund("o1"), idempotency_key="s1:charge:undo") == Refunded("o1", 0)
        # A retry instead applies it again, once, to the state that exists now.
        assert await ref.ask(Charge("o3", 500), idempotency_key="s3:charge") == Charged("o3", 500)
        assert await ref.ask(Charge("o3", 500), idempotency_key="s3:charge") == Charged("o3", 500)


async def test_a_compensation_in_a_class_of_mixed_effects_must_say_which_it_undoes(
    actor_system: ActorSystem, card: Card
) -> None:
    class Mixed(Payments, options=Payments.options):
        @handler
        @idempotent(effect="memory")
        async def charge(self, msg: Charge) -> Charged:
            return Charged(msg.order_id, msg.amount)

        @handler
        @idempotent
        async def other(self, msg: Refunded) -> None: ...

    ref = await actor_system.spawn(Mixed, "psp")
    with pytest.raises(RemoteError) as unsaid:
        await ref.ask(Refund("o1"), idempotency_key="s1:charge:undo")
    assert unsaid.value.type == "ActorDefinitionError"
    assert "@compensation(effect=...)" in unsaid.value.message


def test_unknown_effect_and_unfinished_options_are_refused_when_the_class_is_created() -> None:
    with pytest.raises(ActorDefinitionError) as caught:

        class Bad(Actor):
            @handler
            @idempotent(effect="disk", unfinished="ignore")  # type: ignore[arg-type]
            async def charge(self, msg: Charge) -> Charged:
                return Charged(msg.order_id, msg.amount)

    assert caught.value.problems == ["effect must be 'external' or 'memory', not 'disk'",
                                     "unfinished must be 'rerun' or 'compensate', not 'ignore'"]


# -- the fault injector keeps each decorator's options ---------------------------------------------


class Holds(Actor):
    def __init__(self) -> None:
        self.held: set[str] = set()

    @handler
    @idempotent(effect="memory")
    async def hold(self, msg: Charge) -> Charged:
        self.held.add(msg.order_id)
        return Charged(msg.order_id, msg.amount)

    @handler
    @compensation  # bare: a no-op by itself for an order never held
    async def unhold(self, msg: Refund) -> Refunded:
        was = msg.order_id in self.held
        self.held.discard(msg.order_id)
        return Refunded(msg.order_id, 1 if was else 0)


async def test_the_fault_injector_rebuilds_a_bare_compensation_bare_and_records_what_it_did(
    actor_system: ActorSystem,
) -> None:
    history = History()
    faulty = FaultInjector(history, timeout=1.0).participant(Holds)
    ref = await actor_system.spawn(faulty, "h")
    # Never ran: the bare compensation calls the handler (it finds nothing), recorded as a noop.
    # (The injector used to read a `noop` from the closure and call it: None, a TypeError here.)
    assert await ref.ask(Refund("o1"), idempotency_key="s1:hold:undo") == Refunded("o1", 0)
    assert await ref.ask(Charge("o2", 5), idempotency_key="s2:hold") == Charged("o2", 5)
    assert await ref.ask(Refund("o2"), idempotency_key="s2:hold:undo") == Refunded("o2", 1)
    assert [(op.f, op.saga_id, op.step) for op in history] == [
        ("noop", "s1", "hold"), ("effect", "s2", "hold"), ("compensate", "s2", "hold")]
