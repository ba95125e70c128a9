"""The pure saga engine: ``Engine(saga).advance(state, event) -> (state, commands)``.

No I/O, no clock, no randomness: time arrives in each event's ``at``, jitter is a hash of
(saga, step, attempt), and the definition's functions are assumed pure. The coordinator
persists the returned state *before* it carries out the commands, so a crash between the two
is repaired by :meth:`Engine.resume`, which re-issues whatever was in flight; participants
deduplicate by idempotency key. Between the two, a state that says "sent" may not have been
sent: that is why a resent request is treated as possibly applied.

Rules, in brief:

* A stage (one step, or a Parallel group) is sent all at once; the next starts when every
  step of it has succeeded.
* ``StepFailed(terminal=True)`` gives up at once; other failures and timeouts retry per the
  step's policy. A step given up on after a timeout (or an ``uncertain`` failure) is UNCERTAIN:
  it may have applied, so it is compensated (its undo must be a no-op if it never ran). A step
  whose command cannot be built or sent (``_command``) is REJECTED before anything is sent.
* Compensation starts when no forward request is in flight, then undoes the SUCCEEDED and
  UNCERTAIN steps stage by stage in reverse order, each once; a stage's undos run together.
* Steps after the pivot are retried until they succeed; a rejection there ends the saga FAILED.
* An event that does not match the state (unknown step, wrong attempt, already settled, saga
  terminal) is stale: the state is returned unchanged, with no command.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

import msgspec

from corps.saga._command import Unbuildable, actor_id_problem, build_step
from corps.saga._compensation import Compensation
from corps.saga._definition import Saga
from corps.saga._retry import Retry, jitter_sample
from corps.saga._state import (
    Command,
    Event,
    Finish,
    Kind,
    OperatorRetry,
    RetryDue,
    SagaState,
    SagaStatus,
    ScheduleRetry,
    SendStep,
    Started,
    StepFailed,
    StepState,
    StepStatus,
    StepSucceeded,
    StepTimedOut,
    UndoFailed,
    UndoStatus,
    UndoSucceeded,
    UndoTimedOut,
    step_key,
)
from corps.saga._tx import ContextBuilder, Tx

_IN_FLIGHT: Final = (StepStatus.RUNNING, StepStatus.WAITING)
_ALL_SUCCEEDED: Final = {StepStatus.SUCCEEDED}


class Engine(Compensation):
    """The rules of one saga definition, applied to states and events."""

    def __init__(self, saga: type[Saga[Any]]) -> None:
        """Bind the engine to ``saga``.

        Raises:
            TypeError: ``saga`` is not a checked Saga subclass.
        """
        if not (isinstance(saga, type) and issubclass(saga, Saga) and "stages" in vars(saga)):
            raise TypeError(f"{saga!r} is not a Saga subclass with steps")
        self.saga = saga
        self._stages = saga.stages
        self._input = msgspec.msgpack.Decoder(saga.input_type)
        self._stage_of = {st.name: i for i, stage in enumerate(self._stages) for st in stage}
        self._defs = {st.name: st for stage in self._stages for st in stage}
        self._contexts = ContextBuilder(saga)

    # -- public ---------------------------------------------------------------------------------

    def advance(self, state: SagaState | None, event: Event) -> tuple[SagaState, list[Command]]:
        """Apply ``event`` to ``state``: the next state, and the commands it leads to.

        Args:
            state: the saga's current state; None only before ``Started``.
            event: what happened; stale events change nothing.

        Returns:
            The new state (the same object if the event was stale) and the commands to run
            once it is persisted, in order.

        Raises:
            ValueError: ``state`` is None and ``event`` is not Started.
            msgspec.ValidationError: Started's input is not the saga's input type.
        """
        if isinstance(event, Started):
            return (state, []) if state is not None else self._start(event)
        if state is None:
            raise ValueError(f"no saga state: the first event must be Started, not {type(event).__name__}")
        if state.status.terminal and not isinstance(event, OperatorRetry):
            return state, []
        tx = Tx(state, event.at)
        if not self._apply(tx, event):
            return state, []
        self._progress(tx)
        return tx.freeze(), tx.commands

    def resume(self, state: SagaState, at: float) -> tuple[SagaState, list[Command]]:
        """What a coordinator taking over a saga (after a crash) must do to carry it on.

        Everything in flight is sent again (same attempt, same idempotency key: participants
        deduplicate), every scheduled retry is scheduled again for its ``due_at``, and a
        terminal saga gives its Finish again.

        Args:
            state: the saga's state as read from the saga log.
            at: the coordinator's clock now.

        Returns:
            The state, the same object unless a request can no longer be built (say, the
            definition changed): that step is then given up on, as an uncertain one, and
            the returned state must be persisted first. Then the commands.
        """
        if state.status.terminal:
            return state, [Finish(status=state.status, reason=state.reason)]
        tx = Tx(state, at)
        for s in state.steps:
            if s.status is StepStatus.RUNNING:
                self._send(tx, s.name, s.attempt, resent=True)
            elif s.status is StepStatus.WAITING:
                tx.commands.append(self._schedule(tx, s.name, s.attempt, False, s.due_at))
            if s.undo_status is UndoStatus.RUNNING:
                self._send_undo(tx, s.name, s.undo_attempt, resent=True)
            elif s.undo_status is UndoStatus.WAITING:
                tx.commands.append(self._schedule(tx, s.name, s.undo_attempt, True, s.undo_due_at))
        if not tx.history:  # nothing changed: re-sends only
            return state, tx.commands
        self._progress(tx)
        return tx.freeze(), tx.commands

    # -- events ---------------------------------------------------------------------------------

    def _start(self, event: Started) -> tuple[SagaState, list[Command]]:
        self._input.decode(event.input)  # refuse a wrong input before anything is recorded
        state = SagaState(
            saga=self.saga.saga_name,
            saga_id=event.saga_id,
            input=event.input,
            status=SagaStatus.RUNNING,
            stage=0,
            steps=tuple(StepState(name) for name in self._defs),
            history=(),
        )
        tx = Tx(state, event.at)
        tx.log(Kind.STARTED)
        self._progress(tx)
        return tx.freeze(), tx.commands

    def _apply(self, tx: Tx, event: Event) -> bool:
        """Record ``event`` in ``tx``; False if it is stale."""
        match event:
            case StepSucceeded(step=name, attempt=attempt, reply=reply):
                if self._running(tx, name, attempt) is None:
                    return False
                tx.set(name, status=StepStatus.SUCCEEDED, reply=reply, error=None)
                tx.log(Kind.SUCCEEDED, name, attempt)
                if self._defs[name].pivot and tx.status is SagaStatus.RUNNING:
                    tx.log(Kind.COMMITTED, name, attempt)
            case StepFailed(step=name, attempt=attempt, terminal=terminal):
                if (s := self._running(tx, name, attempt)) is None:
                    return False
                if event.uncertain:  # it may have applied: compensated if given up
                    s = tx.set(name, uncertain=True)
                error = f"{event.error_type}: {event.message}"
                tx.log(Kind.REJECTED if terminal else Kind.FAILED, name, attempt, error)
                if terminal:
                    self._give_up(tx, s, error, f"step {name!r} was rejected: {error}")
                else:
                    self._retry_step(tx, s, error)
            case StepTimedOut(step=name, attempt=attempt):
                if (s := self._running(tx, name, attempt)) is None:
                    return False
                tx.log(Kind.TIMED_OUT, name, attempt)
                self._retry_step(tx, tx.set(name, uncertain=True), "timed out")
            case RetryDue(step=name, attempt=attempt, compensation=False):
                s = tx.steps.get(name)
                if tx.status is not SagaStatus.RUNNING or s is None or s.status is not StepStatus.WAITING:
                    return False
                if attempt != s.attempt + 1:
                    return False
                self._send(tx, name, attempt)
            case RetryDue(step=name, attempt=attempt, compensation=True):
                s = tx.steps.get(name)
                if tx.status is not SagaStatus.COMPENSATING or s is None:
                    return False
                if s.undo_status is not UndoStatus.WAITING or attempt != s.undo_attempt + 1:
                    return False
                self._send_undo(tx, name, attempt)
            case UndoSucceeded(step=name, attempt=attempt):
                if self._undoing(tx, name, attempt) is None:
                    return False
                tx.set(name, undo_status=UndoStatus.DONE, error=None)
                tx.log(Kind.UNDONE, name, attempt)
            case UndoFailed(step=name, attempt=attempt, terminal=terminal):
                if (s := self._undoing(tx, name, attempt)) is None:
                    return False
                error = f"{event.error_type}: {event.message}"
                tx.log(Kind.UNDO_FAILED, name, attempt, error)
                self._retry_undo(tx, s, error, give_up=terminal)
            case UndoTimedOut(step=name, attempt=attempt):
                if (s := self._undoing(tx, name, attempt)) is None:
                    return False
                tx.log(Kind.UNDO_TIMED_OUT, name, attempt)
                self._retry_undo(tx, s, "timed out", give_up=False)
            case OperatorRetry():
                return self._operator_retry(tx)
        return True

    def _running(self, tx: Tx, name: str, attempt: int) -> StepState | None:
        s = tx.steps.get(name)
        return s if s is not None and s.status is StepStatus.RUNNING and s.attempt == attempt else None

    def _undoing(self, tx: Tx, name: str, attempt: int) -> StepState | None:
        s = tx.steps.get(name)
        ok = s is not None and s.undo_status is UndoStatus.RUNNING and s.undo_attempt == attempt
        return s if ok and tx.status is SagaStatus.COMPENSATING else None

    def _operator_retry(self, tx: Tx) -> bool:
        if tx.status is not SagaStatus.FAILED:
            return False
        undo_failed = [s for s in tx.steps.values() if s.undo_status is UndoStatus.FAILED]
        stuck = [tx.steps[st.name] for st in self._stages[tx.stage]] if tx.stage < len(self._stages) else []
        stuck = [s for s in stuck if s.status in (StepStatus.FAILED, StepStatus.UNCERTAIN)]
        if not undo_failed and not stuck:
            return False
        tx.log(Kind.OPERATOR_RETRY, detail=tx.reason or "")
        if undo_failed:  # a new round of compensation attempts, numbered on from the last one
            tx.status = SagaStatus.COMPENSATING
            for s in undo_failed:
                tx.set(s.name, undo_status=UndoStatus.NONE, undo_round_start=s.undo_attempt + 1, error=None)
        else:  # a step after the pivot was rejected: try it again, it must eventually succeed
            tx.status, tx.reason = SagaStatus.RUNNING, None
            for s in stuck:
                self._send(tx, s.name, s.attempt + 1)
        return True

    # -- forward ------------------------------------------------------------------------------

    def _retry_step(self, tx: Tx, s: StepState, error: str) -> None:
        defn = self._defs[s.name]
        # Steps after the pivot must eventually succeed, so their attempts are not counted.
        unlimited = self._after_pivot(s.name)
        if tx.status is SagaStatus.RUNNING and (unlimited or s.attempt < defn.retry.max_attempts):
            command = self._schedule(tx, s.name, s.attempt, False, None)
            tx.set(s.name, status=StepStatus.WAITING, due_at=command.due_at, error=error)
            tx.log(Kind.RETRY_SCHEDULED, s.name, command.attempt, f"in {command.delay:.3f}s")
            tx.commands.append(command)
        else:
            why = f"step {s.name!r} failed after {s.attempt} attempt(s): {error}"
            self._give_up(tx, s, error, why)

    def _give_up(self, tx: Tx, s: StepState, error: str, why: str) -> None:
        """Stop attempting ``s``; before the pivot the saga starts compensating."""
        final = StepStatus.UNCERTAIN if s.uncertain else StepStatus.FAILED
        tx.set(s.name, status=final, due_at=None, error=error)
        tx.log(Kind.GAVE_UP, s.name, s.attempt, final.value)
        if tx.status is SagaStatus.RUNNING and not self._after_pivot(s.name):
            self._abort(tx, why)
        elif tx.status is SagaStatus.RUNNING:
            tx.reason = why  # the stage settles as FAILED once its other steps are done

    def _abort(self, tx: Tx, why: str) -> None:
        tx.status = SagaStatus.COMPENSATING
        tx.reason = why
        tx.log(Kind.COMPENSATING, detail=why)
        for s in list(tx.steps.values()):
            if s.status is StepStatus.WAITING:  # its last attempt failed or timed out: no more
                self._give_up(tx, s, s.error or "", why)

    def _send(self, tx: Tx, name: str, attempt: int, *, resent: bool = False) -> None:
        """Send attempt ``attempt`` of step ``name``; ``resent``: that attempt may already have run."""
        defn = self._defs[name]
        try:
            ctx = self._contexts.build(tx, self._stage_of[name])
            actor_id, request = build_step(defn.to, defn.key, defn.request, ctx)
        except Exception as exc:  # noqa: BLE001 -- user code: a broken step must not wedge the saga
            # Unbuildable (a builder raised, or built what cannot be sent), or an earlier step's
            # request raised while its reply was decoded: the same on every attempt, so no retry.
            error = (str(exc) if isinstance(exc, Unbuildable)
                     else f"building the request raised {type(exc).__name__}: {exc}")
            tx.log(Kind.REJECTED, name, attempt, error)
            # A resent attempt may have run, unless the id it went to was no address at all.
            was = tx.steps[name]
            sent = resent and actor_id_problem(was.actor_id) is None
            s = tx.set(name, attempt=attempt, uncertain=was.uncertain or sent)
            self._give_up(tx, s, error, f"step {name!r} could not be built: {error}")
            return
        tx.set(name, status=StepStatus.RUNNING, attempt=attempt, actor_id=actor_id, due_at=None)
        if not resent:  # a resend on resume is no new transition: the log already says "sent"
            tx.log(Kind.SENT, name, attempt)
        key = step_key(tx.state.saga_id, name)
        tx.commands.append(
            SendStep(
                step=name,
                attempt=attempt,
                idempotency_key=key,
                actor_id=actor_id,
                request=request,
                timeout=defn.timeout,
            )
        )

    def _after_pivot(self, name: str) -> bool:
        pivot = self.saga.pivot_stage
        return pivot is not None and self._stage_of[name] > pivot

    # -- what comes next ----------------------------------------------------------------------

    def _progress(self, tx: Tx) -> None:
        """Start whatever the recorded facts allow: the next stage, compensations, the end."""
        while tx.status is SagaStatus.RUNNING:
            if tx.stage == len(self._stages):
                self._finish(tx, SagaStatus.COMPLETED, Kind.COMPLETED, None)
                return
            group = [tx.steps[st.name] for st in self._stages[tx.stage]]
            statuses = {s.status for s in group}
            if StepStatus.PENDING in statuses:
                for s in group:
                    if tx.status is SagaStatus.RUNNING:  # a step that cannot be built aborts the rest
                        self._send(tx, s.name, 1)
                continue
            if not statuses.isdisjoint(_IN_FLIGHT):
                return
            if statuses != _ALL_SUCCEEDED:  # only after the pivot
                self._finish(tx, SagaStatus.FAILED, Kind.SAGA_FAILED, tx.reason)
                return
            tx.stage += 1
        if tx.status is SagaStatus.COMPENSATING:
            self._progress_compensation(tx)

    def _finish(self, tx: Tx, status: SagaStatus, kind: Kind, reason: str | None) -> None:
        tx.status = status
        tx.reason = reason
        tx.log(kind, detail=reason or "")
        tx.commands.append(Finish(status=status, reason=reason))

    # -- helpers ------------------------------------------------------------------------------

    def _schedule(self, tx: Tx, name: str, attempt: int, undo: bool, due_at: float | None) -> ScheduleRetry:
        """The retry after failed attempt ``attempt``; ``due_at`` is kept when re-issued on resume."""
        defn = self._defs[name]
        policy: Retry = defn.undo_retry if undo else defn.retry
        sample = jitter_sample(tx.state.saga_id, name, attempt, "undo" if undo else "step")
        delay = policy.delay(attempt, sample)
        return ScheduleRetry(
            step=name,
            attempt=attempt + 1,
            compensation=undo,
            delay=delay,
            due_at=tx.at + delay if due_at is None else due_at,
        )


_ENGINES: Final[weakref.WeakKeyDictionary[type[Saga[Any]], Engine]] = weakref.WeakKeyDictionary()


def advance(saga: type[Saga[Any]], state: SagaState | None, event: Event) -> tuple[SagaState, list[Command]]:
    """``Engine(saga).advance(state, event)``, with the engine kept per saga class.

    Raises:
        TypeError: ``saga`` is not a checked Saga subclass.
        ValueError: ``state`` is None and ``event`` is not Started.
    """
    engine = _ENGINES.get(saga)
    if engine is None:
        engine = _ENGINES[saga] = Engine(saga)
    return engine.advance(state, event)
