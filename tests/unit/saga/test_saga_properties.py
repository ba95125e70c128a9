"""Hypothesis properties: random saga definitions x random fault plans, on the pure driver
(``corps.testing.run_pure``).

Examples per property come from the active hypothesis profile (the suite's "ci" profile runs
500, derandomized); each property stays well under 5 s at that count.
"""

from __future__ import annotations

import types
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from corps import Actor, handler
from corps.core._messages import Message, Request
from corps.saga import (
    NOTHING_TO_UNDO,
    Engine,
    Kind,
    Parallel,
    Retry,
    Saga,
    SagaStatus,
    SendStep,
    Step,
    decode_state,
    encode_state,
)
from corps.testing import CoordinatorCrash, FaultPlan, PureRun, StepFault, crash_points, run_pure
from tests.unit.saga.test_saga_engine import problems


class Input(Message):
    order_id: str


class Done(Message):
    pass


class Do(Request[Done]):
    step: str


class Undone(Message):
    pass


class Undo(Request[Undone]):
    step: str


class Participant(Actor):
    """Never spawned: the pure engine only checks that it handles what the steps send."""

    @handler
    async def do(self, msg: Do) -> Done:
        return Done()

    @handler
    async def undo(self, msg: Undo) -> Undone:
        return Undone()


def make_step(name: str, *, attempts: int, undo_attempts: int, compensatable: bool, pivot: bool) -> Step:
    return Step(
        name,
        to=Participant,
        key=lambda s: s.input.order_id,
        request=lambda s: Do(name),
        undo=(lambda s: Undo(name)) if compensatable else NOTHING_TO_UNDO,
        uncertain_is_safe=not compensatable,
        timeout=1.0,
        retry=Retry(max_attempts=attempts, interval=0.1, backoff_rate=2.0, max_delay=1.0, jitter=0.5),
        undo_retry=Retry(max_attempts=undo_attempts, interval=0.1),
        pivot=pivot,
    )


@st.composite
def sagas(draw: st.DrawFn) -> tuple[type[Saga[Any]], FaultPlan]:
    """A definition of 1-6 steps, maybe with Parallel groups and a pivot, and a fault plan for it."""
    total = draw(st.integers(1, 6))
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(draw(st.integers(1, min(3, total - sum(sizes)))))
    singles = [i for i, size in enumerate(sizes) if size == 1]
    pivot = draw(st.none() | st.sampled_from(singles)) if singles else None
    items: list[Step | Parallel] = []
    n = 0
    for index, size in enumerate(sizes):
        group = []
        for _ in range(size):
            after_pivot = pivot is not None and index > pivot
            group.append(
                make_step(
                    f"s{n}",
                    attempts=draw(st.integers(1, 3)),
                    undo_attempts=draw(st.integers(1, 3)),
                    compensatable=not after_pivot and draw(st.booleans()),
                    pivot=index == pivot,
                )
            )
            n += 1
        items.append(group[0] if size == 1 else Parallel(*group))
    saga = types.new_class("Generated", (Saga[Input],), exec_body=lambda ns: ns.update(steps=tuple(items)))
    # The driver's replies take a fixed latency: "delay" (0.01 or 0.04 s more) reorders them.
    faults = st.builds(
        StepFault,
        kind=st.sampled_from(
            ["ok", "ok", "transient", "reject", "timeout_before", "timeout_after", "duplicate", "delay"]
        ),
        times=st.integers(1, 4),
        delay=st.sampled_from([0.01, 0.04]),
        undo=st.sampled_from(["ok", "ok", "transient", "timeout", "reject"]),
        undo_times=st.integers(1, 4),
    )
    plan = draw(st.fixed_dictionaries({}, optional={f"s{i}": faults for i in range(n)}))
    return saga, FaultPlan(plan)


def run(saga: type[Saga[Any]], plan: FaultPlan, crashes: list[CoordinatorCrash] | None = None) -> PureRun:
    # After a crash a new coordinator takes over at once (lease=0) and the faults count attempts,
    # not deliveries (an attempt it re-sends meets the same fault): so a crash alone cannot change
    # an outcome. (With a lease, the clock jumps and a retry due meanwhile can overtake a lost
    # reply's re-send: a different, equally correct outcome.)
    return run_pure(
        saga, Input("o-1"), plan, saga_id="saga-7", crashes=crashes or (), lease=0.0, count_faults="attempt"
    )


def steps_of(saga: type[Saga[Any]]) -> list[Step]:
    return [s for stage in saga.stages for s in stage]


def after_pivot(saga: type[Saga[Any]], name: str) -> bool:
    stage = next(i for i, group in enumerate(saga.stages) if any(s.name == name for s in group))
    return saga.pivot_stage is not None and stage > saga.pivot_stage


def can_succeed(saga: type[Saga[Any]], step: Step, fault: StepFault) -> bool:
    if fault.kind == "reject":
        return False
    if fault.kind in ("ok", "duplicate", "delay") or after_pivot(saga, step.name):
        return True
    return fault.times < step.retry.max_attempts


@given(sagas())
def test_every_saga_keeps_the_invariants(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    # One terminal state; exactly the completed steps compensated, once, in reverse; nothing
    # compensated after the pivot or without having run; stale events inert; keys stable;
    # the participants' effects add up.
    saga, plan = case
    simulation = run(saga, plan)
    assert simulation.state.status.terminal
    assert problems(simulation, saga) == []


# 1-3 crashes: coordinator n dies the (skip + 1)-th time (skip <= 4) it passes its point, one of
# corps.saga.CRASH_POINTS (if the saga ends first, it does not). About half the examples crash.
crash_plans = st.lists(crash_points(), min_size=1, max_size=3)


@given(sagas(), crash_plans)
def test_coordinator_crashes_at_named_points_change_no_outcome(
    case: tuple[type[Saga[Any]], FaultPlan], crashes: list[CoordinatorCrash]
) -> None:
    # A new coordinator resumes from the saga log: same terminal status, same compensations,
    # and the invariants still hold, wherever the old one died.
    saga, plan = case
    calm = run(saga, plan)
    crashed = run(saga, plan, crashes)
    assert problems(crashed, saga) == []
    assert crashed.state.status is calm.state.status
    assert sorted(map(str, undone(crashed))) == sorted(map(str, undone(calm)))


def undone(simulation: PureRun) -> list[str | None]:
    return [t.step for t in simulation.state.history if t.kind is Kind.UNDONE]


@given(sagas())
def test_a_saga_completes_exactly_when_every_step_can_succeed(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    expected = all(can_succeed(saga, s, plan.fault(s.name)) for s in steps_of(saga))
    assert (run(saga, plan).state.status is SagaStatus.COMPLETED) == expected


@given(sagas())
def test_a_saga_fails_only_for_a_failing_compensation_or_a_rejection_after_the_pivot(
    case: tuple[type[Saga[Any]], FaultPlan],
) -> None:
    saga, plan = case
    state = run(saga, plan).state
    if state.status is not SagaStatus.FAILED:
        return
    causes = [
        s.name
        for s in steps_of(saga)
        if (after_pivot(saga, s.name) and plan.fault(s.name).kind == "reject")
        or (s.compensatable and plan.fault(s.name).undo != "ok")
    ]
    assert causes, state.reason


@given(sagas())
def test_compensations_run_in_reverse_stage_order(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    stage_of = {s.name: i for i, group in enumerate(saga.stages) for s in group}
    history = run(saga, plan).state.history
    first_sends = list(dict.fromkeys(t.step for t in history if t.kind is Kind.UNDO_SENT))
    stages = [stage_of[name] for name in first_sends if name is not None]
    assert stages == sorted(stages, reverse=True)


@given(sagas())
def test_every_attempt_of_a_step_carries_the_same_idempotency_key(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    simulation = run(saga, plan)
    sends = [c for t in simulation.turns for c in t.commands if isinstance(c, SendStep)]
    for name in {c.step for c in sends}:
        mine = [c for c in sends if c.step == name]
        assert {c.idempotency_key for c in mine} == {f"saga-7:{name}"}
        assert [c.attempt for c in mine] == list(range(1, len(mine) + 1))


@given(sagas())
def test_replaying_through_the_saga_log_gives_the_same_saga(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    # The coordinator writes every state to KV and may resume from it on another node: a state
    # decoded from the log must lead to the same next state and commands as the one in memory.
    saga, plan = case
    simulation = run(saga, plan)
    engine = Engine(saga)
    state = None
    for turn in simulation.turns:
        assert turn.event is not None  # no crash here: every turn is a delivered event
        state, commands = engine.advance(state, turn.event)
        assert tuple(commands) == turn.commands
        state = decode_state(encode_state(state))
    assert state == simulation.state


@given(sagas())
def test_the_simulation_is_deterministic(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    first, second = run(saga, plan), run(saga, plan)
    assert (first.state, first.turns, first.commands) == (second.state, second.turns, second.commands)
    assert list(first.history) == list(second.history)  # every op, its time, process and value
