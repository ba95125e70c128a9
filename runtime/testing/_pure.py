"""The pure level: one saga through ``Engine.advance`` against scripted participants, recorded.

No I/O and no wall clock: a virtual clock and a timer heap, so hypothesis runs hundreds of
examples a second and shrinks every failure. It speaks the same :class:`FaultPlan` as the
end-to-end fault injector and writes the same :class:`History`, so one checker serves both.

The model: a coordinator process (``c1``, then ``c2``... after each crash) applies events to the
engine, "writes" the state to a log with a revision (CAS, as the real log), then carries out
the commands. Participants are idempotent as ``@idempotent`` / ``@compensation`` promise:
effects keyed by idempotency key, applied once, and a compensation that comes first fences the
step. A crash loses the dead coordinator's pending replies and timers; a fresh one resumes from
the log (through msgpack) once the lease has run out.

Besides the history, a :class:`PureRun` keeps what only this level sees: every call of the
engine (:class:`Turn`) and every command carried out, for tests of the engine itself
(:meth:`PureRun.problems`, replays through the log, determinism).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import msgspec

from corps.core._messages import Message
from corps.saga import (
    Command,
    Engine,
    Event,
    Finish,
    RetryDue,
    Saga,
    SagaState,
    SagaStatus,
    ScheduleRetry,
    SendStep,
    SendUndo,
    Started,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    UndoFailed,
    UndoSucceeded,
    UndoTimedOut,
    decode_state,
    encode_state,
    step_key,
)
from corps.testing._history import History, LogWrite, log_digest
from corps.testing._placeholder import placeholder_reply
from corps.testing._plans import CoordinatorCrash, FaultPlan

LATENCY: Final = 0.01
MAX_EVENTS: Final = 5_000


class _Crashed(Exception):
    """The coordinator died at a crash point (internal to the driver)."""


@dataclasses.dataclass(frozen=True)
class Turn:
    """One call of the engine by the driver."""

    event: Event | None
    """What was delivered (Started first); None: a new coordinator resuming from the log."""
    status: SagaStatus
    """The saga's status after it."""
    changed: bool
    """The engine returned a new state (written to the log at once)."""
    commands: tuple[Command, ...]
    """What the engine said to do; a crash may lose some (see :attr:`PureRun.commands`)."""


@dataclasses.dataclass
class PureRun:
    """What :func:`run_pure` returns."""

    saga_id: str
    state: SagaState
    history: History
    events: int
    turns: list[Turn] = dataclasses.field(default_factory=list)
    """Every call of the engine, in order: each delivered event (stale ones and the redelivery
    included) and each resume after a crash."""
    commands: list[Command] = dataclasses.field(default_factory=list)
    """Every command carried out, in order: requests to participants, timers, the Finish. Not
    those a crash lost (after_write: all of a turn's; after_send: the rest)."""

    def effects(self, f: str = "effect") -> list[str]:
        """The steps of this saga's participant ops ``f``, in order: ``effect`` (a forward effect
        applied), ``compensate``, ``noop`` (compensated before it ran: fenced) or ``refused`` (a
        fenced forward request)."""
        return [op.step for op in self.history.of(self.saga_id)
                if op.f == f and op.type == "ok" and op.step is not None]

    def problems(self) -> list[str]:
        """What :func:`check_saga_invariants` cannot see, from the engine's turns and commands:

        * once the saga is terminal, no event changes it or gives a command, nor does a resume
          change it;
        * one Finish is given when the saga turns terminal and none before (a new coordinator's
          resume of a terminal saga gives it again, by design), and one is carried out;
        * every request carries the idempotency key ``{saga_id}:{step}`` (``...:undo`` for a
          compensation), whatever its attempt.

        Returns:
            The violations; empty if all hold.
        """
        problems = []
        ended = False
        for turn in self.turns:
            what = type(turn.event).__name__ if turn.event is not None else "a resume"
            finishes = sum(isinstance(c, Finish) for c in turn.commands)
            if ended and (turn.changed or (turn.event is not None and turn.commands)):
                problems.append(f"{what} changed the terminal saga or gave commands {list(turn.commands)}")
            elif finishes != int(turn.status.terminal and (turn.event is None or not ended)):
                problems.append(f"{what} gave {finishes} Finish command(s), the saga {turn.status}")
            ended = ended or turn.status.terminal
        if not any(isinstance(c, Finish) for c in self.commands):
            problems.append("no Finish carried out")
        for c in self.commands:
            if isinstance(c, SendStep | SendUndo):
                key = step_key(self.saga_id, c.step, undo=isinstance(c, SendUndo))
                if c.idempotency_key != key:
                    problems.append(f"{type(c).__name__} {c.step!r} #{c.attempt}: key {c.idempotency_key!r}, "
                                    f"expected {key!r}")
        return problems


def run_pure(
    saga: type[Saga[Any]],
    saga_input: Message,
    plan: FaultPlan,
    *,
    saga_id: str = "saga-1",
    history: History | None = None,
    reply: Callable[[SendStep], Message] | None = None,
    lease: float = 1.0,
    redeliver: bool = True,
    crashes: Sequence[CoordinatorCrash] = (),
    count_faults: Literal["delivery", "attempt"] = "delivery",
) -> PureRun:
    """Run one saga to its end under ``plan`` on the pure engine, recording into ``history``.

    Args:
        saga: the definition; saga_input: its input.
        plan: the faults, and maybe a coordinator crash.
        saga_id: the saga's id.
        history: record into this history (several sagas may share one); a fresh one by default.
        reply: builds a step's reply from its command (``cmd.request``); by default the request's
            reply type, with the request's fields of the same name and zero values for the rest.
        lease: virtual seconds before another coordinator takes over after a crash.
        redeliver: once terminal, deliver every event again (a correct engine ignores them all).
        crashes: more coordinator crashes: after the plan's crash (if any), the n-th coordinator
            dies at the n-th one (``skip`` counted within that coordinator's life).
        count_faults: what a fault's ``times`` / ``undo_times`` count: deliveries of the
            idempotency key (as end to end), or attempt numbers (an attempt re-sent by a new
            coordinator meets the same fault: a crash alone cannot change the outcome).

    Raises:
        RuntimeError: no terminal state within MAX_EVENTS events.
        TypeError: without ``reply``, a reply that cannot be built by itself (the error says which).
    """
    clock = _Clock()
    history = history if history is not None else History(clock=clock)
    deaths = [*([plan.crash] if plan.crash is not None else []), *crashes]
    world = _World(saga, plan, saga_id, history, clock, reply or _default_reply, lease, deaths,
                   per_attempt=count_faults == "attempt")
    return world.run(saga_input, redeliver)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _World:
    def __init__(self, saga: type[Saga[Any]], plan: FaultPlan, saga_id: str, history: History,
                 clock: _Clock, reply: Callable[[SendStep], Message], lease: float,
                 crashes: list[CoordinatorCrash], *, per_attempt: bool) -> None:
        self.saga, self.plan, self.saga_id, self.history = saga, plan, saga_id, history
        self.clock, self.reply, self.lease = clock, reply, lease
        self.queue: list[tuple[float, int, Event]] = []
        self.seq = 0
        self.generation = 1
        self.revision = 0
        self.engine = Engine(saga)
        self.crashes = crashes  # coordinator n dies at crashes[n - 1]
        self.crash_hits = 0
        self.per_attempt = per_attempt
        self.deliveries: dict[str, int] = {}
        self.turns: list[Turn] = []
        self.commands: list[Command] = []
        self.records: dict[str, bool] = {}  # idempotency key -> done (True) or fenced (False)

    @property
    def process(self) -> str:
        return f"c{self.generation}"

    def record(self, type: Any, f: str, step: str | None = None, value: Any = None,
               process: str | None = None) -> None:
        self.history.record(type, f, self.saga_id, step, value=value, process=process or self.process,
                            at=self.clock.now)

    # -- the coordinator ----------------------------------------------------------------------

    def advance(self, state: SagaState | None, event: Event) -> tuple[SagaState, list[Command]]:
        new, commands = self.engine.advance(state, event)
        self.turns.append(Turn(event, new.status, new is not state, tuple(commands)))
        return new, commands

    def run(self, saga_input: Message, redeliver: bool) -> PureRun:
        self.record("invoke", "start", process="client")
        state, commands = self.advance(None, Started.of(self.saga_id, saga_input, at=0.0))
        self.write(state)
        self.record("ok", "start", process="client")
        state = self.step(state, commands)
        delivered: list[Event] = []
        while self.queue:
            if len(delivered) > MAX_EVENTS:
                raise RuntimeError(f"saga {self.saga_id!r} still {state.status} after {MAX_EVENTS} events")
            self.clock.now, _, event = heapq.heappop(self.queue)
            delivered.append(event)
            try:
                if isinstance(event, StepSucceeded):
                    self.hook("after_reply")
                elif isinstance(event, UndoSucceeded):
                    self.hook("mid_compensation")
                new, commands = self.advance(state, event)
                if new is state and not commands:
                    continue
                if new is not state:
                    self.write(new)
                    state = new
                    self.hook("after_write")
                state = self.step(state, commands)
            except _Crashed:
                state = self.take_over(state)
        if redeliver:
            for event in delivered:  # all stale now: a change would be written, and caught
                new, _ = self.advance(state, event)
                if new is not state:
                    self.write(new)
                    state = new
        self.history.observe(state, final=True)
        return PureRun(self.saga_id, state, self.history, len(delivered), self.turns, self.commands)

    def step(self, state: SagaState, commands: list[Command]) -> SagaState:
        try:
            self.carry_out(commands)
        except _Crashed:
            return self.take_over(state)
        return state

    def write(self, state: SagaState) -> None:
        self.revision += 1
        self.record("ok", "write", value=LogWrite(self.revision - 1, self.revision, state.status,
                                                  "" if state.status.terminal else self.process,
                                                  log_digest(state)))

    def hook(self, point: str) -> None:
        crash = self.crashes[self.generation - 1] if self.generation <= len(self.crashes) else None
        if crash is None or crash.point != point:
            return
        self.crash_hits += 1
        if self.crash_hits > crash.skip:
            self.record("info", "crash", value=point)
            raise _Crashed(point)

    def take_over(self, logged: SagaState) -> SagaState:
        while True:
            self.queue.clear()  # replies to the dead coordinator's inbox, and its timers, are gone
            self.clock.now += self.lease
            self.generation += 1
            self.crash_hits = 0
            self.engine = Engine(self.saga)
            state = decode_state(encode_state(logged))
            self.record("info", "restart")
            new, commands = self.engine.resume(state, self.clock.now)
            self.turns.append(Turn(None, new.status, new is not state, tuple(commands)))
            if new is not state:
                self.write(new)
            try:
                self.carry_out(commands)
            except _Crashed:  # this one died too (crashes=): the next resumes from what it wrote
                logged = new
                continue
            return new

    def carry_out(self, commands: list[Command]) -> None:
        now = self.clock.now
        for cmd in commands:
            self.commands.append(cmd)
            match cmd:
                case SendStep():
                    self.forward(cmd, now)
                    self.hook("after_send")
                case SendUndo():
                    self.undo(cmd, now)
                    self.hook("after_send")
                case ScheduleRetry(step=step, attempt=attempt, compensation=undo, due_at=due):
                    due = max(due, now)
                    self.at(due, RetryDue(step=step, attempt=attempt, compensation=undo, at=due))
                case Finish():
                    pass

    def at(self, when: float, event: Event) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, event))

    # -- the participants ---------------------------------------------------------------------

    def forward(self, cmd: SendStep, now: float) -> None:
        f, name, attempt = self.plan.fault(cmd.step), cmd.step, cmd.attempt
        d = self.delivery(cmd)
        late, done = now + cmd.timeout, now + LATENCY
        if f.kind == "reject" or (f.kind == "transient" and d <= f.times):
            terminal = f.kind == "reject"
            self.at(done, _failed(StepFailed, name, attempt, done, terminal))
            return
        if f.kind == "timeout_before" and d <= f.times:
            self.at(late, StepTimedOut(step=name, attempt=attempt, at=late))
            return
        reply = self.apply(cmd)
        if reply is None:  # fenced
            self.at(done, _failed(StepFailed, name, attempt, done, True, "fenced"))
            return
        when = done + (f.delay if f.kind == "delay" else 0.0)
        if f.kind == "timeout_after" and d <= f.times:
            when = late + LATENCY
        if when > late:
            self.at(late, StepTimedOut(step=name, attempt=attempt, at=late))
        self.at(when, StepSucceeded(step=name, attempt=attempt, reply=reply, at=when))
        if f.kind == "duplicate":  # delivered twice: the second is answered from the record
            again = self.apply(cmd)
            if again is not None:
                self.at(when + LATENCY, StepSucceeded(step=name, attempt=attempt, reply=again, at=when + LATENCY))

    def delivery(self, cmd: SendStep | SendUndo) -> int:
        """Which delivery of its key this is (or, counting per attempt, its attempt number)."""
        key = cmd.idempotency_key
        self.deliveries[key] = self.deliveries.get(key, 0) + 1
        return cmd.attempt if self.per_attempt else self.deliveries[key]

    def apply(self, cmd: SendStep) -> bytes | None:
        key = cmd.idempotency_key
        seen = self.records.get(key)
        if seen is False:
            self.record("ok", "refused", cmd.step, process="participant")
            return None
        if seen is None:
            self.records[key] = True
            self.record("ok", "effect", cmd.step, process="participant")
        return msgspec.msgpack.encode(self.reply(cmd))

    def undo(self, cmd: SendUndo, now: float) -> None:
        f, name, attempt = self.plan.fault(cmd.step), cmd.step, cmd.attempt
        d = self.delivery(cmd)
        done = now + LATENCY
        if f.undo == "reject" or (f.undo == "transient" and d <= f.undo_times):
            self.at(done, _failed(UndoFailed, name, attempt, done, f.undo == "reject"))
            return
        self.apply_undo(cmd)
        if f.undo == "timeout" and d <= f.undo_times:
            late = now + cmd.timeout
            self.at(late, UndoTimedOut(step=name, attempt=attempt, at=late))
        else:
            self.at(done, UndoSucceeded(step=name, attempt=attempt, at=done))

    def apply_undo(self, cmd: SendUndo) -> None:
        key = cmd.idempotency_key
        if key in self.records:
            return
        self.records[key] = True
        forward = key.removesuffix(":undo")
        if self.records.get(forward) is None:
            self.records[forward] = False  # never ran: a no-op, and a fence
            self.record("ok", "noop", cmd.step, process="participant")
        else:
            self.record("ok", "compensate", cmd.step, process="participant")


def _failed(cls: type[StepFailed] | type[UndoFailed], step: str, attempt: int, at: float, terminal: bool,
            message: str = "scripted") -> StepFailed | UndoFailed:
    error_type = "StepRejected" if terminal else "RuntimeError"
    return cls(step=step, attempt=attempt, error_type=error_type, message=message, terminal=terminal, at=at)


def _default_reply(cmd: SendStep) -> Message:
    return placeholder_reply(cmd.request)
