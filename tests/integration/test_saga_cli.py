"""``corps saga list | show | retry`` against a real saga log."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import pytest

from corps import ActorSystem
from corps.examples.shop.messages import UNDELIVERABLE
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, PlaceOrder, Shipping
from corps.saga import SagaStatus
from corps.wire._embedded import EmbeddedServer
from tests.integration.test_sagas import StubbornPayments, StubbornSaga, order


async def corps(*args: str) -> subprocess.CompletedProcess[str]:
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corps.cli._main", *args], capture_output=True, text=True,
                              timeout=60, check=False)

    return await anyio.to_thread.run_sync(call)


@pytest.fixture
async def shop(actor_system_factory: Any) -> ActorSystem:
    system: ActorSystem = await actor_system_factory()
    await system.spawn(Inventory, WAREHOUSE)
    await system.spawn(StubbornPayments, PAYMENTS)
    await system.spawn(Shipping, COURIER)
    return system


async def test_list_and_show_print_the_log(
    shop: ActorSystem, actor_system: ActorSystem, nats_server: EmbeddedServer, corps_namespace: str
) -> None:
    StubbornPayments.refusing = False
    sid = await actor_system.start_saga(StubbornSaga, order("o1", address=UNDELIVERABLE))
    await actor_system.wait_saga(sid, timeout=10)
    listed = await corps("saga", "--nats", nats_server.url, "--namespace", corps_namespace, "list")
    assert listed.returncode == 0, listed.stderr
    assert sid in listed.stdout
    assert "COMPENSATED" in listed.stdout
    shown = await corps("saga", "--nats", nats_server.url, "--namespace", corps_namespace, "show", sid)
    assert shown.returncode == 0, shown.stderr
    assert f"saga {sid} (StubbornSaga): COMPENSATED" in shown.stdout
    assert "undone" in shown.stdout
    assert "rejected" in shown.stdout  # the courier refused the address
    # Flags after the action too, and JSON; an unknown id in an existing log is "not found" (5).
    as_json = await corps("saga", "list", "--json", "--nats", nats_server.url, "--namespace", corps_namespace)
    assert as_json.returncode == 0, as_json.stderr
    assert [s["saga_id"] for s in json.loads(as_json.stdout)] == [sid]
    unknown = await corps("saga", "show", "nope", "--nats", nats_server.url, "--namespace", corps_namespace)
    assert unknown.returncode == 5
    assert "no saga 'nope'" in unknown.stderr


async def test_retry_finishes_a_failed_saga(
    shop: ActorSystem, actor_system: ActorSystem, nats_server: EmbeddedServer, corps_namespace: str
) -> None:
    StubbornPayments.refusing = True
    sid = await actor_system.start_saga(StubbornSaga, order("o2", address=UNDELIVERABLE))
    assert (await actor_system.wait_saga(sid, timeout=10)).status is SagaStatus.FAILED
    StubbornPayments.refusing = False
    retried = await corps("saga", "--nats", nats_server.url, "--namespace", corps_namespace, "retry", sid,
                          "--saga", "tests.integration.test_sagas:StubbornSaga")
    assert retried.returncode == 0, retried.stderr
    assert "COMPENSATED" in retried.stdout
    assert (await actor_system.saga_status(sid)).status is SagaStatus.COMPENSATED


async def test_show_an_unknown_saga_is_a_clear_error(nats_server: EmbeddedServer, corps_namespace: str) -> None:
    shown = await corps("saga", "--nats", nats_server.url, "--namespace", corps_namespace, "show", "nope")
    assert shown.returncode == 5  # not found: here the whole saga log, which inspection never creates
    assert f"KV bucket '{corps_namespace}-sagas' does not exist (nothing was created" in shown.stderr


async def test_retry_needs_a_saga_class(nats_server: EmbeddedServer, corps_namespace: str) -> None:
    bad = await corps("saga", "--nats", nats_server.url, "--namespace", corps_namespace, "retry", "x",
                      "--saga", "corps.examples.shop.orchestrated:Inventory")
    assert bad.returncode == 2
    assert "not a Saga subclass" in bad.stderr
    assert PlaceOrder.saga_name == "PlaceOrder"
