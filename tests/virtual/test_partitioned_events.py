"""Keyed events of a virtual class, partitioned across the nodes that host it: one and two nodes on
one server, retries and dead letters, hostile payloads and records; the partition function."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corps import Actor, ActorOptions, ActorSystem, EventError, VirtualConfig, on_event
from corps.virtual._partition_record import PartitionRecord, read_partition_record
from corps.wire._partition import MAX_PARTITIONS, fnv1a32, partition_of
from tests.fault.world import wait_for
from tests.virtual.domain import Entry, Handled, Hit, Keeper, Ledger


@pytest.fixture(autouse=True)
def _fresh() -> None:
    Ledger.handled.clear()
    Ledger.sink = None


async def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    await wait_for(cond, timeout, "condition", interval=0.01)


def order_problems(handled: list[Handled], published: dict[str, int]) -> list[str]:
    """Per key: each event's first handling comes after the first handling of every earlier
    event of the key (redeliveries allowed), and every published event was handled."""
    out = []
    firsts: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for h in handled:
        if (h.key, h.n) not in seen:
            seen.add((h.key, h.n))
            firsts[h.key].append(h.n)
    for key, count in published.items():
        if firsts.get(key) != list(range(count)):
            out.append(f"{key}: first handlings {firsts.get(key)}, published 0..{count - 1}")
    return out


async def _publish(system: ActorSystem, keys: list[str], per_key: int, *, start: int = 0) -> None:
    """Each key's events in order (one awaited publish after the other), keys concurrently."""
    async def one(key: str) -> None:
        for n in range(start, start + per_key):
            await system.publish(Entry(key, n))
    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(one, key)


async def test_one_node_owns_every_partition_and_handles_each_key_in_order(actor_system: ActorSystem) -> None:
    await actor_system.host(Ledger)
    keys = [f"k{i}" for i in range(40)]
    await _publish(actor_system, keys, 5)
    await _until(lambda: len(Ledger.handled) >= 200)
    assert order_problems(Ledger.handled, dict.fromkeys(keys, 5)) == []
    stats = actor_system.virtual.stats()["Ledger"]
    assert stats["partitions"] == actor_system.virtual.cfg.partitions
    assert stats["events_processed"] == 200
    # an id's messages reach the activation its events reached (placed with its partition)
    seen = await actor_system.ref(Ledger, "k3").ask(Hit("me", 0), timeout=5)
    assert seen.token == next(h.token for h in Ledger.handled if h.key == "k3")


async def test_two_nodes_split_the_partitions_and_a_key_stays_on_one(
        actor_system_factory: Callable[..., Any]) -> None:
    a = await actor_system_factory()
    b = await actor_system_factory()
    await a.host(Ledger)
    await b.host(Ledger)
    n = a.virtual.cfg.partitions
    await _until(lambda: a.virtual.stats()["Ledger"]["partitions"] + b.virtual.stats()["Ledger"]["partitions"] == n
                 and a.virtual.stats()["Ledger"]["partitions"] > 0 and b.virtual.stats()["Ledger"]["partitions"] > 0)
    keys = [f"k{i}" for i in range(60)]
    await _publish(a, keys, 4)
    await _until(lambda: len(Ledger.handled) >= 240)
    assert order_problems(Ledger.handled, dict.fromkeys(keys, 4)) == []
    nodes = defaultdict(set)
    for h in Ledger.handled:
        nodes[h.key].add(h.node)
    assert all(len(v) == 1 for v in nodes.values()), "a key's events are handled by one node"
    assert {a.node, b.node} == set().union(*nodes.values()), "both nodes handle some keys"
    # a graceful leave hands b's partitions to a; order holds across the move
    await b.__aexit__(None, None, None)
    await _until(lambda: a.virtual.stats()["Ledger"]["partitions"] == n)
    await _publish(a, keys, 2, start=4)
    await _until(lambda: len({(h.key, h.n) for h in Ledger.handled}) >= 360)
    assert order_problems(Ledger.handled, dict.fromkeys(keys, 6)) == []


async def test_a_failing_event_is_retried_in_place_then_dead_lettered(actor_system: ActorSystem) -> None:
    await actor_system.host(Ledger)
    await actor_system.publish(Entry("r", 0, fail=2))  # fails twice, the third attempt succeeds
    await actor_system.publish(Entry("r", 1))
    await actor_system.publish(Entry("d", 0, fail=5))  # never succeeds within max_deliver=3
    await actor_system.publish(Entry("d", 1))
    await _until(lambda: {("r", 1), ("d", 1)} <= {(h.key, h.n) for h in Ledger.handled})
    assert [h.n for h in Ledger.handled if h.key == "r"] == [0, 1]
    assert [h.n for h in Ledger.handled if h.key == "d"] == [1]
    letters = await actor_system.events.dead_letters("Ledger")
    assert [(x.reason, msgspec.msgpack.decode(x.data, type=Entry).key, x.attempts)
            for x in letters] == [("handler-error", "d", 3)]


async def test_undecodable_event_is_dead_lettered_once_and_the_next_is_handled(actor_system: ActorSystem) -> None:
    await actor_system.host(Ledger)
    nc = actor_system._nc
    subject = f"{actor_system.namespace}.events.Entry"
    deep = b"\x91" * 100_000 + b"\x00"  # nested arrays: RecursionError in msgspec
    for bad in (b"\xc1", deep, b'{"$type": "Entry", "key": 3}'):
        await nc.jetstream().publish(subject, bad)
    await actor_system.publish(Entry("after", 0))
    await _until(lambda: any(h.key == "after" for h in Ledger.handled))
    await _until(lambda: actor_system.virtual.stats()["Ledger"]["events_dead_lettered"] == 3)
    letters = await actor_system.events.dead_letters("Ledger")
    assert [x.reason for x in letters] == ["undecodable"] * 3


class Unkeyed(Actor, options=ActorOptions(virtual=True)):
    @on_event(Entry)
    async def entry(self, event: Entry) -> None: ...


async def test_a_virtual_class_with_an_unkeyed_event_handler_is_refused(actor_system: ActorSystem) -> None:
    with pytest.raises(EventError, match="must be keyed"):
        await actor_system.host(Unkeyed)


async def test_hostile_partition_record_is_taken_over_and_read_from_the_start(actor_system: ActorSystem) -> None:
    await actor_system.publish(Entry("h", 0))
    await actor_system.host(Keeper)  # opens the ownership bucket
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_owners")
    p = partition_of("h", actor_system.virtual.cfg.partitions)
    await kv.put(f"Ledger.partition.{p}", b"[" * 50_000)
    await actor_system.host(Ledger)
    await _until(lambda: any(h.key == "h" for h in Ledger.handled))
    assert actor_system.virtual.stats()["Ledger"]["partition_records_unreadable"] == 1


# -- the partition function and the record decoder (pure) ----------------------------------


def test_partition_function_is_nats_fnv1a() -> None:
    # FNV-1a 32 reference vectors (the hash nats-server's partition() mapping uses)
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968
    assert partition_of("foobar", 7) == 0xBF9CF968 % 7
    with pytest.raises(ValueError, match="between 1 and"):
        partition_of("x", 0)
    with pytest.raises(ValueError, match="between 1 and"):
        partition_of("x", MAX_PARTITIONS + 1)


@given(key=st.text(), n=st.integers(1, MAX_PARTITIONS))
def test_partition_is_in_range_and_stable(key: str, n: int) -> None:
    p = partition_of(key, n)
    assert 0 <= p < n
    assert partition_of(key, n) == p
    assert p == fnv1a32(key.encode("utf-8", "surrogatepass")) % n


@given(n=st.sampled_from([8, 16, 32, 64]), prefix=st.text(max_size=8))
def test_partitions_spread_keys_evenly(n: int, prefix: str) -> None:
    counts = [0] * n
    keys = 200 * n
    for i in range(keys):
        counts[partition_of(f"{prefix}{i}", n)] += 1
    assert min(counts) > 0.6 * 200, counts
    assert max(counts) < 1.4 * 200, counts


@given(data=st.binary(max_size=200) | st.builds(lambda d: b"[" * d, st.integers(1, 100_000)))
def test_partition_record_decoder_is_total(data: bytes) -> None:
    got = read_partition_record(data)
    assert isinstance(got, PartitionRecord | str)


def test_partition_record_round_trips_and_refuses_a_negative_seq() -> None:
    rec = PartitionRecord("n1:0", 42)
    assert read_partition_record(msgspec.json.encode(rec)) == rec
    assert msgspec.json.encode(rec) == b'{"node":"n1:0","seq":42}', "no suspects: the record as before"
    assert isinstance(read_partition_record(b'{"node": "x", "seq": -1}'), str)


@given(fields=st.fixed_dictionaries({}, optional={f: st.integers(-(2**70), 2**70) | st.text(max_size=3) | st.none()
                                                  for f in ("seq", "until", "begun", "tries")}))
def test_partition_record_suspect_fields_are_read_or_refused(fields: dict[str, object]) -> None:
    got = read_partition_record(msgspec.json.encode({"node": "n1:0", **fields}))
    valid = all(isinstance(v, int) and v >= 0 for v in fields.values())
    assert isinstance(got, PartitionRecord) == valid, (fields, got)
    if isinstance(got, PartitionRecord):
        assert msgspec.structs.asdict(got) == {"node": "n1:0", "seq": 0, "until": 0, "begun": 0, "tries": 0} | fields


async def test_a_partition_acquired_behind_the_read_is_not_checkpointed_past_what_was_taken(
        actor_system_factory: Callable[..., Any]) -> None:
    system = await actor_system_factory(virtual=VirtualConfig(partitions=2))
    await system.host(Ledger)
    keys = [f"s{i}" for i in range(20)]
    await _publish(system, keys, 1)
    await _until(lambda: len(Ledger.handled) >= 20)
    reader = system.virtual._partitions["Ledger"].reader
    assert reader is not None
    moved = partition_of("s0", 2)
    through = await reader.release(moved, 5.0)
    assert through >= 20
    # Taken again from an older checkpoint while the read is past it: until the read restarts
    # from there, nothing the read passed counts as handled for it.
    reader.acquire(moved, 0, lambda: True)
    assert reader.through(moved) == 0
    await _until(lambda: sum(h.key == "s0" for h in Ledger.handled) == 2)  # read again from 0
    await _until(lambda: reader.through(moved) >= through)
