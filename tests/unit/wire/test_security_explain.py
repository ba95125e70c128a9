"""``explain()`` (runtime/wire/_security.py) names each refusal and what to change: one case per
branch, with exceptions shaped as the ssl module and nats-py raise them (their ``reason`` and
``verify_message`` as OpenSSL sets them). The integration tests meet the same errors from real
servers, but a refusal's exact path there can depend on timing (TLS 1.3)."""

from __future__ import annotations

import ssl

import nats.errors
import pytest

from corps import Security
from corps.wire._security import InfoInClear, NoInfo, TlsRequired, explain, is_fatal

TLS = Security(ca="/ca.pem")
URL = ["nats://127.0.0.1:4222"]


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    exc.verify_message = message
    return exc


def ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1000)")
    exc.reason = reason
    return exc


@pytest.mark.parametrize(("message", "hint"), [
    ("Hostname mismatch, certificate is not valid for 'x'.", "does not name this host (Security(tls_hostname=...))"),
    ("IP address mismatch, certificate is not valid for '10.0.0.1'.", "does not name this host"),
    ("certificate has expired", "the server's certificate has expired"),
    ("unable to get local issuer certificate", "not signed by a CA this client trusts: give the CA"),
])
def test_a_failed_verification_names_openssls_reason_and_the_fix(message: str, hint: str) -> None:
    text = explain(verify_error(message), TLS, URL)
    assert text == f"TLS verification failed: {message}; " + text.split("; ", 1)[1]
    assert hint in text


@pytest.mark.parametrize(("reason", "expected"), [
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "TLS refused: the server requires a client certificate (mutual TLS): "
                                          "give one (Security(cert=..., key=...) or NATS_CERT and NATS_KEY) "
                                          "[tlsv13 alert certificate required]"),
    ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "TLS refused: the server rejected this client's certificate "
                                        "[sslv3 alert certificate expired]"),
    ("TLSV1_ALERT_UNKNOWN_CA", "TLS refused: the server rejected this client's certificate [tlsv1 alert unknown ca]"),
    ("WRONG_VERSION_NUMBER", "TLS handshake failed [wrong version number]: is TLS-first (tls_handshake_first) set "
                             "on one side only?"),
    ("RECORD_LAYER_FAILURE", "TLS handshake failed [record layer failure]: is TLS-first"),
    ("PACKET_LENGTH_TOO_LONG", "TLS handshake failed [packet length too long]: is TLS-first"),
    ("NO_SHARED_CIPHER", "TLS handshake failed: no shared cipher"),
])
def test_a_tls_alert_or_handshake_failure_says_which_side_to_change(reason: str, expected: str) -> None:
    assert explain(ssl_error(reason), TLS, URL).startswith(expected)


def test_a_server_without_tls_and_one_that_expects_tls_first_are_told_apart() -> None:
    assert explain(TlsRequired(), TLS, URL).startswith("TLS was asked for")
    assert "refused before sending credentials" in explain(TlsRequired(), TLS, URL)
    empty = explain(nats.errors.Error("nats: empty response from server when expecting INFO message"), Security(), URL)
    assert empty == "the server sent no INFO: does it expect TLS first (Security(tls_handshake_first=True))?"


def test_a_tls_first_mismatch_says_which_side_to_change_whichever_way_it_showed() -> None:
    tls_first = Security(ca="/ca.pem", tls_handshake_first=True)
    in_clear = explain(InfoInClear(), tls_first, URL)
    wrong_version = explain(ssl_error("WRONG_VERSION_NUMBER"), tls_first, URL)
    assert in_clear.endswith("drop tls_handshake_first, or set it on the server [the INFO came in clear]")
    assert wrong_version == in_clear.replace("[the INFO came in clear]", "[wrong version number]")
    assert explain(NoInfo(1.0), TLS, URL).startswith("the server sent no INFO within 1s: does it expect TLS first")
    assert explain(NoInfo(1.0), tls_first, URL).startswith("the server sent no INFO within 1s of the TLS handshake")
    assert "drop Security(tls_handshake_first=True)" in explain(NoInfo(1.0), tls_first, URL)
    assert is_fatal(NoInfo(1.0))
    assert is_fatal(InfoInClear())
    # A server that closes at once without a word (a port proxy whose server is not up yet) is retried.
    assert not is_fatal(nats.errors.Error("nats: empty response from server when expecting INFO message"))


@pytest.mark.parametrize(("text", "expected"), [
    ("nats: authentication expired", "expired credential: the server says the credential expired (a token)"),
    ("nats: authentication revoked", "revoked credential: the server says the credential was revoked (a token)"),
    ("nats: authorization violation", "authorization violation: the server refused a token"),
])
def test_an_auth_refusal_names_the_credential_kind_never_its_value(text: str, expected: str) -> None:
    out = explain(nats.errors.Error(text), Security(token="s3cr3t-t0ken"), URL)
    assert out.startswith(expected)
    assert "s3cr3t" not in out


def test_anything_else_is_its_type_and_message() -> None:
    assert explain(ConnectionRefusedError(111, "Connection refused"), Security(), URL) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
