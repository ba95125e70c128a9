"""A durable virtual participant writes its effect and its record together: its saga
``effect="memory"`` records are saved in the same KV write as its state, so a step retried on a
new owner (its node killed, the id moved, the instance deactivated) answers with the recorded
reply and applies once. Old plain values still load; hostile stored bytes refuse the activation
(typed); a value over the bucket's limit is refused typed and counted."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import ActorOptions, ActorSystem, AskTimeout, NoResponders, RemoteError, StateFenced
from corps.errors import ParticipantRecordsFull, SagaStoreUnavailable
from corps.saga._durable_records import decode_records, encode_records
from corps.saga._memory_records import MemoryRecords
from corps.saga._records import INTENT, Record
from corps.virtual._envelope import MARK, decode_value, encode_value
from corps.wire._embedded import EmbeddedServer
from tests.fault.procs import Node
from tests.fault.world import wait_for
from tests.virtual.domain import Add, Balance, DurableTill, TillState, Wallet, WalletState
from tests.virtual.hosts import VNode


def _vnode(label: str, server: EmbeddedServer, ns: str, workdir: Path) -> VNode:
    return VNode(label, "host", ["--url", server.url, "--ns", ns, "--out", str(workdir / f"{label}.jsonl"),
                                 "--ttl", "1.5", "--till"], workdir, None)


async def test_a_step_retried_on_a_new_node_after_a_kill_answers_its_record_and_applies_once(
        nats_server: EmbeddedServer, actor_system: ActorSystem, tmp_path: Path) -> None:
    ns = actor_system.namespace
    a = await _vnode("a", nats_server, ns, tmp_path).start()
    b: Node | None = None
    try:
        ref = actor_system.ref(DurableTill, "t1")
        first = await ref.ask(Add(5), idempotency_key="s1:add", timeout=10)
        assert first.total == 5  # saved (state and record, one write) before this reply went out
        a.kill()  # SIGKILL: no on_stop, no hand-over, no final save
        await a.wait_exit()
        b = await _vnode("b", nats_server, ns, tmp_path).start()

        async def retried() -> bool:  # the coordinator's retry: the same key, until a node answers
            try:
                again = await ref.ask(Add(5), idempotency_key="s1:add", timeout=2)
            except (AskTimeout, NoResponders):
                return False
            assert again == first, "the recorded reply"
            return True

        await wait_for(retried, 20, "the new owner answers the retry")
        assert (await ref.ask(Balance(), timeout=5)).total == 5, "the effect applied once"
        assert (await ref.ask(Add(1), idempotency_key="s2:add", timeout=5)).total == 6  # a new step applies
    finally:
        a.kill()
        await a.close()
        if b is not None:
            b.kill()
            await b.close()


class QuickTill(DurableTill, options=ActorOptions(virtual=True, idle_after=0.2, durable="message")):
    """A DurableTill deactivated when idle for 0.2 s."""


async def test_records_come_back_with_the_state_after_deactivation(actor_system: ActorSystem) -> None:
    await actor_system.host(QuickTill)
    ref = actor_system.ref(QuickTill, "t2")
    assert (await ref.ask(Add(3), idempotency_key="s1:add", timeout=5)).total == 3
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    stored = (await kv.get("QuickTill.t2")).value or b""
    state, extras = decode_value("k", stored, msgspec.msgpack.Decoder(TillState))
    assert state == TillState(3)
    assert [key for key, _ in decode_records(extras["saga.memory"], 10)] == ["s1:add"]
    await wait_for(lambda: actor_system.virtual.token(QuickTill, "t2") is None, 10, "idle deactivation")
    assert (await ref.ask(Add(3), idempotency_key="s1:add", timeout=5)).total == 3


class LazyTill(DurableTill, options=ActorOptions(virtual=True, idle_after=0.2, durable="deactivate")):
    """A DurableTill saved only when deactivated or moved."""


async def test_with_durable_deactivate_records_are_saved_with_the_state_on_deactivation(
        actor_system: ActorSystem) -> None:
    await actor_system.host(LazyTill)
    ref = actor_system.ref(LazyTill, "t7")
    assert (await ref.ask(Add(4), idempotency_key="s1:add", timeout=5)).total == 4
    await wait_for(lambda: actor_system.virtual.token(LazyTill, "t7") is None, 10, "idle deactivation")
    assert (await ref.ask(Add(4), idempotency_key="s1:add", timeout=5)).total == 4  # its record, reloaded
    assert (await ref.ask(Balance(), timeout=5)).total == 4


async def test_a_refusal_is_saved_with_the_state_before_it_goes_out(actor_system: ActorSystem) -> None:
    await actor_system.host(DurableTill)
    with pytest.raises(RemoteError) as err:
        await actor_system.ref(DurableTill, "t6").ask(Add(-1), idempotency_key="s1:add", timeout=5)
    assert err.value.type == "StepRejected"
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    _, extras = decode_value("k", (await kv.get("DurableTill.t6")).value or b"", msgspec.msgpack.Decoder(TillState))
    assert decode_records(extras["saga.memory"], 10) == [("s1:add", Record(False, refusal="no withdrawals"))]


async def test_plain_values_written_before_records_existed_still_load(actor_system: ActorSystem) -> None:
    await actor_system.host(DurableTill)
    await actor_system.host(Wallet)
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    await kv.put("DurableTill.t3", msgspec.msgpack.encode(TillState(40)))
    assert (await actor_system.ref(DurableTill, "t3").ask(Add(2), idempotency_key="s:add", timeout=5)).total == 42
    await actor_system.ref(Wallet, "w").ask(Add(1), timeout=5)  # no records: still stored plain
    assert (await kv.get("Wallet.w")).value == msgspec.msgpack.encode(WalletState(1))


async def test_unreadable_stored_records_refuse_the_activation(actor_system: ActorSystem) -> None:
    await actor_system.host(DurableTill)
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    await kv.put("DurableTill.t4", encode_value(TillState(1), {"saga.memory": b"[" * 100_000}))
    with pytest.raises(NoResponders):
        await actor_system.ref(DurableTill, "t4").ask(Add(1), idempotency_key="s:add", timeout=5)


async def test_a_value_over_the_bucket_limit_is_refused_typed_and_counted(actor_system: ActorSystem) -> None:
    await actor_system.host(DurableTill)
    store = actor_system.virtual._store  # type: ignore[attr-defined]
    ref = actor_system.ref(DurableTill, "t5")
    await ref.ask(Add(1), idempotency_key="s1:add", timeout=5)
    store.max_value = 40  # the state alone fits; with two records it does not
    with pytest.raises(RemoteError) as err:
        await ref.ask(Add(1), idempotency_key="s2:add", timeout=5)
    assert err.value.type == "StateTooLarge"
    assert store.too_large == 1


@given(st.binary(max_size=300))
def test_any_stored_value_decodes_or_is_refused_typed(data: bytes) -> None:
    for value in (data, MARK + data):
        try:
            state, extras = decode_value("k", value, msgspec.msgpack.Decoder(TillState))
        except StateFenced:
            continue
        assert isinstance(state, TillState)
        assert isinstance(extras, dict)


@given(st.lists(st.tuples(st.text(max_size=20), st.builds(Record, st.booleans(), st.binary(max_size=20))),
                max_size=5), st.integers(0, 10**6))
def test_state_and_records_round_trip(records: list[tuple[str, Record]], balance: int) -> None:
    extras = {"saga.memory": encode_records(records)}
    state, back = decode_value("k", encode_value(TillState(balance), extras), msgspec.msgpack.Decoder(TillState))
    assert state == TillState(balance)
    assert decode_records(back["saga.memory"], 10) == records


def test_records_over_the_bound_are_refused() -> None:
    with pytest.raises(SagaStoreUnavailable, match="over the bound"):
        decode_records(encode_records([(str(uuid.uuid4()), INTENT) for _ in range(3)]), 2)


async def test_loaded_records_are_kept_a_full_horizon_from_the_load() -> None:
    now = [1000.0]
    records = MemoryRecords(2, 10.0, clock=lambda: now[0])
    records.load([("a", Record(True, b"x")), ("b", Record(True, b"y"))])  # saved by another process, any age
    now[0] += 9.9
    with pytest.raises(ParticipantRecordsFull):
        await records.create("c", INTENT)
    now[0] += 0.2
    assert await records.create("c", INTENT) is not None
    assert await records.get("a") is None  # past the horizon: evicted, counted
    assert records.evicted == 2
