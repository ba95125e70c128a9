"""Virtual actors on a real 3-node NATS cluster with 3 corps nodes as OS processes: placement
with one activation per id, SIGKILL of a node under load, and a node paused past its lease."""

from __future__ import annotations

import signal
import time
from collections import Counter as Tally_
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from corps import ActorSystem
from corps.testing import NatsCluster
from tests.fault.world import wait_for
from tests.virtual.hosts import VHosts, started
from tests.virtual.load import (
    Load,
    double_handling_problems,
    overlap_problems,
    single_activation_problems,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TTL = 3.0  # VirtualConfig's default member_ttl: detection must stay under 5 s with it


class Cluster(VHosts):
    def history_problems(self, killed: frozenset[str] = frozenset()) -> list[str]:
        handled, changes = self.history()
        return (single_activation_problems(handled, changes) + overlap_problems(changes, killed)
                + double_handling_problems(handled))


@pytest.fixture
async def vcluster(nats_cluster: NatsCluster, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with started(Cluster, nats_cluster.urls, tmp_path, "v", 3, "--ttl", str(TTL), "--replicas", "3") as c:
        yield c


@pytest.fixture
async def client(vcluster: Cluster) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(vcluster.urls, namespace=vcluster.nodes.ns) as system:
        yield system


async def _settle(load: Load, nodes: int) -> None:
    """Rounds until every id answers, from ``nodes`` distinct nodes (the members agree)."""
    async def ok() -> bool:
        await load.round()
        last = {i: rs[-1][1] for i, rs in load.replies.items()}
        return all(s is not None for s in last.values()) and len({s.node for s in last.values() if s}) == nodes
    await wait_for(ok, 30, f"every id answered by {nodes} nodes")


async def test_ids_spread_over_three_nodes_with_one_activation_each(vcluster: Cluster, client: ActorSystem,
                                                                    soak: bool) -> None:
    n = 10_000 if soak else 1_000
    load = Load(client, "s", [f"k{i}" for i in range(n)], timeout=10.0)
    await _settle(load, 3)
    await load.round()
    assert load.problems() == []
    owners = load.owners()
    spread = Tally_(owners.values())
    assert len(spread) == 3
    assert min(spread.values()) > n / 6, spread  # rendezvous hashing spreads ids about evenly
    handled, changes = vcluster.history()
    assert {str(a["actor_id"]) for a in changes if a["kind"] == "activate"} == set(owners)
    assert overlap_problems(changes) == [], "one activation per id at any time (moves while nodes joined)"
    assert single_activation_problems(handled, changes) == []


async def test_sigkill_under_load_reactivates_the_ids_elsewhere_in_order(vcluster: Cluster,
                                                                           client: ActorSystem) -> None:
    load = Load(client, "s", [f"k{i}" for i in range(300)], timeout=1.0)
    await _settle(load, 3)
    victim = vcluster.procs[0]
    lost = {i for i, node in load.owners().items() if node == victim.node_id}
    assert lost
    victim.kill()
    killed_at = time.time()

    async def recovered() -> bool:
        await load.round()
        return all(load.replies[i][-1][1] is not None for i in lost)

    await wait_for(recovered, 30, "the killed node's ids answer again")
    recovery = max(next(at for _, s, at in load.replies[i] if s is not None and at > killed_at) for i in lost)
    print(f"recovery of {len(lost)} ids after SIGKILL: {recovery - killed_at:.2f}s (member_ttl {TTL}s)")
    assert recovery - killed_at < TTL + 2.0
    for _ in range(2):
        await load.round()
    assert load.problems() == []
    assert set(load.owners().values()) == {p.node_id for p in vcluster.procs[1:]}
    assert vcluster.history_problems(frozenset({victim.node_id})) == []


async def test_a_paused_node_handles_nothing_for_ids_it_no_longer_owns(vcluster: Cluster,
                                                                          client: ActorSystem) -> None:
    load = Load(client, "s", [f"k{i}" for i in range(200)], timeout=1.0)
    await _settle(load, 3)
    victim = vcluster.procs[0]
    moved = {i for i, node in load.owners().items() if node == victim.node_id}
    victim.signal(signal.SIGSTOP)

    async def taken_over() -> bool:
        await load.round()
        return all(load.replies[i][-1][1] is not None for i in moved)

    await wait_for(taken_over, 30, "the paused node's ids answer from the others")
    victim.signal(signal.SIGCONT)
    resumed_at = time.time()
    await _settle(load, 3)  # it rejoins: ids placed on it move back, through a claim
    for _ in range(2):
        await load.round()
    assert load.problems() == []
    handled, changes = vcluster.history()
    stale = [h for h in handled if h[5] == victim.node_id and float(h[4]) > resumed_at  # type: ignore[arg-type]
             and any(a["kind"] == "fenced" and a["token"] == h[1] for a in changes)]
    assert stale == [], "a fenced-off activation handled messages after SIGCONT"
    assert any(a["kind"] == "fenced" and a["node"] == victim.node_id for a in changes)
    assert single_activation_problems(handled, changes) == []
    assert double_handling_problems(handled) == []


async def test_graceful_leave_and_join_hand_ids_over_in_order_with_no_failed_ask(vcluster: Cluster,
                                                                                  client: ActorSystem) -> None:
    load = Load(client, "s", [f"k{i}" for i in range(200)], timeout=10.0)
    await _settle(load, 3)
    first = load.rounds
    leaving = vcluster.procs[2]
    async with anyio.create_task_group() as tg:
        tg.start_soon(leaving.stop)  # SIGTERM: drain, hand over, exit

        async def rounds_while_leaving() -> None:
            while leaving.alive:
                await load.round()
        tg.start_soon(rounds_while_leaving)
    await load.round()
    assert set(load.owners().values()) == {p.node_id for p in vcluster.procs[:2]}
    joining = vcluster.add(3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(joining.start)
        for _ in range(3):
            await load.round()
    await _settle(load, 3)
    failed = [(i, n) for i, rs in load.replies.items() for n, s, _ in rs if s is None and n >= first]
    errors = [e for e in load.errors if e[1] >= first]
    assert failed == [], f"an ask to an id in transit waits for its new activation: {errors[:3]}"
    assert load.problems() == []
    handled, changes = vcluster.history()
    assert any(a["kind"] == "move" for a in changes)
    assert single_activation_problems(handled, changes) == []
    assert double_handling_problems(handled) == []
    assert overlap_problems(changes) == []
