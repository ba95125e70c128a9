"""The lean JetStream path's answers: untrusted bytes in, a value or a typed ``Store*`` error out.

A PubAck, a purge response, a direct get's headers and payload, a ``STREAM.MSG.GET``'s JSON with
base64 inside: each decoder turns any bytes into its value or a ``StoreError`` (StoreUnreadable
for what is not such an answer, StoreConflict for a lost compare-and-set, StoreNoResponders for a
503, StoreRefused for any other API error), never another exception. ``Reply`` is one answer as
it came off the reply subscription; ``header_block`` and ``parse_headers`` the NATS header format.
"""

from __future__ import annotations

import base64
from typing import Final, TypeVar

import msgspec

from corps.errors import (
    StoreConflict,
    StoreError,
    StoreNoResponders,
    StoreRefused,
    StoreUnreadable,
)
from corps.wire._codec import undecodable

WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
"""JetStream error codes of a lost compare-and-set (JSStreamWrongLastSequence, ...Constant)."""
EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION: Final = "KV-Operation"
MARKER_REASON: Final = "Nats-Marker-Reason"
"""nats-server 2.11+: a marker the server placed (a TTL, a purge) instead of KV-Operation."""
MAX_TOKEN_DIGITS: Final = 18


class PubAckError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """The stream's acknowledgement of a publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: PubAckError | None = None


class _Purged(msgspec.Struct, frozen=True):
    success: bool = False
    purged: int = 0
    error: PubAckError | None = None


class _StoredMsg(msgspec.Struct, frozen=True):
    subject: str = ""
    seq: int = 0
    hdrs: str | None = None
    data: str | None = None


class _MsgGet(msgspec.Struct, frozen=True):
    message: _StoredMsg | None = None
    error: PubAckError | None = None


_ACK = msgspec.json.Decoder(PubAck)
_MSG_GET = msgspec.json.Decoder(_MsgGet)
_PURGED = msgspec.json.Decoder(_Purged)


class Entry(msgspec.Struct, frozen=True):
    """A KV key's last message: its value and revision; ``deleted`` for a delete or purge marker."""

    value: bytes
    revision: int
    deleted: bool = False


class Reply:
    """One answer on the reply subscription: status line (``None``: none), headers, payload."""

    __slots__ = ("_headers", "_raw", "data", "status")

    def __init__(self, data: bytes, raw: bytes | None = None, headers: dict[str, str] | None = None,
                 status: str | None = None) -> None:
        self.data = data
        self._raw = raw
        self._headers = headers
        self.status = status
        if raw is not None and status is None:
            first = raw[: raw.find(b"\r\n")] if b"\r\n" in raw else raw
            code = first[9:12]  # b"NATS/1.0 404 ..."
            if len(code) == 3 and code.isdigit():
                self.status = code.decode()

    def header(self, name: str) -> str | None:
        if self._headers is None:
            self._headers = parse_headers(self._raw) if self._raw else {}
        return self._headers.get(name)


def parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status]\\r\\nName: value\\r\\n...`` -> {name: value} (the status line skipped)."""
    out: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def header_block(pairs: dict[str, str]) -> bytes:
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs.items()) + "\r\n").encode()


def decode_ack(subject: str, reply: Reply) -> int:
    """The stream sequence a PubAck gives for a publish on ``subject``.

    Raises:
        StoreNoResponders: status 503 (no stream on the subject, or JetStream is off).
        StoreConflict: the expected last subject sequence did not match.
        StoreRefused: any other API error or status.
        StoreUnreadable: the answer is not a PubAck.
    """
    ack = _answer(subject, reply, _ACK, "PubAck")
    if ack.seq <= 0:
        raise StoreUnreadable(subject, f"a PubAck without a sequence: {reply.data[:100]!r}")
    return ack.seq


def decode_purged(subject: str, reply: Reply) -> int:
    """How many messages a ``STREAM.PURGE`` request removed (``subject``: what it purged).

    Raises:
        StoreNoResponders: status 503.
        StoreRefused: an API error, or another status.
        StoreUnreadable: the answer is not a purge response.
    """
    got = _answer(subject, reply, _PURGED, "purge response")
    if not got.success or got.purged < 0:
        raise StoreUnreadable(subject, f"a purge response without success: {reply.data[:100]!r}")
    return got.purged


_Answer = TypeVar("_Answer", PubAck, _Purged)


def _answer(subject: str, reply: Reply, decoder: msgspec.json.Decoder[_Answer], what: str) -> _Answer:
    """A JSON API answer with an optional ``error``: decoded, or its status or error as a StoreError."""
    if reply.status is not None and not reply.data:
        raise _status_error(subject, reply)
    try:
        got = decoder.decode(reply.data)
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: RecursionError and all
        raise StoreUnreadable(subject, f"not a {what}: {undecodable(exc)}") from None
    if got.error is not None:
        raise _api_error(subject, got.error)
    return got


def _api_error(subject: str, err: PubAckError) -> StoreError:
    if err.err_code in WRONG_LAST_SEQUENCE:
        return StoreConflict(subject, err.description[:200] or "wrong last sequence")
    if err.code == 503:
        return StoreNoResponders(subject, err.description[:200] or "503")
    return StoreRefused(subject, err.code, err.err_code, err.description)


def _status_error(subject: str, reply: Reply) -> StoreError:
    if reply.status == "503":
        return StoreNoResponders(subject, "no stream or JetStream responder (503)")
    description = reply.header("Description") or ""
    status = reply.status or "?"
    return StoreRefused(subject, int(status) if status.isdigit() else 0, 0, f"status {status} {description}")



def decode_direct(subject: str, reply: Reply) -> Entry | None:
    """A direct get's answer: the message in headers and payload, or status 404 (none).

    Raises:
        StoreUnreadable: no sequence, or the message of another subject.
        StoreNoResponders / StoreRefused: a status other than 404.
    """
    if reply.status == "404":
        return None
    if reply.status is not None:
        raise _status_error(subject, reply)
    seq = reply.header("Nats-Sequence") or ""
    if not (seq.isdecimal() and len(seq) <= MAX_TOKEN_DIGITS and int(seq) > 0):
        raise StoreUnreadable(subject, f"a direct get answer without a valid sequence ({seq[:30]!r})")
    if reply.header("Nats-Subject") != subject:
        raise StoreUnreadable(subject, f"a direct get answer for {str(reply.header('Nats-Subject'))[:100]!r}")
    deleted = reply.header(KV_OPERATION) in ("DEL", "PURGE") or reply.header(MARKER_REASON) is not None
    return Entry(reply.data, int(seq), deleted)


def decode_api_get(subject: str, reply: Reply) -> Entry | None:
    """A ``STREAM.MSG.GET`` answer: JSON with the message base64-encoded, or error 404 (none).

    Raises:
        StoreUnreadable: not such an answer.
        StoreNoResponders / StoreRefused: an API error other than "no message".
    """
    if reply.status is not None and not reply.data:
        raise _status_error(subject, reply)
    try:
        got = _MSG_GET.decode(reply.data)
        if got.error is not None:
            if got.error.code == 404:
                return None
            raise _api_error(subject, got.error)
        msg = got.message
        if msg is None or msg.seq <= 0 or msg.subject != subject:
            raise StoreUnreadable(subject, "a message get answer without a message of this subject")
        data = base64.b64decode(msg.data or "", validate=True)
        headers = parse_headers(base64.b64decode(msg.hdrs, validate=True)) if msg.hdrs else {}
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: RecursionError, binascii.Error, ...
        raise StoreUnreadable(subject, f"not a message get answer: {undecodable(exc)}") from None
    deleted = headers.get(KV_OPERATION) in ("DEL", "PURGE") or MARKER_REASON in headers
    return Entry(data, msg.seq, deleted)
