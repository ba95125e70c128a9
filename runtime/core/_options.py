"""Per-class actor options: a frozen, typed Struct with named defaults."""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from corps.core._supervision import Resume, Supervision

DEFAULT_MAILBOX_SIZE: Final = 10_000
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
DEFAULT_PENDING_LIMIT: Final = 10_000
DEFAULT_PENDING_BYTES: Final = 32 * 1024 * 1024
DEFAULT_VERSION: Final = "0.0.0"
# Semantic Versioning 2.0.0, as the NATS services API requires of a service's version.
_SEMVER: Final = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
                            r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
DEFAULT_IDLE_AFTER: Final = 60.0


class ActorOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options given as a class keyword: ``class Inventory(Actor, options=ActorOptions(...))``."""

    mailbox_size: int = DEFAULT_MAILBOX_SIZE
    """Messages queued per instance, at most; beyond it a message is refused at once (an ask gets
    MailboxFull, a tell becomes a dead letter) and counted as ``overloaded``. Half of it is the
    high-water mark (see ``overload_wait``)."""
    supervision: Supervision = Resume()
    """What a handler failure does to the instance: Resume(), Restart(...) or Stop()."""
    service: bool = False
    """A stateless service: every instance spawned under one id joins a NATS queue group, in
    this process or others, and any instance takes a message. Entity actors (the default) are
    one instance per id, all routed from one wildcard subscription per class."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest accepted message, checked before decoding; larger ones are refused as invalid."""
    name: str | None = None
    """The class's name in subjects (default: the class name)."""
    overload_wait: float = 1.0
    """Seconds an instance's mailbox may stay above its high-water mark (half of ``mailbox_size``)
    before new messages for it are refused, until it drains below the mark. Nothing waits: one
    busy instance never holds up the others of its class."""
    pending_limit: int = DEFAULT_PENDING_LIMIT
    """Messages the class's subscription may hold for its slow path (decoding outside the
    parser, a mailbox's refusals) on this node; beyond it they are refused in the parser."""
    pending_bytes: int = DEFAULT_PENDING_BYTES
    """Bytes the class's subscription may hold for its slow path, as ``pending_limit``."""
    version: str = DEFAULT_VERSION
    """The class's version in the NATS services API (``$SRV.INFO``): a semantic version."""

    virtual: bool = False
    """A virtual entity class (corps.virtual): never spawned by hand; the first message for an id
    activates it on one of the nodes that host the class (``system.host(cls)``), and it is
    deactivated after ``idle_after`` seconds without messages."""
    idle_after: float = DEFAULT_IDLE_AFTER
    """Virtual classes: seconds without a message after which an instance is deactivated
    (``on_stop`` runs; memory is bounded by the active set)."""

    durable: Literal["message", "deactivate"] | None = None
    """Virtual classes: the instance's ``state`` attribute (a msgspec Struct, declared with a
    default on the class) is loaded from KV on activation and saved after each handled message
    (``"message"``) or when the instance is deactivated or moved (``"deactivate"``)."""

    def __post_init__(self) -> None:
        if self.mailbox_size < 1:
            raise ValueError("mailbox_size must be at least 1")
        if self.max_message_bytes < 16:
            raise ValueError("max_message_bytes must be at least 16")
        if self.pending_limit < 1 or self.pending_bytes < self.max_message_bytes:
            raise ValueError("pending_limit must be at least 1 and pending_bytes at least max_message_bytes")
        if self.overload_wait < 0:
            raise ValueError("overload_wait must not be negative")
        if not isinstance(self.version, str) or _SEMVER.fullmatch(self.version) is None:
            raise ValueError(f"version must be a semantic version such as '1.2.3', not {self.version!r}")
        if self.virtual and self.service:
            raise ValueError("a class is virtual (one activation per id) or a service (a queue group), not both")
        if self.durable is not None and not self.virtual:
            raise ValueError("durable state is for virtual classes (virtual=True)")
        if self.idle_after <= 0:
            raise ValueError("idle_after must be positive")
