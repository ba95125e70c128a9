"""How a participant writes its records (issue 14): create first, outcomes off the mailbox, per-key
order, the bounded memory store, and participants scaled out over keyed instances.

The KV store under test is the real one (the namespace's bucket on a real nats-server), wrapped by
``Spy``, which logs each operation and can hold a step's outcome write until the test lets it go:
the only way to see, without sleeping, that a mailbox moves on while a write is in flight.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import anyio
import pytest

from corps import (
    Actor,
    ActorOptions,
    ActorSystem,
    Message,
    RemoteError,
    Request,
    SagaConfig,
    handler,
)
from corps.saga import Saga, Step, _kv_records, compensation, idempotent
from corps.saga._idempotency import ForwardState, forward_state
from corps.saga._kv_records import KvRecords
from corps.saga._records import Record
from tests.integration.test_saga_participants import Charge, Charged, Refund, Refunded, Wallet

Factory = Callable[..., Any]


class Total(Message):
    total: int


class GetTotal(Request[Total]):
    pass


class Events:
    """What the handlers saw, and the events a Spy's held write waits for."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.states: list[ForwardState | None] = []
        self.total_asked = anyio.Event()
        self.unsent: list[int] = []
        """Bytes still in the connection's pending buffer when get_total began."""
        self.refund_arrived = anyio.Event()


def arrives(fn: Callable[..., Awaitable[Any]]) -> Any:
    """Outermost wrapper of the refund: says it reached the handler chain (before @compensation)."""

    @functools.wraps(fn)
    async def wrapper(self: Till, msg: Any) -> Any:
        self.events.refund_arrived.set()
        return await fn(self, msg)

    return wrapper


class Till(Actor):
    """A participant whose effect is outside the process (the default: records in KV)."""

    events: ClassVar[Events]

    def __init__(self) -> None:
        self.total = 0

    @handler
    @idempotent
    async def charge(self, msg: Charge) -> Charged:
        self.events.seen.append(f"charge {msg.order_id}")
        self.total += msg.amount
        return Charged(msg.order_id, msg.amount)

    @handler
    @arrives
    @compensation(noop=lambda msg: Refunded(msg.order_id, 0))
    async def refund(self, msg: Refund) -> Refunded:
        self.events.seen.append(f"refund {msg.order_id}")
        self.events.states.append(forward_state())
        return Refunded(msg.order_id, 5)

    @handler
    async def get_total(self, msg: GetTotal) -> Total:
        self.events.unsent.append(self.system._nc._pending_data_size)
        self.events.total_asked.set()
        return Total(self.total)


class Spy(KvRecords):
    """The namespace's real KV records, each operation logged; the outcome write of ``hold_key``
    waits for ``hold_until`` (an event a handler sets)."""

    def __init__(self, real: KvRecords) -> None:
        super().__init__(real.bucket)
        self.ops: list[str] = []
        """Operations as they completed."""
        self.sent: list[str] = []
        """Writes as they were sent (creates, and the held outcome writes)."""
        self.hold_key = ""
        self.hold_until: anyio.Event | None = None
        self.began = anyio.Event()
        """Set by the first intent written: a step's handler runs next, in its mailbox."""

    async def get(self, key: str) -> tuple[Record, int] | None:
        self.ops.append(f"get {key}")
        return await super().get(key)

    async def create(self, key: str, record: Record, *, undo: bool = False) -> int | None:
        self.sent.append(f"create {key}")
        revision = await super().create(key, record, undo=undo)
        if record.intent:
            self.began.set()
        self.ops.append(f"create {key}" + (" (exists)" if revision is None else ""))
        return revision

    async def update(self, key: str, record: Record, revision: int) -> bool:
        ok = await super().update(key, record, revision)
        self.ops.append(f"update {key}" + ("" if ok else " (changed)"))
        return ok

    async def send_update(self, key: str, record: Record, revision: int) -> Awaitable[bool]:
        """The outcome write off the mailbox; that of ``hold_key`` is sent only once ``hold_until`` is set."""
        if key != self.hold_key or self.hold_until is None:
            sent = await super().send_update(key, record, revision)
            return self._logged(key, sent)
        self.ops.append(f"held {key}")
        return self._held(key, record, revision, self.hold_until)

    async def _held(self, key: str, record: Record, revision: int, until: anyio.Event) -> bool:
        with anyio.fail_after(10):
            await until.wait()
        self.sent.append(f"update {key}")
        return await self._logged(key, await super().send_update(key, record, revision))

    async def _logged(self, key: str, sent: Awaitable[bool]) -> bool:
        ok = await sent
        self.ops.append(f"update {key}" + ("" if ok else " (changed)"))
        return ok


@pytest.fixture
async def till(actor_system: ActorSystem) -> tuple[Any, Spy]:
    Till.events = Events()
    spy = Spy(await _kv_records.kv_records(actor_system))
    _kv_records._stores[actor_system] = spy
    return await actor_system.spawn(Till, "t"), spy


async def test_a_step_creates_its_intent_without_a_read_and_reads_only_on_a_conflict(till: tuple[Any, Spy]) -> None:
    ref, spy = till
    assert await ref.ask(Charge("o1", 5), idempotency_key="s1:charge") == Charged("o1", 5)
    assert spy.ops == ["create s1:charge", "update s1:charge"]  # no get before the create
    spy.ops.clear()
    assert await ref.ask(Charge("o1", 5), idempotency_key="s1:charge") == Charged("o1", 5)  # a retry
    assert spy.ops == ["create s1:charge (exists)", "get s1:charge"]
    assert Till.events.seen == ["charge o1"]
    # A compensation of a step that never reached this participant: the fence and its reply, two writes.
    spy.ops.clear()
    assert await ref.ask(Refund("o2"), idempotency_key="s2:charge:undo") == Refunded("o2", 0)
    assert spy.ops == ["create s2:charge", "create s2:charge:undo"]


async def test_the_outcome_write_does_not_hold_the_mailbox_and_the_reply_waits_for_it(
    till: tuple[Any, Spy],
) -> None:
    ref, spy = till
    # The charge's outcome write waits until the *next* message has been handled: if the write
    # held the mailbox, that message would never run (and the bounded waits below would fail).
    spy.hold_key, spy.hold_until = "s1:charge", Till.events.total_asked
    replied: list[str] = []

    async def charge() -> None:
        await ref.ask(Charge("o1", 5), idempotency_key="s1:charge", timeout=10)
        replied.append("s1:charge")
        assert "update s1:charge" in spy.ops  # the reply went out after its record was written

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(charge)
            await spy.began.wait()  # the charge is in the mailbox, ahead of what is sent now
            assert await ref.ask(GetTotal(), timeout=10) == Total(5)  # the effect ran, in mailbox order
            assert replied == []  # ... while the charge's reply still waits for its record
    assert replied == ["s1:charge"]
    assert spy.ops == ["create s1:charge", "held s1:charge", "update s1:charge"]


async def test_an_outcome_write_leaves_the_process_before_the_next_queued_message_runs(
    till: tuple[Any, Spy],
) -> None:
    ref, spy = till
    got: list[object] = []

    async def ask(msg: Any, key: str | None) -> None:
        got.append(await ref.ask(msg, idempotency_key=key, timeout=10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:  # sent in one loop iteration: one frame, both queued
            tg.start_soon(ask, Charge("o1", 5), "s1:charge")
            tg.start_soon(ask, GetTotal(), None)
    assert sorted(map(repr, got)) == sorted(map(repr, [Charged("o1", 5), Total(5)]))
    # The charge's outcome write was sent, not left in the buffer, when the next message began:
    # a process killed in that message has still sent it.
    assert Till.events.unsent == [0]
    assert spy.ops == ["create s1:charge", "update s1:charge"]


async def test_a_compensation_on_the_same_instance_waits_for_its_steps_outcome_write(till: tuple[Any, Spy]) -> None:
    ref, spy = till
    # The charge's outcome write waits until its compensation has arrived at the handler chain.
    # The compensation must then wait for that write: it finds the step APPLIED (its record
    # done), not an intent it would fence as "may have applied" over the outcome being written.
    spy.hold_key, spy.hold_until = "s1:charge", Till.events.refund_arrived
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(ref.ask, Charge("o1", 5), idempotency_key="s1:charge", timeout=10))
            await spy.began.wait()  # the charge is in the mailbox, ahead of its compensation
            assert await ref.ask(Refund("o1"), idempotency_key="s1:charge:undo", timeout=10) == Refunded("o1", 5)
    assert Till.events.states == [ForwardState.APPLIED]
    # The compensation's first write (its fence, which finds the record) is sent after the outcome.
    assert spy.sent[:3] == ["create s1:charge", "update s1:charge", "create s1:charge"]
    assert spy.ops[:4] == ["create s1:charge", "held s1:charge", "update s1:charge", "create s1:charge (exists)"]
    found = await spy.get("s1:charge")
    assert found is not None
    assert found[0].done


# -- the memory store's bound --------------------------------------------------------------


class Purse(Wallet):
    """The memory participant of test_saga_participants, whose balance can be read."""

    @handler
    async def get_total(self, msg: GetTotal) -> Total:
        return Total(self.balance)


async def test_a_memory_participant_at_its_bound_refuses_new_steps_yet_answers_copies_and_compensates(
    actor_system_factory: Factory,
) -> None:
    system = await actor_system_factory(saga=SagaConfig(memory_records=2))
    ref = await system.spawn(Purse, "w")
    for i in (1, 2):
        await ref.ask(Charge(f"o{i}", 5), idempotency_key=f"s{i}:charge")
    with pytest.raises(RemoteError) as full:
        await ref.ask(Charge("o3", 5), idempotency_key="s3:charge")
    assert full.value.type == "ParticipantRecordsFull"
    assert await ref.ask(Charge("o1", 5), idempotency_key="s1:charge") == Charged("o1", 5)  # a copy: its record
    assert await ref.ask(Refund("o2"), idempotency_key="s2:charge:undo") == Refunded("o2", 500)  # the way out
    assert await ref.ask(GetTotal()) == Total(5 + 5 - 500)  # 2 charges, 1 refund; the refused step never ran


class PooledPurse(Wallet, options=ActorOptions(name="PooledPurse", service=True)):
    pass


async def test_a_service_class_with_memory_records_is_refused_with_a_definition_error(
    actor_system: ActorSystem,
) -> None:
    ref = await actor_system.spawn(PooledPurse, "pool")
    with pytest.raises(RemoteError) as refused:
        await ref.ask(Charge("o1", 5), idempotency_key="s1:charge")
    assert refused.value.type == "ActorDefinitionError"
    assert "share no memory" in refused.value.message
    assert await ref.ask(Charge("o1", 5)) == Charged("o1", 5)  # without a key, the handler runs as usual


# -- scaled out over keyed instances -------------------------------------------------------


class Order(Message):
    order_id: str
    account: str


ACCOUNTS = tuple(f"acct-{k}" for k in range(4))


class Checkout(Saga[Order]):
    steps = (
        Step("charge", to=Till, key=lambda s: s.input.account,
             request=lambda s: Charge(s.input.order_id, 5), undo=lambda s: Refund(s.input.order_id)),
    )


async def test_a_participant_scales_over_keyed_instances_each_taking_exactly_its_own_keys(
    actor_system_factory: Factory,
) -> None:
    Till.events = Events()
    parts = await actor_system_factory()
    for account in ACCOUNTS:
        await parts.spawn(Till, account)
    system = await actor_system_factory(sagas=(Checkout,))
    orders = [Order(f"o{i}", ACCOUNTS[i % len(ACCOUNTS)]) for i in range(32)]
    with anyio.fail_after(30):
        ids = [await system.start_saga(Checkout, order, saga_id=order.order_id) for order in orders]
        infos = [await system.wait_saga(sid, timeout=30) for sid in ids]
    assert [info.status for info in infos] == ["COMPLETED"] * 32
    for k, account in enumerate(ACCOUNTS):  # every instance took exactly its own orders, once each
        assert await parts.ref(Till, account).ask(GetTotal()) == Total(5 * 8)
        mine = [f"charge o{i}" for i in range(k, 32, len(ACCOUNTS))]
        assert sorted(s for s in Till.events.seen if s in mine) == sorted(mine)
    assert len(Till.events.seen) == 32
