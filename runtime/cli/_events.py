"""``corps dlq list|show|redrive`` and ``corps events tail SUBJECT``.

``list``, ``show`` and ``tail`` only read (``corps.tools._inspect``): a namespace without an event
stream is reported as not provisioned, never created. ``redrive`` writes, by design, to streams
that must exist already.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from corps.cli._common import NOT_FOUND, USAGE, add_connection_arguments, add_json_argument
from corps.cli._connect import security_from
from corps.core._run import run
from corps.errors import EventError
from corps.events._dlq import DeadLetterEvent, redrive
from corps.tools._inspect import Inspector, inspector

DLQ_EPILOG = """\
examples:
  corps dlq list --nats nats://127.0.0.1:4222 --namespace shop
  corps dlq list --json             one JSON object per entry (payload base64 in "data")
  corps dlq show 3                  one entry: payload (as JSON), headers, error
  corps dlq redrive 3               publish it again for the consumer that gave up on it
  corps dlq redrive --all           every entry (each is deleted from the dead-letter stream)"""

TAIL_EPILOG = """\
examples:
  corps events tail '>'                  every new event of the namespace, as it is published
  corps events tail OrderPlaced --all    from the start of the stream, then follow
  corps events tail '>' --all --count 10 --json    the first 10 events, one JSON object per line
  corps events tail 'Order*'             NATS wildcards work on the event type token ('*', '>')

Events are read by sequence (JetStream direct gets): tail creates no consumer on the server."""


def add_commands(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    dlq = sub.add_parser("dlq", help="list, show and redrive dead-lettered events",
                         description="The dead-letter stream of a namespace: events a handler gave up on "
                                     "after max_deliver attempts, or could not decode.",
                         epilog=DLQ_EPILOG, formatter_class=formatter)
    dlq.add_argument("action", choices=("list", "show", "redrive"))
    dlq.add_argument("seq", nargs="?", type=int, help="the entry's sequence in the dead-letter stream")
    dlq.add_argument("--all", action="store_true", help="redrive every entry")
    dlq.add_argument("--consumer", help="only entries of this consumer (actor class)")
    dlq.add_argument("--keep", action="store_true", help="redrive without deleting the entry")
    add_connection_arguments(dlq)
    add_json_argument(dlq)
    dlq.set_defaults(func=cmd_dlq)
    events = sub.add_parser("events", help="watch events as they are published",
                            description="Print events of a namespace with their stream sequence, event id "
                                        "and correlation id.", epilog=TAIL_EPILOG, formatter_class=formatter)
    events.add_argument("action", choices=("tail",))
    events.add_argument("subject", metavar="SUBJECT", help="an event type, or a wildcard ('>' for all)")
    events.add_argument("--all", action="store_true", help="from the start of the stream, not only new events")
    events.add_argument("--count", type=int, default=0, help="stop after this many events")
    events.add_argument("--no-follow", action="store_true", help="stop at the last event stored now")
    add_connection_arguments(events)
    add_json_argument(events)
    events.set_defaults(func=cmd_events)


def cmd_dlq(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    code: int = run(_dlq, args)
    return code


def cmd_events(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.count < 0:
        parser.error(f"--count must be 0 (no limit) or more, not {args.count}")
    code: int = run(_tail, args)
    return code


SHOWN_BYTES = 200
"""Bytes of a payload that is not msgpack (or is nested too deeply for JSON) that ``show`` prints."""


def _json(data: bytes) -> str:
    """The msgpack payload as JSON, else the start of its bytes: stored payloads are untrusted
    (RecursionError on deep nesting, ext types, non-string keys)."""
    try:
        return msgspec.json.encode(msgspec.msgpack.decode(data)).decode()
    except Exception:  # noqa: BLE001 -- untrusted bytes
        more = f" ... ({len(data)} bytes)" if len(data) > SHOWN_BYTES else ""
        return repr(data[:SHOWN_BYTES]) + more


def _when(at: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(at).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):  # a forged At header
        return "?"


def describe(entry: DeadLetterEvent, full: bool = False) -> list[str]:
    lines = [f"{entry.dlq_seq:>5}  {_when(entry.at)}  {entry.consumer:<16} {entry.event_type:<16} "
             f"{entry.reason} after {entry.attempts} attempt(s): {entry.error[:80]}"]
    if entry.problem:
        lines.append(f"       unreadable entry: {entry.problem}")
    if full:
        lines += [f"  subject   {entry.subject} (stream {entry.stream}, seq {entry.stream_seq})",
                  f"  event id  {entry.event_id}",
                  f"  payload   {_json(entry.data)}",
                  f"  error     {entry.error}",
                  "  headers   " + json.dumps(entry.headers, indent=None)]
    return lines


def entry_json(entry: DeadLetterEvent) -> str:
    doc = msgspec.to_builtins(entry, enc_hook=None)
    doc["data"] = base64.b64encode(entry.data).decode()
    doc["event_id"] = entry.event_id
    return json.dumps(doc)


async def _dlq(args: argparse.Namespace) -> int:
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        if args.action == "list":
            entries = await look.dead_letters(args.consumer)
            if args.json:
                for entry in entries:
                    print(entry_json(entry), flush=True)
                return 0
            print(f"{len(entries)} dead letter(s) in namespace {args.namespace!r}", flush=True)
            for entry in entries:
                print("\n".join(describe(entry)), flush=True)
            return 0
        if args.action == "show":
            if args.seq is None:
                print("corps dlq show: give the entry's sequence (see corps dlq list)")
                return USAGE
            shown = await look.dead_letter(args.seq)
            if shown is None:
                print(f"no dead letter at {args.seq}")
                return NOT_FOUND
            print(entry_json(shown) if args.json else "\n".join(describe(shown, full=True)))
            return 0
        return await _redrive(look, args)


async def _redrive(look: Inspector, args: argparse.Namespace) -> int:
    events = await look.publisher()  # both streams must exist: redrive provisions nothing
    seqs = [e.dlq_seq for e in await look.dead_letters(args.consumer)] if args.all else [args.seq]
    if seqs == [None]:
        print("corps dlq redrive: give a sequence, or --all")
        return USAGE
    code = 0
    for seq in seqs:
        try:
            entry = await redrive(events, seq, keep=args.keep)
        except EventError as exc:  # an entry not written by corps: reported, the others still go
            print(f"not redriven {seq}: {exc}")
            code = 1
            continue
        if entry is None:
            print(f"no dead letter at {seq}")
            code = NOT_FOUND
        else:
            print(f"redriven {seq}: {entry.event_type} for {entry.consumer}")
    return code


async def _tail(args: argparse.Namespace) -> int:
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        subject = args.subject if args.subject.startswith(f"{args.namespace}.") else \
            f"{args.namespace}.events.{args.subject}"
        follow = not args.no_follow

        def ready() -> None:  # stdout's first line, once events from now on will be seen (--json: stderr)
            print(f"tailing {subject} ({'from the start' if args.all else 'new events'})"
                  + ("; Ctrl-C to stop" if follow else ""), flush=True, file=sys.stderr if args.json else sys.stdout)

        n = 0
        # Closed here, before the connection: its subscription is taken down while it is still open.
        async with contextlib.aclosing(look.tail(subject, from_start=args.all, follow=follow, ready=ready)) as events:
            async for t in events:
                if args.json:
                    print(msgspec.json.encode(t).decode(), flush=True)
                else:
                    print(f"{t.seq:>6}  {t.type:<20} corr {t.correlation_id}  {_event_json(t.event)}", flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
    return 0


def _event_json(event: Any) -> str:
    try:
        return msgspec.json.encode(event).decode()
    except Exception:  # noqa: BLE001 -- decoded without a schema from untrusted bytes: ext types, odd keys
        return repr(event)[:SHOWN_BYTES]
