"""The traceparent a saga record keeps: encoded only when set, old records still decode, and any
stored value (untrusted) is either continued or ignored and counted, never raised."""

from __future__ import annotations

import contextvars

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from corps.core._observe import Observer
from corps.saga._state import STATE_VERSION, SagaState, SagaStatus, StepState, decode_state, encode_state
from corps.saga._trace_context import resumed_context, start_traceparent
from corps.wire._headers import valid_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def state(traceparent: str = "") -> SagaState:
    return SagaState(saga="PlaceOrder", saga_id="s1", input=b"\x80", status=SagaStatus.RUNNING, stage=0,
                     steps=(StepState("reserve"),), history=(), traceparent=traceparent or msgspec.UNSET)


def test_an_old_record_without_a_traceparent_decodes_with_none() -> None:
    new = msgspec.structs.replace(state(), status=SagaStatus.COMPENSATING, reason="why")
    # As records were written before the traceparent: every other field, each encoded.
    old = {f: getattr(new, f) for f in new.__struct_fields__ if f != "traceparent"}
    data = msgspec.msgpack.encode(old)
    assert b"version" in data
    decoded = decode_state(data)
    assert decoded.traceparent is msgspec.UNSET
    assert (decoded.started_in, decoded.reason, decoded.version) == ("", "why", STATE_VERSION)


def test_the_traceparent_is_encoded_only_when_set_and_round_trips() -> None:
    assert b"traceparent" not in encode_state(state())
    assert b"version" in encode_state(state())  # every other field is: a record always says its version
    data = encode_state(state(VALID))
    assert b"traceparent" in data
    assert decode_state(data).started_in == VALID
    assert decode_state(encode_state(state())) == state()


class Recorder(Observer):
    def __init__(self, current: str = "") -> None:
        self.current = current
        self.resumed: list[tuple[str, str, str, str]] = []

    def traceparent(self) -> str:
        return self.current

    def saga_resumed(self, saga: str, saga_id: str, traceparent: str, node: str) -> None:
        self.resumed.append((saga, saga_id, traceparent, node))


class Counts:
    bad_traceparents = 0


def test_a_start_stores_the_current_traceparent_and_nothing_without_an_observer() -> None:
    assert start_traceparent(None) == ""
    assert start_traceparent(Observer()) == ""  # an observer that does not trace (metrics)
    assert start_traceparent(Recorder(VALID)) == VALID
    assert start_traceparent(Recorder("x" * 100_000)) == ""  # a user's observer may return anything


def test_a_valid_stored_traceparent_is_resumed_in_a_context_of_its_own() -> None:
    counts, observer = Counts(), Recorder()
    context = resumed_context(counts, observer, "PlaceOrder", state(VALID), "n2")
    assert isinstance(context, contextvars.Context)
    assert observer.resumed == [("PlaceOrder", "s1", VALID, "n2")]
    assert counts.bad_traceparents == 0
    assert resumed_context(counts, observer, "PlaceOrder", state(), "n2") is None  # none stored: nothing
    assert len(observer.resumed) == 1


@given(st.one_of(st.text(max_size=200), st.from_regex(r"[0-9a-fA-F]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?",
                                                      fullmatch=True)))
def test_any_stored_traceparent_is_resumed_or_ignored_and_counted_never_raised(value: str) -> None:
    counts, observer = Counts(), Recorder()
    context = resumed_context(counts, observer, "PlaceOrder", state(value), "n2")
    if not value:
        assert (context, counts.bad_traceparents, observer.resumed) == (None, 0, [])
    elif valid_traceparent(value) is None:
        assert (context, counts.bad_traceparents, observer.resumed) == (None, 1, [])
    else:
        assert context is not None
        assert counts.bad_traceparents == 0
        assert observer.resumed == [("PlaceOrder", "s1", value, "n2")]


RESUMED: contextvars.ContextVar[str] = contextvars.ContextVar("resumed", default="")


class ContextSetter(Recorder):
    """As the OpenTelemetry observer does: saga_resumed makes the stored trace current."""

    def saga_resumed(self, saga: str, saga_id: str, traceparent: str, node: str) -> None:
        RESUMED.set(traceparent)


OUTER: contextvars.ContextVar[str] = contextvars.ContextVar("outer", default="")


def test_the_resumed_trace_is_current_in_the_saga_context_only_never_in_the_callers() -> None:
    token = OUTER.set("the coordinator's")
    try:
        context = resumed_context(Counts(), ContextSetter(), "PlaceOrder", state(VALID), "n2")
    finally:
        OUTER.reset(token)
    assert context is not None
    assert context.run(RESUMED.get) == VALID  # the saga's drive task runs in it
    assert context.run(OUTER.get) == "the coordinator's"  # a copy of the caller's: what else was set stays
    assert RESUMED.get() == ""  # the coordinator's own context (its other sagas) is untouched
