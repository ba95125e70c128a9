"""Keyed events partitioned across a real 3-node NATS cluster with 3 corps node processes: 1,000
keys, per-key order and at-least-once under a SIGKILL, a join and a graceful leave, and no key
handled by two nodes at once (checked from the nodes' own records with fencing tokens)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import nats.js.errors
import pytest

from corps import ActorSystem
from corps.testing import NatsCluster
from corps.virtual._partition_record import read_partition_record
from tests.fault.world import wait_for
from tests.virtual.domain import Entry
from tests.virtual.hosts import VHosts, started
from tests.virtual.load import overlap_problems, single_activation_problems
from tests.virtual.test_virtual_cluster import TTL

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
async def ecluster(nats_cluster: NatsCluster, tmp_path: Path) -> AsyncIterator[VHosts]:
    async with started(VHosts, nats_cluster.urls, tmp_path, "e", 3, "--ttl", str(TTL), "--replicas", "3",
                       "--ledger") as hosts:
        yield hosts


def order_problems(handled: list[list[object]], published: dict[str, int]) -> list[str]:
    """Per key, in wall-time order: each event's first handling follows the first handling of
    every earlier event of the key (a redelivery after a kill may repeat some), and every
    published event was handled at least once."""
    by_key: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for h in handled:
        by_key[str(h[0])].append((float(h[4]), int(h[3])))  # type: ignore[arg-type,call-overload]
    out = []
    for key, count in published.items():
        firsts: list[int] = []
        for _, n in sorted(by_key.get(key, [])):
            if n not in firsts:
                firsts.append(n)
        if firsts != list(range(count)):
            out.append(f"{key}: first handlings {firsts[:12]}..., published 0..{count - 1}")
    return out


async def partition_owners(client: ActorSystem, partitions: int = 32) -> list[str]:
    """The node named in each partition's record ("" released or missing), from KV."""
    kv = await client._nc.jetstream().key_value(f"{client.namespace}_owners")
    out = []
    for p in range(partitions):
        try:
            entry = await kv.get(f"Ledger.partition.{p}")
        except nats.js.errors.KeyNotFoundError:  # not claimed yet
            out.append("")
            continue
        record = read_partition_record(entry.value or b"")
        out.append("" if isinstance(record, str) else record.node.partition(":")[0])
    return out


async def _publish(system: ActorSystem, keys: list[str], ns: range) -> None:
    """Each key's events in order (awaited one after the other), keys concurrently."""
    async def one(key: str) -> None:
        for n in ns:
            await system.publish(Entry(key, n))
    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(one, key)


async def test_keyed_events_keep_per_key_order_across_a_kill_a_join_and_a_graceful_leave(
        ecluster: VHosts, soak: bool) -> None:
    keys = [f"e{i}" for i in range(1_000)]
    per_phase = 4 if soak else 2
    phases = [range(i * per_phase, (i + 1) * per_phase) for i in range(3)]
    published = dict.fromkeys(keys, 3 * per_phase)

    def handled_all(upto: int) -> bool:
        handled, _ = ecluster.history()
        done = {(str(h[0]), int(h[3])) for h in handled}  # type: ignore[call-overload]
        return all((k, n) in done for k in keys for n in range(upto))

    async with ActorSystem(ecluster.urls, namespace=ecluster.nodes.ns) as client:
        async def settled() -> bool:  # every partition claimed, by the three nodes
            owners = await partition_owners(client)
            return all(owners) and len(set(owners)) == 3
        await wait_for(settled, 30, "the partitions spread over the three nodes")
        await _publish(client, keys, phases[0])
        await wait_for(lambda: handled_all(per_phase), 30, "the first events handled")
        handled, _ = ecluster.history()
        assert len({str(h[5]) for h in handled}) == 3, "the three nodes share the partitions"

        victim = ecluster.procs[0]

        def victim_busy() -> bool:  # it has handled some of the second phase's events
            handled, _ = ecluster.history()
            return any(h[5] == victim.node_id and int(h[3]) >= per_phase for h in handled)  # type: ignore[call-overload]

        async with anyio.create_task_group() as tg:
            tg.start_soon(_publish, client, keys, phases[1])
            await wait_for(victim_busy, 30, "the victim handling the second phase")
            victim.kill()  # SIGKILL while events flow: its partitions are taken over from the checkpoints
            killed_at = time.time()
        await wait_for(lambda: handled_all(2 * per_phase), 40, "the events after the kill handled")
        print(f"events after SIGKILL all handled {time.time() - killed_at:.2f}s after it (member_ttl {TTL}s)")

        leaving = ecluster.procs[1]
        joining = ecluster.add(3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_publish, client, keys, phases[2])
            tg.start_soon(joining.start)
            tg.start_soon(leaving.stop)  # SIGTERM: drains, hands its partitions over, exits
        await wait_for(lambda: handled_all(3 * per_phase), 40, "the events across the join and the leave handled")

    handled, changes = ecluster.history()
    killed = frozenset({victim.node_id})
    assert order_problems(handled, published) == []
    assert single_activation_problems(handled, changes) == [], "a key handled under an older token after a newer one"
    assert overlap_problems(changes, killed) == [], "a key or a partition active on two nodes at once"
    parts = [a for a in changes if str(a["actor_id"]).startswith("~p")]
    assert any(a["kind"] == "move" and a["node"] == leaving.node_id for a in parts), "the leaver handed over"
    assert any(a["kind"] == "activate" and a["node"] == joining.node_id for a in parts), "the newcomer took some"
    redelivered = len(handled) - len({(str(h[0]), int(h[3])) for h in handled})  # type: ignore[call-overload]
    print(f"{len(handled)} handlings of {3 * per_phase * len(keys)} events ({redelivered} redelivered)")
