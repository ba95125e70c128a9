"""What ``saga_status`` and ``wait_saga`` return: a saga's status and its step history."""

from __future__ import annotations

import msgspec

from corps.errors import SagaNotFound, SagaUnreadable
from corps.saga._log import SagaLog, SagaRecord
from corps.saga._state import SagaStatus, StepState, Transition
from corps.wire._headers import trace_id, valid_traceparent


class SagaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A saga as its log records it.

    ``list_sagas`` lists a record it cannot decode too, as :meth:`unreadable` makes it: status
    UNREADABLE, the decoding error as ``reason``, nothing else known (``saga_status`` and
    ``wait_saga`` raise SagaUnreadable for it instead).
    """

    saga_id: str
    saga: str
    """The saga class's ``saga_name``."""
    status: SagaStatus
    reason: str | None
    """Why it is compensating or FAILED."""
    owner: str
    """Node id of the coordinator driving it ("" once terminal)."""
    lease_until: float
    steps: tuple[StepState, ...]
    history: tuple[Transition, ...]
    """Every transition, with its time (``at``): the timings of each step."""
    trace_id: str = ""
    """The OpenTelemetry trace id (32 hex digits) the saga was started in, one across coordinator
    takeovers; "" if it was started without tracing (or its stored traceparent is malformed)."""

    @classmethod
    def of(cls, record: SagaRecord) -> SagaInfo:
        s = record.state
        tp = valid_traceparent(s.started_in) if s.started_in else None
        return cls(saga_id=s.saga_id, saga=s.saga, status=s.status, reason=s.reason, owner=record.owner,
                   lease_until=record.lease_until, steps=s.steps, history=s.history,
                   trace_id=trace_id(tp) if tp else "")

    @classmethod
    def unreadable(cls, saga_id: str, reason: str) -> SagaInfo:
        """What is known of a saga whose record cannot be decoded: its id, and why."""
        return cls(saga_id=saga_id, saga="?", status=SagaStatus.UNREADABLE, reason=reason, owner="",
                   lease_until=0.0, steps=(), history=())

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def step_outcomes(self) -> list[tuple[str, str, str]]:
        """(step, forward status, compensation status) per step, in definition order."""
        return [(s.name, s.status.value, s.undo_status.value) for s in self.steps]


async def read_infos(log: SagaLog, *, active_only: bool = False) -> list[SagaInfo]:
    """Every saga in ``log`` (or only those not terminal), oldest id first; a record that cannot
    be decoded as ``SagaInfo.unreadable``, a saga deleted meanwhile left out.

    Raises:
        SagaStoreUnavailable: the saga log cannot be read.
    """
    infos = []
    for saga_id in await (log.active() if active_only else log.all()):
        try:
            record, _ = await log.read(saga_id)
        except SagaNotFound:
            continue
        except SagaUnreadable as exc:
            infos.append(SagaInfo.unreadable(saga_id, exc.reason))
            continue
        infos.append(SagaInfo.of(record))
    return infos
