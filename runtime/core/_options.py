"""Per-class actor options: a frozen, typed Struct with named defaults."""

from __future__ import annotations

from typing import Final

import msgspec

from corps.core._supervision import Resume, Supervision

DEFAULT_MAILBOX_SIZE: Final = 10_000
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024


class ActorOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options given as a class keyword: ``class Inventory(Actor, options=ActorOptions(...))``."""

    mailbox_size: int = DEFAULT_MAILBOX_SIZE
    """Messages buffered per instance; beyond it a message is refused and counted as overload."""
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
    """Seconds a full mailbox holds up the class's subscription (back-pressure, NATS buffers
    meanwhile) before the messages that do not fit are refused."""

    def __post_init__(self) -> None:
        if self.mailbox_size < 1:
            raise ValueError("mailbox_size must be at least 1")
        if self.max_message_bytes < 16:
            raise ValueError("max_message_bytes must be at least 16")
