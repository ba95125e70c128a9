"""Fault plans as data: what each step's participant does, and where a coordinator dies.

A plan is plain, frozen data with a repr that is a Python literal, so a failing example that
hypothesis prints can be pasted into a regression test as it is::

    FaultPlan({"charge": StepFault("timeout_after"), "ship": StepFault("reject")},
              crash=CoordinatorCrash("after_write", skip=2))

The same plan drives both levels: the pure engine (:func:`corps.testing.run_pure`) and the
fault-injecting participants of an end-to-end run (:class:`corps.testing.FaultInjector`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final, Literal, get_args

from corps.saga import CRASH_POINTS

FaultKind = Literal["ok", "transient", "reject", "timeout_before", "timeout_after", "duplicate", "delay"]
"""What a step's forward request meets, per delivery of its idempotency key:

* ``ok``: it is handled normally;
* ``transient``: the first ``times`` deliveries fail with a retryable error, no effect;
* ``reject``: every delivery is refused with StepRejected (terminal), no effect;
* ``timeout_before``: the first ``times`` deliveries get no reply in time and have no effect;
* ``timeout_after``: the first ``times`` deliveries apply the effect but reply after the
  step's timeout (the ambiguous outcome);
* ``duplicate``: the request is delivered twice (and, on the pure level, so is the reply);
* ``delay``: the reply comes ``delay`` seconds late, within the timeout (reorders steps and sagas).
"""
UndoKind = Literal["ok", "transient", "reject", "timeout"]
"""What the step's compensation meets: ``transient`` and ``timeout`` for the first
``undo_times`` deliveries (a timed-out compensation applied its effect), ``reject`` always."""

FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
UNDO_KINDS: Final[tuple[UndoKind, ...]] = get_args(UndoKind)
CRASH_POINT_NAMES: Final[tuple[str, ...]] = tuple(sorted(CRASH_POINTS))


@dataclasses.dataclass(frozen=True, repr=False)
class StepFault:
    """One step's fault: see :data:`FaultKind` and :data:`UndoKind`."""

    kind: FaultKind = "ok"
    times: int = 1
    delay: float = 0.0
    undo: UndoKind = "ok"
    undo_times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")
        if self.undo not in UNDO_KINDS:
            raise ValueError(f"unknown compensation fault {self.undo!r}; one of {UNDO_KINDS}")
        if self.times < 1 or self.undo_times < 1 or self.delay < 0:
            raise ValueError("times and undo_times must be >= 1, delay >= 0")

    def __repr__(self) -> str:
        return _call(self, positional="kind")

    @property
    def benign(self) -> bool:
        """True if a correct runtime reaches the same business outcome as with no fault at all
        (given enough retries): everything but a rejection of the step or of its compensation."""
        return self.kind != "reject" and self.undo != "reject"


@dataclasses.dataclass(frozen=True, repr=False)
class CoordinatorCrash:
    """The coordinator dies the ``skip + 1``-th time it reaches crash point ``point``.

    Points (``corps.saga.CRASH_POINTS``): ``after_send`` (a request went out, its reply is
    lost), ``after_reply`` (a step replied, the transition is not written), ``after_write`` (the
    transition is written, its commands are not carried out), ``mid_compensation`` (an undo
    replied, not written). Another coordinator takes the saga over once the lease expires.
    """

    point: str
    skip: int = 0

    def __post_init__(self) -> None:
        if self.point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {self.point!r}; one of {CRASH_POINT_NAMES}")
        if self.skip < 0:
            raise ValueError("skip must be >= 0")

    def __repr__(self) -> str:
        return _call(self, positional="point")


@dataclasses.dataclass(frozen=True, repr=False)
class FaultPlan:
    """Step name -> :class:`StepFault` (a step not named just works), and maybe one crash."""

    steps: Mapping[str, StepFault] = dataclasses.field(default_factory=dict)
    crash: CoordinatorCrash | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", dict(self.steps))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.steps.items(), key=lambda kv: kv[0])), self.crash))

    def __repr__(self) -> str:
        parts = [repr(dict(self.steps))] if self.steps else []
        if self.crash is not None:
            parts.append(f"crash={self.crash!r}")
        return f"FaultPlan({', '.join(parts)})"

    def fault(self, step: str) -> StepFault:
        """The step's fault (``StepFault()`` if the plan does not name it)."""
        return self.steps.get(step, _OK)

    @property
    def benign(self) -> bool:
        """No rejection anywhere: the outcome must be the one the inputs alone decide."""
        return all(f.benign for f in self.steps.values())


_OK: Final = StepFault()


def _call(obj: object, *, positional: str) -> str:
    """``Name(positional, field=value, ...)`` listing only fields that differ from their default."""
    args = [repr(getattr(obj, positional))]
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.name != positional and value != f.default:
            args.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(args)})"
