"""W3C Trace Context ``traceparent`` values: format and parse, pure and total.

A traceparent arrives in untrusted bytes (an envelope field, an event header): ``parse`` never
raises and accepts only what the W3C format allows (version 00, or a higher version read as 00
with its extra fields ignored, lowercase hex, non-zero ids), else None: the span starts a new trace.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

_FORMAT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
MAX_LENGTH: Final = 512
"""Longer values are refused without a regex run (a future version may add fields, not kilobytes)."""


class TraceParent(NamedTuple):
    trace_id: int
    span_id: int
    flags: int


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def parse_traceparent(value: object) -> TraceParent | None:
    """The ids of a valid traceparent, or None for anything else (any object: never raises)."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    m = _FORMAT.fullmatch(value)
    if m is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, int(flags_hex, 16))
