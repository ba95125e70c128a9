"""Service actors: N stateless instances in a NATS queue group, in one process or several."""

from __future__ import annotations

from collections import Counter

import pytest

from corps import ActorSystem, NoResponders
from tests.integration.domain import Greeter, WhoAmI


async def test_service_instances_in_two_systems_share_the_work(actor_system_factory: object) -> None:
    a: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    b: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    client: ActorSystem = await actor_system_factory()  # type: ignore[operator]
    await a.spawn(Greeter, "greet")
    await b.spawn(Greeter, "greet")
    ref = client.ref(Greeter, "greet")
    # Asks one at a time: each NATS message goes to one member of the queue group.
    nodes = Counter([(await ref.ask(WhoAmI(), timeout=2.0)).node for _ in range(200)])
    assert set(nodes) == {a.node, b.node}, f"one system took every message: {nodes}"
    assert sum(nodes.values()) == 200  # and every message was handled exactly once


async def test_several_service_instances_in_one_system(actor_system: ActorSystem) -> None:
    Greeter.created = 0
    for _ in range(3):
        await actor_system.spawn(Greeter, "pool")
    ref = actor_system.ref(Greeter, "pool")
    instances = Counter([(await ref.ask(WhoAmI(), timeout=2.0)).instance for _ in range(150)])
    assert set(instances) == {1, 2, 3}


async def test_an_unspawned_service_id_is_no_responders(actor_system: ActorSystem) -> None:
    await actor_system.spawn(Greeter, "exists")
    with pytest.raises(NoResponders):
        await actor_system.ref(Greeter, "missing").ask(WhoAmI(), timeout=5.0)
