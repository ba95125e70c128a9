"""An actor instance's cell on its node, and its mailbox: batches of envelopes as frames brought them.

A NATS message of many envelopes enters the mailbox as one ``Batch``, the list its one decode
made: nothing is built per message on the way in, and the drain loop (``corps.core._host``) runs
the list with a ``for`` loop. ``mailbox_size`` bounds messages, not batches: ``Cell.depth``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corps.wire._codec import Envelope

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

    from corps.core._actor import Actor

Item = tuple[Envelope[Any], str, bool]
"""One message: (envelope, reply subject, reply as JSON). rid 0 tell, > 0 ask, -1 bare ask."""
Batch = tuple[list[Envelope[Any]], str, bool]
"""A mailbox entry: the envelopes of one NATS message that the mailbox admitted, as decoded
(one list, no object per message), with the reply subject and format they share."""


def index_of(envs: list[Envelope[Any]], env: Envelope[Any]) -> int:
    """Where ``env`` is in ``envs``, by identity (equal envelopes may repeat)."""
    return next(i for i, e in enumerate(envs) if e is env)


class Cell:
    """One actor instance on this node: its actor, its mailbox, and their state."""

    __slots__ = ("actor", "actor_id", "busy", "depth", "guard", "marks", "over_since", "queue", "restarts", "stopped",
                 "sub", "subject", "used")

    def __init__(self, actor_id: str, subject: str) -> None:
        self.actor_id = actor_id
        self.subject = subject
        self.actor: Actor | None = None
        self.queue: deque[Batch] | None = None
        self.depth = 0
        """Messages in the mailbox, not yet taken by the drain loop: what mailbox_size bounds."""
        self.busy = True  # until on_start has run, messages wait in the mailbox
        self.stopped = False
        self.restarts: list[float] | None = None
        self.sub: Subscription | None = None
        self.over_since: float | None = None  # when the mailbox last went above its high-water mark
        self.guard: Callable[[], bool] | None = None
        """Virtual activations: checked before each message; False means this node may no longer
        handle the id (its membership lease ran out: paused or partitioned), so it is fenced off."""
        self.used = True  # virtual activations: a message arrived since the last idle sweep
        self.marks: dict[str, int] | None = None
        """Virtual activations: per sender (its inbox), the sequence number of the last message
        handled, handed to the next owner of the id so that it skips what was handled here."""
