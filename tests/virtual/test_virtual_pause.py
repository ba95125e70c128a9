"""Takeovers without a hand-over (the holder paused or died) never handle a message twice.

- A paused node reads late what sat in its socket: after SIGCONT, whatever it received before
  its lease ran out is stale (another node may have handled it meanwhile) and must not activate
  an id afresh, even once its heartbeat thread has renewed the lease under a new epoch. The
  victim's event loop is held busy (``Stall``) from before SIGSTOP until after its heartbeat
  thread renewed the lease, so it reads the asks that waited in its socket with a valid lease.
- A new owner holds an id's messages while the old one still handles them (the ``grace`` of a
  move); if the old one dies before it hands the id over, the new owner cannot know which it
  handled: those it held before it saw the old one gone are dropped (their asks time out, as
  any ask to a node that dies), never handled again.

Two corps node processes on one nats-server.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import nats.js.errors
import pytest

from corps import ActorSystem, EmbeddedServer
from corps.virtual._membership import MemberRecord, members_bucket
from corps.virtual._rendezvous import owner
from tests.fault.procs import Nodes
from tests.fault.world import wait_for
from tests.virtual.domain import Hold, Stall
from tests.virtual.hosts import VNode, vnode
from tests.virtual.load import (
    Load,
    double_handling_problems,
    overlap_problems,
    read_history,
    single_activation_problems,
)
from tests.virtual.vnode import Tally

pytestmark = [pytest.mark.slow]

TTL = 1.5


def _vnode(nodes: Nodes, i: int, grace: float) -> VNode:
    return vnode(nodes, f"v{i}", "--ttl", str(TTL), "--grace", str(grace))


@pytest.fixture
async def pair(nats_server: EmbeddedServer, tmp_path: Path) -> AsyncIterator[tuple[Nodes, list[VNode]]]:
    async with Nodes(nats_server.url, f"p{uuid.uuid4().hex[:8]}", tmp_path) as nodes:
        procs = [_vnode(nodes, i, 0.2) for i in range(2)]
        await nodes.start(*procs)
        yield nodes, procs


async def _record(url: str, ns: str, node: str) -> MemberRecord | None:
    """The node's membership record as the server has it (None: expired or deleted)."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(members_bucket(ns))
        try:
            entry = await kv.get(node)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return msgspec.json.decode(entry.value or b"", type=MemberRecord)
    finally:
        await nc.close()


async def _epoch(url: str, ns: str, node: str) -> int:
    record = await _record(url, ns, node)
    return -1 if record is None else record.epoch


async def _answered_by(load: Load, ids: list[str], node: VNode, what: str) -> None:
    """Rounds of asks until the last one of each id in ``ids`` was answered by ``node``."""
    async def answered() -> bool:
        await load.round()
        return all((s := load.replies[i][-1][1]) is not None and s.node == node.node_id for i in ids)
    await wait_for(answered, 30, what)


def _no_double_handling(load: Load, workdir: Path) -> None:
    assert load.problems() == []
    handled, changes = read_history([workdir / "v0.jsonl", workdir / "v1.jsonl"])
    assert double_handling_problems(handled) == []
    assert single_activation_problems(handled, changes) == []


async def test_what_a_paused_node_read_late_activates_nothing(pair: tuple[Nodes, list[VNode]],
                                                              nats_server: EmbeddedServer, tmp_path: Path) -> None:
    nodes, (victim, other) = pair
    members = [victim.node_id, other.node_id]
    placed = [f"k{i}" for i in range(200) if owner(f"k{i}", members) == victim.node_id]
    ids, stall_id = placed[:20], placed[20]
    async with ActorSystem(nats_server.url, namespace=nodes.ns) as client:
        load = Load(client, "s", ids, timeout=1.0)
        release = tmp_path / "release"
        out = tmp_path / "v0.jsonl"
        await client.ref(Tally, stall_id).tell(Stall(str(release)))
        await wait_for(lambda: out.exists() and '"stall"' in out.read_text(), 30, "the victim's loop is busy")
        victim.signal(signal.SIGSTOP)

        async def taken_over() -> bool:
            await load.round()
            return all(load.replies[i][-1][1] is not None for i in ids)

        await wait_for(taken_over, 30, "the paused node's ids answer from the other node")
        other.kill()  # the other holder dies: it leaves no hand-over marks
        victim.signal(signal.SIGCONT)

        async def renewed() -> bool:
            return await _epoch(nats_server.url, nodes.ns, victim.node_id) >= 1

        await wait_for(renewed, 30, "the victim's heartbeat renewed its lease under a new epoch")
        release.touch()  # now its loop reads what waited in its socket

        await _answered_by(load, ids, victim, "the ids answer from the victim once the other is gone")
    _no_double_handling(load, tmp_path)


async def test_a_holder_that_dies_during_a_move_leaves_nothing_to_handle_twice(nats_server: EmbeddedServer,
                                                                             tmp_path: Path) -> None:
    async with Nodes(nats_server.url, f"p{uuid.uuid4().hex[:8]}", tmp_path) as nodes, \
            ActorSystem(nats_server.url, namespace=nodes.ns) as client:
        old = await _vnode(nodes, 0, 5.0).start()  # a long grace: it keeps handling ids that move away
        load = Load(client, "s", [f"k{i}" for i in range(40)], timeout=1.0)
        await load.round()
        assert {s.node for rs in load.replies.values() for _, s, _ in rs if s is not None} == {old.node_id}
        new = await _vnode(nodes, 1, 5.0).start()
        moving = [i for i in load.ids if owner(i, [old.node_id, new.node_id]) == new.node_id]
        assert moving

        await load.round()  # the old owner answers; the new one holds them, waiting for a hand-over
        assert all(load.replies[i][-1][1] is not None for i in moving)
        old.kill()  # before its grace ran out: no hand-over, no marks

        await _answered_by(load, load.ids, new, "the ids answer from the new owner")
    _no_double_handling(load, tmp_path)


async def test_an_activation_waiting_for_its_claim_when_the_lease_runs_out_holds_nothing(
        nats_server: EmbeddedServer, tmp_path: Path) -> None:
    """The new owner of moving ids is paused while it waits for their hand-over; the old owner
    hands them over meanwhile. Resumed, it must not keep instances that will never start."""
    async with Nodes(nats_server.url, f"p{uuid.uuid4().hex[:8]}", tmp_path) as nodes, \
            ActorSystem(nats_server.url, namespace=nodes.ns) as client:
        old = await _vnode(nodes, 0, 0.5).start()
        load = Load(client, "s", [f"k{i}" for i in range(40)], timeout=1.0)
        await load.round()
        new = await _vnode(nodes, 1, 0.5).start()
        members = [old.node_id, new.node_id]
        moving = [i for i in load.ids if owner(i, members) == new.node_id]
        await load.round()  # the new owner waits for the hand-over of the moving ids (the grace)
        release, out = tmp_path / "release", tmp_path / "v1.jsonl"
        stall_id = next(f"x{i}" for i in range(100) if owner(f"x{i}", members) == new.node_id)
        await client.ref(Tally, stall_id).tell(Stall(str(release)))
        await wait_for(lambda: out.exists() and '"stall"' in out.read_text(), 30, "the new owner's loop is busy")
        new.signal(signal.SIGSTOP)  # the old one hands the ids over while it is stopped

        async def expired() -> bool:
            return await _epoch(nats_server.url, nodes.ns, new.node_id) == -1

        await wait_for(expired, 30, "the paused node's membership record expired")
        new.signal(signal.SIGCONT)

        async def renewed() -> bool:
            return await _epoch(nats_server.url, nodes.ns, new.node_id) >= 1

        await wait_for(renewed, 30, "its heartbeat renewed the lease under a new epoch")
        release.touch()  # its loop runs again: the lapse first, then the claims that were waiting

        await _answered_by(load, moving, new, "the moving ids answer from the new owner")
    _no_double_handling(load, tmp_path)


async def test_a_node_paused_while_it_hands_ids_over_fences_them_and_runs_no_on_stop(
        nats_server: EmbeddedServer, tmp_path: Path) -> None:
    """The old owner is draining the ids that move (each busy with a ``Hold``) when it is paused
    past its lease; the new owner takes them over. Resumed, the old one must not finish those
    hand-overs (on_stop, a 'move' record) as if it still held them: they were fenced off."""
    async with Nodes(nats_server.url, f"p{uuid.uuid4().hex[:8]}", tmp_path) as nodes, \
            ActorSystem(nats_server.url, namespace=nodes.ns) as client:
        old = await _vnode(nodes, 0, 0.2).start()
        load = Load(client, "s", [f"k{i}" for i in range(40)], timeout=1.0)
        await load.round()
        release = tmp_path / "release"
        for i in load.ids:
            await client.ref(Tally, i).tell(Hold(str(release)))
        out = tmp_path / "v0.jsonl"
        await wait_for(lambda: out.read_text().count('"hold"') == len(load.ids), 30, "every id is busy")
        new = await _vnode(nodes, 1, 0.2).start()
        moving = [i for i in load.ids if owner(i, [old.node_id, new.node_id]) == new.node_id]

        async def handing_over() -> bool:  # its hand-overs started: they wait for the busy instances
            record = await _record(nats_server.url, nodes.ns, old.node_id)
            return record is not None and record.stats.get("Tally", {}).get("moving") == len(moving)

        await wait_for(handing_over, 30, "the old owner is handing the moving ids over")
        old.signal(signal.SIGSTOP)
        await _answered_by(load, moving, new, "the new owner took the moving ids over")
        old.signal(signal.SIGCONT)

        async def renewed() -> bool:
            return await _epoch(nats_server.url, nodes.ns, old.node_id) >= 1

        await wait_for(renewed, 30, "the old owner's heartbeat renewed its lease under a new epoch")
        release.touch()  # the instances drain: the hand-overs would go on from here

        async def drained() -> bool:  # its hand-overs returned (the heartbeat carries its counters)
            record = await _record(nats_server.url, nodes.ns, old.node_id)
            return record is not None and record.epoch >= 1 and record.stats.get("Tally", {}).get("moving") == 0

        await wait_for(drained, 30, "the old owner is done with its hand-overs")
    _no_double_handling(load, tmp_path)
    _handled, changes = read_history([tmp_path / "v0.jsonl", tmp_path / "v1.jsonl"])
    assert overlap_problems(changes) == []
    assert not [a for a in changes if a["node"] == old.node_id and a["kind"] == "move"]
