"""Coalescing sender: messages to one subject within one loop iteration travel as one NATS message.

The first message in an idle loop iteration is published at once (no added latency for a lone
ask); it opens a *window* that closes at the end of the iteration (``call_soon``). Everything sent
while the window is open, or while earlier batches are still queued, is appended to its subject's
batch, and the flusher task publishes each batch as one frame. Per subject the order is the send
order: a message is published directly only when nothing at all is queued before it.

Root tells (``tell=True``: no ask, no ids but a sequence number) go into a subject's *tells*
batch, published as a tells frame (``corps.wire._codec.Tells``); everything else into its
envelope batch. A subject has at most one of the two open: opening one seals the other, so the
send order holds across the two. The outbox numbers what its node sends (``seq``): an envelope
when it is encoded (``next_id``), a tells batch when it is sealed or published, and
``next_id`` seals the subject's open tells batch first, so that ids rise in send order per
subject (what a virtual actor's takeover marks rely on).

Bounded: ``send`` grants each open (tracked) batch *room* within the frame limit and the memory
bound, reserved at once; ``push`` and ``ActorRef.tell`` then append with one subtraction per
part, and go to ``send`` when the room is used up (``_Batch``).

Measured (bench/core.py): one-way tells go several times faster than per-message publish, because
nats-py's parser and our decoder then run once per batch, not once per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from corps.errors import InvalidMessage
from corps.wire._codec import FRAME_OVERHEAD, TELLS_OVERHEAD, join_frame, lone_tell_frame, tells_frame

HIGH_WATER: Final = 8 * 1024 * 1024
"""Queued bytes at which senders wait for the flusher: bounded memory under a tight tell loop."""

Publish = Callable[[str, bytes, str], Awaitable[None]]


FIRST_GRANT: Final = 4 * 1024
MAX_GRANT: Final = 256 * 1024
"""Room a batch gets for parts taken without a check: the first grant, and the most one grant
doubles up to. A batch that few messages go to reserves little of the memory bound."""


class _Batch:
    """One subject's queued parts.

    ``room`` is what the hot path (``Outbox.push``, ``ActorRef.tell``) may still append without
    any other check, one subtraction per part: granted by ``send`` within the frame limit and
    reserved from the memory bound (``_queued`` counts it when granted). An untracked (reply)
    batch gets none. The frame's size is ``size + grant - room``.
    """

    __slots__ = ("base", "grant", "parts", "rids", "room", "size", "tells", "tracked")

    def __init__(self, tracked: bool, tells: bool = False) -> None:
        self.parts: list[bytes] = []
        self.rids: list[int] = []  # the asks among parts; the rest are tells
        self.tells = tells  # a tells batch: parts are messages, numbered from base once sealed
        self.base = 0
        self.size = TELLS_OVERHEAD if tells else FRAME_OVERHEAD
        self.tracked = tracked
        self.room = 0
        self.grant = 0


class Outbox:
    """Queue of outgoing frames, one batch per subject per loop iteration.

    ``track`` (on actor subjects) gives the NATS message a reply subject ``{inbox}.{n}``: replies
    to asks come back there, and if nobody subscribes the server answers 503 there, which
    ``Tracker`` maps back to the batch's asks (NoResponders) and tells (dead letters).
    """

    def __init__(self, publish: Publish, limit: int, is_json: bool, tracker: Tracker, coalesce: bool = True) -> None:
        self._publish = publish
        self._coalesce = coalesce
        self.limit = limit
        self._is_json = is_json
        self._tracker = tracker
        self._batches: dict[str, _Batch] = {}
        self._tells: dict[str, _Batch] = {}  # root tells batches (tells frames); see the module doc
        self._sealed: list[tuple[str, _Batch | _RawBatch]] = []
        self._queued = 0
        self._window = False
        self._flushing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flush_done = asyncio.Event()
        self.nats_messages = 0
        self.seq = 0
        """The last id (mid) given to a message sent by this node: ``next_id``, ``_number``."""

    def next_id(self, subject: str) -> int:
        """The id of an envelope about to be encoded for ``subject``: after the ids of the root
        tells sent to it before (its open tells batch is sealed and numbered first)."""
        batch = self._tells.pop(subject, None)
        if batch is not None:
            self._seal(subject, batch)
        self.seq += 1
        return self.seq

    def _number(self, batch: _Batch) -> _Batch:
        """Give a tells batch its ids, once: ``base`` to ``base + len(parts) - 1`` (an envelope
        batch's parts carry theirs)."""
        if batch.tells and not batch.base:
            batch.base = self.seq + 1
            self.seq += len(batch.parts)
        return batch

    def push(self, subject: str, part: bytes, rid: int = 0) -> bool:
        """Queue ``part`` for ``subject`` without awaiting: the hot path of ask (``ActorRef.tell``
        inlines it: keep the two alike).

        Returns False when the caller must ``await send(...)`` instead: there is no open batch
        (the part would be published directly, or start one), or its room is used up (a new
        grant, a new chunk, the memory bound, or a part over the limit, which send refuses).
        Never raises.
        """
        # A batch exists only while something is queued, so the direct-publish case never comes
        # here, and its flush is already arranged (send() woke the flusher, or the window's end
        # will, or a running flush takes it): no wake-up per part. The frame limit and the
        # memory bound are in the room send() granted: one subtraction per part.
        batch = self._batches.get(subject)
        if batch is None:
            return False
        room = batch.room - len(part) - 1
        if room < 0:
            return False
        batch.room = room
        batch.parts.append(part)
        if rid:
            batch.rids.append(rid)
        return True

    async def send(self, subject: str, part: bytes, rid: int = 0, *, track: bool = True, tell: bool = False) -> None:
        """Queue (or publish now) one encoded envelope or reply for ``subject``; with ``tell``,
        ``part`` is the encoded message of a root tell, for a tells frame.

        Raises:
            InvalidMessage: the encoded part is larger than the payload limit.
        """
        cost = len(part) + 1  # what the part adds to its frame, at most (a comma in JSON)
        if cost + (TELLS_OVERHEAD if tell else FRAME_OVERHEAD) > self.limit:
            raise InvalidMessage(subject, f"encoded message is {len(part)} bytes, over the {self.limit}-byte limit")
        if not (self._window or self._flushing or self._queued):
            if self._coalesce:
                self._window = True
                asyncio.get_running_loop().call_soon(self._close_window)
            # A lone message: a one-element frame, without a batch object (the uncoalesced hot path).
            if tell:  # as one envelope: alone, the cheapest for the receiver
                self.seq += 1
                frame = lone_tell_frame(self.seq, part, self._is_json)
            else:
                frame = (b"[" + part + b"]") if self._is_json else b"\x91" + part
            await self._emit_frame(subject, frame, [rid] if rid else [], 0 if rid else 1, track)
            return
        batches, others = (self._tells, self._batches) if tell else (self._batches, self._tells)
        if subject in others:  # the other kind of batch is open: it goes first, as it was sent first
            self._seal(subject, others.pop(subject))
        found = batches.get(subject)
        last = 0
        if found is not None:  # settle what the hot path took: its size, and the room it left
            last = found.grant
            self._settle(found)
        if found is None:
            batch = batches[subject] = _Batch(track, tell)
        elif found.size + cost > self.limit:
            self._seal(subject, found)
            batch = batches[subject] = _Batch(track, tell)
        else:
            batch = found
        batch.parts.append(part)
        batch.size += cost
        if rid:
            batch.rids.append(rid)
        self._queued += len(part)
        if batch.tracked:  # room for the hot path: within the frame limit and the memory bound
            grant = min(max(2 * last, FIRST_GRANT), MAX_GRANT, self.limit - batch.size, HIGH_WATER - self._queued)
            if grant > 0:
                batch.room = batch.grant = grant
                self._queued += grant
        if not self._window:
            self._wake.set()
        if self._queued > HIGH_WATER:
            self._wake.set()
            self._idle.clear()
            await self._idle.wait()

    def _seal(self, subject: str, batch: _Batch) -> None:
        """No more parts for ``batch``: settled, numbered (a tells batch), queued to publish in order."""
        self._sealed.append((subject, self._number(self._settle(batch))))

    def _settle(self, batch: _Batch) -> _Batch:
        """Count what the hot path took of the batch's room, and give the rest of it back."""
        batch.size += batch.grant - batch.room
        self._queued -= batch.room
        batch.room = batch.grant = 0
        return batch

    def _close_window(self) -> None:
        self._window = False
        if self._queued:
            self._wake.set()

    async def _emit(self, subject: str, batch: _Batch) -> None:
        if batch.tells:
            frame = tells_frame(self._number(batch).base, batch.parts, self._is_json)
        else:
            frame = join_frame(batch.parts, self._is_json)
        await self._emit_frame(subject, frame, batch.rids, len(batch.parts) - len(batch.rids), batch.tracked)

    async def _emit_frame(self, subject: str, frame: bytes, rids: list[int], tells: int, tracked: bool) -> None:
        reply = self._tracker.track(subject, rids, tells) if tracked else ""
        self.nats_messages += 1
        await self._publish(subject, frame, reply)

    async def send_raw(self, subject: str, payload: bytes) -> None:
        """Publish a payload that is not part of a frame (a bare reply), keeping queue order."""
        if len(payload) + FRAME_OVERHEAD > self.limit:
            raise InvalidMessage(subject, f"reply is {len(payload)} bytes, over the {self.limit}-byte limit")
        if not (self._window or self._flushing or self._queued):
            await self._publish(subject, payload, "")
            return
        self._sealed.append((subject, _RawBatch(payload)))
        self._queued += len(payload)
        self._wake.set()

    async def flush(self) -> None:
        """Publish everything queued, in order; return once it is all handed to nats-py."""
        while self._flushing:  # another flush is mid-way: wait for it, then publish what is left
            await self._flush_done.wait()
        self._flushing = True
        self._flush_done = asyncio.Event()
        try:
            while self._sealed or self._batches or self._tells:
                sealed: list[tuple[str, _Batch | _RawBatch]] = self._sealed
                self._sealed = []
                sealed.extend(self._batches.items())
                for subject, tells in self._tells.items():  # (a subject has one of the two open at most)
                    sealed.append((subject, self._number(tells)))  # now: next_id may run while we publish
                self._batches = {}
                self._tells = {}
                self._queued = 0
                for subject, batch in sealed:
                    if isinstance(batch, _RawBatch):
                        await self._publish(subject, batch.payload, "")
                    else:
                        await self._emit(subject, batch)
        finally:
            self._flushing = False
            self._flush_done.set()
            self._idle.set()

    async def run(self) -> None:
        """The flusher task: publish queued batches whenever woken. Runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()


class _RawBatch:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Tracker:
    """Maps a tracked batch's reply subject back to its target, asks and tells (a fixed-size ring).

    A 503 comes back within one round trip, so a ring of recent batches is enough; a batch
    evicted before its 503 arrives (thousands of batches later) falls back to AskTimeout.

    A lone tell (one message, no ask: every tell when coalescing is off) needs no ring entry:
    its reply subject is one fixed token per target subject, ``{inbox}.t{k}``, so that the
    uncoalesced hot path costs a dict lookup instead of a new subject string per message.
    """

    RING: Final = 4096

    def __init__(self, inbox: str) -> None:
        self.prefix = inbox + "."
        self._ring: list[tuple[int, str, list[int], int] | None] = [None] * self.RING
        self._n = 0
        self._lone: dict[str, str] = {}  # target subject -> its lone-tell reply subject
        self._lone_targets: dict[int, str] = {}  # k -> target subject, oldest first
        self._k = 0

    def track(self, subject: str, rids: list[int], tells: int) -> str:
        if tells == 1 and not rids:
            reply = self._lone.get(subject)
            if reply is not None:
                return reply
            return self._new_lone(subject)
        self._n += 1
        self._ring[self._n % self.RING] = (self._n, subject, rids, tells)
        return f"{self.prefix}{self._n}"

    def _new_lone(self, subject: str) -> str:
        if len(self._lone_targets) >= self.RING:  # bounded: forget the oldest target
            oldest = next(iter(self._lone_targets))
            del self._lone[self._lone_targets.pop(oldest)]
        self._k += 1
        reply = self._lone[subject] = f"{self.prefix}t{self._k}"
        self._lone_targets[self._k] = subject
        return reply

    def lookup(self, reply_subject: str) -> tuple[str, list[int], int] | None:
        """The (subject, asks, tells) of a tracked batch, or None if unknown or evicted."""
        token = reply_subject[len(self.prefix) :]
        lone = token.startswith("t")
        try:
            n = int(token[1:] if lone else token)
        except ValueError:
            return None
        if lone:
            target = self._lone_targets.get(n)
            return None if target is None else (target, [], 1)
        entry = self._ring[n % self.RING]
        if entry is None or entry[0] != n:
            return None
        return entry[1], entry[2], entry[3]
