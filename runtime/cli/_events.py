"""``corps dlq list|show|redrive`` and ``corps events tail SUBJECT``: the commands' bodies."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable
from typing import Any

import msgspec

from corps.errors import EventError
from corps.events._dlq import DeadLetterEvent

DLQ_EPILOG = """\
examples:
  corps dlq list --nats nats://127.0.0.1:4222 --namespace shop
  corps dlq show 3                  one entry: payload (as JSON), headers, error
  corps dlq redrive 3               publish it again for the consumer that gave up on it
  corps dlq redrive --all           every entry (each is deleted from the dead-letter stream)"""

TAIL_EPILOG = """\
examples:
  corps events tail '>'                  every event of the namespace, as it is published
  corps events tail OrderPlaced --all    from the start of the stream
  corps events tail 'Order*'             NATS wildcards work on the event type token ('*', '>')"""


def add_commands(sub: Any, formatter: Callable[[str], argparse.HelpFormatter], common: Callable[[Any], None],
                 dlq_cmd: Callable[..., int], tail_cmd: Callable[..., int]) -> None:
    dlq = sub.add_parser("dlq", help="list, show and redrive dead-lettered events",
                         description="The dead-letter stream of a namespace: events a handler gave up on "
                                     "after max_deliver attempts, or could not decode.",
                         epilog=DLQ_EPILOG, formatter_class=formatter)
    dlq.add_argument("action", choices=("list", "show", "redrive"))
    dlq.add_argument("seq", nargs="?", type=int, help="the entry's sequence in the dead-letter stream")
    dlq.add_argument("--all", action="store_true", help="redrive every entry")
    dlq.add_argument("--consumer", help="only entries of this consumer (actor class)")
    dlq.add_argument("--keep", action="store_true", help="redrive without deleting the entry")
    common(dlq)
    dlq.set_defaults(func=dlq_cmd)
    events = sub.add_parser("events", help="watch events as they are published",
                            description="Print events of a namespace as JSON lines, with their stream "
                                        "sequence and correlation id.", epilog=TAIL_EPILOG,
                            formatter_class=formatter)
    events.add_argument("action", choices=("tail",))
    events.add_argument("subject", metavar="SUBJECT", help="an event type, or a wildcard ('>' for all)")
    events.add_argument("--all", action="store_true", help="from the start of the stream, not only new events")
    events.add_argument("--count", type=int, default=0, help="stop after this many events")
    common(events)
    events.set_defaults(func=tail_cmd)


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


async def dlq(system: Any, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    events = system.events
    if args.action == "list":
        entries = await events.dead_letters(args.consumer)
        say(f"{len(entries)} dead letter(s) in namespace {system.namespace!r}")
        for entry in entries:
            for line in describe(entry):
                say(line)
        return 0
    if args.action == "show":
        if args.seq is None:
            say("corps dlq show: give the entry's sequence (see corps dlq list)")
            return 2
        entry = await events.dead_letter(args.seq)
        if entry is None:
            say(f"no dead letter at {args.seq}")
            return 1
        for line in describe(entry, full=True):
            say(line)
        return 0
    seqs = [e.dlq_seq for e in await events.dead_letters(args.consumer)] if args.all else [args.seq]
    if seqs == [None]:
        say("corps dlq redrive: give a sequence, or --all")
        return 2
    code = 0
    for seq in seqs:
        try:
            entry = await events.redrive(seq, keep=args.keep)
        except EventError as exc:  # an entry not written by corps: reported, the others still go
            say(f"not redriven {seq}: {exc}")
            code = 1
            continue
        say(f"redriven {seq}: {entry.event_type} for {entry.consumer}" if entry else f"no dead letter at {seq}")
    return code


def _event_json(event: Any) -> str:
    try:
        return msgspec.json.encode(event).decode()
    except Exception:  # noqa: BLE001 -- decoded without a schema from untrusted bytes: ext types, odd keys
        return repr(event)[:SHOWN_BYTES]


async def tail(system: Any, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    subject = args.subject if args.subject.startswith(f"{system.namespace}.") else \
        f"{system.namespace}.events.{args.subject}"
    n = 0
    say(f"tailing {subject} ({'from the start' if args.all else 'new events'}); Ctrl-C to stop")
    async for event, seq in system.events.replay(subject=subject, follow=not args.all or args.count == 0,
                                                 from_seq=1 if args.all else None):
        say(f"{seq:>6}  {_event_json(event)}")
        n += 1
        if args.count and n >= args.count:
            break
    return 0
