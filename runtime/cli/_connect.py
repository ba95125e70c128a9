"""The connection flags every connecting ``corps`` command takes, named as the ``nats`` CLI names them."""

from __future__ import annotations

import argparse
from typing import Final

from corps.wire._security import Security

SECURITY_HELP: Final = """\
connection security: with none of these flags, the nats CLI's variables are read (NATS_CREDS,
NATS_NKEY, NATS_USER and NATS_PASSWORD, NATS_TOKEN, NATS_CA, NATS_CERT and NATS_KEY, and corps's
NATS_INBOX_PREFIX). Any of these flags replaces all of those variables. Passwords and tokens are
never flags (a command line is visible to every user of the machine): use the variables."""


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection security", SECURITY_HELP)
    g.add_argument("--creds", metavar="FILE", help="user credentials: a .creds file (JWT and NKey seed)")
    g.add_argument("--nkey", metavar="FILE", help="a user NKey seed file")
    g.add_argument("--tlsca", metavar="FILE", help="CA certificate(s) the server's certificate is signed by")
    g.add_argument("--tlscert", metavar="FILE", help="client certificate (mutual TLS)")
    g.add_argument("--tlskey", metavar="FILE", help="client certificate's private key")
    g.add_argument("--tlsfirst", action="store_true", help="TLS handshake before the server's INFO")
    g.add_argument("--inbox-prefix", metavar="PREFIX", help="nats-py's reply inbox prefix (see corps authz)")


def security_from(args: argparse.Namespace) -> Security | None:
    """The flags' Security, or None (read the environment) if none was given."""
    given = {"creds": args.creds, "nkey": args.nkey, "ca": args.tlsca, "cert": args.tlscert, "key": args.tlskey,
             "tls_handshake_first": args.tlsfirst or False, "inbox_prefix": args.inbox_prefix}
    if not any(given.values()):
        return None
    return Security(**{k: v for k, v in given.items() if v})
