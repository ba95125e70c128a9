"""EventsConfig: stream and consumer settings, with safe defaults, in one frozen Struct."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

DAY: Final = 86_400.0


class EventsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a system's event streams and consumers are set up: ``ActorSystem(events=EventsConfig(...))``.

    Streams are created when the system starts (if the server has JetStream), consumers when the
    first instance of a class with ``@on_event`` handlers is spawned. Both are checked against
    what exists: a difference raises ``ProvisioningConflict`` listing every field.
    """

    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    """3 for a cluster that must survive a node loss (R1 is unavailable while its server is down)."""
    retention: Literal["limits", "interest"] = "limits"
    duplicate_window: float = 120.0
    """Seconds during which a second publish with the same Nats-Msg-Id is dropped by the stream."""
    max_age: float = 7 * DAY
    max_bytes: int = -1
    dlq_max_age: float = 30 * DAY
    ack_wait: float = 4.0
    """Seconds before an unacked delivery is redelivered: what a killed consumer held (and what was
    published into its open pull) reaches another node within this. Long handlers and held-back
    events are kept alive automatically (an in-progress ack every third of it), so a short
    ack_wait costs nothing but those acks. (Consumers provisioned with another value raise
    ProvisioningConflict: set it to match, or recreate them.)"""
    max_ack_pending: int = 1000
    """Deliveries a consumer holds unacked (across all nodes): the bound on concurrent work."""
    batch: int = 500
    """Messages asked for per pull request."""
    fetch_expires: float = 5.0
    heartbeat: float = 1.0
    """Idle heartbeat of a pull request; two missed ones mean the pull is dead (server restart)."""
    idempotency_ttl: float = DAY
    """How long processed event ids are remembered for ``@on_event(idempotent=True)``."""
    publish_timeout: float = 10.0
    """Total time a publish keeps retrying (503, timeouts) before PublishFailed."""
    publish_attempt_timeout: float = 2.0
