"""The requester side of ask: pending replies, timeouts, and the reply-frame / 503 decoding."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from corps.core._outbox import Tracker
from corps.errors import AskError, AskTimeout, InvalidMessage, MailboxFull, NoResponders, RemoteError
from corps.wire._client import Throttled
from corps.wire._codec import ERROR_DECODER, RAW_REPLIES, Decoders, ErrorReply, sniff, undecodable

log = logging.getLogger("corps.ask")


class _Pending:
    __slots__ = ("decoders", "future", "subject", "timer")

    def __init__(self, future: asyncio.Future[Any], decoders: Decoders, subject: str) -> None:
        self.future = future
        self.decoders = decoders
        self.subject = subject
        self.timer: asyncio.TimerHandle | None = None


def error_from_reply(subject: str, err: ErrorReply) -> AskError | InvalidMessage:
    """Rebuild the typed error an actor replied with."""
    if err.kind == "InvalidMessage":
        return InvalidMessage(subject, err.message)
    if err.kind == "NoResponders":
        return NoResponders(subject, err.message)
    if err.kind == "MailboxFull":  # the size travels in .type (isdigit() would pass "²", which int() refuses)
        if not (err.type.isdecimal() and len(err.type) < 19):
            return InvalidMessage(subject, f"malformed error reply: MailboxFull of size {err.type[:20]!r}")
        return MailboxFull(subject, int(err.type))
    return RemoteError(subject, err.type, err.message)


class Inbox:
    """Tracks outstanding asks by request id; one subscription ``{inbox}.>`` per system."""

    def __init__(self, tracker: Tracker, on_dead_tells: Any) -> None:
        self._tracker = tracker
        self._on_dead_tells = on_dead_tells
        self._pending: dict[int, _Pending] = {}
        self._next = 0
        self._reply_decoders: dict[Any, Decoders] = {}
        self.late_replies = 0
        self.undecodable = 0
        """Payloads on the inbox that are not reply frames (anyone may publish there): dropped."""
        self.bad_replies = 0
        """Replies whose body did not decode: their ask failed with InvalidMessage."""
        self._quiet = Throttled(log)

    def decoders_for(self, tp: Any) -> Decoders:
        d = self._reply_decoders.get(tp)
        if d is None:
            d = self._reply_decoders[tp] = Decoders(tp)
        return d

    def register(self, reply_type: Any, subject: str) -> tuple[int, asyncio.Future[Any]]:
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = _Pending(fut, self.decoders_for(reply_type), subject)
        return self._next, fut

    async def wait(self, rid: int, fut: asyncio.Future[Any], timeout: float) -> Any:
        """Wait for the reply of ``rid``.

        Raises:
            AskTimeout: no reply in ``timeout`` seconds; the outcome is unknown.
            RemoteError, NoResponders, InvalidMessage, MailboxFull: as the actor replied.
        """
        pending = self._pending[rid]
        pending.timer = asyncio.get_running_loop().call_later(timeout, self._expire, rid, timeout)
        try:
            return await fut
        finally:
            pending.timer.cancel()
            self._pending.pop(rid, None)

    def forget(self, rid: int) -> None:
        self._pending.pop(rid, None)

    def _expire(self, rid: int, timeout: float) -> None:
        p = self._pending.pop(rid, None)
        if p is not None and not p.future.done():
            p.future.set_exception(AskTimeout(p.subject, timeout))

    def take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """The direct route for ``{inbox}.>`` (see ``Route``): reply frames carry no headers."""
        if headers is not None:
            return False  # a status (503): on_msg
        self._replies(data, subject)
        return True

    async def on_msg(self, msg: Any) -> None:
        """nats-py callback for ``{inbox}.>``: reply frames, and 503s for tracked batches."""
        if msg.headers and msg.headers.get("Status") == "503":
            self._no_responders(msg.subject)
            return
        self._replies(msg.data, msg.subject)

    def _replies(self, data: bytes, subject: str | bytes) -> None:
        """Resolve the asks a reply frame answers. Never raises: it runs inside nats-py's parser
        (``take``), and the bytes are untrusted. A frame that does not decode is counted and
        dropped (its rids are unknown: those asks time out); a reply whose body does not decode
        fails its ask with InvalidMessage."""
        _, is_json = sniff(data)
        try:
            replies = RAW_REPLIES[is_json].decode(data)
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes
            self.undecodable += 1
            self._quiet.warning("frame", "undecodable reply frame on %r dropped: %s", subject, undecodable(exc))
            return
        for r in replies:
            p = self._pending.pop(r.rid, None)
            if p is None or p.future.done():
                self.late_replies += 1  # the ask already timed out or was cancelled
                continue
            try:
                if r.ok:
                    _, bare = p.decoders.frame_and_bare(is_json)
                    p.future.set_result(bare.decode(r.body))
                else:
                    p.future.set_exception(error_from_reply(p.subject, ERROR_DECODER[is_json].decode(r.body)))
            except Exception as exc:  # noqa: BLE001 -- untrusted bytes
                self.bad_replies += 1
                name = getattr(p.decoders.type, "__name__", p.decoders.type) if r.ok else "an error reply"
                why = f"reply does not decode as {name}: {undecodable(exc)}"
                p.future.set_exception(InvalidMessage(p.subject, why))

    def _no_responders(self, reply_subject: str) -> None:
        found = self._tracker.lookup(reply_subject)
        if found is None:
            return
        subject, rids, tells = found
        for rid in rids:
            p = self._pending.pop(rid, None)
            if p is not None and not p.future.done():
                p.future.set_exception(NoResponders(subject))
        if tells:
            self._on_dead_tells(subject, tells)

    def fail_all(self, exc_factory: Any) -> None:
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(exc_factory(p.subject))
        self._pending.clear()
