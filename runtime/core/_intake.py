"""What a NATS payload sent to an actor class holds: its envelopes, and what was wrong with it.

Pure decoding, no I/O. The host (``corps.core._host``) answers or records each problem: a bad
message costs only itself, never its neighbours in the frame, and is never dropped silently.
Nothing here raises on any payload: the bytes are untrusted, and msgspec raises RecursionError
(not a msgspec error) on deep nesting, so every decode catches ``Exception``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from corps.wire._codec import (
    BAD,
    BARE,
    MSGPACK_ARRAY,
    MSGPACK_MAP,
    RAW_FRAME,
    RAW_TELLS,
    Decoders,
    Envelope,
    Tells,
    is_tells,
    sniff,
    undecodable,
)


class Problem(NamedTuple):
    """One message that cannot be delivered: answer ``rid`` (if an ask) with InvalidMessage."""

    rid: int
    why: str
    payload: bytes = b""
    """The bytes refused: the message, or the whole payload if it could not be split."""


class Intake(NamedTuple):
    envelopes: list[Envelope[Any]]
    is_json: bool
    problems: list[Problem]


def decode_fast(decoders: Decoders | None, limit: int, data: bytes) -> list[Envelope[Any]] | Tells[Any] | None:
    """A msgpack frame within the size limit that decodes in one typed pass, or None: ``decode``
    then says whatever is wrong with it. The hot path: no allocation beyond the envelopes (a
    tells frame: the messages and one list of ids, ``Tells``)."""
    if not data or data[0] not in MSGPACK_ARRAY or decoders is None or len(data) > limit:
        return None
    try:
        if data[1] == 0x01 and data[0] == 0x93:  # a tells frame, [1, base, [msg, ...]]
            tells: Tells[Any] = decoders.tells(False).decode(data)
            return tells
        envs: list[Envelope[Any]] = decoders.frame_and_bare(False)[0].decode(data)
    except Exception:  # noqa: BLE001 -- untrusted bytes: decode() says what is wrong
        return None
    return envs


def decode_fast_bare(decoders: Decoders | None, limit: int, data: bytes, has_reply: bool, mid: int = 0,
                     corr: str = "", trace: str = "") -> list[Envelope[Any]] | None:
    """A bare msgpack message (what clients in other languages send) within the limit that
    decodes, as one envelope (a request if it has a reply subject), or None: ``decode`` then
    says whatever is wrong with it. Its own fast path: a flood of bare messages must not queue
    up behind the slow path, in front of other instances' messages. ``mid`` (unique on this
    node), ``corr`` and ``trace`` (from the sender's headers, see ``corps.wire._headers``) give
    the message its ids: a foreign sender has no frame to carry them."""
    if not data or data[0] not in MSGPACK_MAP or decoders is None or len(data) > limit:
        return None
    try:
        msg = decoders.frame_and_bare(False)[1].decode(data)
    except Exception:  # noqa: BLE001 -- untrusted bytes: decode() says what is wrong
        return None
    return [Envelope(msg, -1 if has_reply else 0, mid, corr, "", "", trace)]


def decode(decoders: Decoders | None, limit: int, data: bytes, has_reply: bool, mid: int = 0, corr: str = "",
           trace: str = "") -> Intake:
    """Decode a frame or a bare message (msgpack or JSON) for an actor class whose handlers
    take ``decoders``' types, with messages of at most ``limit`` bytes. Never raises. A bare
    message gets ``mid``, ``corr`` and ``trace`` as its ids (see ``decode_fast_bare``)."""
    kind, is_json = sniff(data)
    if kind == BAD or decoders is None:
        why = "no handlers" if decoders is None else "payload is neither a message (map) nor a frame (array)"
        return Intake([], is_json, [Problem(-1, why, data)])
    frame, bare = decoders.frame_and_bare(is_json)
    if kind == BARE:
        rid = -1 if has_reply else 0
        if len(data) > limit:
            return Intake([], is_json, [Problem(rid, f"message of {len(data)} bytes is over the {limit}-byte limit",
                                                data)])
        try:
            return Intake([Envelope(bare.decode(data), rid, mid, corr, "", "", trace)], is_json, [])
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes
            return Intake([], is_json, [Problem(rid, undecodable(exc), data)])
    tells = is_tells(data, is_json)
    if len(data) <= limit:
        try:  # one typed decode for the batch
            if tells:
                return Intake(decoders.tells(is_json).decode(data).envelopes(), is_json, [])
            return Intake(frame.decode(data), is_json, [])
        except Exception:  # noqa: BLE001 -- untrusted bytes: _one_by_one says what is wrong
            pass
    return _one_by_one(bare, limit, data, is_json, tells)


def _raw_envelopes(data: bytes, is_json: bool, tells: bool) -> list[Envelope[Any]]:
    """The frame's envelopes with each message left undecoded (``msgspec.Raw``). Raises on a
    malformed frame."""
    raw: list[Envelope[Any]] = RAW_TELLS[is_json].decode(data).envelopes() if tells else \
        RAW_FRAME[is_json].decode(data)
    return raw


def _one_by_one(bare: Any, limit: int, data: bytes, is_json: bool, tells: bool) -> Intake:
    """Message by message, so one bad or oversized message costs only itself."""
    try:
        raw = _raw_envelopes(data, is_json, tells)
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes
        return Intake([], is_json, [Problem(-1, f"malformed frame: {undecodable(exc)}", data)])
    good: list[Envelope[Any]] = []
    problems: list[Problem] = []
    for env in raw:
        size = len(env.msg)
        if size > limit:
            problems.append(Problem(env.rid, f"message of {size} bytes is over the {limit}-byte limit", bytes(env.msg)))
            continue
        try:
            good.append(Envelope(bare.decode(env.msg), env.rid, env.mid, env.corr, env.cause, env.key, env.tp))
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes
            problems.append(Problem(env.rid, undecodable(exc), bytes(env.msg)))
    return Intake(good, is_json, problems)
