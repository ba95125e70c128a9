"""A pure, discrete-event simulator: the saga engine against scripted participants.

``simulate`` plays one saga with a :class:`FaultPlan` (what each step's participant does on
each attempt) on a virtual clock. Participants are modelled as the runtime's idempotency
helper promises: effects keyed by idempotency key, applied at most once; a compensation of
a step that never applied is a recorded no-op that fences a late forward request. Coordinator
crashes can be injected at named points. The result feeds :func:`runtime.saga._invariants.check_simulation`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import msgspec

from runtime._messages import Message, reply_type
from runtime.saga._definition import Saga
from runtime.saga._engine import Engine
from runtime.saga._state import (
    Command,
    Event,
    Finish,
    RetryDue,
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
)

StepFault = Literal["ok", "fail", "reject", "timeout_before", "timeout_after", "duplicate"]
UndoFault = Literal["ok", "fail", "timeout", "reject"]

MAX_EVENTS: Final = 10_000


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    """What one step's participant does.

    ``kind`` for the forward request: ``ok``; ``fail`` (the first ``times`` attempts raise,
    then it succeeds); ``reject`` (StepRejected, no effect); ``timeout_before`` (the first
    ``times`` attempts get no reply and have no effect); ``timeout_after`` (the first ``times``
    attempts apply the effect but the reply comes after the timeout); ``duplicate`` (the reply
    is delivered twice). ``undo`` and ``undo_times`` do the same for the compensation.
    """

    kind: StepFault = "ok"
    times: int = 1
    latency: float = 0.01
    undo: UndoFault = "ok"
    undo_times: int = 1


FaultPlan = Mapping[str, Fault]
"""Step name -> Fault; a step not named is ``Fault()``: it just works."""


CrashPoint = Literal["before_write", "after_write", "after_send"]
"""Where a coordinator dies while handling an event: before its state reaches the saga log
(the event is lost), after the write but before the commands went out, or after both."""


class Record(msgspec.Struct, frozen=True):
    """One event fed to the engine (None: a resume after a crash) and what came of it."""

    event: Event | None
    before: SagaStatus
    after: SagaStatus
    changed: bool
    commands: tuple[Command, ...]
    lost: bool = False
    """The coordinator crashed before carrying out ``commands`` (and, before_write, the state)."""


class Ledger(msgspec.Struct, kw_only=True):
    """A participant's effects per step name: the ground truth the saga log is checked against."""

    executions: dict[str, int] = msgspec.field(default_factory=dict)
    """Times the forward effect ran (must stay <= 1: idempotency)."""
    undos: dict[str, int] = msgspec.field(default_factory=dict)
    """Times the compensation's effect ran (<= 1), not counting no-ops."""
    empty_undos: set[str] = msgspec.field(default_factory=set)
    """Steps compensated before their effect applied: recorded no-ops, and fenced."""
    keys: dict[str, set[str]] = msgspec.field(default_factory=dict)
    """Idempotency keys seen per step (forward and compensation)."""

    def net(self, step: str) -> int:
        """1 if the step's effect stands, 0 if it never applied or was undone."""
        return self.executions.get(step, 0) - self.undos.get(step, 0)


class Simulation(msgspec.Struct, frozen=True):
    """What ``simulate`` returns: the final state, every record in delivery order, the ledger."""

    saga_id: str
    state: SagaState
    records: tuple[Record, ...]
    ledger: Ledger


def simulate(
    saga: type[Saga[Any]],
    saga_input: Message,
    plan: FaultPlan,
    *,
    saga_id: str = "saga-1",
    reply: Callable[[SendStep], Message] | None = None,
    crashes: Mapping[int, CrashPoint] | None = None,
    redeliver: bool = True,
) -> Simulation:
    """Run one saga to its end against scripted participants, on a virtual clock.

    Args:
        saga: the definition.
        saga_input: its input.
        plan: what each step's participant does.
        saga_id: the saga's id.
        reply: builds a step's reply; by default the request's reply type with no arguments.
        crashes: event index (0 = the first event after Started) -> where the coordinator
            dies handling it. Its pending replies and timers die with it; a fresh engine
            resumes from the saga log (the state, through msgpack).
        redeliver: once the saga is terminal, deliver every event again (all must be stale).

    Returns:
        The run.

    Raises:
        RuntimeError: the saga did not end within MAX_EVENTS events.
    """
    engine = Engine(saga)
    world = _World(plan, reply or _default_reply)
    started = Started.of(saga_id, saga_input, at=0.0)
    state, commands = engine.advance(None, started)
    records = [Record(started, SagaStatus.RUNNING, state.status, True, tuple(commands))]
    world.carry_out(commands, now=0.0)
    delivered: list[Event] = []
    while world.queue:
        if len(records) > MAX_EVENTS:
            raise RuntimeError(f"saga {saga_id!r} still {state.status} after {MAX_EVENTS} events")
        now, _, event = heapq.heappop(world.queue)
        crash = (crashes or {}).get(len(delivered))
        delivered.append(event)
        new, commands = engine.advance(state, event)
        logged = state if crash == "before_write" else new
        if crash is None or logged.status.terminal:
            records.append(Record(event, state.status, new.status, new is not state, tuple(commands)))
            state = new
            world.carry_out(commands, now)
            continue
        sent = crash == "after_send"
        records.append(Record(event, state.status, new.status, new is not state, tuple(commands), lost=not sent))
        if sent:
            world.carry_out(commands, now)
        world.queue.clear()  # replies to the dead coordinator's inbox, and its timers, are gone
        engine = Engine(saga)
        state = decode_state(encode_state(logged))
        new, commands = engine.resume(state, now)
        records.append(Record(None, state.status, new.status, new is not state, tuple(commands)))
        state = new
        world.carry_out(commands, now)
    if redeliver:
        for event in delivered:
            new, commands = engine.advance(state, event)
            records.append(Record(event, state.status, new.status, new is not state, tuple(commands)))
            state = new
    return Simulation(saga_id, state, tuple(records), world.ledger)


class _World:
    """The participants and the timer wheel: turns commands into future events."""

    def __init__(self, plan: FaultPlan, reply: Callable[[SendStep], Message]) -> None:
        self.plan = plan
        self.reply = reply
        self.ledger = Ledger()
        self.queue: list[tuple[float, int, Event]] = []
        self._seq = 0

    def at(self, when: float, event: Event) -> None:
        self._seq += 1  # ties break in sending order: deterministic
        heapq.heappush(self.queue, (when, self._seq, event))

    def carry_out(self, commands: list[Command], now: float) -> None:
        for command in commands:
            match command:
                case SendStep():
                    self._forward(command, now)
                case SendUndo():
                    self._undo(command, now)
                case ScheduleRetry(step=step, attempt=attempt, compensation=undo, due_at=due):
                    due = max(due, now)
                    self.at(due, RetryDue(step=step, attempt=attempt, compensation=undo, at=due))
                case Finish():
                    pass

    def _forward(self, cmd: SendStep, now: float) -> None:
        fault = self.plan.get(cmd.step, Fault())
        self.ledger.keys.setdefault(cmd.step, set()).add(cmd.idempotency_key)
        name, attempt, done = cmd.step, cmd.attempt, now + fault.latency
        if cmd.step in self.ledger.empty_undos:  # fenced: the compensation came first
            self.at(done, _failed(StepFailed, name, attempt, done, terminal=True, message="fenced"))
            return
        misbehaves = attempt <= fault.times
        late = now + cmd.timeout
        match fault.kind:
            case "reject":
                self.at(done, _failed(StepFailed, name, attempt, done, terminal=True))
            case "fail" if misbehaves:
                self.at(done, _failed(StepFailed, name, attempt, done, terminal=False))
            case "timeout_before" if misbehaves:
                self.at(late, StepTimedOut(step=name, attempt=attempt, at=late))
            case "timeout_after" if misbehaves:
                reply = self._apply(cmd)
                self.at(late, StepTimedOut(step=name, attempt=attempt, at=late))
                # The reply still arrives, after the coordinator stopped waiting: it must be stale.
                self.at(
                    late + fault.latency,
                    StepSucceeded(step=name, attempt=attempt, reply=reply, at=late + fault.latency),
                )
            case _:
                reply = self._apply(cmd)
                self.at(done, StepSucceeded(step=name, attempt=attempt, reply=reply, at=done))
                if fault.kind == "duplicate":
                    self.at(
                        done + fault.latency,
                        StepSucceeded(step=name, attempt=attempt, reply=reply, at=done + fault.latency),
                    )

    def _apply(self, cmd: SendStep) -> bytes:
        # Idempotent by key: the effect runs once; later attempts get the same reply.
        if self.ledger.executions.get(cmd.step, 0) == 0:
            self.ledger.executions[cmd.step] = 1
        return msgspec.msgpack.encode(self.reply(cmd))

    def _undo(self, cmd: SendUndo, now: float) -> None:
        fault = self.plan.get(cmd.step, Fault())
        self.ledger.keys.setdefault(cmd.step, set()).add(cmd.idempotency_key)
        name, attempt, done = cmd.step, cmd.attempt, now + fault.latency
        misbehaves = attempt <= fault.undo_times
        match fault.undo:
            case "reject":
                self.at(done, _failed(UndoFailed, name, attempt, done, terminal=True))
            case "fail" if misbehaves:
                self.at(done, _failed(UndoFailed, name, attempt, done, terminal=False))
            case "timeout" if misbehaves:
                self._apply_undo(name)
                self.at(now + cmd.timeout, UndoTimedOut(step=name, attempt=attempt, at=now + cmd.timeout))
            case _:
                self._apply_undo(name)
                self.at(done, UndoSucceeded(step=name, attempt=attempt, at=done))

    def _apply_undo(self, step: str) -> None:
        if self.ledger.executions.get(step, 0) == 0:
            self.ledger.empty_undos.add(step)  # compensating what never ran: a no-op, and a fence
        elif self.ledger.undos.get(step, 0) == 0:
            self.ledger.undos[step] = 1


def _failed(
    cls: type[StepFailed] | type[UndoFailed],
    step: str,
    attempt: int,
    at: float,
    *,
    terminal: bool,
    message: str = "scripted",
) -> StepFailed | UndoFailed:
    error_type = "StepRejected" if terminal else "RuntimeError"
    return cls(step=step, attempt=attempt, error_type=error_type, message=message, terminal=terminal, at=at)


def _default_reply(cmd: SendStep) -> Message:
    expected = reply_type(type(cmd.request))
    if expected is None:
        raise TypeError(f"{type(cmd.request).__name__} names no reply type: pass reply= to simulate")
    result: Message = expected()
    return result
