"""Saga invariants as pure checks: over a saga's recorded state, and over a simulated run.

``check_invariants(state)`` needs nothing but the state a coordinator persists, so the same
check runs on the pure simulator and end to end on a real server. Each returns a list of
violations, empty when all hold.
"""

from __future__ import annotations

from runtime.saga._simulate import Simulation
from runtime.saga._state import TERMINAL_KINDS, Finish, Kind, SagaState, SagaStatus, StepStatus, Transition


def check_invariants(state: SagaState) -> list[str]:
    """Check one terminal saga's history against the saga invariants.

    * exactly one terminal entry, the last one, matching ``state.status``;
    * only steps that completed (or ended uncertain) are compensated, each at most once, and on
      COMPENSATED every one of them is (undone, or skipped as NOTHING_TO_UNDO);
    * a step that was never sent is never compensated;
    * reverse order: if step ``b`` was sent after step ``a`` completed, ``b`` is undone before
      the undo of ``a`` is first sent;
    * nothing is compensated once the pivot has succeeded; COMPLETED compensates nothing.
    """
    history = state.history
    problems: list[str] = []
    terminal = [t for t in history if t.kind in TERMINAL_KINDS]
    if len(terminal) != 1 or not history or history[-1] is not terminal[0]:
        problems.append(f"expected one terminal entry, last; got {[t.kind.value for t in terminal]}")
    elif _STATUS_OF[terminal[0].kind] is not state.status:
        problems.append(f"terminal entry {terminal[0].kind} does not match status {state.status}")
    if [t.seq for t in history] != list(range(1, len(history) + 1)):
        problems.append("history sequence numbers are not 1, 2, 3, ...")

    sent = {t.step for t in history if t.kind is Kind.SENT}
    done = {t.step for t in history if t.kind is Kind.SUCCEEDED}
    done |= {t.step for t in history if t.kind is Kind.GAVE_UP and t.detail == StepStatus.UNCERTAIN}
    undone = [t.step for t in history if t.kind is Kind.UNDONE]
    skipped = {t.step for t in history if t.kind is Kind.UNDO_SKIPPED}
    touched = {t.step for t in history if t.kind in _UNDO_KINDS}
    if len(undone) != len(set(undone)):
        problems.append(f"a step was compensated more than once: {undone}")
    if not_done := (touched | skipped) - done:
        problems.append(f"compensated without having completed: {sorted(map(str, not_done))}")
    if touched - sent:
        problems.append(f"compensated without ever being sent: {sorted(map(str, touched - sent))}")
    if state.status is SagaStatus.COMPENSATED and set(undone) | skipped != done:
        problems.append(
            f"COMPENSATED must undo exactly the completed steps {sorted(map(str, done))}, "
            f"undid {sorted(map(str, set(undone) | skipped))}"
        )
    if state.status is SagaStatus.COMPLETED and touched:
        problems.append(f"COMPLETED yet compensated {sorted(map(str, touched))}")
    committed = next((i for i, t in enumerate(history) if t.kind is Kind.COMMITTED), None)
    if committed is not None and any(t.kind in _UNDO_KINDS for t in history[committed:]):
        problems.append("a compensation after the pivot succeeded")
    problems.extend(_order_problems(history))
    return problems


def check_simulation(run: Simulation) -> list[str]:
    """Everything ``check_invariants`` checks, plus what only a simulated run can show.

    * no event delivered once the saga was terminal changed its state or gave a command;
    * exactly one Finish command was given;
    * idempotency keys: ``{saga_id}:{step}`` for every attempt, ``{saga_id}:{step}:undo`` for undos;
    * conservation: on COMPLETED every step's effect stands; on COMPENSATED none does, but for
      the steps that declared NOTHING_TO_UNDO.
    """
    problems = check_invariants(run.state)
    ended = False
    finishes = 0
    for record in run.records:
        if record.lost:  # the coordinator crashed: neither this state nor these commands happened
            continue
        if ended and (record.changed or record.commands):
            problems.append(f"{type(record.event).__name__} changed a terminal saga")
        finishes += sum(isinstance(c, Finish) for c in record.commands)
        ended = ended or record.after.terminal
    if finishes != 1:
        problems.append(f"expected one Finish command, got {finishes}")
    for step, keys in run.ledger.keys.items():
        if keys - {f"{run.saga_id}:{step}", f"{run.saga_id}:{step}:undo"}:
            problems.append(f"step {step!r} used idempotency keys {sorted(keys)}")
    # A step declared NOTHING_TO_UNDO keeps its effect by design (a receipt, say): not counted.
    skipped = {t.step for t in run.state.history if t.kind is Kind.UNDO_SKIPPED}
    for s in run.state.steps:
        net = run.ledger.net(s.name)
        if run.state.status is SagaStatus.COMPLETED and net != 1:
            problems.append(f"COMPLETED but the effect of {s.name!r} does not stand")
        if run.state.status is SagaStatus.COMPENSATED and net != 0 and s.name not in skipped:
            problems.append(f"COMPENSATED but the effect of {s.name!r} still stands")
    return problems


_STATUS_OF = {
    Kind.COMPLETED: SagaStatus.COMPLETED,
    Kind.COMPENSATED: SagaStatus.COMPENSATED,
    Kind.SAGA_FAILED: SagaStatus.FAILED,
}
_UNDO_KINDS = frozenset({Kind.UNDO_SENT, Kind.UNDONE, Kind.UNDO_FAILED, Kind.UNDO_TIMED_OUT})


def _order_problems(history: tuple[Transition, ...]) -> list[str]:
    """Reverse order as a partial order: a step that depends on ``a`` is undone before ``a``."""
    first: dict[tuple[Kind, str], int] = {}
    for i, t in enumerate(history):
        if t.step is not None:
            first.setdefault((t.kind, t.step), i)
    completed = {step: i for (kind, step), i in first.items() if kind is Kind.SUCCEEDED}
    problems = []
    for a, a_done in completed.items():
        a_undo = first.get((Kind.UNDO_SENT, a))
        if a_undo is None:
            continue
        for (kind, b), b_sent in first.items():
            if kind is not Kind.SENT or b_sent < a_done or (Kind.UNDO_SENT, b) not in first:
                continue
            b_undone = first.get((Kind.UNDONE, b))
            if b_undone is None or b_undone > a_undo:
                problems.append(f"{a!r} was compensated before {b!r}, which was sent after {a!r} completed")
    return problems
