"""The saga coordinator: the I/O shell around the pure engine.

For every saga it owns, one task applies events to the engine, CAS-writes the new state to the
saga log and only then carries out the commands (asks to participants, retry timers). Replies,
errors and timeouts come back as events on the saga's queue. Owning, renewing and taking over
sagas is ``_takeover``'s part; liveness (a dead coordinator's sagas taken over in seconds) is
``_liveness``'s.

Size is decided, never retried (``_size``): a start whose record cannot fit is refused, a reply
that would make the record too large fails its step for good (and the saga compensates), and a
transition that still cannot fit ends the saga FAILED for an operator.

Nothing a saga holds stops the coordinator: participants are asked through ``_outcome`` (every
outcome an event), and a saga that cannot be driven is dropped with its traceback.

Crash points (``crash_points``) are hooks that do nothing unless a test switches them on; then
the coordinator dies there, as a killed process would: every task stops, nothing more is written.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import msgspec

from corps.core._messages import Message
from corps.errors import CorpsError, InvalidMessage, SagaStoreUnavailable
from corps.saga._config import DEFAULT_LEASE as DEFAULT_LEASE
from corps.saga._config import DEFAULT_SCAN_INTERVAL as DEFAULT_SCAN_INTERVAL
from corps.saga._config import SagaConfig
from corps.saga._definition import Saga
from corps.saga._engine import Engine
from corps.saga._execution import Execution
from corps.saga._liveness import Liveness
from corps.saga._log import SagaLog, SagaRecord, Stale, TooLarge, check_saga_id
from corps.saga._outcome import report
from corps.saga._size import headroom, record_limit, too_large
from corps.saga._state import (
    Command,
    Event,
    Finish,
    Kind,
    OperatorRetry,
    SagaState,
    SagaStatus,
    Started,
    StepFailed,
    StepSucceeded,
    Transition,
)
from corps.saga._takeover import RECENT as RECENT
from corps.saga._takeover import Drive, DriveTasks, Ownership, recent
from corps.saga._trace_context import resumed_context, start_traceparent

if TYPE_CHECKING:
    from corps.core._node import Node

log = logging.getLogger("corps.saga")

STORE_RETRY_MAX: Final = 0.5
"""Longest pause between retries of a log write while the store is down: a stream leader election
(2-5 s on a 3-node cluster) is waited out within half a second of its end."""
RELEASE_WITHIN: Final = 1.0
"""Seconds a clean stop spends handing its sagas over (lease ended, liveness key deleted)."""

CRASH_POINTS: Final = frozenset({"after_send", "after_reply", "after_write", "mid_compensation"})


class Coordinator(Ownership, Execution):
    """Runs sagas for one Node. Several coordinators (systems) share a namespace's log.

    Args:
        config: leases, scans and liveness (``SagaConfig``; its buckets are the log's business).
    """

    def __init__(self, system: Node, saga_log: SagaLog, config: SagaConfig | None = None) -> None:
        self.system = system
        self.log = saga_log
        self.node = system.node
        self.config = config or SagaConfig()
        self.lease = self.config.lease
        self.scan_interval = self.config.scan_interval
        self.liveness = Liveness(saga_log, self.node, timeout=self.config.liveness_timeout)
        self._wake = anyio.Event()  # set: scan now (an owner was found dead)
        self.definitions: dict[str, type[Saga[Any]]] = {}
        self._engines: dict[str, Engine] = {}
        self._drives: dict[str, Drive] = {}
        self._drive_tasks = DriveTasks()  # one per saga in _drives
        # Nothing per saga outlives its drive here (wait_saga reads the log for one it did not see end).
        self.crash_points: set[str] = set()
        """Switched-on crash points (tests): see CRASH_POINTS."""
        self.renewing = True
        """False (tests) stops lease renewals and heartbeats while the coordinator goes on: a paused
        process, or one cut off from the store, whose leases expire under it and whose liveness
        key goes quiet; its next write must lose the CAS."""
        self.dead = False
        self._killed = False  # crash(): as a killed process, it leaves its liveness key behind
        self.crashed = anyio.Event()
        """Set when the coordinator has stopped (a crash point, or its system closed)."""
        self._tg: anyio.abc.TaskGroup | None = None
        self.taken: dict[str, anyio.Event] = {}
        """Sagas this coordinator took over from another (lease expired, or owner presumed dead), as
        events; the last RECENT."""
        self.lost: dict[str, anyio.Event] = {}
        """Sagas whose CAS write it lost (another one owns them now), as events; the last RECENT."""
        self.unreadable: dict[str, str] = {}
        """Active sagas the last scan could not read or resume (a corrupt record): id -> reason."""
        self.write_seconds = 0.0
        """Time spent writing the saga log (for the bench's share-of-time figure)."""
        self.bad_traceparents = 0
        """Sagas taken over whose stored traceparent was malformed: ignored, they went on in a new trace."""

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: resume orphaned sagas, renew leases, keep a heartbeat."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self.liveness.beat()  # before any saga is ours: an owner always has a key
                tg.start_soon(self._liveness_loop)
                tg.start_soon(self._scan_loop)
                tg.start_soon(self._renew_loop)
                tg.start_soon(self._hold_drives)
                task_status.started()
        finally:
            self.dead = True
            self.crashed.set()
            if not self._killed:  # a clean stop: watchers of our key take over what we still held
                with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_WITHIN):
                    await self.liveness.stop()

    async def _hold_drives(self) -> None:
        """Runs while the coordinator does; as it stops, its saga drives stop first (each hands
        its saga over, on a clean stop), as if they were tasks of its task group."""
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._drive_tasks.stop()

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
        self.dead = self._killed = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        raise anyio.get_cancelled_exc_class()

    def _hook(self, point: str) -> None:
        if point in self.crash_points:
            log.warning("coordinator %s crashing at %s (test hook)", self.node, point)
            self.crash()

    # -- starting -------------------------------------------------------------------------

    async def start(self, saga: type[Saga[Any]], input: Message, saga_id: str | None) -> str:
        """Start a saga (idempotent by id) and return its id once its first transition is logged.

        Raises:
            InvalidMessage: its first record, with the headroom of its class, cannot fit the log.
        """
        engine = self.register(saga)
        saga_id = check_saga_id(saga_id or secrets.token_hex(16))  # as uuid4().hex, at a third of its cost
        if not isinstance(input, saga.input_type):
            raise TypeError(f"{saga.__name__} takes {saga.input_type.__name__}, not {type(input).__name__}")
        if self.dead or self._tg is None:
            raise SagaStoreUnavailable("the coordinator is not running")
        now = time.time()
        state, commands = engine.advance(None, Started.of(saga_id, input, now))
        traceparent = start_traceparent(self.system.observer)
        if traceparent:  # the start's trace, for whoever takes the saga over (_trace_context)
            state = msgspec.structs.replace(state, traceparent=traceparent)
        record = SagaRecord(state=state, owner=self.node, lease_until=now + self.lease)
        data = self.log.encode(record)  # encoded once: checked here, written as is
        size, room, payload = len(data), headroom(saga), self.log.max_payload
        if size + room > record_limit(payload):
            raise InvalidMessage(self.log.subject(saga_id), too_large("its input", size, payload, room, saga.__name__))
        try:
            revision = await self.log.create(record)  # data not encoded again
        except TooLarge as exc:  # the server's max_payload shrank since (a reconnect elsewhere)
            raise InvalidMessage(self.log.subject(saga_id), str(exc)) from exc
        if revision is None:
            return saga_id  # started before: the same id gives the same saga
        if self.system.observer is not None:
            self.system.observer.saga_started(saga.__name__, saga_id)
        self._own(engine, state, revision, record.lease_until, commands)
        return saga_id

    def _own(self, engine: Engine, state: SagaState, revision: int, lease_until: float,
             commands: list[Command], new: tuple[Transition, ...] | None = None, resumed: bool = False) -> None:
        report(state.saga_id, state.history if new is None else new)  # None: all of it is new (a start)
        if self.dead:
            # Died (crash, shutdown) while the record was written, as a start or an operator retry
            # awaited it: as after a killed process, a scan takes the saga over once its lease ends.
            log.warning("coordinator %s stopped: saga %s is left to a takeover", self.node, state.saga_id)
            return
        assert self._tg is not None
        drive = Drive(engine, state, revision, lease_until)
        self._drives[state.saga_id] = drive
        obs = self.system.observer  # a saga taken over is driven in the trace it was started in
        context = resumed_context(self, obs, engine.saga.__name__, state, self.node) if resumed and obs else None
        self._drive_tasks.start(self._drive(state.saga_id, drive, commands), context)

    # -- driving one saga -----------------------------------------------------------------

    async def _drive(self, saga_id: str, d: Drive, commands: list[Command]) -> None:
        try:
            while True:
                inline = self._execute(saga_id, d, commands)
                if d.state.status.terminal:
                    return
                if inline is not None:
                    # The one request in flight, and nothing else pending: asked from this task
                    # (no task, no inbox hand-off); its outcome is the next event.
                    event = await self._ask(saga_id, d, inline)
                    if d.events.closed:
                        return  # its lease was lost (_renew) meanwhile
                else:
                    taken = await d.events.take()
                    if taken is None:
                        return  # its lease was lost (_renew): another coordinator drives it now
                    event = taken
                old = d.state
                new, commands = d.engine.advance(old, event)
                if new is old:
                    commands = []
                    continue  # stale or duplicate: nothing to write, nothing to do
                record, commands = self._fit(d, old, event, new, commands)
                if not await self._persist(saga_id, d, record):
                    return
                new = record.state
                report(saga_id, new.history[len(old.history):])
                self._hook("after_write")
        except Exception:  # a bug: it stops this saga only, never the system's other work
            log.exception("saga %s: cannot be driven; %s leaves it (its lease runs out, a scan retries it)",
                          saga_id, self.node)
        except anyio.get_cancelled_exc_class():
            if not self._killed:  # a clean stop: hand the saga over now, not when the lease runs out
                with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_WITHIN):
                    await self._release(d)
            raise
        finally:
            d.events.close()  # late outcomes of in-flight asks are dropped, by design
            d.ended.set()
            if self._drives.get(saga_id) is d:
                del self._drives[saga_id]

    def _record(self, state: SagaState) -> SagaRecord:
        """What the log gets for ``state`` now: owned by this coordinator (nobody once terminal)
        with a fresh lease."""
        return SagaRecord(state=state, owner="" if state.status.terminal else self.node,
                          lease_until=time.time() + self.lease)

    async def _persist(self, saga_id: str, d: Drive, record: SagaRecord) -> bool:
        """CAS-write ``record`` (encoded by ``_fit``: the log keeps that); False if the saga was lost
        to another coordinator. Fails closed: while the store is unavailable, it retries (with a
        fresh lease) and nothing is sent."""
        delay = 0.05
        async with d.lock:
            while True:
                started = time.perf_counter()
                try:
                    d.revision = await self.log.write(record, d.revision)
                    d.state, d.lease_until, d.owner = record.state, record.lease_until, record.owner
                    return True
                except Stale:
                    if await self._landed(saga_id, d, record):
                        return True
                    log.warning("saga %s: lost to another coordinator; %s stops driving it", saga_id, self.node)
                    recent(self.lost, saga_id).set()
                    return False
                except TooLarge as exc:  # only if max_payload shrank since _fit: no retry can help
                    log.error("%s; %s leaves the saga (its lease runs out, a scan retries it)", exc, self.node)
                    return False
                except SagaStoreUnavailable as exc:
                    log.warning("saga %s: log write failed, retrying (nothing is sent meanwhile): %s", saga_id, exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, STORE_RETRY_MAX)
                    record = self._record(record.state)
                finally:
                    self.write_seconds += time.perf_counter() - started

    def _fit(self, d: Drive, old: SagaState, event: Event, new: SagaState,
             commands: list[Command]) -> tuple[SagaRecord, list[Command]]:
        """The record of ``new`` (encoded: see ``SagaLog.encode``) and its commands if it fits the log; else what to
        write instead (``_size``). The size checked is that of the bytes written."""
        saga, payload = d.engine.saga, self.log.max_payload
        room = headroom(saga)
        record = self._record(new)
        size = len(self.log.encode(record))
        if isinstance(event, StepSucceeded) and size + room > record_limit(payload):
            # The participant replied, so the step may well have applied: failed for good, and
            # uncertain, so the saga compensates it too. The headroom keeps room for that.
            reason = too_large(f"its reply of {len(event.reply)} bytes", size, payload, room, saga.__name__)
            failed = StepFailed(step=event.step, attempt=event.attempt, error_type="ReplyTooLarge",
                                message=reason, terminal=True, uncertain=True, at=event.at)
            new, commands = d.engine.advance(old, failed)
            record = self._record(new)
            size = len(self.log.encode(record))
        if size <= record_limit(payload):
            return record, commands
        # Past every bound the headroom counts (endless retries after the pivot, operator retries):
        # what cannot be written cannot be carried out. The saga ends FAILED, for an operator.
        reason = f"the saga's log record would be {size} bytes, over the {record_limit(payload)}-byte limit"
        seq = old.history[-1].seq + 1 if old.history else 1
        failed_state = msgspec.structs.replace(
            old, status=SagaStatus.FAILED, reason=reason,
            history=(*old.history, Transition(seq, event.at, Kind.SAGA_FAILED, None, 0, reason)))
        record = self._record(failed_state)
        self.log.encode(record)
        return record, [Finish(status=SagaStatus.FAILED, reason=reason)]

    async def _landed(self, saga_id: str, d: Drive, record: SagaRecord) -> bool:
        """After a write that errored then lost the CAS: did our own earlier attempt land?"""
        try:
            current, revision = await self.log.read(saga_id)
        except CorpsError:
            return False
        if current.owner == record.owner and current.state == record.state:
            d.revision, d.state, d.lease_until, d.owner = revision, record.state, current.lease_until, current.owner
            return True
        return False

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
        except TooLarge as exc:
            raise InvalidMessage(self.log.subject(saga_id), str(exc)) from exc
        await self.log.create_active(saga_id)
        self._own(engine, new, revision, taken.lease_until, commands, new.history[len(record.state.history):])

    def _engine_for(self, state: SagaState) -> Engine:
        engine = self._engines.get(state.saga)
        if engine is None:
            raise SagaStoreUnavailable(f"saga class {state.saga!r} is not registered with this coordinator")
        return engine

    # -- waiting --------------------------------------------------------------------------

    def drives(self, saga_id: str) -> bool:
        """True if this coordinator owns the saga now."""
        return saga_id in self._drives

    async def wait_local(self, saga_id: str) -> SagaRecord | None:
        """Return when this coordinator stops driving the saga (at once if it does not drive it):
        its terminal record as this coordinator wrote it, or None (not driven here, or it stopped
        driving it before its end: lost, crashed, a bug)."""
        d = self._drives.get(saga_id)
        if d is None:
            return None
        await d.ended.wait()
        if not d.state.status.terminal:
            return None
        return SagaRecord(state=d.state, owner=d.owner, lease_until=d.lease_until)

