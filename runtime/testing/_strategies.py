"""Hypothesis strategies: fault plans, coordinator crashes, generated sagas, shop orders.

Every strategy draws plain data (:mod:`corps.testing._plans`), so what hypothesis prints for
a failing example is a literal you can paste into a regression test.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from corps.core._actor import Actor
from corps.core._handlers import handler
from corps.core._messages import Message, Request
from corps.saga import NOTHING_TO_UNDO, Parallel, Retry, Saga, Step
from corps.testing._plans import (
    CRASH_POINT_NAMES,
    FAULT_KINDS,
    UNDO_KINDS,
    CoordinatorCrash,
    FaultKind,
    FaultPlan,
    StepFault,
    UndoKind,
)


def step_faults(
    *,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    undo_kinds: Sequence[UndoKind] = UNDO_KINDS,
    max_times: int = 3,
    max_delay: float = 0.05,
) -> st.SearchStrategy[StepFault]:
    """One step's fault. ``ok`` is drawn first, so failures shrink towards "no fault"."""
    kinds = ["ok", *[k for k in kinds if k != "ok"]] if "ok" in kinds else list(kinds)
    undo_kinds = ["ok", *[k for k in undo_kinds if k != "ok"]] if "ok" in undo_kinds else list(undo_kinds)
    return st.builds(
        StepFault,
        kind=st.sampled_from(kinds),
        times=st.integers(1, max_times),
        delay=st.sampled_from([0.0, max_delay]) if max_delay else st.just(0.0),
        undo=st.sampled_from(undo_kinds),
        undo_times=st.integers(1, max_times),
    )


def crash_points(
    points: Sequence[str] = CRASH_POINT_NAMES, *, max_skip: int = 4
) -> st.SearchStrategy[CoordinatorCrash]:
    """Where (and at which passage) the coordinator dies."""
    return st.builds(CoordinatorCrash, point=st.sampled_from(list(points)), skip=st.integers(0, max_skip))


def fault_plans(
    steps: Sequence[str],
    *,
    faults: st.SearchStrategy[StepFault] | None = None,
    crashes: st.SearchStrategy[CoordinatorCrash] | bool | None = True,
) -> st.SearchStrategy[FaultPlan]:
    """A plan for a saga with these step names: a fault for some steps, maybe a crash.

    Args:
        steps: the saga's step names (``[s.name for stage in MySaga.stages for s in stage]``).
        faults: per-step faults (default :func:`step_faults`).
        crashes: a crash strategy, True for :func:`crash_points`, False/None for no crash.
    """
    per_step = faults if faults is not None else step_faults()
    crash: st.SearchStrategy[CoordinatorCrash | None]
    if crashes is True:
        crash = st.none() | crash_points()
    elif crashes is False or crashes is None:
        crash = st.none()
    else:
        crash = st.none() | crashes
    return st.builds(FaultPlan, steps=st.fixed_dictionaries({}, optional=dict.fromkeys(steps, per_step)),
                     crash=crash)


def benign_fault_plans(steps: Sequence[str], **kwargs: Any) -> st.SearchStrategy[FaultPlan]:
    """Plans without rejections: the business outcome must be the one the inputs alone decide."""
    kinds = [k for k in FAULT_KINDS if k != "reject"]
    undo = [k for k in UNDO_KINDS if k != "reject"]
    return fault_plans(steps, faults=step_faults(kinds=kinds, undo_kinds=undo, max_times=2), **kwargs)


# -- generated saga definitions, for testing the engine itself ----------------------------------


class GenInput(Message):
    order_id: str


class GenDone(Message):
    pass


class GenDo(Request[GenDone]):
    step: str


class GenUndone(Message):
    pass


class GenUndo(Request[GenUndone]):
    step: str


class GenParticipant(Actor):
    """The (never spawned) participant of generated sagas: the engine checks what it handles."""

    @handler
    async def do(self, msg: GenDo) -> GenDone:
        return GenDone()

    @handler
    async def undo(self, msg: GenUndo) -> GenUndone:
        return GenUndone()


@st.composite
def saga_definitions(draw: st.DrawFn, *, max_steps: int = 6) -> type[Saga[Any]]:
    """A saga class of 1..max_steps steps ``s0, s1, ...``, maybe with Parallel groups and a pivot;
    input :class:`GenInput`, requests :class:`GenDo` / :class:`GenUndo`."""
    total = draw(st.integers(1, max_steps))
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
            group.append(_step(f"s{n}", attempts=draw(st.integers(1, 3)), undo_attempts=draw(st.integers(1, 3)),
                               undoable=not after_pivot and draw(st.booleans()), pivot=index == pivot))
            n += 1
        items.append(group[0] if size == 1 else Parallel(*group))
    saga: type[Saga[Any]] = types.new_class(
        "GeneratedSaga", (Saga[GenInput],), exec_body=lambda ns: ns.update(steps=tuple(items)))
    # What hypothesis prints for a failing example: the shape ("s0 > s1+s2 > s3*", * = pivot,
    # ~ = nothing to undo), since a generated class has no source to point at.
    shape = " > ".join("+".join(st.name + ("*" if st.pivot else "") + ("" if callable(st.undo) else "~")
                                for st in stage) for stage in saga.stages)
    saga.__module__, saga.__qualname__ = "generated", f"saga[{shape}]"
    return saga


def _step(name: str, *, attempts: int, undo_attempts: int, undoable: bool, pivot: bool) -> Step:
    return Step(
        name, to=GenParticipant, key=lambda s: s.input.order_id, request=lambda s: GenDo(name),
        undo=(lambda s: GenUndo(name)) if undoable else NOTHING_TO_UNDO, uncertain_is_safe=not undoable, timeout=1.0,
        retry=Retry(max_attempts=attempts, interval=0.1, backoff_rate=2.0, max_delay=1.0, jitter=0.5),
        undo_retry=Retry(max_attempts=undo_attempts, interval=0.1), pivot=pivot)


def step_names(saga: type[Saga[Any]]) -> list[str]:
    """A saga class's step names, in definition order."""
    return [s.name for stage in saga.stages for s in stage]


@st.composite
def sagas_with_plans(draw: st.DrawFn, *, crashes: bool = True) -> tuple[type[Saga[Any]], FaultPlan]:
    """A generated saga and a fault plan for its steps."""
    saga = draw(saga_definitions())
    return saga, draw(fault_plans(step_names(saga), crashes=crashes))


# -- the reference domain (actors/shop) ------------------------------------------------------------

SKUS = ("apple", "pear", "plum")
CARDS = ("visa", "amex", "declined")
ADDRESSES = ("home", "work", "nowhere")


def shop_orders(order_id: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """``corps.examples.shop.messages.OrderRequest`` values: some out of stock, declined or undeliverable."""
    from corps.examples.shop.messages import OrderRequest  # the reference domain; optional for users

    return st.builds(
        OrderRequest,
        order_id=order_id if order_id is not None else st.uuids().map(lambda u: f"o-{u.hex[:8]}"),
        sku=st.sampled_from(SKUS),
        qty=st.integers(1, 6),
        card=st.sampled_from(CARDS),
        amount=st.integers(1, 5).map(lambda n: n * 100),
        address=st.sampled_from(ADDRESSES),
    )
