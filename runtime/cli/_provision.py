"""``corps provision MODULE:APP``: create (or check) the App's streams, consumers and buckets, once,
with its settings: the step a deployment's job runs before the services start."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from corps.cli._common import ERROR, add_connection_arguments, add_json_argument
from corps.cli._connect import security_from
from corps.core._run import run
from corps.system._app import App
from corps.tools._inspect import inspector
from corps.tools._loader import LoadError, load_app
from corps.tools._provision import Resource, apply, plan

PROVISION_EPILOG: Final = """\
examples:
  corps provision corps.examples.shop.app:app --nats nats://n1:4222 --dry-run
        what would be created, and what differs from the App's settings (nothing is changed)
  corps provision corps.examples.shop.app:app --nats nats://n1:4222
        create what is missing; check the rest (exit 1 on a difference: nothing is changed)

Resources: the event and dead-letter streams, one durable consumer per class with @on_event
handlers, and the KV buckets (saga log, idempotency records) the App uses. --dry-run exits 1
when anything is missing or differs, so a job can check a deployment."""


def add_provision_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps provision``."""
    p = sub.add_parser("provision", help="create or check an application's streams, consumers and buckets",
                       description="Create the JetStream streams, durable consumers and KV buckets of an "
                                   "application with its settings, or (--dry-run) show the differences.",
                       epilog=PROVISION_EPILOG, formatter_class=formatter)
    p.add_argument("target", metavar="MODULE:APP", help="a corps.App, or a function returning one")
    p.add_argument("--dry-run", action="store_true", help="only read: print what is missing or differs")
    add_connection_arguments(p)
    p.set_defaults(func=cmd_provision, namespace=None)
    add_json_argument(p)


def cmd_provision(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        app = load_app(args.target)
    except LoadError as problem:
        if problem.detail:
            print(problem.detail, file=sys.stderr, end="")
        parser.exit(2, f"corps provision: error: {problem}\n")
    code: int = run(_provision, args, app, args.namespace or app.namespace)
    return code


async def _provision(args: argparse.Namespace, app: App, namespace: str) -> int:
    async with inspector(args.nats, namespace, security_from(args)) as look:
        info = look.nc._server_info
        resources = await (plan if args.dry_run else apply)(look.js, app, namespace, info)
    if args.json:
        print(msgspec.json.encode(resources).decode())
    else:
        print(f"{'plan' if args.dry_run else 'provisioned'}: {app.name}, namespace {namespace!r}")
        for r in resources:
            print(_line(r))
    if args.dry_run and any(r.status != "ok" for r in resources):
        return ERROR
    return 0


def _line(r: Resource) -> str:
    word = {"missing": "create", "ok": "ok", "differs": "DIFFERS", "created": "created"}[r.status]
    line = f"  {word:<8} {r.kind:<9} {r.name:<28} {r.why}"
    return "\n".join([line.rstrip(), *(f"           - {d}" for d in r.differences)])
