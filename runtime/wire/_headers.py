"""NATS headers corps reads from and writes for clients that are not corps.

Corps senders carry correlation ids inside their frames (no headers on the tell/ask hot path).
A client in another language (nats.js, nats-py, the ``nats`` CLI) cannot: it may send
``Corps-Corr`` (its correlation id) and the W3C ``traceparent``; and it reads the NATS services
API's error headers, ``Nats-Service-Error`` and ``Nats-Service-Error-Code``, on error replies.

Header values are untrusted bytes: everything here is total (never raises, whatever the input)
and a value that is too long or has characters outside its charset is treated as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

CORR: Final = "Corps-Corr"
"""The caller's correlation id, on asks, tells and events."""
TRACEPARENT: Final = "traceparent"
"""W3C Trace Context: ``{version}-{trace-id}-{parent-id}-{flags}``, lower-case hex."""
SERVICE_ERROR: Final = "Nats-Service-Error"
SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"

MAX_CORR_LENGTH: Final = 128
"""Longest correlation id taken from a header; a longer one is ignored (and counted)."""
MAX_TRACEPARENT_LENGTH: Final = 256
"""Longest ``traceparent`` taken (version 00 is 55 characters; later versions may append fields)."""
MAX_ERROR_DESCRIPTION: Final = 512
"""Characters of an error description written into ``Nats-Service-Error``."""

# Printable ASCII without space: safe in a header, a log line and a `corps trace` argument.
_CORR_OK: Final = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_CORR_LENGTH)  # noqa: UP031 -- braces of the regex
# Version 00 exactly; a later version (not ff) may append "-..." fields, which are ignored.
_TRACEPARENT_OK: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")

ERROR_CODES: Final = {"InvalidMessage": "400", "NoResponders": "404", "RemoteError": "500", "MailboxFull": "503"}
"""``Nats-Service-Error-Code`` per kind of corps error reply (HTTP-like, as NATS services use)."""


class InboundIds:
    """What a foreign client's headers say about a message: its correlation id (from
    ``Corps-Corr``, else the trace id of ``traceparent``, else empty) and the raw, validated
    ``traceparent`` (empty if absent or invalid). ``bad`` counts values refused as invalid."""

    __slots__ = ("bad", "corr", "traceparent")

    def __init__(self, corr: str = "", traceparent: str = "", bad: int = 0) -> None:
        self.corr = corr
        self.traceparent = traceparent
        self.bad = bad


NO_IDS: Final = InboundIds()


def valid_corr(value: str | None) -> str | None:
    """``value`` if it is a usable correlation id (1-128 printable ASCII, no space), else None."""
    if value is None or not isinstance(value, str):
        return None
    return value if _CORR_OK.fullmatch(value) else None


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a well-formed W3C traceparent (not version ff, ids not all zero), else None."""
    if value is None or not isinstance(value, str) or len(value) > MAX_TRACEPARENT_LENGTH:
        return None
    m = _TRACEPARENT_OK.fullmatch(value)
    if m is None or m.group(1) == "ff" or m.group(2) == _ZERO_TRACE or m.group(3) == _ZERO_PARENT:
        return None
    if m.group(1) == "00" and m.group(5):
        return None  # version 00 has exactly four fields
    return value


def trace_id(traceparent: str) -> str:
    """The trace id of a traceparent that passed ``valid_traceparent``."""
    return traceparent[3:35]


def ids_from_map(headers: Mapping[str, str] | None) -> InboundIds:
    """Inbound ids from parsed headers (nats-py's ``Msg.headers``; names matched case-insensitively)."""
    if not headers:
        return NO_IDS
    corr_raw = tp_raw = None
    for name, value in headers.items():
        low = name.lower() if isinstance(name, str) else ""
        if low == "corps-corr":
            corr_raw = value
        elif low == TRACEPARENT:
            tp_raw = value
    if corr_raw is None and tp_raw is None:
        return NO_IDS
    corr = valid_corr(corr_raw)
    tp = valid_traceparent(tp_raw)
    bad = (corr_raw is not None and corr is None) + (tp_raw is not None and tp is None)
    return InboundIds(corr or (trace_id(tp) if tp else ""), tp or "", bad)


def ids_from_block(raw: bytes | None) -> InboundIds:
    """Inbound ids from a raw header block (``NATS/1.0\\r\\nName: value\\r\\n...``), as nats-py's
    parser hands it to a direct route. Total: any bytes give an answer, never an exception."""
    if not raw:
        return NO_IDS
    low = raw.lower()
    if b"corps-corr" not in low and b"traceparent" not in low:
        return NO_IDS  # the usual case: no header of ours, nothing decoded
    pairs: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            pairs[name.strip()] = value.strip()
    return ids_from_map(pairs)


def service_error_headers(kind: str, type_: str, message: str) -> bytes:
    """The header block of an error reply to a non-corps requester: ``Nats-Service-Error`` (a
    one-line description, printable ASCII, at most MAX_ERROR_DESCRIPTION characters) and
    ``Nats-Service-Error-Code`` (see ERROR_CODES)."""
    text = f"{type_}: {message}" if kind == "RemoteError" else f"{kind}: {message}"
    text = _UNPRINTABLE.sub(" ", text)[:MAX_ERROR_DESCRIPTION].strip() or kind
    code = ERROR_CODES.get(kind, "500")
    return f"NATS/1.0\r\n{SERVICE_ERROR}: {text}\r\n{SERVICE_ERROR_CODE}: {code}\r\n\r\n".encode()
