"""``VirtualConfig``: membership, placement and hand-over timing of virtual actors (corps.virtual)."""

from __future__ import annotations

from typing import Final

import msgspec

from corps.wire._partition import MAX_PARTITIONS

DEFAULT_MEMBER_TTL: Final = 3.0
DEFAULT_GRACE: Final = 0.3
DEFAULT_CLAIM_WAIT: Final = 10.0
DEFAULT_MAX_ACTIVATING: Final = 10_000
DEFAULT_PARTITIONS: Final = 32


class VirtualConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the nodes that host virtual classes find each other and hand ids over.

    ``ActorSystem(virtual=VirtualConfig(...))``; every node of a namespace should use the same.
    """

    member_ttl: float = DEFAULT_MEMBER_TTL
    """Seconds a node stays a member without a heartbeat. A node that dies is detected within
    about this time plus one heartbeat (the KV bucket's max age expires its record); a node whose
    own lease (this, less 10%, from the heartbeat it last saw acknowledged) runs out stops
    handling every id at once (it may be paused or cut off, and its ids taken over)."""
    heartbeat: float | None = None
    """Seconds between heartbeats (default: a third of ``member_ttl``)."""
    grace: float = DEFAULT_GRACE
    """On a membership change, how long a node keeps handling an id that moves away before it
    drains and hands it over: the time the other nodes have to see the same change and start
    holding the id's new messages. Longer than the KV watch's delivery across the cluster."""
    claim_wait: float = DEFAULT_CLAIM_WAIT
    """How long a new owner waits for the previous owner to hand an id over; past it, the
    messages held for the id are dropped (counted as ``fenced``; asks time out)."""
    max_activating: int = DEFAULT_MAX_ACTIVATING
    """Activations in progress (claiming ownership) per class and node, at most; a message that
    would start one more waits (back-pressure: the class's intake pauses, later messages wait
    behind it in order, within the class's pending bounds, beyond which they are shed)."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions of the keyed events of a virtual class (``@on_event(key=...)``): each is
    consumed by one hosting node at a time, and an id is placed with its partition, so its
    events and its messages reach the same activation. Every node of a namespace must use the
    same number (changing it moves keys between partitions: drain the events first)."""
    replicas: int = 1
    """Replicas of the membership and ownership KV buckets (3 in a 3-node cluster survives a
    server's loss)."""

    def __post_init__(self) -> None:
        if self.member_ttl <= 0 or self.grace < 0 or self.claim_wait <= 0:
            raise ValueError("member_ttl and claim_wait must be positive, grace not negative")
        if self.heartbeat is not None and not 0 < self.heartbeat < self.member_ttl:
            raise ValueError("heartbeat must be positive and shorter than member_ttl")
        if self.max_activating < 1 or self.replicas < 1:
            raise ValueError("max_activating and replicas must be at least 1")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}")

    @property
    def interval(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.member_ttl / 3
