"""The reference shop as applications: what ``corps run`` hosts and ``corps provision`` sets up.

One App per deployable service (the orchestrated participants, the saga coordinator, the
choreographed services), and ``app`` with all of them in one process, for development::

    corps run corps.examples.shop.app:app                     # everything, on an embedded server
    corps provision corps.examples.shop.app:app --nats URL    # streams, consumers, buckets: once, by a job
    corps run corps.examples.shop.app:inventory --nats URL    # one service; run as many processes as needed

Every App shares the namespace and the event and saga settings, so that whichever process
provisions first creates what the others then accept.
"""

from __future__ import annotations

import os
from typing import Any

from corps import App, EventsConfig, SagaConfig
from corps.examples.shop import choreographed, orchestrated
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, PlaceOrder

NAMESPACE = "shop"
REPLICAS = int(os.environ.get("SHOP_REPLICAS", "1"))
"""Replicas of the event streams: 3 on a 3-node cluster (deploy/ sets SHOP_REPLICAS=3). The saga
buckets follow the cluster on their own (SagaConfig(replicas=None))."""
EVENTS = EventsConfig(replicas=REPLICAS)
SAGA = SagaConfig()
DRAIN_TIMEOUT = 10.0
"""Seconds a stopping process finishes in-flight messages; container grace periods must exceed it."""



def _app(name: str, **parts: Any) -> App:
    return App(name=name, namespace=NAMESPACE, events=EVENTS, saga=SAGA, drain_timeout=DRAIN_TIMEOUT, **parts)


inventory = _app("inventory", actors={orchestrated.Inventory: WAREHOUSE})
payments = _app("payments", actors={orchestrated.Payments: PAYMENTS})
shipping = _app("shipping", actors={orchestrated.Shipping: COURIER})
orders = _app("orders", sagas=[PlaceOrder])
"""The PlaceOrder coordinator: run two or more; they share the sagas and take over a crashed one's."""
choreography = _app("choreography", actors=dict(choreographed.SERVICES),
                     serve_events=[choreographed.Order])
"""The choreographed flow: its three services, and Order entities activated by their events."""

app = _app("shop",
           actors={**inventory.actors, **payments.actors, **shipping.actors, **choreography.actors},
           serve_events=[choreographed.Order], sagas=[PlaceOrder])
"""Everything in one process: for development and the README's tour."""
