"""``App.start`` on a real system: what it spawns, and the readiness it reports (what
``corps run --http-port`` serves as /readyz)."""

from __future__ import annotations

from corps import ActorSystem, App
from corps.examples.demo import Account, GetBalance, Pricing
from corps.system._app import Ready


async def test_start_spawns_each_id_and_each_service_instance_and_reports_no_coordinator_without_sagas(
        actor_system: ActorSystem) -> None:
    app = App(name="x", actors={Account: ["a1", "a2"]}, services={Pricing: {"p": 3}},
              namespace=actor_system.namespace)
    calls: list[tuple[str, int, int]] = []
    ready = await app.start(actor_system, lambda ref, n, of: calls.append((ref.actor_id, n, of)))
    assert ready == Ready(spawned=5, consumers=(), coordinator=False)
    assert calls == [("a1", 1, 1), ("a2", 1, 1), ("p", 1, 3), ("p", 2, 3), ("p", 3, 3)]
    assert (await actor_system.ref(Account, "a2").ask(GetBalance(), timeout=5)).amount == 0
