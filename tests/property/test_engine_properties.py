"""The pure level: generated sagas x fault plans x coordinator crashes, through Engine.advance.

Hundreds of examples per property in seconds (the "ci" profile: derandomized, 500 examples set
here; "soak" runs 20x). The same FaultPlan and the same check_saga_invariants as end to end.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from corps.saga import Saga, SagaStatus
from corps.testing import (
    CoordinatorCrash,
    FaultPlan,
    StepFault,
    check_saga_invariants,
    crash_points,
    fault_plans,
    run_pure,
    saga_definitions,
    saga_shape,
    sagas_with_plans,
    step_names,
)
from corps.testing._profiles import examples
from corps.testing._strategies import GenInput

PURE = settings(max_examples=examples(500), deadline=None)


def violations(saga: type[Saga[Any]], plan: FaultPlan) -> list[str]:
    run = run_pure(saga, GenInput("o-1"), plan, saga_id="saga-7")
    stages, undoable = saga_shape(saga)
    return check_saga_invariants(run.history, stages=stages, compensatable=undoable)


@PURE
@given(sagas_with_plans(crashes=False))
def test_every_saga_keeps_the_invariants_under_step_faults(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    assert violations(saga, plan) == []


@PURE
@given(saga_definitions(), st.data())
def test_every_saga_keeps_the_invariants_across_a_coordinator_crash(saga: type[Saga[Any]], data: st.DataObject) -> None:
    plan = data.draw(fault_plans(step_names(saga), crashes=crash_points(max_skip=6)))
    assert violations(saga, plan) == []


@PURE
@given(sagas_with_plans())
def test_a_plan_without_rejection_ends_completed_when_retries_suffice(case: tuple[type[Saga[Any]], FaultPlan]) -> None:
    saga, plan = case
    run = run_pure(saga, GenInput("o-1"), plan)
    steps = {s.name: s for stage in saga.stages for s in stage}
    enough = all(f.kind in ("ok", "duplicate", "delay") or f.times < steps[n].retry.max_attempts
                 for n, f in plan.steps.items())
    if plan.benign and enough:
        assert run.state.status is SagaStatus.COMPLETED, plan


def test_a_fault_plan_prints_as_a_literal_that_rebuilds_it() -> None:
    plan = FaultPlan({"charge": StepFault("timeout_after", times=2, undo="transient")},
                     crash=CoordinatorCrash("after_write", skip=1))
    assert repr(plan) == ("FaultPlan({'charge': StepFault('timeout_after', times=2, undo='transient')}, "
                          "crash=CoordinatorCrash('after_write', skip=1))")
    assert eval(repr(plan)) == plan
    assert repr(FaultPlan()) == "FaultPlan()"


@given(sagas_with_plans())
@example(case=None)  # the regression example: a plain saga, no faults
def test_the_pure_history_records_every_start_and_one_final_read(case: Any) -> None:
    if case is None:
        return
    saga, plan = case
    run = run_pure(saga, GenInput("o-1"), plan, saga_id="x")
    assert [op.type for op in run.history if op.f == "start"] == ["invoke", "ok"]
    assert run.history.final == {"x": run.state.status}
