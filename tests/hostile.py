"""Hostile payloads for the tests of untrusted input: deep nesting, truncation, wrong shapes, size.

msgspec raises RecursionError (not a msgspec error) on nesting deeper than Python's recursion
limit, in any ``Any``-typed part of a decode (a ``dict[str, Any]`` field, a ``Raw`` body) and in
any unknown field it skips: about 1,000 levels, so 2,000 is always too deep. The payloads are
built from raw bytes: no Python object that deep is ever made.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from hypothesis import strategies as st

from corps.wire._codec import encode_as, join_frame, tells_frame

DEPTH: Final = 2000
DEEP: Final = b"\x91" * DEPTH + b"\xc0"
"""msgpack ``[[[...[nil]...]]]``, 2,000 deep: 2 KB."""
DEEP_MAP: Final = b"\x81\xa1k" * DEPTH + b"\xc0"
"""msgpack ``{"k": {"k": ...}}``, 2,000 deep."""
DEEP_JSON: Final = b"[" * DEPTH + b"]" * DEPTH
DEEP_JSON_MAP: Final = b'{"k":' * DEPTH + b"null" + b"}" * DEPTH

HOLE: Final = "\x00hole\x00"


def filled(obj: Any, fill: bytes, is_json: bool = False) -> bytes:
    """``obj`` encoded, with the one string ``HOLE`` inside it replaced by the raw bytes ``fill``:
    how a message whose ``dict[str, Any]`` field holds a 2,000-deep value is built."""
    encoded, hole = encode_as(obj, is_json), encode_as(HOLE, is_json)
    assert encoded.count(hole) == 1
    return encoded.replace(hole, fill)


def frame(*messages: bytes, rid: int = 0, is_json: bool = False) -> bytes:
    """A corps frame of already-encoded messages, each as a corps sender writes it: (msg, rid, mid)."""
    return join_frame([encode_as((msgspec.Raw(m), rid, n), is_json) for n, m in enumerate(messages, 1)], is_json)


def tells(*messages: bytes, base: int = 1, is_json: bool = False) -> bytes:
    """A corps tells frame of already-encoded messages, as a corps sender writes root tells."""
    return tells_frame(base, list(messages), is_json)


def nested(depth: int, kind: str) -> bytes:
    return {
        "array": b"\x91" * depth + b"\xc0",
        "map": b"\x81\xa1k" * depth + b"\xc0",
        "json-array": b"[" * depth + b"]" * depth,
        "json-map": b'{"k":' * depth + b"null" + b"}" * depth,
    }[kind]


HUGE: Final = (
    b"\x91" * 900_000 + b"\xc0",  # 900,000 deep
    b"[" * 900_000,  # 900,000 deep and never closed
    b"\xdd\xff\xff\xff\xff" + b"\xc0" * 1000,  # an array that claims 4 billion items
    b"\xdb\xff\xff\xff\xff" + b"x" * 1000,  # a string that claims 4 GB
    b"\xdc\xff\xff" + b"\x91\xc0" * 0xFFFF,  # 65,535 small arrays
    b"\x91\x93\xdb\x00\x0d\xbb\xa0" + b"x" * 900_000 + b"\x01\x01",  # a 900 KB "message"
)
"""Payloads near nats-server's default max_payload (1 MB)."""

_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
            | st.text(max_size=12) | st.binary(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
_deep = st.builds(nested, st.integers(900, 6000), st.sampled_from(["array", "map", "json-array", "json-map"]))


def _mutate(base: bytes, op: str, at: int, extra: bytes) -> bytes:
    i = at % (len(base) + 1)
    if op == "truncate":
        return base[:i]
    if op == "flip":
        return base[:i] + bytes([(base[i] ^ 0xFF) if i < len(base) else 0xC1]) + base[i + 1 :]
    if op == "insert":  # often a deep value where a field's value was: a deep unknown field or Any
        return base[:i] + extra + base[i:]
    if op == "replace":
        return base[:i] + extra + base[i + len(extra) :]
    return base + extra  # "append": trailing bytes


def payloads(valid: list[bytes], huge: bool = False) -> st.SearchStrategy[bytes]:
    """Bytes an attacker (or a broken client) could send: random, msgpack and JSON of random values,
    nested 900 to 6,000 deep, and valid payloads truncated, flipped, or with bytes (deep ones
    among them) spliced in. ``huge`` adds payloads near 1 MB."""
    mutated = st.builds(_mutate, st.sampled_from(valid),
                        st.sampled_from(["truncate", "flip", "insert", "replace", "append"]),
                        st.integers(0, 4096), _deep | st.binary(min_size=1, max_size=8))
    strategies = [
        st.binary(max_size=64),
        _values.map(msgspec.msgpack.encode),
        _values.map(msgspec.json.encode),
        _deep,
        mutated,
        mutated,
    ]
    if huge:
        strategies.append(st.sampled_from(HUGE))
    return st.one_of(*strategies)


def error_in(data: bytes) -> dict[str, Any]:
    """The error a raw requester got: a bare ``corps.Error`` map, or the body of a one-reply frame
    ``[[rid, false, error]]``; in msgpack or JSON, as the request was."""
    obj = msgspec.json.decode(data) if data[:1] in (b"{", b"[") else msgspec.msgpack.decode(data)
    if isinstance(obj, list):
        ((_rid, ok, obj),) = obj
        assert ok is False
    assert isinstance(obj, dict)
    assert obj["$type"] == "corps.Error", obj
    return obj
