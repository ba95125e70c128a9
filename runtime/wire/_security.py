"""How a connection proves who it is and protects the link: ``Security``, and what a refusal means.

One frozen Struct holds every credential nats-py takes (user and password, token, a ``.creds``
file, an NKey seed file), TLS (a private CA, a client certificate for mTLS, handshake first) and
the inbox prefix. ``Security.from_env`` reads the variables the ``nats`` CLI reads; the Node calls
it once, where it reads ``NATS_URL``. Nothing here prints a secret: ``repr`` hides the password
and the token, ``redact_url`` hides the user info of a URL, and a refusal is described by what
was sent (``user 'svc' and a password``), never by its value.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import importlib.util
import json
import re
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import nats.errors

from corps.errors import NatsUnavailable

_HIDDEN: Final = "***"
_USERINFO = re.compile(r"(?<=://)[^@/]*@")


class Security(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Credentials, TLS and inbox prefix of a connection: ``ActorSystem(url, security=Security(...))``.

    Give one kind of credential: ``user`` and ``password``, ``token``, ``creds`` or ``nkey``.
    Files are read when the system starts (a mounted secret may appear later), and every problem
    with them is a ``NatsUnavailable`` then. ``repr`` never shows the password or the token.
    """

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    """Path of a ``.creds`` file: a user JWT and its NKey seed (``nsc generate creds``). Needs ``nkeys``."""
    nkey: str | None = None
    """Path of a file holding a user NKey seed (``SU...``), for ``nkey`` users. Needs ``nkeys``."""
    ca: str | None = None
    """PEM file of the CA(s) that signed the server's certificate (a private CA); else the system's."""
    cert: str | None = None
    """PEM client certificate for mutual TLS; ``key`` is its private key."""
    key: str | None = None
    tls_handshake_first: bool = False
    """TLS before the server's INFO (the server's ``tls { handshake_first: true }``)."""
    tls_hostname: str | None = None
    """The name the server's certificate must carry, when the URL has another (an IP address)."""
    inbox_prefix: str | None = None
    """Prefix of nats-py's reply inboxes (JetStream API replies): ``_INBOX.<service>`` lets a
    service be granted only its own (``corps authz`` prints the one to use). Default ``_INBOX``."""
    reply_prefixes: tuple[str, ...] = ("_INBOX.",)
    """Where this node sends replies, besides every corps inbox of its namespace (``{ns}.inbox.``
    and ``{inbox_prefix}.inbox.``): a request whose reply subject lies elsewhere is refused
    unhandled, counted (``misdirected``) and recorded as a dead letter, so no caller can turn an
    actor into a relay that publishes onto another service's subjects (an event, a saga record).
    ``_INBOX.`` is what the NATS clients of every language use for requests."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Security:
        """The security the ``nats`` CLI's variables describe; empty values count as unset.

        ``NATS_CREDS``, ``NATS_NKEY``, ``NATS_CA``, ``NATS_CERT``, ``NATS_KEY``, ``NATS_USER``,
        ``NATS_PASSWORD``, ``NATS_TOKEN``, and corps's ``NATS_INBOX_PREFIX``. As in the ``nats``
        CLI ("username or token"), ``NATS_USER`` without ``NATS_PASSWORD`` is a token.
        """

        def get(name: str) -> str | None:
            return env.get(name) or None

        user, password, token = get("NATS_USER"), get("NATS_PASSWORD"), get("NATS_TOKEN")
        if user is not None and password is None and token is None:
            user, token = None, user
        return cls(user=user, password=password, token=token, creds=get("NATS_CREDS"), nkey=get("NATS_NKEY"),
                   ca=get("NATS_CA"), cert=get("NATS_CERT"), key=get("NATS_KEY"),
                   inbox_prefix=get("NATS_INBOX_PREFIX"))

    def _fields(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and value is not False:
                yield name, _HIDDEN if name in ("password", "token") else value

    def __repr__(self) -> str:
        return f"Security({', '.join(f'{k}={v!r}' for k, v in self._fields())})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._fields())

    @property
    def credential(self) -> str:
        """What this security presents to the server, for messages: never a secret's value."""
        if self.creds:
            return f"the creds file {self.creds}"
        if self.nkey:
            return f"the NKey seed in {self.nkey}"
        if self.token:
            return "a token"
        if self.user:
            return f"user {self.user!r} and a password"
        return "no credentials"

    def wants_tls(self, servers: Sequence[str]) -> bool:
        """TLS was asked for: a ``tls://`` URL or any TLS setting. Then a server without TLS is refused."""
        return bool(self.ca or self.cert or self.key or self.tls_handshake_first or self.tls_hostname
                    or any(s.strip().lower().startswith("tls://") for s in servers))

    def problems(self) -> list[str]:
        """What is inconsistent, before any file is read."""
        out = []
        kinds = [k for k, v in (("user and password", self.user or self.password), ("token", self.token),
                                ("creds", self.creds), ("nkey", self.nkey)) if v]
        if len(kinds) > 1:
            out.append(f"give one kind of credential, not {' and '.join(kinds)}")
        if self.password and not self.user:
            out.append("a password needs a user (NATS_USER)")
        if bool(self.cert) != bool(self.key):
            out.append("a client certificate needs its key, and a key its certificate (NATS_CERT and NATS_KEY)")
        return out


def redact_url(url: str) -> str:
    """``url`` with its user info hidden: ``nats://svc:***@host:4222``; a token becomes ``***@``."""
    try:
        parts = urlsplit(url.strip())
        has_password = parts.password is not None
        user = parts.username
    except ValueError:  # not parseable (a bad port...): hide whatever stands before an '@'
        return _USERINFO.sub(f"{_HIDDEN}@", url)
    if "@" not in parts.netloc:
        return url
    shown = f"{user}:{_HIDDEN}" if has_password and user else _HIDDEN
    return _USERINFO.sub(f"{shown}@", url, count=1)


def redact_urls(urls: Sequence[str]) -> str:
    return ",".join(redact_url(u) for u in urls)


# -- what nats-py is given -------------------------------------------------------------------------


def connect_options(security: Security, servers: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of nats-py's ``connect`` for ``security``, files checked.

    Raises:
        NatsUnavailable: an inconsistent setting, a file that cannot be read, a ``.creds`` file
            without a user JWT or seed, an expired user JWT, or ``nkeys`` not installed.
    """
    where = redact_urls(servers)
    problems = security.problems()
    if problems:
        raise NatsUnavailable(where, f"security: {'; '.join(problems)}")
    opts: dict[str, Any] = {}
    if security.user:
        opts["user"], opts["password"] = security.user, security.password or ""
    if security.token:
        opts["token"] = security.token
    if (security.creds or security.nkey) and importlib.util.find_spec("nkeys") is None:
        raise NatsUnavailable(where, "security: .creds and NKey authentication need the nkeys package "
                                         "(pip install nkeys)")
    if security.creds:
        _check_creds(where, security.creds)
        opts["user_credentials"] = security.creds
    if security.nkey:
        if not _read(where, security.nkey, "NKey seed file").strip().startswith("SU"):
            raise NatsUnavailable(where, f"security: {security.nkey} does not hold a user NKey seed (SU...)")
        opts["nkeys_seed"] = security.nkey
    if security.wants_tls(servers):
        opts["tls"] = _tls_context(where, security)
        opts["tls_handshake_first"] = security.tls_handshake_first
        if security.tls_hostname:
            opts["tls_hostname"] = security.tls_hostname
    if security.inbox_prefix:
        opts["inbox_prefix"] = security.inbox_prefix
    return opts


def _read(where: str, path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise NatsUnavailable(where, f"security: cannot read the {what} {path}: {reason}") from None


def _check_creds(where: str, path: str) -> None:
    # nats-py reads the JWT by looping on readline() until the BEGIN line: a file without one
    # would spin for ever. Check the shape here, and the expiry, which the server reports only
    # as an authorization violation.
    text = _read(where, path, "creds file")
    jwt = _block(text, "NATS USER JWT")
    if jwt is None or _block(text, "USER NKEY SEED") is None:
        raise NatsUnavailable(where, f"security: {path} is not a .creds file (a user JWT and an NKey seed)")
    claims = _jwt_claims(jwt)
    if claims is None:
        raise NatsUnavailable(where, f"security: the user JWT in {path} cannot be decoded")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp > 0 and exp <= time.time():
        when = datetime.datetime.fromtimestamp(exp, datetime.UTC).isoformat(timespec="seconds")
        raise NatsUnavailable(where, f"expired credential: the user JWT in {path} expired at {when}")


def _block(text: str, label: str) -> str | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f"BEGIN {label}" in line and i + 1 < len(lines) and lines[i + 1].strip():
            return lines[i + 1].strip()
    return None


def _jwt_claims(jwt: str) -> dict[str, Any] | None:
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def _tls_context(where: str, security: Security) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.ca)
    except (OSError, ssl.SSLError) as exc:
        raise NatsUnavailable(where, f"security: cannot load the CA file {security.ca}: {_ssl_reason(exc)}") from None
    if security.cert and security.key:
        try:
            ctx.load_cert_chain(security.cert, security.key)
        except (OSError, ssl.SSLError) as exc:
            raise NatsUnavailable(where, f"security: cannot load the client certificate {security.cert} with "
                                         f"the key {security.key}: {_ssl_reason(exc)}") from None
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    reason = getattr(exc, "reason", None)  # set by the ssl module; absent on one built by hand
    if isinstance(exc, ssl.SSLError) and reason:
        return str(reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- what a refusal means --------------------------------------------------------------------------


class TlsRequired(nats.errors.Error):  # a nats-py error: its connect and reconnect loops handle it
    """The server offered no TLS although TLS was asked for: nothing was sent."""

    def __str__(self) -> str:
        return "nats: the server offers no TLS"


class NoInfo(nats.errors.Error):
    """The server said nothing within ``wait`` seconds of the connection (of the TLS handshake,
    when TLS is first): it expects TLS first, or it is not a NATS server. A NATS server that
    does not expect TLS first sends its INFO as soon as it accepts."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait

    def __str__(self) -> str:
        return f"nats: no INFO from the server within {self.wait:g}s"


class InfoInClear(nats.errors.Error):
    """TLS first was asked for, and the server spoke in clear before the handshake: it does not
    expect TLS first (a TLS-first server waits for the client's ClientHello)."""

    def __str__(self) -> str:
        return "nats: the server sent its INFO in clear before the TLS-first handshake"


def is_fatal(exc: BaseException) -> bool:
    """A refusal that retrying cannot change: wrong or expired credentials, TLS failures, a
    server that expects TLS first when this client does not, or the other way round.

    Connection refused, timeouts and the like are not: a server may be starting.
    """
    if isinstance(exc, ssl.SSLError | TlsRequired | NoInfo | InfoInClear | nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()
    return "authorization violation" in text or "authentication expired" in text or "authentication revoked" in text


def explain(exc: BaseException, security: Security, servers: Sequence[str] = ()) -> str:
    """One line saying what went wrong and what to change; no secret's value."""
    text = str(exc).lower()
    sent = security.credential
    in_url = any(redact_url(s) != s for s in servers)
    if in_url and sent == "no credentials":
        sent = "the user info in the URL"
    if isinstance(exc, TlsRequired):
        return ("TLS was asked for (a tls:// URL, or a CA or certificate) but the server offers none: "
                "refused before sending credentials")
    if isinstance(exc, InfoInClear):
        return _not_tls_first("the INFO came in clear")
    if isinstance(exc, NoInfo):
        if security.tls_handshake_first:
            return (f"the server sent no INFO within {exc.wait:g}s of the TLS handshake: is it a NATS server, "
                    f"and does it expect TLS first (handshake_first: true in its tls block)? If not, drop "
                    f"Security(tls_handshake_first=True)")
        return (f"the server sent no INFO within {exc.wait:g}s: does it expect TLS first (handshake_first: true "
                f"in its tls block)? Then connect with Security(tls_handshake_first=True, ca=...) (the nats CLI's "
                f"--tlsfirst)")
    if isinstance(exc, BrokenPipeError | ConnectionResetError | ssl.SSLEOFError) and security.wants_tls(servers):
        # TLS 1.3: the client's handshake ends before the server checks its certificate, so a
        # refusal can reach us as a closed socket instead of the alert, depending on timing.
        if security.cert is None:
            return (f"TLS refused, or the connection closed during the TLS handshake: a server that requires a "
                    f"client certificate (mutual TLS) closes it like this: give one (Security(cert=..., key=...) "
                    f"or NATS_CERT and NATS_KEY) [{type(exc).__name__}]")
        return (f"TLS refused, or the connection closed during the TLS handshake: the server may have rejected "
                f"this client's certificate (expired, or signed by a CA it does not trust) [{type(exc).__name__}]")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = _ssl_reason(exc)
        hint = ("the server's certificate is not signed by a CA this client trusts: give the CA "
                "(Security(ca=...) or NATS_CA)")
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            hint = "the server's certificate does not name this host (Security(tls_hostname=...))"
        elif "expired" in reason.lower():
            hint = "the server's certificate has expired"
        return f"TLS verification failed: {reason}; {hint}"
    if isinstance(exc, ssl.SSLError):
        reason = _ssl_reason(exc)
        if "certificate required" in reason:
            return (f"TLS refused: the server requires a client certificate (mutual TLS): give one "
                    f"(Security(cert=..., key=...) or NATS_CERT and NATS_KEY) [{reason}]")
        if "alert" in reason and ("certificate" in reason or "unknown ca" in reason):
            return f"TLS refused: the server rejected this client's certificate [{reason}]"
        if "wrong version" in reason and security.tls_handshake_first:
            return _not_tls_first(reason)
        if "wrong version" in reason or "record" in reason or "packet length" in reason:
            return (f"TLS handshake failed [{reason}]: is TLS-first (tls_handshake_first) set on one side "
                    f"only?")
        return f"TLS handshake failed: {reason}"
    if "authentication expired" in text:
        return f"expired credential: the server says the credential expired ({sent})"
    if "authentication revoked" in text:
        return f"revoked credential: the server says the credential was revoked ({sent})"
    if "authorization violation" in text or isinstance(exc, nats.errors.AuthorizationError):
        if sent == "no credentials":
            return ("authorization violation: the server requires credentials and none were given "
                    "(NATS_CREDS, NATS_NKEY, NATS_USER and NATS_PASSWORD, NATS_TOKEN, or Security(...))")
        return (f"authorization violation: the server refused {sent} (wrong or unknown credential, "
                f"or an expired user JWT)")
    if "empty response" in text:
        return "the server sent no INFO: does it expect TLS first (Security(tls_handshake_first=True))?"
    return f"{type(exc).__name__}: {exc}"


def _not_tls_first(why: str) -> str:
    return (f"TLS first was asked for (Security(tls_handshake_first=True)) but the server answered in clear: it "
            f"does not expect TLS first (no handshake_first: true in its tls block, or no TLS at all): drop "
            f"tls_handshake_first, or set it on the server [{why}]")
