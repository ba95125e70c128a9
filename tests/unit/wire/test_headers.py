"""Headers of non-corps clients: correlation ids and traceparent read as untrusted bytes, and the
services API's error headers written for them."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from corps.wire._headers import (
    MAX_CORR_LENGTH,
    MAX_ERROR_DESCRIPTION,
    NO_IDS,
    ids_from_block,
    ids_from_map,
    service_error_headers,
    valid_traceparent,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def block(*pairs: tuple[str, str]) -> bytes:
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode()


def test_a_corps_corr_header_is_the_correlation_id_and_wins_over_traceparent() -> None:
    ids = ids_from_block(block(("Corps-Corr", "order-42"), ("traceparent", TP)))
    assert (ids.corr, ids.traceparent, ids.bad) == ("order-42", TP, 0)


def test_without_corps_corr_the_trace_id_of_traceparent_is_the_correlation_id() -> None:
    ids = ids_from_block(block(("traceparent", TP)))
    assert (ids.corr, ids.traceparent) == ("4bf92f3577b34da6a3ce929d0e0e4736", TP)


def test_header_names_match_whatever_their_case() -> None:
    assert ids_from_map({"corps-corr": "a", "TraceParent": TP}).corr == "a"
    assert ids_from_block(block(("CORPS-CORR", "b"))).corr == "b"


def test_no_header_of_ours_gives_no_ids_without_decoding() -> None:
    assert ids_from_block(None) is NO_IDS
    assert ids_from_block(block(("Nats-Msg-Id", "x"))) is NO_IDS
    assert ids_from_map({}) is NO_IDS


def test_malformed_values_are_ignored_and_counted() -> None:
    too_long = "x" * (MAX_CORR_LENGTH + 1)
    ids = ids_from_map({"Corps-Corr": too_long, "traceparent": TP.upper()})
    assert (ids.corr, ids.traceparent, ids.bad) == ("", "", 2)
    assert ids_from_map({"Corps-Corr": "has space"}).corr == ""
    assert ids_from_map({"Corps-Corr": "ünïcode"}).bad == 1
    assert ids_from_map({"Corps-Corr": "x" * MAX_CORR_LENGTH}).corr == "x" * MAX_CORR_LENGTH


def test_traceparent_follows_w3c_trace_context() -> None:
    assert valid_traceparent(TP) == TP
    assert valid_traceparent("ff" + TP[2:]) is None  # version ff is invalid
    assert valid_traceparent("00-" + "0" * 32 + TP[35:]) is None  # all-zero trace id
    assert valid_traceparent(TP[:36] + "0" * 16 + "-01") is None  # all-zero parent id
    assert valid_traceparent(TP + "-extra") is None  # version 00 has exactly four fields
    assert valid_traceparent("01" + TP[2:] + "-extra") == "01" + TP[2:] + "-extra"  # a later version may add
    assert valid_traceparent(TP[:-1]) is None


def test_error_headers_carry_a_one_line_description_and_an_http_like_code() -> None:
    raw = service_error_headers("RemoteError", "ValueError", "bad\r\nInjected: yes")
    assert raw.startswith(b"NATS/1.0\r\n")
    assert raw.endswith(b"\r\n\r\n")
    lines = raw.decode().split("\r\n")
    assert lines[1] == "Nats-Service-Error: ValueError: bad  Injected: yes"
    assert lines[2] == "Nats-Service-Error-Code: 500"
    assert b"Nats-Service-Error-Code: 400" in service_error_headers("InvalidMessage", "InvalidMessage", "x")
    assert b"Nats-Service-Error-Code: 404" in service_error_headers("NoResponders", "NoResponders", "x")
    assert b"Nats-Service-Error-Code: 503" in service_error_headers("MailboxFull", "10", "x")
    long = service_error_headers("RemoteError", "E", "y" * 10_000).decode().split("\r\n")[1]
    assert len(long) == len("Nats-Service-Error: ") + MAX_ERROR_DESCRIPTION


_HEADER_LINE = re.compile(rb"[A-Za-z-]+: [\x20-\x7e]*")


@given(st.binary(max_size=600))
def test_any_header_block_gives_valid_ids_or_none(raw: bytes) -> None:
    for data in (raw, b"NATS/1.0\r\nCorps-Corr: " + raw + b"\r\ntraceparent: " + raw + b"\r\n\r\n"):
        ids = ids_from_block(data)
        assert ids.corr == "" or re.fullmatch(r"[\x21-\x7e]{1,128}", ids.corr)
        assert ids.traceparent == "" or valid_traceparent(ids.traceparent) == ids.traceparent


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=300), max_size=5))
def test_any_header_map_gives_valid_ids_or_none(headers: dict[str, str]) -> None:
    ids = ids_from_map(headers)
    assert ids.corr == "" or re.fullmatch(r"[\x21-\x7e]{1,128}", ids.corr)
    assert ids.traceparent == "" or valid_traceparent(ids.traceparent) == ids.traceparent


@given(st.sampled_from(["RemoteError", "InvalidMessage", "NoResponders", "MailboxFull", "Odd"]), st.text(max_size=50),
       st.text(max_size=1000))
def test_error_headers_are_always_two_well_formed_lines(kind: str, type_: str, message: str) -> None:
    lines = service_error_headers(kind, type_, message).split(b"\r\n")
    assert lines[0] == b"NATS/1.0"
    assert lines[3:] == [b"", b""]
    assert all(_HEADER_LINE.fullmatch(line) for line in lines[1:3])
