"""Invariant 5 (S12): the orchestrated and choreographed shops reach the same final business state."""

from __future__ import annotations

import pytest


@pytest.mark.skip(reason="missing: fault injection for @on_event consumers (actors/shop/choreographed.py), "
                         "so one FaultPlan cannot yet be replayed on the choreographed flow; the fault-free "
                         "equivalence is example-tested in tests/integration/test_events_shop.py")
def test_orchestrated_and_choreographed_shops_agree_for_the_same_orders_and_faults() -> None:
    """Interface: for orders ~ st.lists(shop_orders()) and plan ~ benign_fault_plans(...), run
    SagaWorld(FastPlaceOrder) and the choreographed shop with plan projected onto its consumers
    (duplicate -> republish with a new Nats-Msg-Id, transient -> nak n times, delay -> late ack);
    compare final stock, money, and COMPLETED/COMPENSATED vs completed/cancelled per order."""
