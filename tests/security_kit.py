"""Test credentials made on the spot: a private CA and certificates (the openssl CLI), NKey users
and operator-mode JWTs with .creds files (the nkeys package). Nothing here is a real secret."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Pki:
    dir: Path

    def __call__(self, name: str) -> str:
        """The path of one file: pki("ca.pem"), pki("client.key")..."""
        return str(self.dir / name)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, an expired one,
    and a second ("rogue") CA with a client certificate of its own."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=corps test {ca}", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca, ext in (("server", "ca", True), ("client", "ca", False), ("stranger", "rogue", False)):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *(("-extfile", "san.ext") if ext else ()),
                 cwd=folder)
    # openssl 3.0's x509 cannot back-date; its ca command can (a throwaway database).
    db = folder / "cadb"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("01\n")
    (folder / "ca.cnf").write_text("[ca]\ndefault_ca=t\n[t]\ndatabase=cadb/index.txt\nnew_certs_dir=cadb\n"
                                   "serial=cadb/serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
                                   "[p]\ncommonName=supplied\n")
    _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "client.csr",
             "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext",
             cwd=folder)
    shutil.copy(folder / "client.key", folder / "expired.key")
    return Pki(folder)


# -- NKeys and JWTs ---------------------------------------------------------------------------------


def keypair(kind: str) -> Any:
    """A fresh NKey pair: kind is 'user', 'account' or 'operator'."""
    nkeys = pytest.importorskip("nkeys")
    prefix = {"user": nkeys.PREFIX_BYTE_USER, "account": nkeys.PREFIX_BYTE_ACCOUNT,
              "operator": nkeys.PREFIX_BYTE_OPERATOR}[kind]
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def public(kp: Any) -> str:
    return bytes(kp.public_key).decode()


def seed(kp: Any) -> str:
    return bytes(kp.seed).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS JWT (v2) signed with ``signer``."""
    body = {"iat": int(time.time()), "iss": public(signer), **claims}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    return f"{head}.{payload}.{_b64(bytes(signer.sign(f'{head}.{payload}'.encode())))}"


@dataclass(frozen=True)
class Operator:
    """An operator with one account: the server config that trusts it, and a way to make users."""

    operator: Any
    account: Any

    def server_config(self) -> str:
        op = jwt({"sub": public(self.operator), "name": "corps-test", "nats": {"type": "operator", "version": 2}},
                 self.operator)
        limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                  "conn": -1, "leaf": -1}
        acc = jwt({"sub": public(self.account), "name": "shop",
                   "nats": {"limits": limits, "default_permissions": {"pub": {}, "sub": {}},
                            "type": "account", "version": 2}}, self.operator)
        return f'operator: "{op}"\nresolver: MEMORY\nresolver_preload: {{ {public(self.account)}: "{acc}" }}\n'

    def creds(self, path: Path, name: str, *, expires: int | None = None, signer: Any = None) -> str:
        """Write a .creds file for a new user of the account (signed by ``signer``: another account
        makes a user this server does not know)."""
        user = keypair("user")
        claims: dict[str, Any] = {"sub": public(user), "name": name,
                                  "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                                           "type": "user", "version": 2}}
        if expires is not None:
            claims["exp"] = expires
        token = jwt(claims, signer or self.account)
        path.write_text(f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
                        f"************************* IMPORTANT *************************\n"
                        f"NKEY Seed printed below can be used to sign and prove identity.\n\n"
                        f"-----BEGIN USER NKEY SEED-----\n{seed(user)}\n------END USER NKEY SEED------\n")
        return str(path)


def operator() -> Operator:
    return Operator(keypair("operator"), keypair("account"))
