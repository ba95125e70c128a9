"""The saga coordinator: the I/O shell around the pure engine.

For every saga it owns, one task applies events to the engine, CAS-writes the new state to the
saga log and only then carries out the commands (asks to participants, retry timers). Replies,
errors and timeouts come back as events on the saga's queue.

Ownership is a lease in the saga's log record. The owner renews it while the saga runs; any
coordinator whose scan finds an active saga with an expired lease takes it over with a CAS
write and resumes it (``Engine.resume`` re-sends what was in flight, with the same idempotency
keys). A coordinator whose write loses the CAS has lost the saga and stops driving it.

Nothing a saga holds stops the coordinator: participants are asked through ``_outcome`` (every
outcome an event), a saga that cannot be driven is dropped with its traceback, and a scan skips
a record it cannot read or resume (once logged, kept in ``unreadable``).

Crash points (``crash_points``) are hooks that do nothing unless a test switches them on; then
the coordinator dies there, as a killed process would: every task stops, nothing more is written.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from corps.core._messages import Message
from corps.errors import CorpsError, SagaStoreUnavailable, SagaUnreadable
from corps.saga._definition import Saga
from corps.saga._engine import Engine
from corps.saga._log import SagaLog, SagaRecord, Stale, check_saga_id
from corps.saga._outcome import ask_participant, report, report_finish
from corps.saga._state import (
    Command,
    Event,
    Finish,
    OperatorRetry,
    RetryDue,
    SagaState,
    ScheduleRetry,
    SendStep,
    SendUndo,
    Started,
    Transition,
)

if TYPE_CHECKING:
    from corps.core._node import Node

log = logging.getLogger("corps.saga")

DEFAULT_LEASE: Final = 10.0
"""Seconds a coordinator holds a saga without renewing; another takes over after that."""
DEFAULT_SCAN_INTERVAL: Final = 2.0
STORE_RETRY_MAX: Final = 2.0

CRASH_POINTS: Final = frozenset({"after_send", "after_reply", "after_write", "mid_compensation"})
RECENT: Final = 1024  # entries kept in `taken` and `lost`: what tests wait on, oldest dropped first


class _Drive:
    """A saga this coordinator owns: its engine, last written state and revision, and its inbox."""

    def __init__(self, engine: Engine, state: SagaState, revision: int, lease_until: float) -> None:
        self.engine = engine
        self.state = state
        self.revision = revision
        self.lease_until = lease_until
        self.lock = anyio.Lock()  # one write at a time: transitions and lease renewals
        self.send, self.receive = anyio.create_memory_object_stream[Event](1000)
        self.ended = anyio.Event()
        """Set when this coordinator stops driving the saga: it is terminal, or lost, or broken."""


class Coordinator:
    """Runs sagas for one Node. Several coordinators (systems) share a namespace's log."""

    def __init__(self, system: Node, saga_log: SagaLog, *, lease: float, scan_interval: float) -> None:
        self.system = system
        self.log = saga_log
        self.node = system.node
        self.lease = lease
        self.scan_interval = scan_interval
        self.definitions: dict[str, type[Saga[Any]]] = {}
        self._engines: dict[str, Engine] = {}
        self._drives: dict[str, _Drive] = {}
        # Nothing per saga outlives its drive here (wait_saga reads a finished one in the log).
        self.crash_points: set[str] = set()
        """Switched-on crash points (tests): see CRASH_POINTS."""
        self.renewing = True
        """False (tests) stops lease renewals while the coordinator goes on: a paused process, or one
        cut off from the store, whose leases expire under it; its next write must lose the CAS."""
        self.dead = False
        self.crashed = anyio.Event()
        """Set when the coordinator has stopped (a crash point, or its system closed)."""
        self._tg: anyio.abc.TaskGroup | None = None
        self.taken: dict[str, anyio.Event] = {}
        """Sagas this coordinator took over from another (lease expired), as events; the last RECENT."""
        self.lost: dict[str, anyio.Event] = {}
        """Sagas whose CAS write it lost (another one owns them now), as events; the last RECENT."""
        self.unreadable: dict[str, str] = {}
        """Active sagas the last scan could not read or resume (a corrupt record): id -> reason."""
        self.write_seconds = 0.0
        """Time spent writing the saga log (for the bench's share-of-time figure)."""

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: resume orphaned sagas, renew leases."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._scan_loop)
                tg.start_soon(self._renew_loop)
                task_status.started()
        finally:
            self.dead = True
            self.crashed.set()

    def register(self, saga: type[Saga[Any]]) -> Engine:
        """Make ``saga`` known, so this coordinator can start and resume its sagas."""
        engine = self._engines.get(saga.saga_name)
        if engine is None or engine.saga is not saga:
            engine = self._engines[saga.saga_name] = Engine(saga)
            self.definitions[saga.saga_name] = saga
        return engine

    def crash(self) -> None:
        """Die now, as if the process was killed: stop every task, write nothing more.

        Raises:
            the cancellation exception: the calling task ends like every other task here.
        """
        self.dead = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        raise anyio.get_cancelled_exc_class()

    def _hook(self, point: str) -> None:
        if point in self.crash_points:
            log.warning("coordinator %s crashing at %s (test hook)", self.node, point)
            self.crash()

    # -- starting -------------------------------------------------------------------------

    async def start(self, saga: type[Saga[Any]], input: Message, saga_id: str | None) -> str:
        """Start a saga (idempotent by id) and return its id once its first transition is logged."""
        engine = self.register(saga)
        saga_id = check_saga_id(saga_id or uuid.uuid4().hex)
        if not isinstance(input, saga.input_type):
            raise TypeError(f"{saga.__name__} takes {saga.input_type.__name__}, not {type(input).__name__}")
        if self.dead or self._tg is None:
            raise SagaStoreUnavailable("the coordinator is not running")
        now = time.time()
        state, commands = engine.advance(None, Started.of(saga_id, input, now))
        record = SagaRecord(state=state, owner=self.node, lease_until=now + self.lease)
        revision = await self.log.create(record)
        if revision is None:
            return saga_id  # started before: the same id gives the same saga
        self._own(engine, state, revision, record.lease_until, commands)
        return saga_id

    def _own(self, engine: Engine, state: SagaState, revision: int, lease_until: float,
             commands: list[Command], new: tuple[Transition, ...] | None = None) -> None:
        report(state.saga_id, state.history if new is None else new)  # None: all of it is new (a start)
        if self.dead:
            # Died (crash, shutdown) while the record was written, as a start or an operator retry
            # awaited it: as after a killed process, a scan takes the saga over once its lease ends.
            log.warning("coordinator %s stopped: saga %s is left to a takeover", self.node, state.saga_id)
            return
        assert self._tg is not None
        drive = _Drive(engine, state, revision, lease_until)
        self._drives[state.saga_id] = drive
        self._tg.start_soon(self._drive, state.saga_id, drive, commands)

    # -- driving one saga -----------------------------------------------------------------

    async def _drive(self, saga_id: str, d: _Drive, commands: list[Command]) -> None:
        try:
            self._execute(saga_id, d, commands)
            async with d.receive:
                while not d.state.status.terminal:
                    try:
                        event = await d.receive.receive()
                    except anyio.EndOfStream:
                        return  # its lease was lost (_renew): another coordinator drives it now
                    old = d.state
                    new, commands = d.engine.advance(old, event)
                    if new is old:
                        continue  # stale or duplicate: nothing to write, nothing to do
                    if not await self._persist(saga_id, d, new):
                        return
                    report(saga_id, new.history[len(old.history):])
                    self._hook("after_write")
                    self._execute(saga_id, d, commands)
        except Exception:  # a bug: it stops this saga only, never the system's other work
            log.exception("saga %s: cannot be driven; %s leaves it (its lease runs out, a scan retries it)",
                          saga_id, self.node)
        finally:
            d.send.close()  # late outcomes of in-flight asks are dropped by _post, by design
            d.receive.close()
            d.ended.set()
            if self._drives.get(saga_id) is d:
                del self._drives[saga_id]

    async def _persist(self, saga_id: str, d: _Drive, new: SagaState) -> bool:
        """CAS-write ``new``; False if the saga was lost to another coordinator. Fails closed:
        while the store is unavailable, it retries and nothing is sent."""
        delay = 0.05
        async with d.lock:
            while True:
                record = SagaRecord(state=new, owner="" if new.status.terminal else self.node,
                                    lease_until=time.time() + self.lease)
                started = time.perf_counter()
                try:
                    d.revision = await self.log.write(record, d.revision)
                    d.state, d.lease_until = new, record.lease_until
                    return True
                except Stale:
                    if await self._landed(saga_id, d, record):
                        return True
                    log.warning("saga %s: lost to another coordinator; %s stops driving it", saga_id, self.node)
                    _recent(self.lost, saga_id).set()
                    return False
                except SagaStoreUnavailable as exc:
                    log.warning("saga %s: log write failed, retrying (nothing is sent meanwhile): %s", saga_id, exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, STORE_RETRY_MAX)
                finally:
                    self.write_seconds += time.perf_counter() - started

    async def _landed(self, saga_id: str, d: _Drive, record: SagaRecord) -> bool:
        """After a write that errored then lost the CAS: did our own earlier attempt land?"""
        try:
            current, revision = await self.log.read(saga_id)
        except CorpsError:
            return False
        if current.owner == record.owner and current.state == record.state:
            d.revision, d.state, d.lease_until = revision, record.state, current.lease_until
            return True
        return False

    def _execute(self, saga_id: str, d: _Drive, commands: list[Command]) -> None:
        assert self._tg is not None
        for cmd in commands:
            if isinstance(cmd, SendStep | SendUndo):
                self._tg.start_soon(self._send, saga_id, d, cmd)
            elif isinstance(cmd, ScheduleRetry):
                self._tg.start_soon(self._retry_later, d, cmd)
            elif isinstance(cmd, Finish):
                report_finish(d.state, cmd)

    async def _send(self, saga_id: str, d: _Drive, cmd: SendStep | SendUndo) -> None:
        to = d.engine.saga.step_named(cmd.step).to  # the engine checked it: an Actor class
        await self._post(d, await ask_participant(self.system, saga_id, to, cmd, self._hook))

    async def _retry_later(self, d: _Drive, cmd: ScheduleRetry) -> None:
        await anyio.sleep(max(0.0, cmd.due_at - time.time()))
        await self._post(d, RetryDue(step=cmd.step, attempt=cmd.attempt, compensation=cmd.compensation,
                                     at=time.time()))

    @staticmethod
    async def _post(d: _Drive, event: Event) -> None:
        # The saga ended or was lost: a late outcome has nowhere to go, by design.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await d.send.send(event)

    # -- operator retry -------------------------------------------------------------------

    async def retry(self, saga_id: str) -> None:
        """Give a FAILED saga a new round of compensation (``corps saga retry``)."""
        record, revision = await self.log.read(saga_id)
        engine = self._engine_for(record.state)
        new, commands = engine.advance(record.state, OperatorRetry(at=time.time()))
        if new is record.state:
            return
        taken = SagaRecord(state=new, owner=self.node, lease_until=time.time() + self.lease)
        try:
            revision = await self.log.write(taken, revision)
        except Stale:
            return
        await self.log.create_active(saga_id)
        self._own(engine, new, revision, taken.lease_until, commands, new.history[len(record.state.history):])

    def _engine_for(self, state: SagaState) -> Engine:
        engine = self._engines.get(state.saga)
        if engine is None:
            raise SagaStoreUnavailable(f"saga class {state.saga!r} is not registered with this coordinator")
        return engine

    # -- ownership: leases and takeover ---------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            if not self.renewing:
                continue
            for saga_id, d in list(self._drives.items()):
                if d.lease_until - time.time() < self.lease * 2 / 3:
                    await self._renew(saga_id, d)

    async def _renew(self, saga_id: str, d: _Drive) -> None:
        async with d.lock:
            if d.state.status.terminal:
                return
            record = SagaRecord(state=d.state, owner=self.node, lease_until=time.time() + self.lease)
            try:
                d.revision = await self.log.write(record, d.revision)
                d.lease_until = record.lease_until
            except Stale:
                log.warning("saga %s: lease lost to another coordinator; %s stops driving it", saga_id, self.node)
                _recent(self.lost, saga_id).set()
                d.send.close()  # ends its _drive loop (and only that saga's)
            except SagaStoreUnavailable:
                pass  # the next round tries again; meanwhile no transition can be written either

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self.scan()
            except SagaStoreUnavailable as exc:
                log.warning("saga scan failed: %s", exc)
            except Exception:  # a bug in one scan must not stop the system; the next one tries again
                log.exception("saga scan of %s failed", self.node)
            await anyio.sleep(self.scan_interval)

    async def scan(self) -> list[str]:
        """Take over every active saga whose lease expired and whose class is known; their ids.
        A saga that cannot be read or resumed is skipped (see the module docstring).

        Raises:
            SagaStoreUnavailable: the active index cannot be listed.
        """
        taken, seen = list[str](), set[str]()
        for saga_id in await self.log.active():
            if saga_id in self._drives:
                continue
            try:
                record, revision = await self.log.read(saga_id)
                if record.state.status.terminal:
                    await self.log.forget_active(saga_id)
                elif (record.lease_until <= time.time() and record.state.saga in self._engines
                      and await self._take_over(saga_id, record, revision)):
                    taken.append(saga_id)
            except SagaUnreadable as exc:
                seen.add(self._skip(saga_id, exc.reason, None))
            except CorpsError:
                continue  # gone, or the store: the next scan tries again
            except Exception as exc:  # noqa: BLE001 -- a saga its definition cannot resume: skip only it
                seen.add(self._skip(saga_id, f"cannot be resumed: {type(exc).__name__}: {exc}", exc))
        self.unreadable = {k: v for k, v in self.unreadable.items() if k in seen}  # not fixed or deleted since
        return taken

    def _skip(self, saga_id: str, reason: str, exc: Exception | None) -> str:
        if saga_id not in self.unreadable:  # logged once, however many scans meet it
            self.unreadable[saga_id] = reason
            log.error("saga %s: skipped by the scan of %s: %s (corps saga show %s)", saga_id, self.node, reason,
                      saga_id, exc_info=exc)
        return saga_id

    async def _take_over(self, saga_id: str, record: SagaRecord, revision: int) -> bool:
        engine = self._engines[record.state.saga]
        now = time.time()
        # Resume first (pure): a saga that cannot be resumed is not claimed either.
        state, commands = engine.resume(record.state, now)
        claim = SagaRecord(state=record.state, owner=self.node, lease_until=now + self.lease)
        try:
            revision = await self.log.write(claim, revision)
        except Stale:
            return False  # another coordinator was quicker: one owner at a time
        log.warning("saga %s: taken over by %s from %s (lease expired)", saga_id, self.node, record.owner or "-")
        if state is not record.state:
            claim = SagaRecord(state=state, owner=self.node, lease_until=now + self.lease)
            try:
                revision = await self.log.write(claim, revision)
            except Stale:
                return False
        self._own(engine, state, revision, claim.lease_until, commands, state.history[len(record.state.history):])
        _recent(self.taken, saga_id).set()
        return True

    # -- waiting --------------------------------------------------------------------------

    def drives(self, saga_id: str) -> bool:
        """True if this coordinator owns the saga now."""
        return saga_id in self._drives

    async def wait_local(self, saga_id: str) -> None:
        """Return when this coordinator stops driving the saga (at once if it does not drive it)."""
        d = self._drives.get(saga_id)
        if d is not None:
            await d.ended.wait()


def _recent(events: dict[str, anyio.Event], saga_id: str) -> anyio.Event:
    """``events[saga_id]``, created if new; the oldest entries go beyond RECENT."""
    event = events.setdefault(saga_id, anyio.Event())
    while len(events) > RECENT:
        del events[next(iter(events))]
    return event
