"""The stored value of a durable virtual instance: its state, and the durable extras saved with it.

An instance without extras is stored as it always was: the msgpack of its state Struct, so
values written before extras existed (or by classes that have none) read as before. An instance
with extras (``corps.core._extras``: its saga ``effect="memory"`` records) is stored as an
envelope: the byte 0xC1 (never the first byte of msgpack: the format leaves it unused), then
the msgpack array ``[version, state, {name: bytes}]``. One value, so one compare-and-set writes
the state and its extras together.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from corps.errors import StateFenced

MARK: Final = b"\xc1"
_VERSION: Final = 1


class _Envelope(msgspec.Struct, array_like=True):
    version: int
    state: msgspec.Raw
    extras: dict[str, bytes]


_encode = msgspec.msgpack.Encoder().encode
_decode_envelope = msgspec.msgpack.Decoder(_Envelope).decode


def encode_value(state: Any, extras: dict[str, bytes]) -> bytes:
    if not extras:
        return _encode(state)
    return MARK + _encode(_Envelope(_VERSION, msgspec.Raw(_encode(state)), extras))


def decode_value(key: str, data: bytes, decoder: msgspec.msgpack.Decoder[Any]) -> tuple[Any, dict[str, bytes]]:
    """(the state, its extras) from a stored value. The bytes come from a KV bucket anyone with
    access may write.

    Raises:
        StateFenced: they are neither a state of the class nor an envelope of one (any
            exception of the decoders, RecursionError included): the activation is refused.
    """
    try:
        if not data.startswith(MARK):
            return decoder.decode(data), {}
        envelope = _decode_envelope(data[1:])
        if envelope.version != _VERSION:
            raise ValueError(f"envelope version {envelope.version}")
        return decoder.decode(envelope.state), envelope.extras
    except Exception as exc:  # untrusted bytes (re-raised typed): the activation is refused
        raise StateFenced(key, f"stored state unreadable: {type(exc).__name__}: {exc}"[:300]) from exc
