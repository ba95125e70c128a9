"""``corps authz MODULE ...``: nats-server users (or JSON for nsc) with least-privilege permissions."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from corps.cli._graph import classes_named
from corps.tools._authz import DEFAULT_REPLY_WINDOW, Authz, Identity, authorize, identities_per_class
from corps.tools._graph import is_saga_class
from corps.tools._loader import LoadError, load_object

AUTHZ_EPILOG: Final = """\
examples:
  corps authz corps.examples.shop.orchestrated --namespace shop
        one identity per class (Inventory, Payments, Shipping, PlaceOrder) and an admin
  corps authz corps.examples.shop.orchestrated --namespace shop \\
        --service orders=corps.examples.shop.orchestrated:PlaceOrder \\
        --client web=corps.examples.shop.orchestrated:Inventory
        PlaceOrder's coordinator as 'orders'; 'web' may only ask Inventory
  corps authz corps.examples.shop.choreographed --namespace shop \\
        --client web=corps.examples.shop.messages:OrderPlaced      'web' may only publish OrderPlaced
  corps authz ... --json                 the same as JSON (nsc/JWT 'pub', 'sub', 'resp' claims)

The output is an `authorization { users = [...] }` block for nats-server.conf. Passwords are not in
it: each user's reads a variable of the nats-server's environment ($CORPS_PASSWORD_<USER>), or put a
bcrypt hash there (nats server passwd). Each service runs with its user and its inbox prefix:
  NATS_USER=Inventory NATS_PASSWORD=... NATS_INBOX_PREFIX=_INBOX.Inventory corps run ...
What a service sends is read from its source, as corps graph reads it; a message built elsewhere is
missed, and a note says where. Nothing connects to NATS."""

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_NS: Final = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def add_authz_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps authz`` on the top-level subparsers."""
    p = sub.add_parser("authz", help="nats-server users with least-privilege permissions per service",
                       description="Derive NATS permissions from actor and saga declarations: which subjects "
                                   "each service identity may publish and subscribe to.",
                       epilog=AUTHZ_EPILOG, formatter_class=formatter)
    p.add_argument("targets", nargs="*", metavar="MODULE",
                   help="modules (or MODULE:CLASS) whose classes each get an identity of their own")
    p.add_argument("--service", action="append", default=[], metavar="NAME=MODULE:CLASS,...",
                   help="one identity running these classes in one process (repeat for more)")
    p.add_argument("--client", action="append", default=[], metavar="NAME=MODULE:CLASS,...",
                   help="an identity that may only ask these actor classes and publish these event types")
    p.add_argument("--namespace", default="corps", metavar="NS", help="the namespace (default: corps)")
    p.add_argument("--provisioned", action="store_true",
                   help="streams and buckets exist already: services may not create them")
    p.add_argument("--no-admin", action="store_true", help="leave out the admin identity")
    p.add_argument("--reply-window", default=DEFAULT_REPLY_WINDOW, metavar="DURATION",
                   help=f"how long a service may reply to a request it received (default {DEFAULT_REPLY_WINDOW})")
    p.add_argument("--json", action="store_true", help="print JSON instead of nats-server config")
    p.add_argument("--output", "-o", metavar="FILE", help="write there instead of stdout")
    p.set_defaults(func=cmd_authz)


def cmd_authz(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not _DURATION.match(args.reply_window):
        parser.error(f"--reply-window must be a duration such as 30s, 1m or 500ms, not {args.reply_window!r}")
    if not (args.targets or args.service or args.client):
        parser.error("give modules, --service or --client")
    try:
        services = {name: group for name, group in (_group(spec, "--service") for spec in args.service)}
        clients = {name: group for name, group in (_group(spec, "--client", events=True) for spec in args.client)}
        grouped = {cls for group in services.values() for cls in group}
        rest: list[type] = []
        for target in args.targets:
            rest += [cls for cls in classes_named(target) if cls not in grouped and cls not in rest]
        services |= {n: g for n, g in identities_per_class(rest).items() if n not in services}
        authz = authorize(services, args.namespace, clients=clients, provision=not args.provisioned,
                          admin=None if args.no_admin else "admin", reply_window=args.reply_window)
    except LoadError as problem:
        if problem.detail:
            print(problem.detail, file=sys.stderr, end="")
        parser.exit(2, f"corps authz: error: {problem}\n")
    except ValueError as problem:
        parser.exit(2, f"corps authz: error: {problem}\n")
    text = to_json(authz) if args.json else to_conf(authz)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"corps: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.output} ({len(authz.identities)} identities)", file=sys.stderr)
    for note in authz.notes:
        print(f"corps authz: note: {note}", file=sys.stderr)
    return 0


def _group(spec: str, flag: str, events: bool = False) -> tuple[str, list[type]]:
    name, eq, classes = spec.partition("=")
    if not eq or not name or not classes:
        raise LoadError(f"{flag} {spec!r} is not of the form NAME=MODULE:CLASS,MODULE:CLASS")
    group = []
    for item in classes.split(","):
        obj = load_object(item.strip(), "MODULE:CLASS")
        if not isinstance(obj, type):
            raise LoadError(f"{item} is not a class")
        if is_saga_class(obj) and events:
            raise LoadError(f"{flag} {name}: {item} is a saga: a client asks actors; run sagas in a --service")
        group.append(obj)
    return name, group


# -- rendering -------------------------------------------------------------------------------------


def reply_window_ns(window: str) -> int:
    match = _DURATION.match(window)
    if match is None:
        raise ValueError(f"not a duration: {window!r}")
    return int(match.group(1)) * _NS[match.group(2)]


def to_conf(authz: Authz) -> str:
    """An ``authorization { users = [...] }`` block for nats-server.conf, one commented user per identity."""
    lines = [f"# corps authz: namespace {authz.namespace!r}. Least privilege: each user may publish and",
             "# subscribe only to what its classes need; anything else is refused by the server.",
             "# Passwords come from the nats-server's environment ($CORPS_PASSWORD_<USER>): set them where",
             "# the server runs, or replace them with bcrypt hashes (nats server passwd).",
             *(f"# note: {' '.join(note.split())}" for note in authz.notes),
             "authorization {", "  users = ["]
    for ident in authz.identities:
        lines += _user(ident, authz.reply_window)
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _user(ident: Identity, window: str) -> list[str]:
    out = [f"    # {ident.name} ({ident.role})" + (f": {', '.join(ident.classes)}" if ident.classes else ""),
           f"    # run with NATS_USER={ident.name} NATS_PASSWORD=... NATS_INBOX_PREFIX={ident.inbox_prefix}",
           "    {", f"      user: {json.dumps(ident.name)}", f"      password: ${ident.password_variable}",
           "      permissions: {"]
    for verb, grants in (("publish", ident.publish), ("subscribe", ident.subscribe)):
        width = max((len(json.dumps(g.subject)) for g in grants), default=0)
        out += [f"        {verb}: {{", "          allow: ["]
        out += [f"            {json.dumps(g.subject).ljust(width)}  # {g.why}" for g in grants]
        out += ["          ]", "        }"]
    if ident.responses:
        # max 0: any number of replies within the window (a batch of asks shares one reply subject).
        out.append(f"        allow_responses: {{ max: 0, expires: {json.dumps(window)} }}")
    out += ["      }", "    }"]
    return out


def to_json(authz: Authz) -> str:
    """The identities as JSON: ``permissions`` in the shape of a user JWT's claims (for nsc), and
    each grant with its reason."""
    ttl = reply_window_ns(authz.reply_window)
    doc = {"namespace": authz.namespace, "reply_window": authz.reply_window, "notes": list(authz.notes),
           "identities": [{
               "name": i.name, "role": i.role, "classes": list(i.classes), "inbox_prefix": i.inbox_prefix,
               "password_variable": i.password_variable,
               "permissions": {"pub": {"allow": [g.subject for g in i.publish]},
                               "sub": {"allow": [g.subject for g in i.subscribe]},
                               **({"resp": {"max": 0, "ttl": ttl}} if i.responses else {})},
               "grants": {"publish": [{"subject": g.subject, "why": g.why} for g in i.publish],
                          "subscribe": [{"subject": g.subject, "why": g.why} for g in i.subscribe]},
           } for i in authz.identities]}
    return json.dumps(doc, indent=2) + "\n"
