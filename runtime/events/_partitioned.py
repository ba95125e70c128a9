"""The keyed events of a virtual class, in partitions, each handled by the one node that owns it.

Why the consumer computes the partition (and neither the publisher nor a server-side subject
mapping): the key is a declaration of the *handler* (``@on_event(key="order_id")``), not of the
event; two classes may key one event type differently, and the publisher (``corps publish``,
the nats CLI, any client) cannot know either. So events keep their subjects
(``{ns}.events.{Type}``), every publisher works unchanged, and each hosting node reads the class's
events through one ordered, unacknowledged consumer (ephemeral, from a stream sequence),
computes each event's partition from its key (``corps.wire._partition``: FNV-1a, the function of
nats-server's ``partition()`` mapping) and handles only those of the partitions it owns. The cost:
every hosting node reads every event of the class (receiving does not scale with nodes; handling
does), as every host of a virtual class hears every message.

Which partitions a node owns is corps.virtual's decision (a KV claim under a fencing token,
rendezvous placement over the members, released on moves); this module is told ``acquire(p,
after, guard)`` and ``release(p)``. Progress per partition is ``through(p)``: every event of ``p``
at or below that stream sequence was handled (acked, or dead-lettered). The owner writes it into
the partition's record now and then and on a hand-over, and the next owner reads from there:
nothing is acked to the server, so a node that dies loses nothing but redelivers what it had
handled since its last checkpoint (at least once). Within a partition, events go to their key's
instance one at a time, in stream order (a failed one is retried in place after its backoff, and
dead-lettered after ``max_deliver`` attempts, as for any keyed handler).

The parts: ``_partitioned_part.py`` (one owned partition's state), ``_partitioned_read.py`` (the
read: the consumer, pull requests, taking a delivery; a gap restarts it), ``_partitioned_suspects.py``
(poison events after a takeover: suspects begun one at a time, each charged first); this module
holds what corps.virtual calls and the outcomes of deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from corps.errors import EventError
from corps.events._classes import event_handlers_of
from corps.events._delivery import EventDelivery
from corps.events._dlq import write_dead_letter
from corps.events._marks import Marks
from corps.events._partitioned_part import Part, Suspect
from corps.events._partitioned_read import PartitionedRead
from corps.events._partitioned_suspects import SuspectRuns
from corps.events._tasks import OwnTasks
from corps.events._wire import EventDecoder, events_subject
from corps.wire._client import Route, subscribe_route
from corps.wire._codec import union_of
from corps.wire._partition import partition_of

if TYPE_CHECKING:
    from corps.core._cell import Cell
    from corps.core._host import ClassHost
    from corps.events._component import Events
    from corps.events._consumer import EventConsumer

log = logging.getLogger("corps.events")

RESCUE_EVERY: Final = 1.0
"""Seconds between checks for deliveries dropped with their instance (an activation fenced off or
refused): they are routed again (or, if the partition is leaving, left for its next owner)."""
RETRY_ROUTE: Final = 0.1
"""Seconds before an event that could not be routed now (activations at their bound) is tried again."""


Route_ = Callable[[EventDelivery], "Cell | None"]


class PartitionedConsumer(PartitionedRead, SuspectRuns, OwnTasks, Marks):
    """Reads one virtual class's keyed events and handles those of the partitions owned here.

    ``route(d)`` puts a delivery into its key's instance (activating it), or returns None when it
    cannot now (this node is not the id's owner, or activations are at their bound): retried.
    Duck-types ``EventConsumer`` for ``run_delivery`` and the dead-letter writer. The read is
    ``PartitionedRead``, the suspects after a takeover ``SuspectRuns``.
    """

    def __init__(self, events: Events, host: ClassHost, partitions: int, route: Route_) -> None:
        if events.cfg.retention == "interest":
            raise EventError("partitioned keyed events re-read the stream from a checkpoint: they need "
                             "EventsConfig(retention='limits')")
        self.events = events
        self.host = host
        self.cfg = events.cfg
        self.name = host.name
        self.n = partitions
        self.route = route
        self.handlers = event_handlers_of(host.cls)
        unkeyed = sorted(s.name for s in self.handlers.values() if s.key is None)
        if unkeyed:
            raise EventError(f"{self.name}: the event handlers of a virtual class must be keyed "
                             f"(@on_event(key=...)): {', '.join(unkeyed)}")
        self.decoder = EventDecoder(union_of(list(self.handlers)))
        self.filters = sorted({events_subject(events.namespace, tp) for tp in self.handlers})
        self.parts: dict[int, Part] = {}
        self.outstanding: dict[int, EventDelivery] = {}
        self.keys: dict[str, deque[EventDelivery]] = {}
        self._part_of: dict[int, int] = {}
        self._cells: dict[int, Cell] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._suspects: list[tuple[int, EventDelivery]] = []
        """Suspect events waiting for their turn (a heap by stream sequence)."""
        self._suspect = 0
        """The suspect event begun on this node (0: none): one at a time, so that a node that dies
        while one runs charges it, and only it."""
        self._charged: set[int] = set()
        """Suspect events recorded as begun here: they run as any event."""
        self.position = 0
        """The last stream sequence the read took (any partition)."""
        self.processed = 0
        self.dead_lettered = 0
        self.unfinished = 0
        self.restarts = 0
        self.gaps = 0
        self.rescued = 0
        self.skipped = 0
        """Events read that belong to partitions owned elsewhere."""
        self.crashed_owners = 0
        """Suspect events dead-lettered: begun ``max_deliver`` times by owners that died."""
        self._inbox = f"{events.namespace}.evpin.{events.node}.{self.name}."
        self._cname = ""
        self._dseq = 0
        self._asked = 0
        self._gen = 0
        self._restart = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._ended = asyncio.Event()
        self._sub: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # run_delivery and the dead-letter writer use the same few members of either consumer
        self._as_consumer = cast("EventConsumer", self)

    # -- what corps.virtual tells it -------------------------------------------------------

    def acquire(self, p: int, after: int, guard: Callable[[], bool], suspect: Suspect | None = None) -> None:
        """Handle partition ``p`` from the event after sequence ``after`` on (its checkpoint);
        ``suspect``: it was taken over from an owner that died (``corps.virtual._partition_reader``)."""
        part = self.parts[p] = Part(after, guard, suspect)
        if self.position > after:
            part.synced = False  # what the read passed since ``after`` is not taken: no checkpoint past it
            self._restart = True  # the read is past the checkpoint: read again from there
            self._ended.set()
        self._wake.set()

    def through(self, p: int) -> int:
        """Every event of ``p`` at or below this sequence was handled (or dead-lettered)."""
        part = self.parts.get(p)
        if part is None:
            return 0
        pending = part.inflight | part.undone
        # While open, every event of p the read passed was taken; once closed (leaving, or the
        # lease ran out), what it passed since was not: only what was taken counts.
        caught_up = part.open and part.synced
        now = min(pending) - 1 if pending else max(part.dispatched, self.position) if caught_up else part.dispatched
        part.done = max(part.done, now)
        return part.done

    async def release(self, p: int, wait: float) -> int:
        """Take no new event of ``p``, let those begun finish (at most ``wait`` seconds), forget
        ``p``, and return ``through(p)``: where its next owner starts."""
        part = self.parts.get(p)
        if part is None:
            return 0
        part.open = False
        for key in [k for k in self.keys if partition_of(k, self.n) == p]:
            waiting = self.keys[key]
            while len(waiting) > 0:  # behind the one in flight: never begun here
                self._give_up(waiting.pop())
        for _, waiting_d in [s for s in self._suspects if self._part_of.get(s[0]) == p]:
            self._give_up(waiting_d)  # not begun: its next owner begins it
        for seq, timer in list(self._timers.items()):
            if self._part_of.get(seq) == p:  # waiting for a retry: its next owner retries it
                timer.cancel()
                del self._timers[seq]
                d = self.outstanding.get(seq)
                if d is not None:
                    self._give_up(d)
        delay = 0.01
        with anyio.move_on_after(wait):
            while part.inflight:
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.2)
        if part.inflight:
            log.warning("event consumer %s: partition %d handed over with %d event(s) still running",
                        self.name, p, len(part.inflight))
        through = self.through(p)
        if self.parts.get(p) is part:
            del self.parts[p]
        return through

    def drop_all(self) -> None:
        """This node may handle nothing any more (its lease ran out): forget every partition and
        every delivery, at once (their instances were fenced off; the next owners redeliver)."""
        for part in self.parts.values():
            part.open = False
            part.inflight.clear()  # a hand-over waiting for them stops waiting
        self.parts.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._suspects.clear()
        self._suspect = 0
        self._charged.clear()
        self.outstanding.clear()
        self.keys.clear()
        self._part_of.clear()
        self._cells.clear()
        self._restart = True
        self._ended.set()

    def stats(self) -> dict[str, int]:
        return {"partitions": len(self.parts), "events_processed": self.processed,
                "events_dead_lettered": self.dead_lettered, "events_skipped": self.skipped,
                "events_in_flight": len(self.outstanding), "read_restarts": self.restarts, "read_gaps": self.gaps,
                "events_rescued": self.rescued, "events_crashed_owners": self.crashed_owners}

    # -- life cycle ------------------------------------------------------------------------

    async def horizon(self) -> int:
        """The stream's last sequence now: an owner that died before now began nothing after it."""
        info = await self.events.js.stream_info(self.events.stream)
        return int(info.state.last_seq)

    async def start(self) -> None:
        if any(s.idempotent for s in self.handlers.values()):
            await self.events.ensure_kv()
        self._sub = await subscribe_route(self.events.nc, self._inbox + "*", Route(self._take, self._on_status))
        self._spawn(self._read_loop())
        self._spawn(self._rescue_loop())

    async def stop(self) -> None:
        self._stopping = True
        self._ended.set()
        self._wake.set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        await self._drop_consumer()

    def _route(self, d: EventDelivery) -> None:
        seq = d.meta.stream_seq
        part = self.parts.get(self._part_of.get(seq, -1))
        if part is None or not part.open:
            self._give_up(d)
            return
        if part.suspect is not None and seq <= part.suspect.until and seq not in self._charged:
            heapq.heappush(self._suspects, (seq, d))
            self._next_suspect()
            return
        cell = self.route(d)
        if cell is None:
            self._later(d, RETRY_ROUTE)
            return
        self._cells[seq] = cell

    def _later(self, d: EventDelivery, delay: float) -> None:
        self._timers[d.meta.stream_seq] = asyncio.get_running_loop().call_later(delay, self._retry, d)

    def _retry(self, d: EventDelivery) -> None:
        seq = d.meta.stream_seq
        self._timers.pop(seq, None)
        if not self._stopping and seq in self.outstanding:
            self._route(d)

    async def _rescue_loop(self) -> None:
        """Deliveries whose instance was dropped before running them (an activation fenced off,
        or refused): route them again."""
        while True:
            await anyio.sleep(RESCUE_EVERY)
            for seq, cell in list(self._cells.items()):
                d = self.outstanding.get(seq)
                if d is None:
                    self._cells.pop(seq, None)
                    continue
                if d.key is not None and cell is not self.host.cells.get(d.key) and not cell.busy \
                        and not cell.queue and seq not in self._timers:
                    self.rescued += 1
                    del self._cells[seq]
                    self._route(d)

    # -- outcomes (EventConsumer's interface for run_delivery and the dead-letter writer) ----

    def complete(self, d: EventDelivery, how: bytes) -> None:
        """The delivery is over: handled (``+ACK``), dead-lettered (``+TERM``) or given back
        (``-NAK``: its partition's next owner handles it). The next event of its key goes."""
        seq = d.meta.stream_seq
        if self.outstanding.pop(seq, None) is None:
            return
        self._cells.pop(seq, None)
        self._charged.discard(seq)
        if seq == self._suspect:
            self._suspect = 0
            self._next_suspect()
        part = self.parts.get(self._part_of.pop(seq, -1))
        if part is not None:
            part.inflight.discard(seq)
            if how.startswith(b"-NAK"):
                part.undone.add(seq)
        if len(self.outstanding) < self.cfg.max_ack_pending:
            self._room.set()
        if d.key is None:
            return
        waiting = self.keys.get(d.key)
        if waiting:
            self._route(waiting.popleft())
        elif waiting is not None:
            del self.keys[d.key]

    def _give_up(self, d: EventDelivery) -> None:
        self.complete(d, b"-NAK")

    async def failed(self, d: EventDelivery, exc: BaseException) -> None:
        """A handler attempt failed: retried in place after the backoff (no later event of the
        key overtakes it), dead-lettered after the last attempt."""
        spec = d.spec
        assert spec is not None
        part = self.parts.get(self._part_of.get(d.meta.stream_seq, -1))
        if self._stopping or part is None or not part.open:
            self._give_up(d)
            return
        attempt = max(d.attempt, 1)
        if attempt >= spec.max_deliver:
            self._spawn(self._dead_letter(d, "handler-error", f"{type(exc).__name__}: {exc}"))
            return
        self._cells.pop(d.meta.stream_seq, None)
        self._later(d, spec.backoff.delay(attempt))

    async def _dead_letter(self, d: EventDelivery, reason: str, error: str) -> None:
        try:
            await write_dead_letter(self.events, d, reason, error)
        except Exception as exc:  # noqa: BLE001 -- not lost: it stays in flight and is tried again
            log.error("event consumer %s: dead-letter write failed for seq %d: %r", self.name, d.meta.stream_seq, exc)
            await anyio.sleep(self.cfg.heartbeat)
            if d.meta.stream_seq in self.outstanding and not self._stopping:
                self._spawn(self._dead_letter(d, reason, error))
            return
        self.dead_lettered += 1
        log.warning("event consumer %s: seq %d dead-lettered (%s): %s", self.name, d.meta.stream_seq, reason, error)
        self.complete(d, b"+TERM")


__all__ = ["PartitionedConsumer"]
