"""A saga state under change: the working copy one ``advance`` call builds, and its context.

Mutable inside one call, frozen on the way out, so the engine reads as a list of small
steps while every state it hands out stays immutable.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import msgspec

from corps.core._messages import Message, reply_type
from corps.saga._definition import Saga, SagaContext
from corps.saga._state import Command, Kind, SagaState, StepState, StepStatus, Transition


class Tx:
    """The state being built by one ``advance`` call: mutable here, frozen on the way out."""

    def __init__(self, state: SagaState, at: float) -> None:
        self.state = state
        self.at = at
        self.status = state.status
        self.stage = state.stage
        self.reason = state.reason
        self.steps = {s.name: s for s in state.steps}
        self.history: list[Transition] = []
        self.commands: list[Command] = []
        self.seq = state.history[-1].seq if state.history else 0

    def log(self, kind: Kind, step: str | None = None, attempt: int = 0, detail: str = "") -> None:
        self.seq += 1
        self.history.append(Transition(self.seq, self.at, kind, step, attempt, detail))

    def set(self, name: str, **changes: Any) -> StepState:
        self.steps[name] = msgspec.structs.replace(self.steps[name], **changes)
        return self.steps[name]

    def freeze(self) -> SagaState:
        return msgspec.structs.replace(
            self.state,
            status=self.status,
            stage=self.stage,
            reason=self.reason,
            steps=tuple(self.steps.values()),
            history=self.state.history + tuple(self.history),
        )


class ContextBuilder:
    """Rebuilds the :class:`SagaContext` a step sees from a state's stored bytes."""

    def __init__(self, saga: type[Saga[Any]]) -> None:
        self._saga_stages = saga.stages
        self._input = msgspec.msgpack.Decoder(saga.input_type)
        self._decoders: dict[type[Message], msgspec.msgpack.Decoder[Any]] = {}

    def build(self, tx: Tx, upto: int) -> SagaContext[Any]:
        """The context of a step of stage ``upto``: the input and the replies of earlier stages.

        A reply is stored as bytes; its type is the reply type of the request its step sent,
        found by building that request again from that stage's own context (the step
        functions are pure, so it is the same request).

        Raises:
            Exception: whatever a step's ``request`` function raises.
        """
        saga_input = self._input.decode(tx.state.input)
        replies: dict[str, Any] = {}
        for stage in self._saga_stages[:upto]:
            ctx = SagaContext(tx.state.saga_id, saga_input, MappingProxyType(dict(replies)))
            for st in stage:
                s = tx.steps[st.name]
                if s.status is StepStatus.SUCCEEDED and s.reply is not None:
                    replies[st.name] = self._decoder(type(st.request(ctx))).decode(s.reply)
        return SagaContext(tx.state.saga_id, saga_input, MappingProxyType(replies))

    def _decoder(self, request_cls: type[Message]) -> msgspec.msgpack.Decoder[Any]:
        if request_cls not in self._decoders:
            expected = reply_type(request_cls)
            self._decoders[request_cls] = msgspec.msgpack.Decoder(Any if expected is None else expected)
        return self._decoders[request_cls]
