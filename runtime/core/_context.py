"""The message being handled, so that what a handler sends carries its correlation and causation.

Each drain task sets the context variable once, to a mutable ``Current`` whose ``item`` (the
envelope) it updates per message, and ``reply``/``is_json`` per batch of a frame: one attribute
store per message instead of a ContextVar set/reset pair.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

from corps.wire._headers import valid_traceparent


class Carrier:
    """A mailbox item that is not a message (an event delivery): it knows its own ids, which
    are worked out only if the handler sends something."""

    __slots__ = ()

    def ids(self) -> tuple[str, str]:
        """(correlation id, id of this item as the cause of what the handler sends)."""
        raise NotImplementedError

    def traceparent(self) -> str:
        """The W3C traceparent this item arrived with, raw and validated ("" if none)."""
        return ""


class Current:
    """The mailbox item being handled: its envelope (None between messages), the reply subject
    of the NATS message it came in, and whether to reply as JSON."""

    __slots__ = ("_counted", "_published", "ext", "held", "is_json", "item", "reply")

    def __init__(self, ext: str = "ext") -> None:
        self.item: Any = None
        """The envelope being handled (``corps.wire._codec.Envelope``), None outside a handler."""
        self.reply = ""
        self.is_json = False
        self.ext = ext
        """The sender part of the id of a message from a client that is not corps: ``ext-{node}``,
        so that ids given on different nodes never meet."""
        self._counted: Any = None
        self._published = 0
        self.held: list[Awaitable[object]] | None = None
        """Set by ``hold_reply``: what must finish before the item's reply goes out."""

    def ids(self) -> tuple[str, str]:
        """(correlation id, message id) of the message being handled.

        A message with an idempotency key (a saga step's ask) has the key as its id: the same on
        every attempt, and what ``corps trace`` finds in the saga log to nest the step's events.
        """
        env, reply = self.item, self.reply
        if isinstance(env.msg, Carrier):
            return env.msg.ids()
        if env.key:
            return (env.corr or env.key), env.key
        # Corps frames carry the sender's inbox as NATS reply subject: {ns}.inbox.{node}.{n}
        parts: list[str] = reply.split(".") if reply else []
        sender = parts[-2] if len(parts) >= 4 and parts[-3] == "inbox" else self.ext
        mid = f"{sender}-{env.mid}"
        return (env.corr or mid), mid

    def publish_id(self, event_type: type) -> str | None:
        """The ``Nats-Msg-Id`` of the next event the handler of a keyed message (a saga step's
        ask) publishes, or None for a message without a key.

        Stable across the step's attempts, so a retried step's events are deduplicated by the
        stream, as a retried event handler's are. The type is in the id: a retry that takes
        another path and publishes another event type is not taken for a repeat. Counted only
        when the handler publishes, so the mailbox loop pays nothing for it.
        """
        key = self.item.key
        if not key:
            return None
        if self._counted is not self.item:
            self._counted = self.item
            self._published = 0
        else:
            self._published += 1
        return f"{key}:{event_type.__name__}:{self._published}"


current: ContextVar[Current | None] = ContextVar("corps_current", default=None)


def current_ids() -> tuple[str, str] | None:
    cur = current.get()
    return cur.ids() if cur is not None and cur.item is not None else None


def current_idempotency_key() -> str | None:
    """The idempotency key of the message being handled by the calling task, if it has one."""
    cur = current.get()
    if cur is None or cur.item is None:
        return None
    return cur.item.key or None


def current_traceparent() -> str:
    """The W3C ``traceparent`` the message being handled arrived with ("" if none): from the
    header of a tell or ask sent by a client that is not corps, or of an event. Raw and validated
    (``corps.wire._headers.valid_traceparent``), for tracing to continue the caller's trace."""
    cur = current.get()
    if cur is None or cur.item is None:
        return ""
    env = cur.item
    if isinstance(env.msg, Carrier):
        return env.msg.traceparent()
    # Validated again: a frame's trace field is anyone's bytes too, not only a checked header's.
    return (valid_traceparent(env.tp) or "") if env.tp else ""


def current_correlation_id() -> str | None:
    """The correlation id of the message being handled by the calling task, if any."""
    ids = current_ids()
    return ids[0] if ids is not None else None


def hold_reply(work: Awaitable[object]) -> None:
    """Send the reply of the message being handled only once ``work`` has finished, off its mailbox.

    The handler returns, and the instance takes its next message at once; ``work`` (a record
    write the reply must not overtake) is awaited in a task of its own, then the reply is sent.
    Works held by one message finish in the order they were held. Whatever the handler wrote to
    the connection before returning leaves the process before the mailbox's next message runs. For the saga participants
    (``corps.saga``): a handler that holds must itself keep the order its later messages need.

    Raises:
        RuntimeError: called outside a handler that a mailbox runs.
    """
    cur = current.get()
    if cur is None or cur.item is None:
        raise RuntimeError("hold_reply() outside a handler run by a mailbox")
    if cur.held is None:
        cur.held = [work]
    else:
        cur.held.append(work)
