"""Counters and the dead-letter record. Plain ints on the hot path; snapshots for users."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from corps.wire._client import Throttled

if TYPE_CHECKING:
    from corps.core._observe import Observer

log = logging.getLogger("corps.deadletters")

TALLY_PERIOD: Final = 1.0
"""Under a flood (``DeadLetters.tally``), at most one kept entry per this many seconds."""

DEAD_LETTERS_KEPT: Final = 1000
MAX_LAST_ERROR: Final = 256
"""Characters of an endpoint's last error kept for the services API's STATS."""
PAYLOAD_KEPT: Final = 4096
"""Bytes of a refused payload a dead letter keeps: enough to see what it was, and 1,000 dead
letters of hostile 1 MB payloads stay a few MB."""


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that was not processed, and why. Kept in ``system.dead_letters`` (most recent)."""

    subject: str
    reason: str
    message_type: str
    at: float
    payload: bytes = b""
    """The refused bytes (their first PAYLOAD_KEPT), when the message could not be decoded."""


class ClassMetrics:
    """Counters for one actor class on this node."""

    __slots__ = ("bad_headers", "failed", "invalid", "misdirected", "overloaded", "processed", "rejected", "restarts",
                 "stopped", "undecodable", "unrouted")

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0
        self.rejected = 0
        """Handlers that raised StepRejected: a business refusal, answered without supervision."""
        self.invalid = 0
        self.overloaded = 0
        self.restarts = 0
        self.stopped = 0
        self.unrouted = 0
        """Messages for an id this node does not host, while other nodes host the class."""
        self.undecodable = 0
        """Events that did not decode as any type the class handles: dead-lettered at once."""
        self.bad_headers = 0
        """``Corps-Corr`` or ``traceparent`` headers of non-corps senders refused as malformed (too
        long, bad characters): the message is handled with a fresh correlation id instead."""
        self.misdirected = 0
        """Messages refused unhandled because their reply subject is outside the reply prefixes
        (``Security.reply_prefixes``): no caller can make an actor publish its reply elsewhere."""

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class EndpointStats:
    """Per request type of one class on one node, for the services API's STATS:
    ``counts[type] = [requests, errors, ns]``, and the last error.

    Asks only (requests, in the services API's sense): a tell costs the mailbox loop nothing
    here, and is counted per class in ``ClassMetrics``. The time runs from the handler's call to
    its return (or raise)."""

    __slots__ = ("counts", "last_error", "started")

    def __init__(self, types: Iterable[type]) -> None:
        self.counts: dict[type, list[int]] = {tp: [0, 0, 0] for tp in types}
        self.last_error: dict[type, str] = {}
        self.started = time.time()

    def answered(self, tp: type, began: int, error: str | None = None) -> None:
        """An ask of type ``tp`` begun at ``began`` (``perf_counter_ns``) was answered, or failed."""
        count = self.counts.get(tp)
        if count is None:
            return
        count[0] += 1
        count[2] += time.perf_counter_ns() - began
        if error is not None:
            count[1] += 1
            self.last_error[tp] = error[:MAX_LAST_ERROR]


class DeadLetters:
    """Counts, logs and keeps recent dead letters; nothing is dropped without passing through here."""

    def __init__(self) -> None:
        self.count = 0
        self.recent: deque[DeadLetter] = deque(maxlen=DEAD_LETTERS_KEPT)
        self._waiters: list[tuple[int, anyio.Event]] = []
        self._quiet = Throttled(log)
        self._tallied_at = -TALLY_PERIOD
        self.observer: Observer | None = None

    def record(self, subject: str, reason: str, message_type: str = "?", n: int = 1, payload: bytes = b"") -> None:
        self.count += n
        if self.observer is not None:
            self.observer.dead_letter(subject, message_type, n)
        self.recent.append(DeadLetter(subject, reason, message_type, time.time(), payload[:PAYLOAD_KEPT]))
        # Throttled per kind of reason (its first words, never the subject: a flood of ids must not
        # grow the table): a flood of dead letters costs counters, not a log line each.
        kind = " ".join(reason.split(" ", 2)[:2])[:32]
        self._quiet.warning(kind, "dead letter%s on %s (%s): %s", f" x{n}" if n > 1 else "", subject, message_type,
                            reason)
        if self._waiters:
            self._wake()

    def tally(self, subject: str, reason: str, message_type: str = "?", n: int = 1, payload: bytes = b"") -> None:
        """Count ``n`` dead letters of a flood: each is counted, but an entry is kept (and logged,
        throttled) at most once per ``TALLY_PERIOD`` seconds, so shedding stays cheap per message."""
        now = time.monotonic()
        if now - self._tallied_at >= TALLY_PERIOD:
            self._tallied_at = now
            self.record(subject, reason, message_type, n, payload)
            return
        self.count += n
        if self.observer is not None:
            self.observer.dead_letter(subject, message_type, n)
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        for threshold, event in self._waiters:
            if self.count >= threshold:
                event.set()
        self._waiters = [(t, e) for t, e in self._waiters if not e.is_set()]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` dead letters have been recorded (a test barrier).

        Raises:
            TimeoutError: fewer than ``count`` within ``timeout`` seconds.
        """
        if self.count >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        with anyio.fail_after(timeout):
            await event.wait()
