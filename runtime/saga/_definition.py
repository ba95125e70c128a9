"""Saga definitions as data: Saga, Step, Parallel, NOTHING_TO_UNDO, checked when the class is created.

A definition reads top to bottom, each compensation next to its action::

    class PlaceOrder(Saga[OrderPlaced]):
        steps = (
            Step("reserve", to=Inventory, key=lambda s: s.input.sku,
                 request=lambda s: ReserveStock(s.input.order_id, s.input.sku, s.input.qty),
                 undo=lambda s: ReleaseStock(s.input.order_id, s.input.sku, s.input.qty)),
            Step("charge", to=Payments, key=lambda s: s.input.account,
                 request=lambda s: ChargeCard(s.input.order_id, s.input.total),
                 undo=lambda s: RefundCard(s.input.order_id), pivot=True),
            Step("ship", to=Shipping, key="main",
                 request=lambda s: BookCourier(s.input.order_id),
                 undo=lambda s: CancelCourier(s.input.order_id)),
            Step("mail", to=Mailer, key="main",
                 request=lambda s: SendReceipt(s.input.order_id),
                 undo=NOTHING_TO_UNDO, uncertain_is_safe=True),  # a receipt sent twice harms nobody
        )

The functions given as ``key``, ``request`` and ``undo`` must be pure functions of their
:class:`SagaContext`: the engine calls them again for every retry and after a coordinator
crash, and must get the same message each time (no clock, no randomness, no I/O).

Typed: :class:`Step`, :class:`Parallel` and :class:`SagaContext` are generic in the saga's input
type, and ``Saga[I].steps`` is declared ``tuple[Step[I] | Parallel[I], ...]``, so a type checker
types the lambdas of the steps written in ``steps = (...)`` of ``class PlaceOrder(Saga[OrderRequest])``
with ``s: SagaContext[OrderRequest]`` and reports ``s.input.order_idd``. A step built elsewhere
says its input type: ``Step[OrderRequest]("reserve", ...)``. Unparameterised, each is ``[Any]``
(the type variable's default, for type checkers only: PEP 696 needs Python 3.13 at run time).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Literal, TypeAlias, get_args, get_origin

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.errors import SagaDefinitionError as SagaDefinitionError
from corps.saga._command import actor_id_problem, built_type_problem, target_problem
from corps.saga._retry import DEFAULT_RETRY, DEFAULT_UNDO_RETRY, Retry

if TYPE_CHECKING:
    from typing_extensions import TypeVar  # default= (PEP 696): bare Step means Step[Any]
    I = TypeVar("I", bound=Message, default=Any)  # noqa: E741 -- the conventional name for "input"
else:
    from typing import TypeVar

    I = TypeVar("I", bound=Message)  # noqa: E741

DEFAULT_STEP_TIMEOUT: Final = 5.0
"""Seconds a step waits for its reply before the attempt counts as timed out."""

_STEP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Step names end up in idempotency keys ("{saga_id}:{step}"), KV keys and CLI output: keep them plain.


class _Sentinel(enum.Enum):
    NOTHING_TO_UNDO = "NOTHING_TO_UNDO"
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return self.value


NOTHING_TO_UNDO: Final = _Sentinel.NOTHING_TO_UNDO
"""Pass as ``undo=`` to say that a step has no compensation; ``undo`` is never left out silently."""

_MISSING: Final = _Sentinel.MISSING


@dataclass(frozen=True)
class SagaContext(Generic[I]):
    """What a step's ``key``, ``request`` and ``undo`` functions may read. Read-only.

    ``replies`` maps the name of every step that has completed to its reply. A compensation
    sees every reply, its own step's included if it completed; a step whose outcome is
    uncertain (it timed out) has no reply, so its ``undo`` must not rely on one.
    """

    saga_id: str
    input: I
    replies: Mapping[str, Message]


MessageFn: TypeAlias = Callable[[SagaContext[I]], Message]
KeyFn: TypeAlias = Callable[[SagaContext[I]], str]


@dataclass(frozen=True)
class Step(Generic[I]):
    """One step: ask ``to`` (an Actor class) with id ``key`` for ``request``; ``undo`` compensates it.

    ``undo`` must be given: a function building the compensating message, or
    :data:`NOTHING_TO_UNDO`. A step marked ``pivot`` is the saga's go/no-go point: once it
    succeeds, the steps after it are retried until they succeed and nothing is compensated.

    Every step has a timeout, so every step can end *uncertain*: its last attempt timed out and
    may still apply after the saga gave up on it. An uncertain step is compensated like a
    completed one. So a step up to the pivot with ``undo=NOTHING_TO_UNDO`` is refused unless it
    says ``uncertain_is_safe=True``: its effect, should it land late, needs no undo (a read, a
    notification). A step with a real effect gets a real undo, made a no-op for a step that
    never ran (``@compensation`` on the participant does that).
    """

    name: str
    _: KW_ONLY
    to: type[Any]
    key: str | KeyFn[I]
    request: MessageFn[I]
    undo: MessageFn[I] | Literal[_Sentinel.NOTHING_TO_UNDO, _Sentinel.MISSING] = _MISSING
    timeout: float = DEFAULT_STEP_TIMEOUT
    retry: Retry = DEFAULT_RETRY
    undo_timeout: float | None = None
    """Seconds per compensation attempt; None means the same as ``timeout``."""
    undo_retry: Retry = DEFAULT_UNDO_RETRY
    pivot: bool = False
    uncertain_is_safe: bool = False
    """With ``undo=NOTHING_TO_UNDO``: the author's word that a late effect of this step needs no undo."""

    @property
    def compensatable(self) -> bool:
        """True if the step has an ``undo`` function (not NOTHING_TO_UNDO)."""
        return callable(self.undo)

    def actor_id(self, ctx: SagaContext[I]) -> str:
        """The id of the actor this step (and its compensation) is sent to."""
        return self.key if isinstance(self.key, str) else self.key(ctx)

    def compensation_timeout(self) -> float:
        """Seconds per compensation attempt."""
        return self.timeout if self.undo_timeout is None else self.undo_timeout


@dataclass(frozen=True, init=False)
class Parallel(Generic[I]):
    """Steps sent all at once; the saga moves on when every one has succeeded.

    On failure the group is compensated after the steps that follow it and before the steps
    that precede it; within the group, compensations run concurrently.
    """

    steps: tuple[Step[I], ...] = field(default=())

    def __init__(self, *steps: Step[I]) -> None:
        object.__setattr__(self, "steps", steps)


class Saga(Generic[I]):
    """Base of saga definitions: ``class PlaceOrder(Saga[OrderPlaced]): steps = (...)``.

    Subclasses are checked when created; every problem is listed in one
    :class:`SagaDefinitionError`. The checked layout is kept in ``stages``.
    """

    # Not a ClassVar (a ClassVar cannot name I): declared with I, it is the context in which a type
    # checker reads a subclass's `steps = (...)`, typing each step's lambdas by the saga's input.
    steps: tuple[Step[I] | Parallel[I], ...] = ()
    deadline: ClassVar[float | None] = None
    """Seconds within which the steps up to the pivot (all, without one) must finish, retries
    included. Checked against the worst case when the class is created, not by a clock."""

    saga_name: ClassVar[str]
    """The name stored with every saga's state; the coordinator finds the definition by it."""
    input_type: ClassVar[type[Message]]
    stages: ClassVar[tuple[tuple[Step[Any], ...], ...]]
    """``steps`` with every lone Step as a stage of one: what the engine walks."""
    pivot_stage: ClassVar[int | None]
    """Index in ``stages`` of the pivot, or None."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        input_type = _input_type(cls)
        if isinstance(input_type, TypeVar):
            return  # a generic intermediate base (class Base(Saga[I])): checked in its subclasses
        cls.saga_name = cls.__dict__.get("saga_name", cls.__name__)
        problems = _problems(cls, input_type)
        if problems:
            raise SagaDefinitionError(cls.__qualname__, problems)
        cls.input_type = input_type
        cls.stages = tuple(item.steps if isinstance(item, Parallel) else (item,) for item in cls.steps)
        cls.pivot_stage = next((i for i, st in enumerate(cls.stages) if st[0].pivot), None)

    @classmethod
    def step_named(cls, name: str) -> Step[Any]:
        """The step called ``name``.

        Raises:
            KeyError: no step has that name.
        """
        for stage in cls.stages:
            for step in stage:
                if step.name == name:
                    return step
        raise KeyError(name)


def _input_type(cls: type) -> Any:
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Saga):
            (arg,) = get_args(base)
            return arg
    return getattr(cls, "input_type", None)


def _problems(cls: type[Saga[Any]], input_type: Any) -> list[str]:
    found: list[str] = []
    if not (isinstance(input_type, type) and issubclass(input_type, Message)):
        found.append(f"the input type must be a Message subclass (Saga[MyInput]), not {input_type!r}")
    if cls.deadline is not None and (not _positive(cls.deadline)):
        found.append(f"deadline must be None or a finite number > 0, not {cls.deadline!r}")
    steps: object = cls.steps  # `object`: user code may put anything there, types notwithstanding
    if not isinstance(steps, tuple | list) or not steps:
        found.append("steps must be a non-empty tuple of Step and Parallel")
        return found
    flat: list[Step] = []
    for item in steps:
        if isinstance(item, Parallel):
            if len(item.steps) < 2:
                found.append(f"a Parallel group needs at least 2 steps, not {len(item.steps)}")
            inners: tuple[object, ...] = item.steps
            for inner in inners:
                if isinstance(inner, Step):
                    flat.append(inner)
                    if inner.pivot:
                        found.append(f"step {inner.name!r}: the pivot cannot be inside a Parallel group")
                else:
                    found.append(f"a Parallel group holds Steps only, not {inner!r}")
        elif isinstance(item, Step):
            flat.append(item)
        else:
            found.append(f"steps holds Step and Parallel only, not {item!r}")
    seen: set[str] = set()
    for step in flat:
        found.extend(_step_problems(step))
        if step.name in seen:
            found.append(f"step name {step.name!r} is used twice")
        seen.add(step.name)
    pivots = [s.name for s in flat if s.pivot]
    found.extend(_uncertain_problems(flat))
    if len(pivots) > 1:
        found.append(f"only one step can be the pivot, not {', '.join(map(repr, pivots))}")
    elif pivots:
        after = flat[next(i for i, s in enumerate(flat) if s.pivot) + 1 :]
        for step in after:
            if step.undo is not NOTHING_TO_UNDO:
                found.append(
                    f"step {step.name!r} comes after the pivot {pivots[0]!r}, so it is never compensated: "
                    "its undo must be NOTHING_TO_UNDO"
                )
            if step.retry.max_delay is None and step.retry.backoff_rate > 1:
                found.append(
                    f"step {step.name!r} comes after the pivot and is retried until it succeeds: "
                    "its retry needs a max_delay"
                )
    found.extend(_deadline_problems(cls, cls.steps))
    return found


def _uncertain_problems(flat: list[Step]) -> list[str]:
    """NOTHING_TO_UNDO up to the pivot (every step, without one) needs uncertain_is_safe=True."""
    pivot = next((i for i, s in enumerate(flat) if s.pivot), len(flat) - 1)
    return [
        f"step {step.name!r} can end uncertain (an attempt that timed out may still apply), and is then "
        "compensated, but its undo is NOTHING_TO_UNDO: give it an undo that is a no-op for a step that "
        "never ran (@compensation), or pass uncertain_is_safe=True if a late effect needs no undo"
        for step in flat[: pivot + 1]
        if step.undo is NOTHING_TO_UNDO and step.uncertain_is_safe is False  # a non-bool is reported apart
    ]


def _step_problems(step: Step) -> list[str]:
    # Read as `object`: a definition is user code, and the annotations are only a promise.
    name: object = step.name
    to: object = step.to
    key: object = step.key
    request: object = step.request
    undo: object = step.undo
    what = f"step {name!r}"
    found = []
    if not isinstance(name, str) or not _STEP_NAME.fullmatch(name):
        found.append(f"{what}: a step name must be 1-64 letters, digits, '_' or '-'")
    if (problem := target_problem(to)) is not None:
        found.append(f"{what}: {problem}")
    if isinstance(key, str):
        if (problem := actor_id_problem(key)) is not None:
            found.append(f"{what}: 'key' {key!r} is not an actor id: {problem}")
    elif not callable(key):
        found.append(f"{what}: 'key' must be an actor id or a function of the saga context, not {key!r}")
    if not callable(request):
        found.append(f"{what}: 'request' must be a function of the saga context, not {request!r}")
    if undo is _MISSING:
        found.append(f"{what} has no undo: pass undo=<function> or undo=NOTHING_TO_UNDO")
    elif undo is not NOTHING_TO_UNDO and not callable(undo):
        found.append(f"{what}: 'undo' must be a function or NOTHING_TO_UNDO, not {undo!r}")
    if isinstance(to, type) and issubclass(to, Actor):  # what the builders give, where it can be known
        for label, fn in (("request", request), ("undo", undo)):
            if callable(fn) and (problem := built_type_problem(to, fn)) is not None:
                found.append(f"{what}: '{label}': {problem}")
    safe: object = step.uncertain_is_safe
    if not isinstance(safe, bool):
        found.append(f"{what}: uncertain_is_safe must be True or False, not {safe!r}")
    elif safe and undo is not NOTHING_TO_UNDO:
        found.append(f"{what}: uncertain_is_safe=True goes with undo=NOTHING_TO_UNDO only (it has an undo)")
    if not _positive(step.timeout):
        found.append(f"{what}: timeout must be a finite number > 0, not {step.timeout!r}")
    if step.undo_timeout is not None and not _positive(step.undo_timeout):
        found.append(f"{what}: undo_timeout must be None or a finite number > 0, not {step.undo_timeout!r}")
    policies: tuple[tuple[str, object], ...] = (("retry", step.retry), ("undo_retry", step.undo_retry))
    for label, policy in policies:
        if not isinstance(policy, Retry):
            found.append(f"{what}: {label} must be a Retry, not {policy!r}")
        else:
            found.extend(f"{what}: {label}: {problem}" for problem in policy.problems())
    return found


def _deadline_problems(cls: type[Saga[Any]], steps: tuple[Step | Parallel, ...]) -> list[str]:
    """Compare the worst case of the steps up to the pivot with the deadline, if both are sound."""
    if cls.deadline is None or not _positive(cls.deadline):
        return []
    total, scope = 0.0, "the steps"
    for item in steps:
        group = item.steps if isinstance(item, Parallel) else (item,)
        members = [s for s in group if isinstance(s, Step)]
        if any(_step_problems(s) for s in members):
            return []  # already reported; a budget built on a broken policy would only add noise
        total += max((s.retry.budget(s.timeout) for s in members), default=0.0)
        if any(s.pivot for s in members):
            scope = "the steps up to the pivot"
            break
    if total > cls.deadline:
        return [
            f"{scope} can take {total:g}s (attempts x timeout + retry delays), over the deadline of {cls.deadline:g}s"
        ]
    return []


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
