"""``check_saga_invariants(history)``: the saga invariants (DESIGN.md; S1-S10 of the reliability
notes) over a recorded :class:`History`, Jepsen-style: after the run, from the record alone.

Every check returns human-readable violations naming the saga and step; an empty list means
every invariant holds. ``final=False`` checks safety only (what must hold at every moment,
even mid-run); ``final=True`` (after heal and drain) adds termination, exact compensation and
the lost / unexpected classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from corps.saga import Kind, Saga, SagaStatus, Transition
from corps.testing._history import History, LogWrite, Op

DomainCheck = Callable[[History], Iterable[str]]
"""A user's domain invariant (conservation, say): the history in, violations out."""


class InvariantViolation(AssertionError):
    """Raised by :func:`assert_saga_invariants`; ``problems`` lists every violation."""

    def __init__(self, problems: list[str], history: History | None = None) -> None:
        self.problems = problems
        text = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} saga invariant violation(s):\n{text}")
        self.history = history


def saga_shape(saga: type[Saga[Any]]) -> tuple[dict[str, int], frozenset[str]]:
    """A saga class's stage index per step and the steps that have a compensation (for the checks)."""
    stages = {st.name: i for i, stage in enumerate(saga.stages) for st in stage}
    undoable = frozenset(st.name for stage in saga.stages for st in stage if callable(st.undo))
    return stages, undoable


_RANK = {SagaStatus.RUNNING: 0, SagaStatus.COMPENSATING: 1}
_TERMINAL_KIND = {Kind.COMPLETED: SagaStatus.COMPLETED, Kind.COMPENSATED: SagaStatus.COMPENSATED,
                  Kind.SAGA_FAILED: SagaStatus.FAILED}


def check_saga_invariants(
    history: History,
    *,
    stages: Mapping[str, int] | None = None,
    compensatable: Collection[str] | None = None,
    domain: Iterable[DomainCheck] = (),
    final: bool = True,
) -> list[str]:
    """Check a recorded history against the saga invariants.

    Args:
        history: what happened.
        stages: step name -> stage index (``saga_shape(MySaga)[0]``): compensation order is then
            checked as a partial order over stages. Without it, the order is taken from the log
            (a step sent after another completed depends on it).
        compensatable: steps that have a compensation (``saga_shape(MySaga)[1]``); without it,
            every step but those the log records as ``undo_skipped``.
        domain: your own checks (conservation...), run last.
        final: also check what must hold once faults stopped and everything drained.

    Returns:
        The violations; empty if every invariant holds.
    """
    problems: list[str] = []
    ops_by_saga: dict[str, list[Op]] = {}
    crashed: set[str] = set()
    for op in history:
        ops_by_saga.setdefault(op.saga_id, []).append(op)
        if op.f == "crash":
            crashed.add(op.process)
    for sid in history.saga_ids():
        ops = ops_by_saga.get(sid, [])
        log = history.logs.get(sid, ())
        problems += [f"saga {sid}: {p}"
                     for p in _check_one(history, sid, ops, log, stages, compensatable, final, crashed)]
    if final:
        problems += _lost_and_unexpected(history, ops_by_saga)
    for check in domain:
        problems += list(check(history))
    return problems


def assert_saga_invariants(history: History, **kwargs: Any) -> None:
    """:func:`check_saga_invariants`, raising :class:`InvariantViolation` (with the history) if any fails."""
    problems = check_saga_invariants(history, **kwargs)
    if problems:
        raise InvariantViolation(problems, history)


def _lost_and_unexpected(history: History, ops: dict[str, list[Op]]) -> list[str]:
    attempted = {sid for sid, o in ops.items() if any(op.f == "start" and op.type == "invoke" for op in o)}
    acked = {sid for sid, o in ops.items() if any(op.f == "start" and op.type == "ok" for op in o)}
    present = set(history.final)
    problems = [f"saga {sid}: lost (its start was acknowledged; the final read does not find it)"
                for sid in sorted(acked - present)]
    problems += [f"saga {sid}: unexpected (in the store, never started)" for sid in sorted(present - attempted)]
    return problems


def _check_one(history: History, sid: str, ops: list[Op], log: tuple[Transition, ...],
               stages: Mapping[str, int] | None, compensatable: Collection[str] | None,
               final: bool, crashed: Collection[str]) -> list[str]:
    problems = _terminal(history, sid, log, final)
    problems += _monotone_and_single_owner(ops, crashed)
    problems += _effects(ops)
    problems += _log_compensation(log, stages, compensatable, final)
    if final and log and log[-1].kind in _TERMINAL_KIND:
        problems += _exact_effects(ops, log, _TERMINAL_KIND[log[-1].kind], compensatable)
    return problems


def _terminal(history: History, sid: str, log: tuple[Transition, ...], final: bool) -> list[str]:
    """S1: one terminal state, the last entry; once observed terminal, always the same."""
    problems = []
    terminal = [t for t in log if t.kind in _TERMINAL_KIND]
    if len(terminal) > 1 or (terminal and log[-1] is not terminal[0]):
        problems.append(f"more than one terminal entry, or not last: {[t.kind.value for t in terminal]}")
    seen = [s for s in history.observed.get(sid, []) if s.terminal]
    if len(set(seen)) > 1:
        problems.append(f"observed terminal states {sorted(set(seen))}: more than one")
    if final and sid in history.final and not history.final[sid].terminal:
        problems.append(f"not terminal after the drain: {history.final[sid]} (stuck)")
    if final and terminal and sid in history.final and history.final[sid] is not _TERMINAL_KIND[terminal[0].kind]:
        problems.append(f"final status {history.final[sid]} does not match the log's {terminal[0].kind.value}")
    return problems


def _monotone_and_single_owner(ops: list[Op], crashed: Collection[str] = ()) -> list[str]:
    """S7 (monotone status) and S8 (one writer at a time: the written log is one CAS chain).

    A write whose outcome its coordinator never learnt (``info``: it crashed while the write was
    on its way) may have landed, unseen by the recorder; the next owner then extends it. Such a
    write of a process that crashed may fill a gap in the chain, provided the chain runs through
    it: it read the revision before the gap, and what comes after the gap extends what it wrote.
    A gap that no crashed process's write explains is two owners.
    """
    writes = sorted((op for op in ops if op.f == "write" and op.type == "ok" and isinstance(op.value, LogWrite)),
                    key=lambda op: op.value.revision)
    unknown = [op for op in ops if op.f == "write" and op.type == "info" and isinstance(op.value, LogWrite)
               and op.process in crashed]
    problems = []
    previous: LogWrite | None = None
    prev_op: Op | None = None
    for op in writes:
        w: LogWrite = op.value
        if previous is not None and prev_op is not None:
            if w.expected != previous.revision:
                bridge = _bridge(previous, w, unknown)
                if bridge is None:
                    problems.append(f"two owners: {op.process} wrote revision {w.revision} over revision "
                                    f"{w.expected}, but {prev_op.process} had written {previous.revision} (no CAS)")
                else:
                    for link in bridge:  # the landed writes, in order, checked like recorded ones
                        problems += _link(previous, prev_op, link.value, link)
                        previous, prev_op = link.value, link
            problems += _link(previous, prev_op, w, op)
        previous, prev_op = w, op
    return problems


def _link(previous: LogWrite, prev_op: Op, w: LogWrite, op: Op) -> list[str]:
    """What must hold between two consecutive writes of one saga's log."""
    problems = []
    if w.log[: len(previous.log)] != previous.log:
        problems.append(f"the log forked: {op.process}'s write at revision {w.revision} does not "
                        f"extend {prev_op.process}'s at {previous.revision}")
    if previous.status.terminal and w.status is not previous.status:
        problems.append(f"left terminal {previous.status} for {w.status} ({op.process})")
    elif not previous.status.terminal and not w.status.terminal and _RANK[w.status] < _RANK[previous.status]:
        problems.append(f"went back from {previous.status} to {w.status} ({op.process})")
    return problems


def _bridge(previous: LogWrite, w: LogWrite, unknown: list[Op], depth: int = 3) -> list[Op] | None:
    """Writes of crashed processes (outcome unknown) that lead from ``previous``'s revision to the
    one ``w`` read, each over the one before; their landed revisions filled in. None: there are none."""
    for op in unknown:
        u: LogWrite = op.value
        if u.expected != previous.revision or u.log[: len(previous.log)] != previous.log:
            continue
        if w.log[: len(u.log)] == u.log:  # it landed at the revision w read
            return [dataclasses.replace(op, value=dataclasses.replace(u, revision=w.expected))]
        if depth > 1:  # or at one that another crashed write read, and so on
            for landed in sorted({o.value.expected for o in unknown if previous.revision < o.value.expected
                                  < w.expected}):
                rest = _bridge(dataclasses.replace(u, revision=landed), w, unknown, depth - 1)
                if rest is not None:
                    return [dataclasses.replace(op, value=dataclasses.replace(u, revision=landed)), *rest]
    return None


def _effects(ops: list[Op]) -> list[str]:
    """S4-S6 from the participants' ground truth: once each, never undo what never applied,
    no forward effect after the compensation."""
    problems = []
    applied: dict[str, Op] = {}
    undone: dict[str, Op] = {}
    for op in ops:
        if op.type != "ok" or op.step is None:
            continue
        if op.f == "effect":
            if op.step in applied:
                first = applied[op.step].index
                problems.append(f"step {op.step!r}: forward effect applied twice (ops {first}, {op.index})")
            if op.step in undone:
                problems.append(f"step {op.step!r}: forward effect after its compensation (op {op.index})")
            applied[op.step] = op
        elif op.f == "compensate":
            if op.step in undone:
                problems.append(f"step {op.step!r}: compensated twice (ops {undone[op.step].index}, {op.index})")
            if op.step not in applied:
                problems.append(f"step {op.step!r}: compensated, but its effect never applied (op {op.index})")
            undone[op.step] = op
        elif op.f == "noop":
            if op.step in applied:
                problems.append(f"step {op.step!r}: its compensation was a no-op, but the effect had applied")
            undone.setdefault(op.step, op)
    return problems


def _log_compensation(log: tuple[Transition, ...], stages: Mapping[str, int] | None,
                      compensatable: Collection[str] | None, final: bool) -> list[str]:
    """S2/S3/S5 on the saga log: only what ran is compensated, once, in reverse order."""
    problems = []
    sent = {t.step for t in log if t.kind is Kind.SENT}
    completed = {t.step for t in log if t.kind is Kind.SUCCEEDED}
    maybe = {t.step for t in log if t.kind is Kind.TIMED_OUT} | completed
    undo_sent = [t.step for t in log if t.kind is Kind.UNDO_SENT]
    undone = [t.step for t in log if t.kind is Kind.UNDONE]
    skipped = {t.step for t in log if t.kind is Kind.UNDO_SKIPPED}
    if len(undone) != len(set(undone)):
        problems.append(f"a step was compensated more than once: {undone}")
    if never := set(undo_sent) - sent:
        problems.append(f"compensation sent for step(s) never sent: {sorted(map(str, never))}")
    if not_ran := (set(undo_sent) | skipped) - maybe:
        problems.append(f"compensated step(s) that never completed nor timed out: {sorted(map(str, not_ran))}")
    status = _TERMINAL_KIND.get(log[-1].kind) if log else None
    if final and status is SagaStatus.COMPENSATED:
        need = {s for s in completed if compensatable is None or s in compensatable} - skipped
        if missing := need - set(undone):
            problems.append(f"COMPENSATED, yet completed step(s) {sorted(map(str, missing))} were not compensated")
    if status is SagaStatus.COMPLETED and undo_sent:
        problems.append(f"COMPLETED, yet compensated {undo_sent}")
    problems += _order(log, stages)
    return problems


def _order(log: tuple[Transition, ...], stages: Mapping[str, int] | None) -> list[str]:
    """Reverse order, as a partial order: if b depends on a, b's undo finishes before a's starts."""
    first: dict[tuple[Kind, str], int] = {}
    for i, t in enumerate(log):
        if t.step is not None:
            first.setdefault((t.kind, t.step), i)
    undo_started = {step: i for (kind, step), i in first.items() if kind is Kind.UNDO_SENT}
    problems = []
    for a, a_undo in undo_started.items():
        for b in undo_started:
            if a == b:
                continue
            if stages is not None and a in stages and b in stages:
                depends = stages[b] > stages[a]
            else:
                a_done, b_sent = first.get((Kind.SUCCEEDED, a)), first.get((Kind.SENT, b))
                depends = a_done is not None and b_sent is not None and b_sent > a_done
            if not depends:
                continue
            b_undone = first.get((Kind.UNDONE, b))
            if b_undone is None or b_undone > a_undo:
                problems.append(f"{a!r} was compensated before {b!r} (which ran after it) was undone")
    return problems


def _exact_effects(ops: list[Op], log: tuple[Transition, ...], status: SagaStatus,
                   compensatable: Collection[str] | None) -> list[str]:
    """S2 against the ground truth, where participants recorded their effects."""
    if not any(op.f in ("effect", "compensate", "noop") for op in ops):
        return []  # participants not instrumented: nothing to compare with
    applied = {op.step for op in ops if op.f == "effect" and op.type == "ok"}
    undone = {op.step for op in ops if op.f == "compensate" and op.type == "ok"}
    skipped = {t.step for t in log if t.kind is Kind.UNDO_SKIPPED}
    steps = {t.step for t in log if t.kind is Kind.SENT}
    undoable = {s for s in steps if (compensatable is None or s in compensatable) and s not in skipped}
    if status is SagaStatus.COMPLETED:
        problems = [f"COMPLETED, but step {s!r} has no effect" for s in sorted(map(str, steps - applied))]
        return problems + [f"COMPLETED, but step {s!r} was compensated" for s in sorted(map(str, undone))]
    if status is SagaStatus.COMPENSATED:
        return [f"COMPENSATED, but the effect of {s!r} still stands"
                for s in sorted(map(str, (applied & undoable) - undone))]
    return []
