"""W3C traceparent: what corps writes parses back; anything else is refused, never raised."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corps.observe._traceparent import MAX_LENGTH, TraceParent, format_traceparent, parse_traceparent

ids = st.integers(1, 2**128 - 1)
span_ids = st.integers(1, 2**64 - 1)


@given(trace_id=ids, span_id=span_ids, flags=st.integers(0, 255))
def test_a_formatted_traceparent_parses_back(trace_id: int, span_id: int, flags: int) -> None:
    tp = format_traceparent(trace_id, span_id, flags)
    assert len(tp) == 55
    assert parse_traceparent(tp) == TraceParent(trace_id, span_id, flags)


@given(st.one_of(st.text(max_size=600), st.binary(max_size=100), st.integers(), st.none(),
                 st.lists(st.text(max_size=5), max_size=3)))
def test_any_value_parses_to_ids_or_none_without_raising(value: object) -> None:
    result = parse_traceparent(value)
    assert result is None or (result.trace_id > 0 and result.span_id > 0)


def test_invalid_traceparents_are_refused() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(good) == TraceParent(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1)
    for bad in ["00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # zero trace id
                "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # zero span id
                "ff" + good[2:],  # the forbidden version
                good.upper(),  # uppercase hex
                good + "-extra",  # version 00 has exactly four fields
                good[:-1],
                good + " " * MAX_LENGTH]:
        assert parse_traceparent(bad) is None, bad
    assert parse_traceparent("01" + good[2:] + "-future") is not None  # a later version's extra fields
