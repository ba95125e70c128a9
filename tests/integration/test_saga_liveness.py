"""A dead coordinator's sagas are taken over in seconds, not after their leases (issue 11, item 3).

Every coordinator rewrites a liveness key in the saga log bucket every 0.5 s; one whose key goes
quiet for 1.5 s is presumed dead and its sagas are taken over at once, with the usual CAS write.
Before: a takeover waited for the saga's lease (10 s by default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from corps import ActorSystem
from corps.examples.shop.messages import GetLedger, GetStock, OrderRequest
from corps.examples.shop.orchestrated import PAYMENTS, WAREHOUSE, Inventory, Payments
from corps.saga import SagaStatus
from corps.wire._embedded import EmbeddedServer
from tests.integration.coordinator_node import HeldOrder, HeldShipping

Factory = Callable[..., Any]

DETECTED_WITHIN = 3.0
SLACK = 0.5
ROOT = Path(__file__).resolve().parents[2]


async def participants(actor_system_factory: Factory) -> ActorSystem:
    parts: ActorSystem = await actor_system_factory()
    HeldShipping.gate, HeldShipping.arrived = anyio.Event(), anyio.Event()
    await parts.spawn(Inventory, WAREHOUSE)
    await parts.spawn(Payments, PAYMENTS)
    await parts.spawn(HeldShipping, "courier")
    return parts


async def shop_state(parts: ActorSystem) -> tuple[int, dict[str, int]]:
    stock = (await parts.ref(Inventory, WAREHOUSE).ask(GetStock("apple"))).available
    return stock, (await parts.ref(Payments, PAYMENTS).ask(GetLedger())).captured


@pytest.mark.timeout(60)
async def test_a_killed_coordinators_saga_is_taken_over_within_three_seconds(
        nats_server: EmbeddedServer, corps_namespace: str, actor_system_factory: Factory,
        record_property: Any) -> None:
    parts = await participants(actor_system_factory)
    survivor: ActorSystem = await actor_system_factory(sagas=(HeldOrder,))  # the default SagaConfig: 10 s leases
    coordinator = await survivor.coordinator()
    proc = subprocess.Popen(  # noqa: ASYNC220 -- a process we SIGKILL
        [sys.executable, "-m", "tests.integration.coordinator_node", nats_server.url, corps_namespace, "k1"],
        cwd=ROOT, stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    try:
        with anyio.fail_after(20):  # its saga is at the held step: owned by the other process, mid-flight
            await HeldShipping.arrived.wait()
        info = await survivor.saga_status("k1")
        assert info.owner not in ("", survivor.node)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        with anyio.fail_after(15):
            await coordinator.taken.setdefault("k1", anyio.Event()).wait()
        detected = time.monotonic() - killed_at
    finally:
        proc.kill()
        proc.wait()
    record_property("taken_over_after_s", round(detected, 3))
    # Before: ~10 s (the lease); now the heartbeat timeout (1.5 s) plus at most one poll and scan.
    assert detected < DETECTED_WITHIN + SLACK, f"taken over after {detected:.2f}s"
    assert info.lease_until - time.time() > 3.0, "the lease had not run out: liveness decided"
    HeldShipping.gate.set()
    done = await survivor.wait_saga("k1", timeout=10)
    assert done.status is SagaStatus.COMPLETED
    assert done.owner == ""
    assert await shop_state(parts) == (98, {"visa": 500})  # the resent requests applied once


async def test_a_paused_coordinator_presumed_dead_cannot_write_once_it_wakes(actor_system_factory: Factory) -> None:
    parts = await participants(actor_system_factory)
    stale: ActorSystem = await actor_system_factory(sagas=(HeldOrder,))
    fresh: ActorSystem = await actor_system_factory(sagas=(HeldOrder,))
    c1, c2 = await stale.coordinator(), await fresh.coordinator()
    sid = await stale.start_saga(HeldOrder, OrderRequest("p1", "apple", 2, "visa", 500, "home"))
    with anyio.fail_after(10):
        await HeldShipping.arrived.wait()
    paused_at = time.monotonic()
    c1.renewing = False  # paused: no lease renewals, no heartbeats; its 10 s lease still runs
    with anyio.fail_after(10):
        await c2.taken.setdefault(sid, anyio.Event()).wait()
    assert time.monotonic() - paused_at < DETECTED_WITHIN + SLACK
    HeldShipping.gate.set()  # both coordinators' ship requests get their reply now
    with anyio.fail_after(10):  # the paused one wakes to a saga written by another: its CAS fails
        await c1.lost.setdefault(sid, anyio.Event()).wait()
    c1.renewing = True
    info = await fresh.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPLETED
    assert not c1.drives(sid)
    assert await shop_state(parts) == (98, {"visa": 500})


async def test_a_coordinator_that_stops_cleanly_hands_its_sagas_over_at_once(actor_system_factory: Factory) -> None:
    parts = await participants(actor_system_factory)
    fresh: ActorSystem = await actor_system_factory(sagas=(HeldOrder,))
    c2 = await fresh.coordinator()
    async with ActorSystem(parts.url, namespace=parts.namespace, sagas=(HeldOrder,), drain_timeout=0.1) as leaving:
        sid = await leaving.start_saga(HeldOrder, OrderRequest("c1", "apple", 2, "visa", 500, "home"))
        with anyio.fail_after(10):
            await HeldShipping.arrived.wait()
    stopped_at = time.monotonic()  # its liveness key is deleted as it stops: the next poll sees it gone
    with anyio.fail_after(10):
        await c2.taken.setdefault(sid, anyio.Event()).wait()
    assert time.monotonic() - stopped_at < DETECTED_WITHIN
    HeldShipping.gate.set()
    assert (await fresh.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    assert await shop_state(parts) == (98, {"visa": 500})
