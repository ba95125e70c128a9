"""A poison event (its handler kills its process) of a partitioned virtual class: charged an
attempt by each owner that begins it after a takeover, dead-lettered ("crashed-owners") once
``max_deliver`` owners died with it begun, while the other keys' events go on in order and an
innocent event that was in flight at a kill is handled, not charged. Real node processes, one
real server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from corps import ActorSystem, EmbeddedServer
from corps.wire._partition import partition_of
from tests.fault.world import wait_for
from tests.virtual.domain import Entry
from tests.virtual.hosts import VHosts, started
from tests.virtual.test_partitioned_cluster import _publish, order_problems, partition_owners

pytestmark = [pytest.mark.slow]

MAX_DELIVER = 3  # Ledger.entry's
TTL = 1.0  # a death is noticed within a second: four of them fit the test's time


@pytest.fixture
async def hosts(nats_server: EmbeddedServer, tmp_path: Path) -> AsyncIterator[VHosts]:
    # one survives the deaths it takes
    async with started(VHosts, [nats_server.url], tmp_path, "p", MAX_DELIVER + 2, "--ttl", str(TTL),
                       "--ledger") as h:
        yield h


async def test_a_poison_event_is_dead_lettered_after_max_deliver_owners_died_of_it(hosts: VHosts) -> None:
    poison = "poison"
    p = partition_of(poison, 32)
    innocent = next(k for k in (f"i{i}" for i in range(1000)) if partition_of(k, 32) == p)  # same partition
    keys = [f"k{i}" for i in range(20)]

    def handled_all(want: dict[str, set[int]]) -> bool:
        done = {(str(h[0]), int(h[3])) for h in hosts.history()[0]}  # type: ignore[call-overload]
        return all((k, n) in done for k, ns in want.items() for n in ns)

    async with ActorSystem(hosts.urls, namespace=hosts.nodes.ns) as client:
        async def settled() -> bool:
            owners = await partition_owners(client)
            return all(owners) and len(set(owners)) == len(hosts.procs)
        await wait_for(settled, 20, "the partitions spread over the nodes")
        await _publish(client, [*keys, poison, innocent], range(1))  # every key active
        await wait_for(lambda: handled_all({k: {0} for k in [*keys, poison, innocent]}), 15, "the first events")

        first = (await partition_owners(client))[p]
        # in flight together on the partition's owner: the innocent event holds, the poison kills
        await client.publish(Entry(innocent, 1, hold=2.0))
        await client.publish(Entry(poison, 1, hold=0.3, crash=True))
        await client.publish(Entry(poison, 2))
        await client.publish(Entry(innocent, 2))
        await _publish(client, keys, range(1, 4))
        started = time.monotonic()

        async def poison_dead_lettered() -> bool:
            return any(dl.reason == "crashed-owners" for dl in await client.events.dead_letters("Ledger"))
        await wait_for(poison_dead_lettered, 25, "the poison event dead-lettered (a bound across owners)")
        took = time.monotonic() - started
        await wait_for(lambda: handled_all({k: set(range(4)) for k in keys} | {poison: {0, 2}, innocent: {0, 1, 2}}),
                       15, "every other event handled")
        letters = await client.events.dead_letters("Ledger")

    deaths = sum(not n.alive for n in hosts.procs)
    print(f"poison dead-lettered {took:.1f}s after publishing, after {deaths} node deaths")
    assert [(msgspec.msgpack.decode(dl.data), dl.consumer, dl.reason, dl.attempts) for dl in letters] == [
        (msgspec.to_builtins(Entry(poison, 1, hold=0.3, crash=True)), "Ledger", "crashed-owners", MAX_DELIVER)], \
        "only the poison, charged each time"
    assert 1 <= deaths <= MAX_DELIVER + 1, f"{deaths} nodes died of it"
    handled = hosts.history()[0]
    assert not any(str(h[0]) == poison and int(h[3]) == 1 for h in handled)  # type: ignore[call-overload]
    assert not next(n for n in hosts.procs if n.node_id == first).alive, "the first owner died of it"
    by = {str(h[5]) for h in handled if str(h[0]) == innocent and int(h[3]) == 1}  # type: ignore[call-overload]
    assert by, "the innocent event handled"
    assert first not in by, "in flight when the first owner died: handled by a later owner"
    assert order_problems([h for h in handled if str(h[0]) != poison], {**dict.fromkeys(keys, 4), innocent: 3}) == []
    firsts = [int(h[3]) for h in sorted(handled, key=lambda h: float(h[4]))  # type: ignore[arg-type,call-overload]
              if str(h[0]) == poison]
    assert firsts[:1] == [0], firsts
    assert 2 in firsts, "the poison's key goes on after it"
