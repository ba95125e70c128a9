"""The saga engine's data: state, events in, commands out. Frozen msgspec Structs, nothing else.

``SagaState`` holds no function and no class, only names, numbers and bytes, so it round-trips
through msgpack (``encode_state`` / ``decode_state``) into a JetStream KV entry and back
without its definition. Message payloads inside it (the saga input, each step's reply) are
msgpack bytes of the tagged Message; the engine decodes them with the definition's types.
"""

from __future__ import annotations

import enum
from typing import Final, TypeAlias

import msgspec

from corps.core._messages import Message

STATE_VERSION: Final = 1


class SagaStatus(enum.StrEnum):
    """Where a saga is. COMPLETED, COMPENSATED and FAILED are terminal."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    """A compensation failed after its retries (or a step after the pivot was rejected)."""
    UNREADABLE = "UNREADABLE"
    """Never a saga's state: what ``list_sagas`` reports for a log record it cannot decode."""

    @property
    def terminal(self) -> bool:
        """True for COMPLETED, COMPENSATED and FAILED."""
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)


class StepStatus(enum.StrEnum):
    """The forward side of one step."""

    PENDING = "PENDING"  # not sent yet
    RUNNING = "RUNNING"  # attempt `attempt` is in flight
    WAITING = "WAITING"  # attempt `attempt` failed; attempt + 1 is scheduled at `due_at`
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # known not applied: rejected, or every attempt failed with an error
    UNCERTAIN = "UNCERTAIN"  # gave up after a timeout: it may have applied, so it is compensated


class UndoStatus(enum.StrEnum):
    """The compensation side of one step."""

    NONE = "NONE"  # not needed, or not started
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    DONE = "DONE"
    SKIPPED = "SKIPPED"  # the step declared NOTHING_TO_UNDO: a recorded no-op
    FAILED = "FAILED"


class Kind(enum.StrEnum):
    """What a history entry records."""

    STARTED = "started"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RETRY_SCHEDULED = "retry_scheduled"
    GAVE_UP = "gave_up"  # a forward step will not be attempted again (FAILED or UNCERTAIN)
    COMMITTED = "committed"  # the pivot succeeded: from here on nothing is compensated
    COMPENSATING = "compensating"
    UNDO_SENT = "undo_sent"
    UNDONE = "undone"
    UNDO_SKIPPED = "undo_skipped"
    UNDO_FAILED = "undo_failed"
    UNDO_TIMED_OUT = "undo_timed_out"
    UNDO_RETRY_SCHEDULED = "undo_retry_scheduled"
    UNDO_GAVE_UP = "undo_gave_up"
    OPERATOR_RETRY = "operator_retry"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    SAGA_FAILED = "saga_failed"


TERMINAL_KINDS: Final = frozenset({Kind.COMPLETED, Kind.COMPENSATED, Kind.SAGA_FAILED})


class Transition(msgspec.Struct, frozen=True, omit_defaults=True):
    """One history entry: ``seq`` is a logical clock, ``at`` the time the event carried.

    Fields at their defaults are left out of the encoding (``omit_defaults``), here and in
    StepState: a record is ~40 % smaller, and a decoder fills them back in, so records written
    with or without them read the same everywhere."""

    seq: int
    at: float
    kind: Kind
    step: str | None = None
    attempt: int = 0
    detail: str = ""


class StepState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One step of one saga. ``attempt`` and ``undo_attempt`` are the latest attempt numbers sent."""

    name: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    actor_id: str | None = None
    reply: bytes | None = None
    """msgpack of the reply Message, once SUCCEEDED."""
    uncertain: bool = False
    """Some attempt timed out, so the step may have applied even if a later attempt failed."""
    due_at: float | None = None
    undo_status: UndoStatus = UndoStatus.NONE
    undo_attempt: int = 0
    undo_round_start: int = 1
    """First undo attempt of the current round; an operator retry starts a fresh round."""
    undo_due_at: float | None = None
    error: str | None = None


class SagaState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the coordinator persists for one saga; see the module docstring.

    Every field is encoded (a record always says its version) but ``traceparent`` while UNSET:
    records of sagas started without tracing, and those written before it existed, have none."""

    saga: str
    """The definition's ``saga_name``."""
    saga_id: str
    input: bytes
    """msgpack of the input Message."""
    status: SagaStatus
    stage: int
    """Index of the forward stage being run (== number of stages once all succeeded)."""
    steps: tuple[StepState, ...]
    history: tuple[Transition, ...]
    reason: str | None = None
    """Why the saga is compensating or FAILED."""
    traceparent: str | msgspec.UnsetType = msgspec.UNSET
    """The W3C traceparent current where the saga was started (UNSET without tracing): a
    coordinator that takes the saga over continues its trace (``_trace_context``). Untrusted when
    read back. ``started_in`` reads it as a string."""
    version: int = STATE_VERSION

    def step(self, name: str) -> StepState | None:
        """The state of step ``name``, or None if the saga has no such step."""
        return next((s for s in self.steps if s.name == name), None)

    @property
    def started_in(self) -> str:
        """``traceparent`` as stored (unvalidated), or "" if there is none."""
        return "" if isinstance(self.traceparent, msgspec.UnsetType) else self.traceparent


# -- events: what the coordinator tells the engine. Each carries `at`, the coordinator's clock.


class Started(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Start a saga. Advancing an existing state with it changes nothing (idempotent start)."""

    saga_id: str
    input: bytes
    at: float

    @classmethod
    def of(cls, saga_id: str, input: Message, at: float) -> Started:
        """Build the event from the input message."""
        return cls(saga_id=saga_id, input=msgspec.msgpack.encode(input), at=at)


class StepSucceeded(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Attempt ``attempt`` of ``step`` replied; ``reply`` is msgpack of the reply Message."""

    step: str
    attempt: int
    reply: bytes
    at: float


class StepFailed(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Attempt ``attempt`` failed. ``terminal``: no retry (StepRejected, or a request that cannot
    be delivered). ``uncertain``: it may have applied all the same (a handler ran, or its reply
    was lost), so it is compensated if given up."""

    step: str
    attempt: int
    error_type: str
    message: str
    terminal: bool
    at: float
    uncertain: bool = False


class StepTimedOut(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """No reply to attempt ``attempt`` in time: the outcome is unknown."""

    step: str
    attempt: int
    at: float


class RetryDue(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A ScheduleRetry's delay has passed; copy its ``step``, ``attempt`` and ``compensation``."""

    step: str
    attempt: int
    compensation: bool
    at: float


class UndoSucceeded(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Compensation attempt ``attempt`` of ``step`` replied."""

    step: str
    attempt: int
    at: float


class UndoFailed(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Compensation attempt ``attempt`` raised; ``terminal`` (StepRejected) means do not retry."""

    step: str
    attempt: int
    error_type: str
    message: str
    terminal: bool
    at: float


class UndoTimedOut(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """No reply to compensation attempt ``attempt`` in time."""

    step: str
    attempt: int
    at: float


class OperatorRetry(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """``corps saga retry``: give a FAILED saga's failed compensations (or rejected step) a new round.

    The one event that leaves a terminal state, and only on an operator's word.
    """

    at: float


Event: TypeAlias = (
    Started
    | StepSucceeded
    | StepFailed
    | StepTimedOut
    | RetryDue
    | UndoSucceeded
    | UndoFailed
    | UndoTimedOut
    | OperatorRetry
)

# -- commands: what the engine asks the coordinator to do, after it has persisted the new state.


def step_key(saga_id: str, step: str, *, undo: bool = False) -> str:
    """The idempotency key of a step's requests (``...:undo`` for its compensation's): the same
    on every attempt, so a participant applies a step at most once. A keyed ask's handler takes
    it as its message id, so what it publishes names the step as its cause (``corps trace``)."""
    return f"{saga_id}:{step}:undo" if undo else f"{saga_id}:{step}"


class SendStep(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Ask ``saga.step_named(step).to`` with id ``actor_id`` for ``request``, within ``timeout``.

    Report the outcome as StepSucceeded, StepFailed or StepTimedOut with the same ``attempt``.
    """

    step: str
    attempt: int
    idempotency_key: str
    actor_id: str
    request: Message
    timeout: float


class SendUndo(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Like SendStep for ``step``'s compensation; report back with Undo* events."""

    step: str
    attempt: int
    idempotency_key: str
    actor_id: str
    request: Message
    timeout: float


class ScheduleRetry(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """After ``delay`` seconds (at ``due_at`` on the event clock), send RetryDue with these fields."""

    step: str
    attempt: int
    compensation: bool
    delay: float
    due_at: float


class Finish(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """The saga reached a terminal status; FAILED must be surfaced loudly, with the history."""

    status: SagaStatus
    reason: str | None


Command: TypeAlias = SendStep | SendUndo | ScheduleRetry | Finish

_STATE_DECODER: Final = msgspec.msgpack.Decoder(SagaState)


def encode_state(state: SagaState) -> bytes:
    """msgpack bytes of ``state``, for the saga log."""
    return msgspec.msgpack.encode(state)


def decode_state(data: bytes) -> SagaState:
    """The state ``encode_state`` wrote.

    Raises:
        msgspec.ValidationError: ``data`` is not a saga state.
    """
    return _STATE_DECODER.decode(data)
