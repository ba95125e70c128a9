"""``fast_copy``: a saga with the same steps and short timeouts, for tests that inject timeouts."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar

from corps.core._messages import Message
from corps.saga import Parallel, Retry, Saga, Step

I = TypeVar("I", bound=Message)  # noqa: E741 -- the saga's input


def fast_copy(saga: type[Saga[I]], *, timeout: float, retry: Retry | None = None,
              undo_retry: Retry | None = None, undo_timeout: float | None = None,
              name: str | None = None) -> type[Saga[I]]:
    """A copy of ``saga`` whose every step, those of its Parallel groups included, has new timings.

    Everything else (names, targets, keys, requests, undos, the pivot, ``uncertain_is_safe``,
    the deadline) is the original's. A fault plan's ``timeout_*`` faults wait 1.5 x the step
    timeout, so a test with timeouts wants a short one (SagaMachine's ``step_timeout``).

    Args:
        timeout: seconds per attempt of every step.
        retry, undo_retry: the steps' and their compensations' retry policies; None keeps each
            step's own.
        undo_timeout: seconds per compensation attempt; None: the same as ``timeout``.
        name: the copy's class name and ``saga_name`` (default ``Fast`` + the original's): a
            coordinator finds a definition by its saga name, so a copy must not share it.

    Raises:
        SagaDefinitionError: the copy is invalid (say its worst case exceeds the saga's deadline).
    """

    def fast(step: Step[I]) -> Step[I]:
        changes: dict[str, Any] = {"timeout": timeout, "undo_timeout": undo_timeout}
        if retry is not None:
            changes["retry"] = retry
        if undo_retry is not None:
            changes["undo_retry"] = undo_retry
        return dataclasses.replace(step, **changes)

    steps = tuple(Parallel(*map(fast, item.steps)) if isinstance(item, Parallel) else fast(item)
                  for item in saga.steps)
    cls_name = name or f"Fast{saga.__name__}"
    body = {"steps": steps, "deadline": saga.deadline, "saga_name": cls_name, "__module__": saga.__module__,
            "__doc__": f"{saga.__name__} with step timeouts of {timeout}s (corps.testing.fast_copy)."}
    generic: Any = Saga  # subscripted by a value: Saga[<the input type>], which the engine reads back
    copy: type[Saga[I]] = types.new_class(cls_name, (generic[saga.input_type],), {}, lambda ns: ns.update(body))
    return copy
