"""Wire format: envelopes, batches (frames) and the decoders built once per actor class.

A NATS payload on an actor subject is one of:

* a **frame**: an array of envelopes ``[msg, rid, mid, corr, cause, key, tp]`` (trailing
  defaults left out), written by corps senders; several messages sent to one subject in one
  loop iteration travel as one frame (coalescing);
* a **tells frame**: ``[1, base, [msg, ...]]``, the root tells (sent outside any handler: no
  ask, no ids but the sender's sequence number, ``base + i`` for the i-th) of one loop
  iteration to one subject: the receiver decodes one list of messages, with no envelope per
  message (``Tells``). A frame of envelopes never starts with the integer 1;
* a **bare message**: the tagged map of one Message, as a client in another language (or the
  ``nats`` CLI) would send it; its reply, if any, goes to the NATS reply subject, bare too.

Both exist in msgpack (the default) and JSON. The first byte tells them apart: a msgpack array,
a msgpack map, ``[`` or ``{``. A frame or a message is never a msgpack positive fixint, which is
the only msgpack type whose first byte can be ``[`` (0x5b) or ``{`` (0x7b).

Reply frames, on a requester's inbox, are arrays of ``[rid, ok, body]``.
"""

from __future__ import annotations

from typing import Any, Final, Generic, Literal, TypeVar, Union

import msgspec

T = TypeVar("T")

TAG_FIELD = "$type"
"""The wire field that names a message's class. ``$type`` cannot clash with a Python field name,
so users keep natural names such as ``type`` and ``kind`` for themselves."""

Format = Literal["msgpack", "json"]


class Envelope(msgspec.Struct, Generic[T], array_like=True, frozen=True, gc=False):
    """One message in a frame. rid > 0 is an ask (reply with that rid); 0 is a tell.

    Senders encode a tuple, not this Struct: ``(msg, rid, mid)`` for a root message and all five
    fields only inside a handler. msgspec ignores ``omit_defaults`` on array_like Structs
    (jcrist/msgspec#720), and the decoder fills missing trailing fields with their defaults;
    the short tuple also encodes faster (bench: 256 ns vs 308 ns per message).
    """

    msg: T
    rid: int = 0
    mid: int = 0
    """Sequence number at the sender. The message id is ``{sender node}-{mid}``, computed only
    when needed: a string per message cost ~300 ns on the tell path (bench, f-string + encode)."""
    corr: str = ""
    """Correlation id: the saga or request this message belongs to ("" = this message's own id)."""
    cause: str = ""
    """Causation id: the id of the message whose handler sent this one."""
    key: str = ""
    """Idempotency key: the same for every retry of one logical request (a saga step's
    ``{saga_id}:{step}``); participants use it to answer a duplicate with the first reply."""
    tp: str = ""
    """W3C ``traceparent`` of the message: written by a corps sender only while tracing is on
    (``corps.observe.Tracing``), so the hot path's envelopes stay three fields; set from the
    header of a bare message sent by a client that is not corps (validated,
    ``corps.wire._headers``)."""


class Tells(msgspec.Struct, Generic[T], array_like=True, frozen=True, gc=False):
    """A tells frame: root tells to one subject, ``msgs[i]`` with the id (mid) ``base + i``.

    Each is the envelope ``Envelope(msgs[i], 0, base + i)``; the mailbox runs them without
    building it (``envelopes()`` does, for the paths that need one: a refusal, a failure).
    The sender gives a frame its ids when it publishes it (``corps.core._outbox``).
    """

    kind: Literal[1]
    base: int
    msgs: list[T]

    def envelopes(self) -> list[Envelope[T]]:
        base = self.base
        return [Envelope(msg, 0, base + i) for i, msg in enumerate(self.msgs)]


class Reply(msgspec.Struct, Generic[T], array_like=True, frozen=True, gc=False):
    """One reply in a reply frame."""

    rid: int
    ok: bool
    body: T


class ErrorReply(msgspec.Struct, frozen=True, tag="corps.Error", tag_field=TAG_FIELD):
    """The body of a failed ask. Bare (non-corps) clients receive it as a tagged map."""

    kind: str
    """InvalidMessage | RemoteError | NoResponders | MailboxFull"""
    type: str
    message: str


MSGPACK_ARRAY: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
MSGPACK_MAP: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_JSON_SPACE: Final = frozenset(b" \t\r\n")

FRAME, BARE, BAD = 0, 1, 2


def sniff(data: bytes) -> tuple[int, bool]:
    """Classify a payload: (FRAME | BARE | BAD, is_json). Total: any bytes, never raises."""
    if not data:
        return BAD, False
    first = data[0]
    if first in MSGPACK_ARRAY:
        return FRAME, False
    if first in MSGPACK_MAP:
        return BARE, False
    if first in _JSON_SPACE:
        data = data.lstrip()
        first = data[0] if data else 0
    if first == 0x5B:  # [
        return FRAME, True
    if first == 0x7B:  # {
        return BARE, True
    return BAD, False


def undecodable(exc: Exception) -> str:
    """What to tell the sender of bytes that did not decode. Decoding untrusted bytes must catch
    ``Exception``, not only msgspec's errors: on nesting deeper than Python's recursion limit
    (~1,000 levels, in any ``Any``-typed part or skipped unknown field) msgspec raises
    RecursionError, in msgpack and JSON alike."""
    if isinstance(exc, msgspec.MsgspecError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return f"nested too deeply to decode (RecursionError: {exc})"
    return f"{type(exc).__name__}: {exc}"[:200]


_FIXARRAY: Final = tuple(bytes((0x90 | n,)) for n in range(16))


def msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return _FIXARRAY[n]
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


FRAME_OVERHEAD: Final = 5
"""The most bytes a frame adds around its parts (a msgpack array32 header)."""


TELLS_OVERHEAD: Final = 27
"""The most bytes a tells frame adds around its parts (one more per part, as in any frame): in
JSON ``[1,`` + a 20-digit base + ``,[`` + ``]]``; msgpack's fixarray, 1, a uint64 and an array32
header are 16."""


def tells_frame(base: int, parts: list[bytes], is_json: bool) -> bytes:
    """A tells frame ``[1, base, [part, ...]]`` around individually encoded messages."""
    if is_json:
        return b"[1,%d,[" % base + b",".join(parts) + b"]]"
    return b"\x93\x01" + _msgpack_encode(base) + msgpack_array_header(len(parts)) + b"".join(parts)


def lone_tell_frame(mid: int, part: bytes, is_json: bool) -> bytes:
    """A frame of one root tell, ``[[msg, 0, mid]]``: alone, a plain frame of one envelope costs
    its receiver less than a tells frame (no per-frame setup for one message)."""
    if is_json:
        return b"[[" + part + b",0,%d]]" % mid
    return b"".join((b"\x91\x93", part, b"\x00", _msgpack_encode(mid)))  # (one join: 20 ns less than +)


def is_tells(data: bytes, is_json: bool) -> bool:
    """Is this frame (``sniff`` said FRAME) a tells frame? Total: any bytes, never raises."""
    if not is_json:
        return data[:2] == b"\x93\x01"
    rest = data.lstrip()[1:].lstrip()  # after the "["
    return rest[:1] == b"1" and rest[1:2] in (b",", b" ", b"\t", b"\r", b"\n")


def join_frame(parts: list[bytes], is_json: bool) -> bytes:
    """Concatenate individually encoded parts into one array, without re-encoding them."""
    if is_json:
        return b"[" + b",".join(parts) + b"]"
    return msgpack_array_header(len(parts)) + b"".join(parts)


class WireCodec:
    """The encoder a sender uses (msgpack or JSON) and the shape-only decoders every node shares."""

    def __init__(self, fmt: Format = "msgpack") -> None:
        if fmt not in ("msgpack", "json"):
            raise ValueError(f"codec must be 'msgpack' or 'json', not {fmt!r}")
        self.format: Format = fmt
        self.is_json = fmt == "json"
        self.encode = msgspec.json.Encoder().encode if self.is_json else msgspec.msgpack.Encoder().encode


_msgpack_encode = msgspec.msgpack.Encoder().encode
_json_encode = msgspec.json.Encoder().encode


def encode_as(obj: Any, is_json: bool) -> bytes:
    """Encode in the format a request arrived in, so replies match the asker."""
    return _json_encode(obj) if is_json else _msgpack_encode(obj)


class Decoders:
    """Decoders for one union of message types, built once (per actor class, or per reply type)."""

    __slots__ = ("_json", "_msgpack", "_tells", "type")

    def __init__(self, tp: Any) -> None:
        self.type = tp
        self._msgpack: tuple[Any, Any] | None = None
        self._json: tuple[Any, Any] | None = None
        self._tells: dict[bool, Any] = {}

    def _build(self, is_json: bool) -> tuple[Any, Any]:
        mod: Any = msgspec.json if is_json else msgspec.msgpack
        return mod.Decoder(list[Envelope[self.type]]), mod.Decoder(self.type)  # type: ignore[name-defined]

    def frame_and_bare(self, is_json: bool) -> tuple[Any, Any]:
        """(frame decoder, bare decoder), built on first use for JSON, which is rare."""
        if is_json:
            if self._json is None:
                self._json = self._build(True)
            return self._json
        if self._msgpack is None:
            self._msgpack = self._build(False)
        return self._msgpack

    def tells(self, is_json: bool) -> Any:
        """The decoder of a tells frame of this union, built on first use."""
        d = self._tells.get(is_json)
        if d is None:
            mod: Any = msgspec.json if is_json else msgspec.msgpack
            d = self._tells[is_json] = mod.Decoder(Tells[self.type])  # type: ignore[name-defined]
        return d


RAW_FRAME: dict[bool, Any] = {
    False: msgspec.msgpack.Decoder(list[Envelope[msgspec.Raw]]),
    True: msgspec.json.Decoder(list[Envelope[msgspec.Raw]]),
}
"""Frame decoders that leave each message undecoded: the slow path, message by message."""

RAW_TELLS: dict[bool, Any] = {
    False: msgspec.msgpack.Decoder(Tells[msgspec.Raw]),
    True: msgspec.json.Decoder(Tells[msgspec.Raw]),
}
"""Tells-frame decoders that leave each message undecoded: the slow path, message by message."""

RAW_REPLIES: dict[bool, Any] = {
    False: msgspec.msgpack.Decoder(list[Reply[msgspec.Raw]]),
    True: msgspec.json.Decoder(list[Reply[msgspec.Raw]]),
}

ERROR_DECODER: dict[bool, Any] = {
    False: msgspec.msgpack.Decoder(ErrorReply),
    True: msgspec.json.Decoder(ErrorReply),
}


def union_of(types: list[type]) -> Any:
    """The decode type for a set of message classes."""
    if len(types) == 1:
        return types[0]
    return Union[tuple(types)]  # noqa: UP007 -- built at runtime from a tuple
