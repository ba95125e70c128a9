"""SagaConfig, the replicas it chooses from the server's INFO, and the size arithmetic of ``_size``."""

from __future__ import annotations

import pytest

from corps import ActorSystem, SagaConfig
from corps.examples.shop.messages import OrderRequest
from corps.examples.shop.orchestrated import PlaceOrder
from corps.saga import Retry, Saga, Step
from corps.saga._config import cluster_size, replicas_for
from corps.saga._size import MESSAGE_MAX, clip, headroom

ALONE = {"server_name": "n1", "max_payload": 1048576}
CLUSTER_OF_3 = {"cluster": "corps", "connect_urls": ["10.0.0.1:4222", "10.0.0.2:4222", "10.0.0.3:4222"]}


def test_replicas_follow_the_cluster_unless_set() -> None:
    assert cluster_size(ALONE) == 1
    assert cluster_size(CLUSTER_OF_3) == 3
    assert replicas_for(SagaConfig(), ALONE) == 1
    assert replicas_for(SagaConfig(), CLUSTER_OF_3) == 3
    assert replicas_for(SagaConfig(), {"cluster": "c", "connect_urls": ["a:1", "b:1"]}) == 1  # R3 needs 3
    assert replicas_for(SagaConfig(), {**CLUSTER_OF_3, "connect_urls": [*CLUSTER_OF_3["connect_urls"], "d:1"]}) == 3
    assert replicas_for(SagaConfig(replicas=1), CLUSTER_OF_3) == 1
    assert replicas_for(SagaConfig(replicas=5), ALONE) == 5  # the server refuses it, and says so


def test_a_cluster_that_advertises_no_peers_gets_one_replica_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert replicas_for(SagaConfig(), {"cluster": "quiet"}) == 1
    assert "set SagaConfig(replicas=3)" in caplog.text


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"replicas": 0}, "replicas must be None or 1..5"),
    ({"lease": 0.0}, "lease must be a finite number > 0"),
    ({"scan_interval": float("inf")}, "scan_interval must be a finite number > 0"),
    ({"heartbeat": 1.0}, "at least twice the heartbeat"),
    ({"memory_records": 0}, "memory_records must be an int >= 1"),
    ({"memory_horizon": -1.0}, "memory_horizon must be a finite number > 0"),
])
def test_a_config_out_of_range_is_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SagaConfig(**kwargs)  # type: ignore[arg-type]


def test_the_old_lease_and_scan_keywords_still_configure_the_coordinator() -> None:
    system = ActorSystem("nats://127.0.0.1:1", saga_lease=0.6, saga_scan_interval=0.1)
    assert system.saga_config == SagaConfig(lease=0.6, scan_interval=0.1)
    system = ActorSystem("nats://127.0.0.1:1", saga=SagaConfig(replicas=3), saga_lease=2.0)
    assert system.saga_config == SagaConfig(replicas=3, lease=2.0)


class Patient(Saga[OrderRequest]):
    steps = tuple(Step(s.name, to=s.to, key=s.key, request=s.request, undo=s.undo,
                       retry=Retry(max_attempts=20)) for s in PlaceOrder.steps)


def test_the_headroom_counts_every_attempt_a_saga_allows() -> None:
    assert 50_000 < headroom(PlaceOrder) < 100_000  # 3 steps, 10 attempts and 10 undo attempts each
    assert headroom(Patient) > headroom(PlaceOrder)  # more attempts, more room kept


def test_an_error_message_is_cut_to_its_budget_in_bytes() -> None:
    assert clip("short") == "short"
    cut = clip("é" * MESSAGE_MAX)
    assert len(cut.encode()) <= MESSAGE_MAX
    assert cut.endswith("...")
