"""An end-to-end saga world on a real nats-server: participants, coordinators, a recorder.

:class:`SagaWorld` is async; the state machine drives it from its sync rules through an anyio
blocking portal (an event loop in a thread of its own). It opens, in a namespace of its own:

* one ActorSystem hosting your participants, made fault-injecting and effect-recording
  (:class:`FaultInjector`);
* one ActorSystem whose coordinator runs the sagas, with a short lease so a crashed
  coordinator's sagas are taken over within a second. Every coordinator it starts writes the
  saga log through a recording wrapper (each write, with the revision it read and got, lands in
  the history: what the one-owner check reads). A write whose outcome the coordinator never
  learnt (it crashed, or the store failed, while the write was on its way: it may have landed)
  is recorded as indeterminate (``info``), and a crash as a ``crash`` op of its process;
* with ``standby=True``, a second coordinator system: it takes over what the first one's
  expired leases leave, so a *paused* first coordinator (``pause``: it stops renewing its
  leases and its saga-log writes stall, as a process stopped by a long GC or a VM pause does)
  comes back (``resume``) to sagas that another now drives, and every write it still tries
  must lose its compare-and-set.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.errors import CorpsError, RemoteError
from corps.saga import Coordinator, Saga, SagaInfo
from corps.saga._config import SagaConfig
from corps.saga._log import SagaLog, SagaRecord, Stale, TooLarge
from corps.system._system import ActorSystem
from corps.testing._history import History, LogWrite, OpType, log_digest
from corps.testing._participants import FaultInjector
from corps.testing._plans import CoordinatorCrash, FaultPlan


class _RecordingLog:
    """The saga log, with every create and write recorded (process = the writing coordinator)."""

    def __init__(self, inner: SagaLog, history: History, process: str,
                 gate: Callable[[], Awaitable[None]] | None = None) -> None:
        self._inner = inner
        self._history = history
        self._process = process
        self._gate = gate  # awaited before every write: a paused process's writes stall

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _record(self, type: OpType, record: SagaRecord, expected: int, revision: int) -> None:
        s = record.state
        self._history.record(type, "write", s.saga_id, process=self._process,
                             value=LogWrite(expected, revision, s.status, record.owner, log_digest(s)))

    async def create(self, record: SagaRecord) -> int | None:
        if self._gate is not None:
            await self._gate()
        try:
            revision = await self._inner.create(record)
        except BaseException:  # recorded, re-raised: a crash or an outage mid-write
            self._record("info", record, 0, 0)
            raise
        if revision is not None:
            self._record("ok", record, 0, revision)
        return revision

    async def write(self, record: SagaRecord, revision: int) -> int:
        if self._gate is not None:
            await self._gate()
        try:
            new = await self._inner.write(record, revision)
        except (Stale, TooLarge):  # refused: nothing was written
            self._record("fail", record, revision, 0)
            raise
        except BaseException:  # recorded, re-raised
            # Cancelled by a crash, or the store failed, after the write may have been handed to
            # the client: it may land all the same, and the next owner then reads it. Unknown.
            self._record("info", record, revision, 0)
            raise
        self._record("ok", record, revision, new)
        return new


class _CrashAt(set[str]):
    """A crash-point set that says yes to ``point`` only on its ``skip + 1``-th passage, and
    records the crash (a ``crash`` op of ``process``) when it says yes."""

    def __init__(self, crash: CoordinatorCrash, history: History, process: str) -> None:
        super().__init__()
        self.crash = crash
        self.passages = 0
        self._history, self._process = history, process

    def __contains__(self, point: object) -> bool:
        if point != self.crash.point:
            return False
        self.passages += 1
        if self.passages != self.crash.skip + 1:
            return self.passages > self.crash.skip
        self._history.record("info", "crash", "-", process=self._process, value=point)
        return True


class SagaWorld:
    """Participants + a coordinator system on one server, recording into ``history``.

    Args:
        url, server_name: the nats-server (``nats_server.url``, ``nats_server.server_name``).
        sagas: the saga classes the coordinators run.
        participants: (actor class, actor id) to spawn, fault-injecting.
        step_timeout: your steps' timeout (timeout faults answer after 1.5x it).
        lease, scan_interval: the coordinators' (short: takeovers within a second).
    """

    def __init__(self, url: str, server_name: str | None, sagas: Sequence[type[Saga[Any]]],
                 participants: Sequence[tuple[type[Actor], str]], *, step_timeout: float,
                 lease: float = 0.5, scan_interval: float = 0.05, history: History | None = None,
                 standby: bool = False) -> None:
        self.url, self.server_name = url, server_name
        self.sagas = tuple(sagas)
        self.participants = tuple(participants)
        self.history = history if history is not None else History()
        self.injector = FaultInjector(self.history, timeout=step_timeout)
        self.lease, self.scan_interval = lease, scan_interval
        self.config = SagaConfig(lease=lease, scan_interval=scan_interval)
        self.process: dict[Coordinator, str] = {}
        """Each coordinator started, and its process name in the history."""
        self.namespace = f"p{uuid.uuid4().hex[:10]}"
        self.started: dict[str, type[Saga[Any]]] = {}
        self.inputs: dict[str, Message] = {}
        """saga id -> its input, for domain checks."""
        self.crashes = 0
        self._generation = 0
        self._stack = contextlib.AsyncExitStack()
        self.parts: ActorSystem | None = None
        self.system: ActorSystem | None = None
        self.standby: ActorSystem | None = None
        self._want_standby = standby
        self.paused = False
        self.pauses = 0
        self._resumed = anyio.Event()
        self._resumed.set()

    async def __aenter__(self) -> SagaWorld:
        kwargs: dict[str, Any] = {"namespace": self.namespace}
        if self.server_name:
            kwargs["server_name"] = self.server_name
        self.parts = await self._stack.enter_async_context(ActorSystem(self.url, **kwargs))
        for cls, actor_id in self.participants:
            await self.parts.spawn(self.injector.participant(cls), actor_id)
        self.system = await self._coordinator_system(kwargs, pausable=True)
        if self._want_standby:
            self.standby = await self._coordinator_system(kwargs, pausable=False)
        return self

    async def _coordinator_system(self, kwargs: dict[str, Any], *, pausable: bool) -> ActorSystem:
        system = ActorSystem(self.url, sagas=self.sagas, saga=self.config, **kwargs)
        # Before it starts: a system with sagas starts its coordinator at once.
        self._instrument(system, self._until_resumed if pausable else None)
        await self._stack.enter_async_context(system)
        await system.coordinator()
        return system

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _until_resumed(self) -> None:
        while self.paused:
            await self._resumed.wait()

    def _instrument(self, system: ActorSystem, gate: Callable[[], Awaitable[None]] | None) -> None:
        """Every coordinator this system starts writes through a recording log, from its first write."""
        world = self

        async def coordinator() -> Coordinator:
            async with system._coordinator_lock:
                current = system._coordinator
                if current is None or current.dead:
                    assert system._tg is not None
                    world._generation += 1
                    process = f"{system.node[:8]}#{world._generation}"
                    saga_log = await SagaLog.open(system._nc.jetstream(), system.namespace, world.config)
                    recording: Any = _RecordingLog(saga_log, world.history, process, gate)
                    current = Coordinator(system, recording, world.config)
                    world.process[current] = process
                    for saga in system._saga_classes:
                        current.register(saga)
                    await system._tg.start(current.run)
                    system._coordinator = current
                    if world._generation > 1:
                        world.history.record("info", "restart", "-", process=process)
                return current

        system.coordinator = coordinator  # type: ignore[method-assign]

    # -- what the rules do --------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True if the coordinator is running (not crashed)."""
        assert self.system is not None
        c = self.system._coordinator
        return c is not None and not c.dead

    async def start(self, saga: type[Saga[Any]], saga_input: Message, plan: FaultPlan,
                    saga_id: str | None = None) -> str:
        """Start a saga under ``plan`` (its crash, if any, is armed on the live coordinator)."""
        assert self.system is not None
        saga_id = saga_id or f"s{uuid.uuid4().hex[:12]}"
        self.injector.plans[saga_id] = plan
        self.inputs[saga_id] = saga_input
        self.history.record("invoke", "start", saga_id, value=plan)
        if plan.crash is not None:
            await self.arm(plan.crash)
        # A paused coordinator cannot start anything: a client's start reaches a live one.
        system = self.standby if self.paused and self.standby is not None else self.system
        try:
            await system.start_saga(saga, saga_input, saga_id)
        except CorpsError as exc:
            self.history.record("info", "start", saga_id, value=repr(exc))
            return saga_id
        self.history.record("ok", "start", saga_id)
        self.started[saga_id] = saga
        return saga_id

    async def arm(self, crash: CoordinatorCrash) -> None:
        """The live coordinator dies at ``crash``'s point (its ``skip + 1``-th passage)."""
        assert self.system is not None
        coordinator = await self.system.coordinator()
        coordinator.crash_points = _CrashAt(crash, self.history, self.process.get(coordinator, "?"))
        self.crashes += 1

    async def pause(self) -> None:
        """The live coordinator stops renewing its leases and its saga-log writes stall until
        ``resume``: the standby takes its sagas over once their leases run out, and the writes
        it makes when resumed must then fail."""
        assert self.system is not None
        assert self.standby is not None, "pause needs SagaWorld(standby=True)"
        coordinator = await self.system.coordinator()
        coordinator.renewing = False
        self._resumed = anyio.Event()
        self.paused = True
        self.pauses += 1
        self.history.record("info", "pause", "-")

    async def resume(self) -> None:
        """The paused coordinator renews its leases again (those it still holds)."""
        assert self.system is not None
        c = self.system._coordinator
        if c is not None:
            c.renewing = True
        self.paused = False
        self._resumed.set()
        self.history.record("info", "resume", "-")

    async def restart(self) -> None:
        """Start a fresh coordinator if the last one died; it takes over once the lease runs out."""
        assert self.system is not None
        await self.system.coordinator()  # while paused, a fresh one's writes stall too (resume)

    async def redeliver(self, key: str) -> None:
        """Deliver a step request again (same idempotency key), as a duplicating transport would:
        refused requests too, whose refusal ``@idempotent`` recorded and must repeat."""
        assert self.parts is not None
        found = self.injector.requests.get(key)
        if found is None:
            return
        cls, actor_id, msg = found
        with contextlib.suppress(RemoteError, CorpsError):  # a fenced step is refused: fine
            await self.parts.ref(cls, actor_id).ask(msg, idempotency_key=key, timeout=2.0)  # type: ignore[arg-type]

    async def observe(self) -> dict[str, SagaInfo]:
        """Read every started saga's log into the history (for the invariants mid-run)."""
        assert self.system is not None
        infos = {}
        for sid in self.started:
            with contextlib.suppress(CorpsError):
                infos[sid] = info = await self.system.saga_status(sid)
                self.history.observe(info)
        return infos

    async def drain(self, timeout: float = 20.0) -> None:
        """Heal every fault, make sure a coordinator runs, wait for every saga, read them all."""
        assert self.system is not None
        self.injector.heal()
        c = self.system._coordinator
        if c is not None and not c.dead:
            c.crash_points = set()
        await self.resume()
        await self.restart()
        deadline = time.monotonic() + timeout
        for sid in self.started:
            with contextlib.suppress(CorpsError):
                await self.system.wait_saga(sid, timeout=max(0.1, deadline - time.monotonic()))
        with anyio.fail_after(10):
            for info in await self.system.list_sagas():
                self.history.observe(info, final=True)
