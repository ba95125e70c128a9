"""Every way to connect securely, on real nats-servers: each credential type works, and each wrong
one fails at start, at once, with a NatsUnavailable saying which and no secret in it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from corps import ActorSystem, EmbeddedServer, NatsUnavailable, Security
from corps.examples.accounts import Account, Deposit, GetBalance
from corps.wire._transport import INFO_WAIT
from tests.security_kit import Pki, keypair, make_pki, operator, public, seed

FAST = 3.0
"""A refusal is reported well within this (nats-py alone would retry, or hang on TLS)."""

Server = Callable[[str], EmbeddedServer]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``server(config_text)``: a nats-server on that config, stopped after the test."""
    started: list[EmbeddedServer] = []

    def start(config: str, jetstream: bool = False) -> EmbeddedServer:
        path = tmp_path / f"server-{len(started)}.conf"
        path.write_text(config)
        s = EmbeddedServer(config=str(path), jetstream=jetstream).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop(cleanup=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def works(url: str, security: Security, srv: EmbeddedServer) -> None:
    """Connect, then a round trip through an actor: the link carries corps traffic."""
    async with ActorSystem(url, security=security, server_name=srv.server_name) as system:
        ref = await system.spawn(Account, "a")
        await ref.tell(Deposit(5))
        assert (await ref.ask(GetBalance())).amount == 5


async def refused(url: str, security: Security) -> NatsUnavailable:
    """Connecting fails with NatsUnavailable, fast; returns it."""
    start = time.monotonic()
    with anyio.fail_after(10), pytest.raises(NatsUnavailable) as caught:
        async with ActorSystem(url, security=security):
            pass
    assert time.monotonic() - start < FAST, f"took {time.monotonic() - start:.1f}s: {caught.value}"
    return caught.value


# -- user and password, token ------------------------------------------------------------------------


async def test_a_user_and_password_connect_and_a_wrong_password_fails_at_once_naming_the_user_not_the_password(
        server: Server) -> None:
    srv = server('authorization { users = [ { user: "svc", password: "right-horse-battery" } ] }')
    await works(srv.url, Security(user="svc", password="right-horse-battery"), srv)
    error = await refused(srv.url, Security(user="svc", password="wrong-horse-battery"))
    assert "authorization violation" in str(error)
    assert "user 'svc'" in str(error)
    assert "horse" not in str(error)
    assert "horse" not in repr(error)


async def test_a_password_in_the_url_is_hidden_in_the_error_and_in_system_url(server: Server) -> None:
    srv = server('authorization { users = [ { user: "svc", password: "right-horse-battery" } ] }')
    port = srv.url.rsplit(":", 1)[1]
    error = await refused(f"nats://svc:wrong-horse@127.0.0.1:{port}", Security())
    assert error.url == f"nats://svc:***@127.0.0.1:{port}"
    assert "horse" not in str(error)
    assert "the user info in the URL" in str(error)
    system = ActorSystem(f"nats://svc:right-horse-battery@127.0.0.1:{port}", security=Security())
    assert "horse" not in system.url
    async with system:
        assert "horse" not in system.url


async def test_a_token_connects_and_a_wrong_token_is_an_authorization_violation(server: Server) -> None:
    srv = server('authorization { token: "s3cret-token" }')
    await works(srv.url, Security(token="s3cret-token"), srv)
    error = await refused(srv.url, Security(token="not-the-token"))
    assert "authorization violation: the server refused a token" in str(error)
    assert "token" in str(error)
    assert "not-the" not in str(error)


async def test_no_credentials_for_a_server_that_requires_them_names_the_variables_to_set(server: Server) -> None:
    srv = server('authorization { users = [ { user: "svc", password: "pw" } ] }')
    error = await refused(srv.url, Security())
    assert "requires credentials and none were given" in str(error)
    assert "NATS_CREDS" in str(error)


async def test_the_nats_cli_variables_configure_the_connection(server: Server, pki: Pki,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    srv = server(f'tls {{ cert_file: "{pki("server.pem")}", key_file: "{pki("server.key")}" }}\n'
                 'authorization { users = [ { user: "svc", password: "env-pw" } ] }')
    monkeypatch.setenv("NATS_URL", srv.url)
    monkeypatch.setenv("NATS_USER", "svc")
    monkeypatch.setenv("NATS_PASSWORD", "env-pw")
    monkeypatch.setenv("NATS_CA", pki("ca.pem"))
    async with ActorSystem(server_name=srv.server_name) as system:  # nothing in code: all from the environment
        assert system.security.user == "svc"
        assert system.security.ca == pki("ca.pem")
        assert "env-pw" not in repr(system.security)


# -- NKeys and .creds ---------------------------------------------------------------------------------


async def test_an_nkey_user_connects_with_its_seed_file_and_another_seed_is_refused(server: Server,
                                                                                    tmp_path: Path) -> None:
    user, stranger = keypair("user"), keypair("user")
    srv = server(f'authorization {{ users = [ {{ nkey: "{public(user)}" }} ] }}')
    (tmp_path / "user.nk").write_text(seed(user))
    (tmp_path / "stranger.nk").write_text(seed(stranger))
    await works(srv.url, Security(nkey=str(tmp_path / "user.nk")), srv)
    error = await refused(srv.url, Security(nkey=str(tmp_path / "stranger.nk")))
    assert "authorization violation" in str(error)
    assert "stranger.nk" in str(error)
    assert seed(stranger) not in str(error)


async def test_a_creds_file_connects_to_an_operator_mode_server(server: Server, tmp_path: Path) -> None:
    op = operator()
    srv = server(op.server_config())
    await works(srv.url, Security(creds=op.creds(tmp_path / "svc.creds", "svc")), srv)
    other = keypair("account")  # a user signed by an account the server does not trust
    error = await refused(srv.url, Security(creds=op.creds(tmp_path / "foreign.creds", "x", signer=other)))
    assert "authorization violation" in str(error)
    assert "foreign.creds" in str(error)


async def test_an_expired_creds_file_fails_at_start_saying_it_expired(server: Server, tmp_path: Path) -> None:
    op = operator()
    srv = server(op.server_config())
    creds = op.creds(tmp_path / "old.creds", "svc", expires=int(time.time()) - 60)
    error = await refused(srv.url, Security(creds=creds))
    assert str(error).endswith(f"expired credential: the user JWT in {creds} expired at "
                               f"{error.reason.rsplit(' at ', 1)[1]}")
    assert "expired credential" in error.reason


async def test_a_file_that_is_not_a_creds_file_fails_at_once_instead_of_spinning(server: Server,
                                                                                  tmp_path: Path) -> None:
    srv = server("")
    (tmp_path / "empty.creds").write_text("nothing here\n")
    error = await refused(srv.url, Security(creds=str(tmp_path / "empty.creds")))
    assert "is not a .creds file" in str(error)
    error = await refused(srv.url, Security(creds=str(tmp_path / "missing.creds")))
    assert "cannot read the creds file" in str(error)


# -- TLS ---------------------------------------------------------------------------------------------


def tls_block(pki: Pki, extra: str = "") -> str:
    return f'tls {{\n cert_file: "{pki("server.pem")}"\n key_file: "{pki("server.key")}"\n timeout: 2\n {extra}\n}}\n'


async def test_tls_with_the_private_ca_connects_and_without_it_fails_verification_at_once(server: Server,
                                                                                         pki: Pki) -> None:
    srv = server(tls_block(pki))
    tls_url = srv.url.replace("nats://", "tls://")
    await works(tls_url, Security(ca=pki("ca.pem")), srv)
    await works(srv.url, Security(ca=pki("ca.pem")), srv)  # nats:// to a TLS server: upgraded, verified
    error = await refused(tls_url, Security())  # the system's CAs do not include ours: nats-py used to hang here
    assert "TLS verification failed" in str(error)
    assert "NATS_CA" in str(error)
    error = await refused(srv.url, Security(ca=pki("rogue.pem")))
    assert "TLS verification failed" in str(error)


async def test_a_server_without_tls_is_refused_when_tls_was_asked_for(server: Server, pki: Pki) -> None:
    srv = server('authorization { users = [ { user: "svc", password: "never-in-clear" } ] }')
    error = await refused(srv.url.replace("nats://", "tls://"), Security(user="svc", password="never-in-clear"))
    assert "the server offers none" in str(error)
    error = await refused(srv.url, Security(ca=pki("ca.pem"), user="svc", password="never-in-clear"))
    assert "refused before sending credentials" in str(error)


async def test_mutual_tls_takes_a_client_certificate_and_refuses_a_missing_expired_or_foreign_one(
        server: Server, pki: Pki) -> None:
    srv = server(tls_block(pki, f'ca_file: "{pki("ca.pem")}"\n verify: true'))
    await works(srv.url, Security(ca=pki("ca.pem"), cert=pki("client.pem"), key=pki("client.key")), srv)
    error = await refused(srv.url, Security(ca=pki("ca.pem")))
    assert "TLS refused" in str(error)
    error = await refused(srv.url, Security(ca=pki("ca.pem"), cert=pki("expired.pem"), key=pki("expired.key")))
    assert "TLS refused" in str(error)
    error = await refused(srv.url, Security(ca=pki("ca.pem"), cert=pki("stranger.pem"), key=pki("stranger.key")))
    assert "TLS refused" in str(error)


async def test_a_certificate_for_another_host_and_a_refused_client_certificate_are_named(
        server: Server, pki: Pki) -> None:
    srv = server(tls_block(pki))
    error = await refused(srv.url, Security(ca=pki("ca.pem"), tls_hostname="elsewhere.example"))
    assert "Hostname mismatch" in str(error)
    assert "the server's certificate does not name this host (Security(tls_hostname=...))" in str(error)
    mutual = server(tls_block(pki, f'ca_file: "{pki("ca.pem")}"\n verify: true'))
    # The alert, or a socket closed during the handshake (TLS 1.3 timing): the same advice either way.
    error = await refused(mutual.url, Security(ca=pki("ca.pem")))
    assert "client certificate (mutual TLS)" in str(error)
    assert "Security(cert=..., key=...) or NATS_CERT and NATS_KEY" in str(error)
    error = await refused(mutual.url, Security(ca=pki("ca.pem"), cert=pki("stranger.pem"), key=pki("stranger.key")))
    assert "rejected this client's certificate" in str(error)


async def test_tls_handshake_first_connects_when_both_sides_do_it(server: Server, pki: Pki) -> None:
    srv = server(tls_block(pki, "handshake_first: true"))
    await works(srv.url, Security(ca=pki("ca.pem"), tls_handshake_first=True), srv)


async def test_a_tls_first_client_is_refused_at_once_by_a_server_that_does_not_expect_tls_first(
        server: Server, pki: Pki) -> None:
    # The server's INFO, sent as it accepts, reaches the client either before its ClientHello (then
    # the handshake succeeds and nats-py used to wait 5 s per attempt for an INFO that had come in
    # clear) or after it (a TLS error at once): a race, so several connects meet both orders.
    tls_first = Security(ca=pki("ca.pem"), tls_handshake_first=True)
    for srv in (server(tls_block(pki)), server("")):  # TLS after INFO, and no TLS at all
        for _ in range(5):
            error = await refused(srv.url, tls_first)
            assert "TLS first was asked for (Security(tls_handshake_first=True)) but the server answered in clear: " \
                   "it does not expect TLS first" in str(error)
            assert "drop tls_handshake_first, or set it on the server" in str(error)


async def test_a_client_without_tls_first_is_refused_within_a_second_by_a_server_that_expects_it(
        server: Server, pki: Pki) -> None:
    srv = server(tls_block(pki, "handshake_first: true"))  # silent until a ClientHello, for 2 s (timeout)
    for security in (Security(ca=pki("ca.pem")), Security(ca=pki("ca.pem"), tls_hostname="localhost")):
        error = await refused(srv.url, security)
        assert f"the server sent no INFO within {INFO_WAIT:g}s: does it expect TLS first (handshake_first: true " \
               f"in its tls block)? Then connect with Security(tls_handshake_first=True" in str(error)


async def test_a_server_that_greets_late_but_within_the_bound_is_connected_to(server: Server, pki: Pki) -> None:
    # handshake_first with a fallback delay: INFO after 300 ms for a client that does not start TLS.
    srv = server(tls_block(pki, 'handshake_first: "300ms"'))
    await works(srv.url, Security(ca=pki("ca.pem")), srv)
    await works(srv.url, Security(ca=pki("ca.pem"), tls_handshake_first=True), srv)


async def test_a_reconnect_waits_for_a_late_greeting_as_long_as_nats_py_does(server: Server, pki: Pki) -> None:
    """The bound is the first connect's: once up, a server slow to greet (a storm of reconnects)
    is waited for (``connect_timeout``), not refused."""
    srv = server(tls_block(pki))
    async with ActorSystem(srv.url, security=Security(ca=pki("ca.pem")), server_name=srv.server_name) as system:
        ref = await system.spawn(Account, "a")
        await ref.tell(Deposit(5))
        assert (await ref.ask(GetBalance())).amount == 5
        srv.kill()  # the client sees the socket close while the server restarts (loop running): the ask
        assert srv.config is not None  # below waits in nats-py's buffer until it is reconnected
        await anyio.Path(srv.config).write_text(tls_block(pki, f'handshake_first: "{INFO_WAIT + 0.5:g}s"'))
        await anyio.to_thread.run_sync(srv.start)  # the same port; INFO only after INFO_WAIT + 0.5 s
        assert (await ref.ask(GetBalance(), timeout=10)).amount == 5


async def test_tls_settings_that_cannot_work_fail_before_connecting(server: Server, pki: Pki) -> None:
    srv = server(tls_block(pki))
    error = await refused(srv.url, Security(ca=pki("ca.pem"), cert=pki("client.pem")))
    assert "needs its key" in str(error)
    error = await refused(srv.url, Security(ca=pki("nope.pem")))
    assert "cannot load the CA file" in str(error)
    error = await refused(srv.url, Security(user="a", token="b"))
    assert "one kind of credential" in str(error)


def test_the_cli_never_prints_the_password_of_a_url(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    from corps.cli._main import main

    srv = server('authorization { users = [ { user: "svc", password: "right-horse-battery" } ] }')
    url = srv.url.replace("nats://", "nats://svc:wrong-horse@")
    assert main(["dlq", "list", "--nats", url]) == 4  # no server (NatsUnavailable): corps --help, exit codes
    err = capsys.readouterr().err
    assert "svc:***@" in err
    assert "authorization violation" in err
    assert "horse" not in err
