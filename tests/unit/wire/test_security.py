"""Security: the nats CLI's variables, secrets kept out of reprs and URLs, settings checked."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from corps import Security
from corps.wire._security import connect_options, explain, redact_url

secret = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,;=%", min_size=4, max_size=20)


def test_the_nats_cli_variables_become_one_security() -> None:
    env = {"NATS_CREDS": "/run/secrets/svc.creds", "NATS_CA": "/ca.pem", "NATS_CERT": "/c.pem", "NATS_KEY": "/c.key",
           "NATS_INBOX_PREFIX": "_INBOX.svc", "NATS_URL": "ignored here", "NATS_TOKEN": ""}
    assert Security.from_env(env) == Security(creds="/run/secrets/svc.creds", ca="/ca.pem", cert="/c.pem",
                                              key="/c.key", inbox_prefix="_INBOX.svc")
    assert Security.from_env({"NATS_USER": "svc", "NATS_PASSWORD": "pw"}) == Security(user="svc", password="pw")
    assert Security.from_env({"NATS_NKEY": "/svc.nk"}) == Security(nkey="/svc.nk")
    assert Security.from_env({}) == Security()


def test_a_user_without_a_password_is_a_token_as_in_the_nats_cli() -> None:
    assert Security.from_env({"NATS_USER": "s3cret"}) == Security(token="s3cret")


@given(password=secret, token=secret)
def test_the_repr_never_shows_a_password_or_a_token(password: str, token: str) -> None:
    # A secret that is a word of the repr itself ("user", "Security") would be "found" in it: hypothesis
    # draws such strings from the constants of loaded modules, so which ones depends on what is imported.
    fixed = "Security(user='svc', password='***', token='***', reply_prefixes=('_INBOX.',))"
    assume(password not in fixed and token not in fixed)
    for security in (Security(user="svc", password=password), Security(token=token)):
        assert password not in repr(security)
        assert token not in repr(security)
        assert "***" in repr(security)
        assert "***" in str(security)
        assert all(password not in repr(v) and token not in repr(v) for v in dict(security.__rich_repr__()).values())


@given(user=st.text("abcdefghij", min_size=1, max_size=8), password=secret,
       host=st.sampled_from(["127.0.0.1", "nats.example", "[::1]"]), port=st.integers(1, 65535),
       scheme=st.sampled_from(["nats", "tls", "ws"]))
def test_a_url_never_shows_its_password_or_token(user: str, password: str, host: str, port: int, scheme: str) -> None:
    with_password = redact_url(f"{scheme}://{user}:{password}@{host}:{port}")
    assert with_password == f"{scheme}://{user}:***@{host}:{port}"
    assert redact_url(f"{scheme}://{password}@{host}:{port}") == f"{scheme}://***@{host}:{port}"
    assert redact_url(f"{scheme}://{host}:{port}") == f"{scheme}://{host}:{port}"


def test_an_unparseable_url_still_hides_what_stands_before_the_at() -> None:
    assert redact_url("nats://svc:pw@[::1:4222") == "nats://***@[::1:4222"  # urlsplit: invalid IPv6 URL
    assert redact_url("nats://svc:pw@host:notaport") == "nats://svc:***@host:notaport"


@pytest.mark.parametrize(("security", "problem"), [
    (Security(user="a", password="b", token="c"), "one kind of credential"),
    (Security(creds="x.creds", nkey="x.nk"), "one kind of credential"),
    (Security(password="b"), "a password needs a user"),
    (Security(cert="c.pem"), "needs its key"),
    (Security(key="c.key"), "needs its key"),
])
def test_settings_that_cannot_work_are_named(security: Security, problem: str) -> None:
    assert any(problem in p for p in security.problems())


def test_tls_is_asked_for_by_a_tls_url_or_any_tls_setting() -> None:
    assert Security().wants_tls(["tls://h:4222"])
    assert not Security().wants_tls(["nats://h:4222"])
    assert Security(ca="ca.pem").wants_tls(["nats://h:4222"])
    assert Security(tls_handshake_first=True).wants_tls(["nats://h:4222"])


def test_connect_options_name_nats_pys_arguments() -> None:
    opts = connect_options(Security(user="svc", password="pw", inbox_prefix="_INBOX.svc"), ["nats://h:4222"])
    assert opts == {"user": "svc", "password": "pw", "inbox_prefix": "_INBOX.svc"}
    assert connect_options(Security(token="t"), ["nats://h:4222"]) == {"token": "t"}
    assert "tls" in connect_options(Security(), ["tls://h:4222"])


@pytest.mark.parametrize("exc", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset"),
                                 ssl.SSLEOFError(8, "EOF occurred in violation of protocol")])
def test_a_socket_closed_during_a_tls_handshake_is_explained_as_a_refusal_whatever_the_timing(exc: OSError) -> None:
    # TLS 1.3: a mutual-TLS server's refusal may arrive as a closed socket instead of the alert.
    no_cert = explain(exc, Security(ca="/ca.pem"), ["nats://127.0.0.1:4222"])
    assert no_cert.startswith("TLS refused")
    assert "client certificate" in no_cert
    assert type(exc).__name__ in no_cert
    bad_cert = explain(exc, Security(ca="/ca.pem", cert="/c.pem", key="/c.key"), ["nats://127.0.0.1:4222"])
    assert bad_cert.startswith("TLS refused")
    assert "rejected this client's certificate" in bad_cert
    plain = explain(exc, Security(), ["nats://127.0.0.1:4222"])  # no TLS asked for: not a TLS refusal
    assert "TLS refused" not in plain
