"""A recorded history, Jepsen-style: what every process did, when, to which saga and step.

Each :class:`Op` is ``invoke`` (started), ``ok`` (done), ``fail`` (did not happen) or ``info``
(outcome unknown). Clients record saga starts; participants record their real effects (ground
truth); the recording saga log records every write with the revision it read and wrote; the
saga log's own transitions are attached at the end with :meth:`History.observe`. The checker
(:func:`corps.testing.check_saga_invariants`) reads nothing else. The same format comes out of
the pure engine (virtual clock) and of a run on a real server (wall clock).

``f`` (the operation) is one of:

========== ===================================================================================
start      a client starts a saga: invoke, then ok (acknowledged) or fail / info
effect     a participant applied a step's forward effect (ok); ``refused``: a late forward
           request was refused because the step had been compensated (fenced)
compensate a participant applied a step's compensation (ok); ``noop``: compensated a step that
           never applied (recorded, fenced)
write      a coordinator (``process``) wrote the saga log: value ``LogWrite``; ok, fail (CAS lost,
           or too large: nothing written) or info (outcome unknown: it crashed, or the store
           failed, while the write was on its way; it may have landed, its revision unknown)
crash      a coordinator (``process``) died (info); ``restart``: a fresh one started (info)
========== ===================================================================================
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from corps.saga import SagaInfo, SagaState, SagaStatus, Transition

OpType = Literal["invoke", "ok", "fail", "info"]


@dataclasses.dataclass(frozen=True)
class LogWrite:
    """One saga-log write: the revision it expected (0: create) and got (0: unknown, an ``info``
    write), and what it wrote."""

    expected: int
    revision: int
    status: SagaStatus
    owner: str
    log: tuple[tuple[str, str | None, int], ...]
    """(kind, step, attempt) of every transition in the written state."""


@dataclasses.dataclass(frozen=True)
class Op:
    """One event of the history."""

    index: int
    time: float
    process: str
    type: OpType
    f: str
    saga_id: str
    step: str | None = None
    value: Any = None

    def __str__(self) -> str:
        step = f" {self.step}" if self.step else ""
        value = "" if self.value is None else f" {self.value!r}"
        head = f"{self.index:4d} {self.time:12.4f} {self.process:<12} {self.type:<6} {self.f:<10}"
        return f"{head} {self.saga_id}{step}{value}"


class History:
    """An append-only, thread-safe history of ops, plus the last observed saga logs.

    Args:
        clock: where op times come from (``time.time`` by default; the pure driver passes its
            virtual clock).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.ops: list[Op] = []
        self.logs: dict[str, tuple[Transition, ...]] = {}
        """saga id -> the saga log's transitions, as last observed."""
        self.final: dict[str, SagaStatus] = {}
        """saga id -> its status as observed by the final read (after heal and drain)."""
        self.observed: dict[str, list[SagaStatus]] = {}
        """saga id -> every status observed by reads, in order."""
        self._lock = threading.Lock()

    def record(self, type: OpType, f: str, saga_id: str, step: str | None = None, *,
               value: Any = None, process: str = "client", at: float | None = None) -> Op:
        """Append one op; its time is ``at`` or the clock's now."""
        with self._lock:
            op = Op(len(self.ops), self.clock() if at is None else at, process, type, f, saga_id, step, value)
            self.ops.append(op)
            return op

    def observe(self, saga: SagaInfo | SagaState, *, final: bool = False) -> None:
        """Record a read of the saga log: its transitions and status (``final``: after the drain)."""
        with self._lock:
            self.logs[saga.saga_id] = tuple(saga.history)
            self.observed.setdefault(saga.saga_id, []).append(saga.status)
            if final:
                self.final[saga.saga_id] = saga.status

    def of(self, saga_id: str) -> list[Op]:
        """The ops of one saga, in recording order."""
        return [op for op in self.ops if op.saga_id == saga_id]

    def saga_ids(self) -> list[str]:
        """Every saga id the history mentions, in order of first mention."""
        seen = dict.fromkeys(op.saga_id for op in self.ops)
        seen.update(dict.fromkeys(self.logs))
        return list(seen)

    def __iter__(self) -> Iterator[Op]:
        return iter(list(self.ops))

    def __len__(self) -> int:
        return len(self.ops)

    def format(self, saga_id: str | None = None) -> str:
        """The history (or one saga's) as text, with each saga log's transitions after its ops."""
        ids = [saga_id] if saga_id is not None else self.saga_ids()
        lines = []
        for sid in ids:
            lines.append(f"-- saga {sid}: final {self.final.get(sid, '?')}")
            lines.extend(str(op) for op in self.of(sid))
            lines.extend(f"     log {t.seq:3d} {t.at:12.4f} {t.kind.value:<20} {t.step or ''} #{t.attempt} {t.detail}"
                         for t in self.logs.get(sid, ()))
        return "\n".join(lines)


def log_digest(state: SagaState) -> tuple[tuple[str, str | None, int], ...]:
    """What a LogWrite keeps of a state's history: enough to see a fork, not the payloads."""
    return tuple((t.kind.value, t.step, t.attempt) for t in state.history)
