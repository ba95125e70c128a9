"""An actor instance's cell on its node, and its mailbox: batches of envelopes as frames brought them.

A NATS message of many envelopes enters the mailbox as one ``Batch``, the list its one decode
made: nothing is built per message on the way in, and the drain loop (``corps.core._host``) runs
the list with a ``for`` loop. ``mailbox_size`` bounds messages, not batches: ``Cell.depth``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corps.wire._codec import Envelope, Tells

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

    from corps.core._actor import Actor

Item = tuple[Envelope[Any], str, bool]
"""One message: (envelope, reply subject, reply as JSON). rid 0 tell, > 0 ask, -1 bare ask."""
Batch = tuple[list[Envelope[Any]] | Tells[Any], str, bool]
"""A mailbox entry: the envelopes of one NATS message that the mailbox admitted, as decoded
(one list, no object per message; a tells frame as its ``Tells``, no envelope at all), with the
reply subject and format they share."""


class TellItem:
    """The envelope of the message being handled from a tells frame, as ``Current.item``: one
    object per drain task, updated in place per message (``Envelope(msg, 0, base + i)`` in effect).
    Anything that keeps an item past its handler (a held reply, a failure) gets a real Envelope."""

    __slots__ = ("base", "i", "msg")  # set by the drain loop before a handler can read them (no __init__:
    base: int                          # one is made per drain run, and object's own is the cheapest)
    i: int
    msg: Any

    rid = 0  # what a root tell's envelope holds besides its message and id: the class's, read-only
    corr = cause = key = tp = ""

    @property
    def mid(self) -> int:
        """The message's id: worked out only when asked (a handler that sends)."""
        return self.base + self.i


def envelopes_of(envs: list[Envelope[Any]] | Tells[Any]) -> list[Envelope[Any]]:
    """A mailbox entry's messages as envelopes (a tells frame's built now)."""
    return envs if isinstance(envs, list) else envs.envelopes()


def index_of(envs: list[Envelope[Any]], env: Envelope[Any]) -> int:
    """Where ``env`` is in ``envs``, by identity (equal envelopes may repeat)."""
    return next(i for i, e in enumerate(envs) if e is env)


class Cell:
    """One actor instance on this node: its actor, its mailbox, and their state."""

    __slots__ = ("actor", "actor_id", "busy", "depth", "events", "guard", "marks", "over_since", "queue", "restarts",
                 "stopped", "sub", "subject", "used")

    def __init__(self, actor_id: str, subject: str) -> None:
        self.actor_id = actor_id
        self.subject = subject
        self.actor: Actor | None = None
        self.queue: deque[Batch] | None = None
        self.depth = 0
        """Messages in the mailbox, not yet taken by the drain loop: what mailbox_size bounds."""
        self.events: list[Envelope[Any]] | None = None
        """The list of event deliveries ``enqueue_event`` queued last: more are appended to it while
        it is the mailbox's last entry (not yet taken), so a pull batch is one entry."""
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
