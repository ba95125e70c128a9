"""The pure engine on hand-written scenarios: exact commands, histories and stale events.

Whole runs go through ``corps.testing.run_pure`` (scripted participants, a virtual clock) and
are checked by :func:`problems`: ``check_saga_invariants`` on the recorded history, what only the
pure run shows (:meth:`PureRun.problems`) and :func:`log_problems`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from corps import Actor, handler
from corps.core._messages import Message, Request
from corps.saga import (
    NOTHING_TO_UNDO,
    Engine,
    Finish,
    Kind,
    OperatorRetry,
    Parallel,
    Retry,
    RetryDue,
    Saga,
    SagaState,
    SagaStatus,
    ScheduleRetry,
    SendStep,
    SendUndo,
    Started,
    Step,
    StepFailed,
    StepStatus,
    StepSucceeded,
    StepTimedOut,
    UndoFailed,
    UndoSucceeded,
    advance,
    decode_state,
    encode_state,
)
from corps.testing import FaultPlan, History, PureRun, StepFault, check_saga_invariants, run_pure, saga_shape


class OrderInput(Message):
    order_id: str
    amount: int = 10


class Done(Message):
    ref: str = ""


class Do(Request[Done]):
    step: str
    order_id: str
    ref: str = ""


class Undone(Message):
    pass


class Undo(Request[Undone]):
    step: str
    ref: str = ""


class Participant(Actor):
    """Never spawned: the pure engine only checks that it handles what the steps send."""

    @handler
    async def do(self, msg: Do) -> Done:
        return Done()

    @handler
    async def undo(self, msg: Undo) -> Undone:
        return Undone()


FAST = Retry(max_attempts=3, interval=0.1, backoff_rate=2.0, max_delay=1.0)


def step(name: str, **overrides: Any) -> Step:
    fields: dict[str, Any] = {
        "to": Participant,
        "key": lambda s: s.input.order_id,
        "request": lambda s: Do(name, s.input.order_id),
        "undo": lambda s: Undo(name),
        "timeout": 1.0,
        "retry": FAST,
        "undo_retry": Retry(max_attempts=3, interval=0.1),
    }
    fields.update(overrides)
    return Step(name, **fields)


class ThreeSteps(Saga[OrderInput]):
    steps = (step("reserve"), step("charge"), step("ship"))


class WithGroup(Saga[OrderInput]):
    steps = (step("reserve"), Parallel(step("charge"), step("mail", undo=NOTHING_TO_UNDO, uncertain_is_safe=True)),
             step("ship"))


class WithPivot(Saga[OrderInput]):
    steps = (step("reserve"), step("charge", pivot=True), step("ship", undo=NOTHING_TO_UNDO))


ORDER = OrderInput("o-1")
ENGINE = Engine(ThreeSteps)


def start(engine: Engine = ENGINE, saga_id: str = "s-1") -> tuple[SagaState, list[Any]]:
    return engine.advance(None, Started.of(saga_id, ORDER, at=0.0))


def ok(name: str, attempt: int = 1, at: float = 1.0, reply: Message | None = None) -> StepSucceeded:
    body = msgspec.msgpack.encode(reply or Done(name))
    return StepSucceeded(step=name, attempt=attempt, reply=body, at=at)


def failed(name: str, attempt: int = 1, *, terminal: bool, at: float = 1.0) -> StepFailed:
    error = "StepRejected" if terminal else "RuntimeError"
    return StepFailed(step=name, attempt=attempt, error_type=error, message="no", terminal=terminal, at=at)


def kinds(state: SagaState) -> list[tuple[str, str | None]]:
    return [(t.kind.value, t.step) for t in state.history]


def undo_order(state: SagaState) -> list[str | None]:
    return [t.step for t in state.history if t.kind is Kind.UNDO_SENT]


# -- the checks --------------------------------------------------------------------------------


def problems(run: PureRun, saga: type[Saga[Any]]) -> list[str]:
    """Every saga invariant over a pure run: the recorded history, the engine's turns and
    commands (stale events inert, one Finish, stable idempotency keys), the saga log."""
    stages, undoable = saga_shape(saga)
    found = check_saga_invariants(run.history, stages=stages, compensatable=undoable)
    return found + run.problems() + log_problems(run.state)


def state_problems(state: SagaState, saga: type[Saga[Any]]) -> list[str]:
    """Every saga invariant over a terminal state driven by hand (no participants recorded)."""
    history = History(clock=lambda: 0.0)
    history.record("invoke", "start", state.saga_id)
    history.record("ok", "start", state.saga_id)
    history.observe(state, final=True)
    stages, undoable = saga_shape(saga)
    return check_saga_invariants(history, stages=stages, compensatable=undoable) + log_problems(state)


def log_problems(state: SagaState) -> list[str]:
    """What ``check_saga_invariants`` leaves out, from the saga log alone: sequence numbers
    1, 2, 3...; nothing compensated once the pivot succeeded; and the compensated steps are
    exactly the completed and the uncertain ones (each undone or skipped as NOTHING_TO_UNDO) on
    COMPENSATED, and never others on any status."""
    log = state.history
    found = []
    if [t.seq for t in log] != list(range(1, len(log) + 1)):
        found.append("history sequence numbers are not 1, 2, 3, ...")
    undo_kinds = (Kind.UNDO_SENT, Kind.UNDONE, Kind.UNDO_FAILED, Kind.UNDO_TIMED_OUT, Kind.UNDO_SKIPPED)
    committed = next((i for i, t in enumerate(log) if t.kind is Kind.COMMITTED), None)
    if committed is not None and any(t.kind in undo_kinds for t in log[committed:]):
        found.append("a compensation after the pivot succeeded")
    done = {t.step for t in log if t.kind is Kind.SUCCEEDED}
    done |= {t.step for t in log if t.kind is Kind.GAVE_UP and t.detail == StepStatus.UNCERTAIN}
    touched = {t.step for t in log if t.kind in undo_kinds}
    if touched - done:
        found.append(f"compensated without having completed: {sorted(map(str, touched - done))}")
    settled = {t.step for t in log if t.kind in (Kind.UNDONE, Kind.UNDO_SKIPPED)}
    if state.status is SagaStatus.COMPENSATED and settled != done:
        found.append(f"COMPENSATED must undo exactly {sorted(map(str, done))}, undid {sorted(map(str, settled))}")
    return found


# -- success ------------------------------------------------------------------------------------


def test_start_sends_the_first_step_with_its_idempotency_key() -> None:
    state, commands = start()
    assert state.status is SagaStatus.RUNNING
    assert commands == [
        SendStep(
            step="reserve",
            attempt=1,
            idempotency_key="s-1:reserve",
            actor_id="o-1",
            request=Do("reserve", "o-1"),
            timeout=1.0,
        )
    ]


def test_the_success_path_sends_each_step_after_the_previous_replied_then_completes() -> None:
    state, _ = start()
    state, commands = ENGINE.advance(state, ok("reserve"))
    assert [c.step for c in commands] == ["charge"]
    state, _ = ENGINE.advance(state, ok("charge"))
    state, commands = ENGINE.advance(state, ok("ship", at=3.0))
    assert commands == [Finish(status=SagaStatus.COMPLETED, reason=None)]
    assert state.status is SagaStatus.COMPLETED
    assert kinds(state)[-2:] == [("succeeded", "ship"), ("completed", None)]
    assert state.history[-1].at == 3.0
    assert state_problems(state, ThreeSteps) == []


def test_a_later_step_is_built_from_earlier_replies_even_after_a_state_round_trip() -> None:
    class Chained(Saga[OrderInput]):
        steps = (
            step("charge"),
            step("ship", request=lambda s: Do("ship", s.input.order_id, ref=s.replies["charge"].ref)),
        )

    engine = Engine(Chained)
    state, _ = start(engine)
    state = decode_state(encode_state(state))  # as if written to the saga log and read back
    state, commands = engine.advance(state, ok("charge", reply=Done(ref="txn-42")))
    state = decode_state(encode_state(state))
    assert commands[0].request == Do("ship", "o-1", ref="txn-42")
    assert engine.resume(state, at=9.0) == (state, commands)  # a new coordinator sends the same request


# -- rejection and compensation ---------------------------------------------------------------


@pytest.mark.parametrize(("failing", "expected_undos"), [(0, []), (1, ["reserve"]), (2, ["charge", "reserve"])])
def test_a_rejection_compensates_exactly_the_completed_steps_in_reverse(
    failing: int, expected_undos: list[str]
) -> None:
    names = ["reserve", "charge", "ship"]
    state, _ = start()
    for name in names[:failing]:
        state, _ = ENGINE.advance(state, ok(name))
    state, commands = ENGINE.advance(state, failed(names[failing], terminal=True))
    while commands and isinstance(commands[0], SendUndo):
        assert commands[0].idempotency_key == f"s-1:{commands[0].step}:undo"
        state, commands = ENGINE.advance(state, UndoSucceeded(step=commands[0].step, attempt=1, at=2.0))
    assert commands == [Finish(status=SagaStatus.COMPENSATED, reason=state.reason)]
    assert undo_order(state) == expected_undos
    assert state.step(names[failing]).status is StepStatus.FAILED  # type: ignore[union-attr]
    assert "rejected" in (state.reason or "")
    assert state_problems(state, ThreeSteps) == []


def test_a_rejection_is_not_retried() -> None:
    state, _ = start()
    _, commands = ENGINE.advance(state, failed("reserve", terminal=True))
    assert not any(isinstance(c, ScheduleRetry) for c in commands)


def test_a_failing_compensation_is_retried_then_the_saga_fails_and_an_operator_can_retry() -> None:
    state, _ = start()
    state, _ = ENGINE.advance(state, ok("reserve"))
    state, commands = ENGINE.advance(state, failed("charge", terminal=True))
    for attempt in (1, 2, 3):
        assert commands[0] == SendUndo(
            step="reserve", attempt=attempt, idempotency_key="s-1:reserve:undo", actor_id="o-1",
            request=Undo("reserve"), timeout=1.0,
        )  # fmt: skip
        state, commands = ENGINE.advance(
            state,
            UndoFailed(step="reserve", attempt=attempt, error_type="IOError", message="x", terminal=False, at=2.0),
        )
        if attempt < 3:
            assert isinstance(commands[0], ScheduleRetry)
            assert commands[0].compensation
            state, commands = ENGINE.advance(
                state, RetryDue(step="reserve", attempt=attempt + 1, compensation=True, at=3.0)
            )
    assert state.status is SagaStatus.FAILED
    assert commands == [Finish(status=SagaStatus.FAILED, reason=state.reason)]
    assert "compensation of step 'reserve' failed after 3 attempt(s)" in (state.reason or "")
    assert state_problems(state, ThreeSteps) == []

    state, commands = ENGINE.advance(state, OperatorRetry(at=10.0))
    assert state.status is SagaStatus.COMPENSATING
    assert [(type(c), c.attempt) for c in commands] == [(SendUndo, 4)]  # numbered on: old replies stay stale
    state, commands = ENGINE.advance(state, UndoSucceeded(step="reserve", attempt=4, at=11.0))
    assert state.status is SagaStatus.COMPENSATED


# -- retries and timeouts ----------------------------------------------------------------------


def test_a_transient_failure_is_retried_with_backoff_and_the_same_idempotency_key() -> None:
    state, _ = start()
    state, commands = ENGINE.advance(state, failed("reserve", attempt=1, terminal=False, at=1.0))
    assert commands == [ScheduleRetry(step="reserve", attempt=2, compensation=False, delay=0.1, due_at=1.1)]
    state, commands = ENGINE.advance(state, RetryDue(step="reserve", attempt=2, compensation=False, at=1.1))
    assert [(c.attempt, c.idempotency_key) for c in commands] == [(2, "s-1:reserve")]
    state, commands = ENGINE.advance(state, failed("reserve", attempt=2, terminal=False, at=2.0))
    assert commands[0].delay == pytest.approx(0.2)
    state, _ = ENGINE.advance(state, RetryDue(step="reserve", attempt=3, compensation=False, at=2.2))
    state, commands = ENGINE.advance(state, ok("reserve", attempt=3))
    assert [c.step for c in commands] == ["charge"]


def test_exhausted_retries_compensate_but_do_not_compensate_the_failed_step() -> None:
    run = run_pure(ThreeSteps, ORDER, FaultPlan({"charge": StepFault("transient", times=3)}))
    assert run.state.status is SagaStatus.COMPENSATED
    assert undo_order(run.state) == ["reserve"]
    assert run.state.step("charge").attempt == 3  # type: ignore[union-attr]
    assert problems(run, ThreeSteps) == []


def test_a_timed_out_step_is_uncertain_and_compensated_with_the_completed_ones() -> None:
    run = run_pure(ThreeSteps, ORDER, FaultPlan({"charge": StepFault("timeout_after", times=3)}))
    assert run.state.status is SagaStatus.COMPENSATED
    charge = run.state.step("charge")
    assert charge is not None
    assert charge.status is StepStatus.UNCERTAIN
    assert undo_order(run.state) == ["charge", "reserve"]
    # it had applied (once); its compensation undid it
    assert (run.effects().count("charge"), run.effects("compensate").count("charge")) == (1, 1)
    assert problems(run, ThreeSteps) == []


def test_compensating_a_timed_out_step_that_never_applied_is_an_empty_compensation() -> None:
    run = run_pure(ThreeSteps, ORDER, FaultPlan({"charge": StepFault("timeout_before", times=3)}))
    assert undo_order(run.state) == ["charge", "reserve"]
    assert run.effects("noop") == ["charge"]
    assert problems(run, ThreeSteps) == []


def test_a_timeout_then_a_retry_succeeds_without_a_second_effect() -> None:
    run = run_pure(ThreeSteps, ORDER, FaultPlan({"charge": StepFault("timeout_after", times=2)}))
    assert run.state.status is SagaStatus.COMPLETED
    assert run.effects().count("charge") == 1
    assert problems(run, ThreeSteps) == []


# -- pivot -------------------------------------------------------------------------------------


def test_a_step_after_the_pivot_is_retried_past_its_max_attempts() -> None:
    run = run_pure(WithPivot, ORDER, FaultPlan({"ship": StepFault("transient", times=12)}))
    assert run.state.status is SagaStatus.COMPLETED
    assert run.state.step("ship").attempt == 13  # type: ignore[union-attr]
    assert problems(run, WithPivot) == []


def test_a_rejection_after_the_pivot_fails_the_saga_without_compensating() -> None:
    run = run_pure(WithPivot, ORDER, FaultPlan({"ship": StepFault("reject")}))
    assert run.state.status is SagaStatus.FAILED
    assert undo_order(run.state) == []
    assert "rejected" in (run.state.reason or "")
    assert problems(run, WithPivot) == []


def test_a_rejected_step_after_the_pivot_can_be_retried_by_an_operator() -> None:
    run = run_pure(WithPivot, ORDER, FaultPlan({"ship": StepFault("reject")}))
    engine = Engine(WithPivot)
    state, commands = engine.advance(run.state, OperatorRetry(at=100.0))
    assert state.status is SagaStatus.RUNNING
    assert [(c.step, c.attempt) for c in commands] == [("ship", 2)]
    state, commands = engine.advance(state, ok("ship", attempt=2))
    assert state.status is SagaStatus.COMPLETED


def test_a_rejected_pivot_compensates_the_steps_before_it() -> None:
    run = run_pure(WithPivot, ORDER, FaultPlan({"charge": StepFault("reject")}))
    assert run.state.status is SagaStatus.COMPENSATED
    assert undo_order(run.state) == ["reserve"]
    assert problems(run, WithPivot) == []


# -- parallel groups ---------------------------------------------------------------------------


def test_a_parallel_group_is_sent_at_once_and_waits_for_all() -> None:
    engine = Engine(WithGroup)
    state, _ = start(engine)
    state, commands = engine.advance(state, ok("reserve"))
    assert [c.step for c in commands] == ["charge", "mail"]
    state, commands = engine.advance(state, ok("mail"))
    assert commands == []
    state, commands = engine.advance(state, ok("charge"))
    assert [c.step for c in commands] == ["ship"]


def test_a_failure_in_a_group_waits_for_the_sibling_then_compensates_group_before_earlier_steps() -> None:
    engine = Engine(WithGroup)
    state, _ = start(engine)
    state, _ = engine.advance(state, ok("reserve"))
    state, commands = engine.advance(state, failed("mail", terminal=True))
    assert state.status is SagaStatus.COMPENSATING
    assert commands == []  # 'charge' is still in flight: never compensate ahead of its request
    state, commands = engine.advance(state, ok("charge"))
    assert [(type(c), c.step) for c in commands] == [(SendUndo, "charge")]
    state, commands = engine.advance(state, UndoSucceeded(step="charge", attempt=1, at=2.0))
    assert [(type(c), c.step) for c in commands] == [(SendUndo, "reserve")]
    state, _ = engine.advance(state, UndoSucceeded(step="reserve", attempt=1, at=3.0))
    assert state.status is SagaStatus.COMPENSATED
    assert state_problems(state, WithGroup) == []


def test_a_group_compensates_concurrently_and_skips_nothing_to_undo() -> None:
    class Both(Saga[OrderInput]):
        steps = (Parallel(step("a"), step("b"), step("c", undo=NOTHING_TO_UNDO, uncertain_is_safe=True)), step("d"))

    run = run_pure(Both, ORDER, FaultPlan({"d": StepFault("reject")}))
    assert run.state.status is SagaStatus.COMPENSATED
    undo_turn = next(t for t in run.turns if any(isinstance(c, SendUndo) for c in t.commands))
    assert sorted(c.step for c in undo_turn.commands) == ["a", "b"]  # both undos in one turn
    assert [t.step for t in run.state.history if t.kind is Kind.UNDO_SKIPPED] == ["c"]
    assert problems(run, Both) == []


# -- stale and duplicate events ------------------------------------------------------------------


def test_stale_and_duplicate_events_change_nothing() -> None:
    state, _ = start()
    state, _ = ENGINE.advance(state, ok("reserve"))
    stale = [
        ok("reserve"),  # duplicate reply
        ok("charge", attempt=2),  # wrong attempt
        failed("charge", attempt=7, terminal=True),
        StepTimedOut(step="charge", attempt=0, at=1.0),
        ok("nope"),  # unknown step
        RetryDue(step="charge", attempt=2, compensation=False, at=1.0),  # no retry scheduled
        UndoSucceeded(step="reserve", attempt=1, at=1.0),  # not compensating
        OperatorRetry(at=1.0),  # not FAILED
        Started.of("s-1", ORDER, at=5.0),  # idempotent start
    ]
    for event in stale:
        new, commands = ENGINE.advance(state, event)
        assert (new, commands) == (state, []), event
        assert new is state


def test_a_late_reply_to_a_timed_out_attempt_is_stale() -> None:
    state, _ = start()
    state, _ = ENGINE.advance(state, StepTimedOut(step="reserve", attempt=1, at=1.0))
    assert ENGINE.advance(state, ok("reserve", attempt=1))[0] is state


def test_no_event_changes_a_terminal_saga() -> None:
    run = run_pure(ThreeSteps, ORDER, FaultPlan())
    events = [t.event for t in run.turns if t.event is not None]
    assert len(events) == 2 * run.events + 1  # Started, every delivered event, each again once terminal
    for event in events:
        assert ENGINE.advance(run.state, event) == (run.state, [])


def test_advance_needs_started_first() -> None:
    with pytest.raises(ValueError, match="must be Started"):
        ENGINE.advance(None, ok("reserve"))


def test_the_module_level_advance_matches_the_engine() -> None:
    event = Started.of("s-1", ORDER, at=0.0)
    assert advance(ThreeSteps, None, event) == ENGINE.advance(None, event)


# -- user code that raises ---------------------------------------------------------------------


def test_a_request_function_that_raises_rejects_its_step_and_compensates() -> None:
    class Broken(Saga[OrderInput]):
        steps = (step("reserve"), step("charge", request=lambda s: s.replies["typo"]))

    run = run_pure(Broken, ORDER, FaultPlan())
    assert run.state.status is SagaStatus.COMPENSATED
    assert undo_order(run.state) == ["reserve"]
    assert "building the request raised KeyError" in (run.state.reason or "")
    assert problems(run, Broken) == []


def test_an_undo_function_that_raises_fails_the_saga() -> None:
    class Broken(Saga[OrderInput]):
        steps = (step("reserve", undo=lambda s: 1 / 0), step("charge"))

    run = run_pure(Broken, ORDER, FaultPlan({"charge": StepFault("reject")}))
    assert run.state.status is SagaStatus.FAILED
    assert "ZeroDivisionError" in (run.state.reason or "")


# -- persistence and resume --------------------------------------------------------------------


def test_state_round_trips_through_msgpack_without_the_definition() -> None:
    run = run_pure(WithGroup, ORDER, FaultPlan({"charge": StepFault("transient"), "ship": StepFault("reject")}))
    assert decode_state(encode_state(run.state)) == run.state
    assert msgspec.json.decode(msgspec.json.encode(run.state), type=SagaState) == run.state


def test_resume_reissues_what_was_in_flight_and_scheduled() -> None:
    engine = Engine(WithGroup)
    state, _ = start(engine)
    state, sent = engine.advance(state, ok("reserve"))
    state, scheduled = engine.advance(state, failed("mail", terminal=False, at=2.0))
    # charge is in flight, mail's retry is pending: both again, the retry for its original due time
    assert engine.resume(state, at=50.0) == (state, [sent[0], scheduled[0]])
    state, _ = engine.advance(state, failed("charge", terminal=True))
    undo = SendUndo(
        step="reserve", attempt=1, idempotency_key="s-1:reserve:undo", actor_id="o-1",
        request=Undo("reserve"), timeout=1.0,
    )  # fmt: skip
    assert engine.resume(state, at=50.0) == (state, [undo])
    done = run_pure(WithGroup, ORDER, FaultPlan()).state
    assert engine.resume(done, at=50.0) == (done, [Finish(status=SagaStatus.COMPLETED, reason=None)])


def test_resume_gives_up_on_a_step_that_can_no_longer_be_built_as_an_uncertain_one() -> None:
    state, _ = start()
    state, _ = ENGINE.advance(state, ok("reserve"))

    class Redeployed(Saga[OrderInput]):  # same steps, but 'charge' now needs a reply that is not there
        saga_name = "ThreeSteps"
        steps = (step("reserve"), step("charge", request=lambda s: s.replies["gone"]), step("ship"))

    engine = Engine(Redeployed)
    new, commands = engine.resume(state, at=50.0)
    charge = new.step("charge")
    assert charge is not None
    assert charge.status is StepStatus.UNCERTAIN  # attempt 1 may have run
    assert [(type(c), c.step) for c in commands] == [(SendUndo, "charge")]
    assert new.history[-1].at == 50.0
