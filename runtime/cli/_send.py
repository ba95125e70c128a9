"""``corps ask``, ``corps tell`` and ``corps publish``: talk to a running application from a shell.

Types are resolved from a module (``--app MODULE[:APP]``, or ``MODULE:Class`` given in full); the
JSON argument is decoded into the message type (the shell's input is untrusted: any problem is
InvalidMessage, exit 3). The reply, the ack or the error is printed as one JSON object; the exit
code says which error (``corps --help``). Asks and tells connect without events or sagas: nothing
is provisioned; ``publish`` needs the event stream to exist.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from corps.cli._common import add_connection_arguments, add_json_argument, error_json
from corps.cli._connect import security_from
from corps.core._node import Node
from corps.core._run import run
from corps.errors import CorpsError
from corps.tools import _resolve
from corps.tools._inspect import inspector, server_urls
from corps.tools._loader import LoadError

SEND_EPILOG: Final = """\
examples:
  corps ask Inventory warehouse-1 GetStock '{"sku": "sku-1"}' --app corps.examples.shop.app:app
        {"$type":"StockLevel","sku":"sku-1","available":10}
  corps ask corps.examples.shop.orchestrated:Inventory warehouse-1 GetStock '{"sku": "sku-1"}'
  corps tell Inventory warehouse-1 ReleaseStock '{"order_id": "o1", "sku": "sku-1", "qty": 1}' --app ...
  corps publish OrderPlaced '{"order_id": "o9", ...}' --msg-id order-o9 --app corps.examples.shop.app:app

JSON is the message's fields ("$type" optional). The reply, ack or error is one JSON object on
stdout; the exit code names the error (3 invalid input, 4 no server, 6 no responders, 7 timeout,
8 the handler raised: see corps --help). The namespace is --namespace, else the App's."""


def add_send_parsers(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps ask``, ``tell`` and ``publish``."""
    for verb, helptext in (("ask", "send a request to an actor and print its typed reply as JSON"),
                           ("tell", "send a message to an actor (fire and forget, at most once)")):
        p = sub.add_parser(verb, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                           epilog=SEND_EPILOG, formatter_class=formatter)
        p.add_argument("actor", metavar="CLASS", help="the actor class: its name (with --app) or MODULE:CLASS")
        p.add_argument("actor_id", metavar="ID")
        p.add_argument("type", metavar="TYPE", help="the message type the class handles (its class name)")
        p.add_argument("json", metavar="JSON", help="the message's fields as a JSON object")
        if verb == "ask":
            p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply (default 5)")
        _common(p)
        p.set_defaults(func=cmd_send, verb=verb)
    p = sub.add_parser("publish", help="publish an event to the namespace's event stream",
                       description="Publish an event (JetStream, deduplicated by its Nats-Msg-Id).",
                       epilog=SEND_EPILOG, formatter_class=formatter)
    p.add_argument("type", metavar="EVENT_TYPE", help="the event's Message class: its name (with --app) or "
                                                      "MODULE:CLASS")
    p.add_argument("json", metavar="JSON", help="the event's fields as a JSON object")
    p.add_argument("--msg-id", help="its Nats-Msg-Id: a repeat within the duplicate window is stored once")
    _common(p)
    p.set_defaults(func=cmd_send, verb="publish")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", metavar="MODULE[:APP]", default=os.environ.get("CORPS_APP"),
                   help="where names are looked up, and the namespace (default: CORPS_APP)")
    add_connection_arguments(p)
    p.set_defaults(namespace=None)
    add_json_argument(p)  # the output is JSON already: accepted for the one convention


def cmd_send(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        candidates, app = _resolve.scope(args.app)
        namespace = args.namespace or (app.namespace if app is not None else "corps")
        if args.verb == "publish":
            tp = _resolve.event_type(args.type, args.app, candidates)
            target: Any = None
        else:
            target = _resolve.actor_class(args.actor, args.app, candidates)
            tp = _resolve.request_type(target, args.type)
    except LoadError as problem:
        if problem.detail:
            print(problem.detail, file=sys.stderr, end="")
        parser.exit(2, f"corps {args.verb}: error: {problem}\n")
    if args.verb == "ask" and not 0 < args.timeout <= 3600:
        parser.exit(2, f"corps ask: error: --timeout must be in (0, 3600] seconds, not {args.timeout}\n")
    try:
        where = f"{namespace}.events.{tp.__name__}" if target is None else \
            f"{namespace}.actor.{target.actor_name}.{args.actor_id}"
        msg = _resolve.decode(tp, args.json, where)
        code: int = run(_send, args, namespace, target, msg)
    except CorpsError as exc:
        print(error_json(exc), flush=True)
        raise
    return code


async def _send(args: argparse.Namespace, namespace: str, target: Any, msg: Any) -> int:
    if args.verb == "publish":
        async with inspector(args.nats, namespace, security_from(args)) as look:
            events = await look.publisher()  # publish provisions nothing: the streams must exist
            ack = await events.publish(msg, msg_id=args.msg_id)
        print(msgspec.json.encode(ack).decode(), flush=True)
        return 0
    servers = server_urls(args.nats)
    async with Node(servers, namespace=namespace, security=security_from(args), name="corps-cli") as node:
        ref = node.ref(target, args.actor_id)
        if args.verb == "tell":
            await ref.tell(msg)
            print(msgspec.json.encode({"sent": ref.subject}).decode(), flush=True)
            return 0
        reply = await ref.ask(msg, timeout=args.timeout)
    print(msgspec.json.encode(reply).decode(), flush=True)
    return 0
