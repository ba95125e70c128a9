"""A coordinator's ownership of sagas: leases renewed, liveness kept, orphaned sagas taken over.

Ownership is a lease in the saga's log record. The owner renews it while the saga runs; any
coordinator whose scan finds an active saga with an expired lease, or whose owner is presumed
dead (``_liveness``: no heartbeat for ``liveness_timeout``), takes it over with a CAS write and
resumes it (``Engine.resume`` re-sends what was in flight, with the same idempotency keys). A
coordinator whose write loses the CAS has lost the saga and stops driving it. A death found
between scans starts a scan at once.

A scan skips a record it cannot read or resume (once logged, kept in ``unreadable``).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from corps.errors import CorpsError, SagaStoreUnavailable, SagaUnreadable
from corps.saga._log import SagaRecord, Stale, TooLarge
from corps.saga._state import Event, SagaState

if TYPE_CHECKING:
    from corps.saga._config import SagaConfig
    from corps.saga._engine import Engine
    from corps.saga._liveness import Liveness
    from corps.saga._log import SagaLog
    from corps.saga._state import Command, Transition

log = logging.getLogger("corps.saga")

RECENT: Final = 1024  # entries kept in `taken` and `lost`: what tests wait on, oldest dropped first


class Events:
    """A saga's inbox: outcomes of its asks and retry timers, taken by its drive loop in order.

    Bounded by the saga: one event per outstanding ask or timer (``Drive.outstanding``), each
    bounded by the definition's steps. Taking an event that is waiting costs no trip through
    the event loop (an anyio memory stream checkpoints on every receive).
    """

    __slots__ = ("_items", "_waiter", "closed")

    def __init__(self) -> None:
        self._items: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def post(self, event: Event) -> None:
        """Queue ``event``; dropped once closed (a late outcome of a saga that ended or was lost, by design)."""
        if not self.closed:
            self._items.append(event)
            self._wake()

    async def take(self) -> Event | None:
        """The next event; None once closed (the saga was lost: another coordinator drives it)."""
        while not self._items:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return None if self.closed else self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class DriveTasks:
    """The tasks that drive sagas, one per saga: plain asyncio tasks, not an anyio task group's
    (its ``start_soon`` and the task's run cost ~10-30 µs a task; ``create_task`` ~3), cancelled
    together when the coordinator stops."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None], context: contextvars.Context | None = None) -> None:
        """Run ``coro`` in a task of its own, in ``context`` (None: a copy of the current one)."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        """Cancel every task but the calling one."""
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def stop(self) -> None:
        """Cancel every task and wait until all have ended (on a clean stop each hands its saga
        over first, within ``RELEASE_WITHIN``)."""
        self.cancel()
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


class Drive:
    """A saga this coordinator owns: its engine, last written state and revision, and its inbox."""

    def __init__(self, engine: Engine, state: SagaState, revision: int, lease_until: float) -> None:
        self.engine = engine
        self.state = state
        self.revision = revision
        self.lease_until = lease_until
        self.owner = ""
        """The owner its last written record names ("" once terminal): what ``wait_saga`` answers."""
        # asyncio's Lock, not anyio's: no checkpoint (a trip through the event loop) when free.
        self.lock = asyncio.Lock()  # one write at a time: transitions and lease renewals
        self.events = Events()
        self.outstanding = 0
        """Asks and retry timers of this saga running in tasks of their own (their outcomes come as events)."""
        self.ended = anyio.Event()
        """Set when this coordinator stops driving the saga: it is terminal, or lost, or broken."""


class Ownership:
    """Leases, liveness and takeover: mixed into Coordinator, which sets the attributes below."""

    log: SagaLog
    node: str
    config: SagaConfig
    lease: float
    scan_interval: float
    renewing: bool
    liveness: Liveness
    taken: dict[str, anyio.Event]
    lost: dict[str, anyio.Event]
    unreadable: dict[str, str]
    _engines: dict[str, Engine]
    _drives: dict[str, Drive]
    _wake: anyio.Event

    def _own(self, engine: Engine, state: SagaState, revision: int, lease_until: float,
             commands: list[Command], new: tuple[Transition, ...] | None = None, resumed: bool = False) -> None:
        raise NotImplementedError  # Coordinator's

    # -- keeping what we own ----------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            if not self.renewing:
                continue
            for saga_id, d in list(self._drives.items()):
                if d.lease_until - time.time() < self.lease * 2 / 3:
                    await self._renew(saga_id, d)

    async def _renew(self, saga_id: str, d: Drive) -> None:
        async with d.lock:
            if d.state.status.terminal:
                return
            record = SagaRecord(state=d.state, owner=self.node, lease_until=time.time() + self.lease)
            try:
                d.revision = await self.log.write(record, d.revision)
                d.lease_until = record.lease_until
            except Stale:
                log.warning("saga %s: lease lost to another coordinator; %s stops driving it", saga_id, self.node)
                recent(self.lost, saga_id).set()
                d.events.close()  # ends its _drive loop (and only that saga's)
            except (SagaStoreUnavailable, TooLarge):
                pass  # the next round tries again; meanwhile no transition can be written either

    async def _release(self, d: Drive) -> None:
        """End our lease on ``d``'s saga at once (a clean stop): the next scan anywhere takes it over."""
        for _ in range(2):
            if d.state.status.terminal:
                return
            record = SagaRecord(state=d.state, owner=self.node, lease_until=0.0)
            try:
                d.revision = await self.log.write(record, d.revision)
                return
            except Stale:
                # Our own last write may have landed after all (the stop cancelled it in flight):
                # if the record still names us, release it over that revision.
                try:
                    current, revision = await self.log.read(d.state.saga_id)
                except CorpsError:
                    return
                if current.owner != self.node:
                    return  # lost already: the new owner holds it
                d.state, d.revision = current.state, revision
            except (TooLarge, SagaStoreUnavailable):
                return  # the store is down: then the lease (or liveness) decides

    async def _liveness_loop(self) -> None:
        """Heartbeat, and watch the owners the scans met: a death starts a scan at once."""
        while True:
            if self.renewing:  # a paused process neither renews nor beats (tests: see Coordinator.renewing)
                await self.liveness.beat()
                if await self.liveness.poll():
                    self._wake.set()
            await anyio.sleep(self.config.heartbeat)

    # -- finding what nobody drives ---------------------------------------------------------

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self.scan()
            except SagaStoreUnavailable as exc:
                log.warning("saga scan failed: %s", exc)
            except Exception:  # a bug in one scan must not stop the system; the next one tries again
                log.exception("saga scan of %s failed", self.node)
            with anyio.move_on_after(self.scan_interval):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def scan(self) -> list[str]:
        """Take over every active saga whose class is known and whose lease expired or whose
        owner is presumed dead; their ids. A saga that cannot be read or resumed is skipped.

        Raises:
            SagaStoreUnavailable: the active index cannot be listed.
        """
        taken, seen, owners, left = list[str](), set[str](), set[str](), set[str]()
        for saga_id in await self.log.active():
            if saga_id in self._drives:
                continue
            try:
                record, revision = await self.log.read(saga_id)
                if record.state.status.terminal:
                    await self.log.forget_active(saga_id)
                    continue
                owners.add(record.owner)
                dead = await self.liveness.is_dead(record.owner)
                if not dead and record.lease_until > time.time():
                    continue
                if record.state.saga in self._engines and await self._take_over(saga_id, record, revision, dead):
                    taken.append(saga_id)
                elif dead:
                    left.add(record.owner)  # a saga of a dead owner not ours to take: its key must stay
            except SagaUnreadable as exc:
                seen.add(self._skip(saga_id, exc.reason, None))
            except CorpsError:
                continue  # gone, or the store: the next scan tries again
            except Exception as exc:  # noqa: BLE001 -- a saga its definition cannot resume: skip only it
                seen.add(self._skip(saga_id, f"cannot be resumed: {type(exc).__name__}: {exc}", exc))
        self.unreadable = {k: v for k, v in self.unreadable.items() if k in seen}  # not fixed or deleted since
        for owner in owners - left:
            await self.liveness.bury(owner)
        self.liveness.keep(owners)
        return taken

    def _skip(self, saga_id: str, reason: str, exc: Exception | None) -> str:
        if saga_id not in self.unreadable:  # logged once, however many scans meet it
            self.unreadable[saga_id] = reason
            log.error("saga %s: skipped by the scan of %s: %s (corps saga show %s)", saga_id, self.node, reason,
                      saga_id, exc_info=exc)
        return saga_id

    async def _take_over(self, saga_id: str, record: SagaRecord, revision: int, dead: bool = False) -> bool:
        engine = self._engines[record.state.saga]
        now = time.time()
        # Resume first (pure): a saga that cannot be resumed is not claimed either.
        state, commands = engine.resume(record.state, now)
        claim = SagaRecord(state=record.state, owner=self.node, lease_until=now + self.lease)
        try:
            revision = await self.log.write(claim, revision)
        except Stale:
            return False  # another coordinator was quicker: one owner at a time
        why = "its coordinator is presumed dead" if dead else "lease expired"
        log.warning("saga %s: taken over by %s from %s (%s)", saga_id, self.node, record.owner or "-", why)
        if state is not record.state:
            claim = SagaRecord(state=state, owner=self.node, lease_until=now + self.lease)
            try:
                revision = await self.log.write(claim, revision)
            except (Stale, TooLarge):
                return False
        self._own(engine, state, revision, claim.lease_until, commands, state.history[len(record.state.history):],
                  resumed=True)
        recent(self.taken, saga_id).set()
        return True


def recent(events: dict[str, Any], saga_id: str) -> anyio.Event:
    """``events[saga_id]``, created if new; the oldest entries go beyond RECENT."""
    event: anyio.Event = events.setdefault(saga_id, anyio.Event())
    while len(events) > RECENT:
        del events[next(iter(events))]
    return event
