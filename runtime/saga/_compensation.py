"""Compensation planning of the pure saga engine (a base class of ``Engine``; no I/O either).

One idea: undoing. When no forward request is in flight, the SUCCEEDED and UNCERTAIN steps are
undone stage by stage in reverse order, each once, a stage's undos together (``_progress_compensation``);
an undo is sent (``_send_undo``: skipped for a step without one, failed if it cannot be built)
and retried per the step's ``undo_retry`` until it succeeds or gives up (``_retry_undo``). The
forward rules, and the ``_schedule`` and ``_finish`` both sides use, are ``corps.saga._engine``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from corps.saga._command import Unbuildable, build_undo
from corps.saga._definition import Step
from corps.saga._state import (
    Kind,
    SagaStatus,
    ScheduleRetry,
    SendUndo,
    StepState,
    StepStatus,
    UndoStatus,
    step_key,
)
from corps.saga._tx import ContextBuilder, Tx

_UNDO_IN_FLIGHT: Final = (UndoStatus.RUNNING, UndoStatus.WAITING)
_TO_UNDO: Final = (StepStatus.SUCCEEDED, StepStatus.UNCERTAIN)


class Compensation:
    """The engine's compensation rules (``Engine`` provides the definition and the helpers)."""

    _stages: tuple[tuple[Step[Any], ...], ...]
    _defs: dict[str, Step[Any]]
    _contexts: ContextBuilder

    if TYPE_CHECKING:  # Engine's
        def _schedule(self, tx: Tx, name: str, attempt: int, undo: bool, due_at: float | None) -> ScheduleRetry: ...
        def _finish(self, tx: Tx, status: SagaStatus, kind: Kind, reason: str | None) -> None: ...

    def _retry_undo(self, tx: Tx, s: StepState, error: str, *, give_up: bool) -> None:
        used = s.undo_attempt - s.undo_round_start + 1
        if not give_up and used < self._defs[s.name].undo_retry.max_attempts:
            command = self._schedule(tx, s.name, s.undo_attempt, True, None)
            tx.set(s.name, undo_status=UndoStatus.WAITING, undo_due_at=command.due_at, error=error)
            tx.log(Kind.UNDO_RETRY_SCHEDULED, s.name, command.attempt, f"in {command.delay:.3f}s")
            tx.commands.append(command)
        else:
            tx.set(s.name, undo_status=UndoStatus.FAILED, undo_due_at=None, error=error)
            tx.log(Kind.UNDO_GAVE_UP, s.name, s.undo_attempt, error)
            tx.reason = f"compensation of step {s.name!r} failed after {used} attempt(s): {error}"

    def _send_undo(self, tx: Tx, name: str, attempt: int, *, resent: bool = False) -> None:
        defn, s = self._defs[name], tx.steps[name]
        if not callable(defn.undo):
            tx.set(name, undo_status=UndoStatus.SKIPPED)
            tx.log(Kind.UNDO_SKIPPED, name)
            return
        try:
            request = build_undo(defn.to, s.actor_id, defn.undo, self._contexts.build(tx, len(self._stages)))
        except Exception as exc:  # noqa: BLE001 -- user code: surface it as a failed compensation
            error = (str(exc) if isinstance(exc, Unbuildable)
                     else f"building the compensation raised {type(exc).__name__}: {exc}")
            tx.set(name, undo_attempt=attempt)
            tx.log(Kind.UNDO_FAILED, name, attempt, error)
            self._retry_undo(tx, tx.steps[name], error, give_up=True)
            return
        assert s.actor_id is not None  # checked above; for the type checker
        tx.set(name, undo_status=UndoStatus.RUNNING, undo_attempt=attempt, undo_due_at=None)
        if not resent:
            tx.log(Kind.UNDO_SENT, name, attempt)
        key = step_key(tx.state.saga_id, name, undo=True)
        tx.commands.append(
            SendUndo(
                step=name,
                attempt=attempt,
                idempotency_key=key,
                actor_id=s.actor_id,
                request=request,
                timeout=defn.compensation_timeout(),
            )
        )

    def _progress_compensation(self, tx: Tx) -> None:
        # Never undo a step while a forward request is in flight: wait for its outcome first,
        # so that a compensation cannot overtake the request it compensates.
        if any(s.status is StepStatus.RUNNING for s in tx.steps.values()):
            return
        for stage in reversed(self._stages):
            names = [st.name for st in stage if tx.steps[st.name].status in _TO_UNDO]
            if any(tx.steps[n].undo_status in _UNDO_IN_FLIGHT for n in names):
                return
            for n in names:
                s = tx.steps[n]
                if s.undo_status is UndoStatus.NONE:
                    self._send_undo(tx, n, s.undo_round_start)
            if any(tx.steps[n].undo_status in _UNDO_IN_FLIGHT for n in names):
                return
            if any(tx.steps[n].undo_status is UndoStatus.FAILED for n in names):
                self._finish(tx, SagaStatus.FAILED, Kind.SAGA_FAILED, tx.reason)
                return
        self._finish(tx, SagaStatus.COMPENSATED, Kind.COMPENSATED, tx.reason)
