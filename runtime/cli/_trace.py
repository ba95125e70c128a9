"""``corps trace ID``: a saga's or a request's timeline across orchestration and choreography.

Collecting is ``corps.tools._trace``; this is the command and the text rendering, as ``describe``
in ``corps.cli._saga`` is for one saga (same layout: times in ms from the first entry).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from corps.cli._common import add_connection_arguments
from corps.cli._connect import add_security_arguments, security_from
from corps.core._run import run
from corps.events._wire import stream_name
from corps.tools._inspect import inspector
from corps.tools._trace import Entry, Trace, trace_in

TRACE_EPILOG: Final = """\
examples:
  corps trace 3f2a9c... --nats nats://127.0.0.1:4222   a saga: its transitions and the events
                                                       published under its id, in time order
  corps trace order-placed-o1 --namespace shop         a choreographed chain, by the id of the event
                                                       that started it; each event under its cause
  corps trace ID --since 600                           only events of the last 10 minutes (a shorter scan)
  corps trace ID --json                                the trace as JSON

ID is a correlation id: a saga id, or the id of the event or message a chain started from (the
Corps-Corr header of the events that followed). The event stream is scanned from its start (or
from --since), headers only; dead letters of the id are listed under the event they copy.
Exit code 1 if nothing is found for ID.
"""

_LABEL: Final = {"saga": "saga", "event": "event", "dead-letter": "dlq"}
_NAME_WIDTH: Final = 26


def add_trace_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps trace`` on the top-level subparsers."""
    p = sub.add_parser("trace", help="a saga's or request's timeline: saga steps, events, dead letters",
                       description="Show everything recorded under one correlation id: the saga log's "
                                   "transitions, the events of the namespace's event stream, and dead letters.",
                       epilog=TRACE_EPILOG, formatter_class=formatter)
    p.add_argument("correlation_id", metavar="ID", help="a saga id or a correlation id")
    add_connection_arguments(p, security=False)
    p.add_argument("--since", type=float, metavar="SECONDS_AGO",
                   help="only events stored in the last SECONDS_AGO seconds (default: the whole stream)")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    add_security_arguments(p)
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.since is not None and not args.since > 0:
        parser.error(f"--since must be a positive number of seconds, not {args.since}")
    code: int = run(_trace, args)
    return code


async def _trace(args: argparse.Namespace) -> int:
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        await look.stream(stream_name(args.namespace))  # a missing stream is reported, never created
        found = await trace_in(look.js, args.namespace, args.correlation_id, look.dead_letters, since=args.since)
    if found.empty:
        window = f" in the last {args.since:g}s" if args.since is not None else ""
        print(f"corps: nothing found for {args.correlation_id!r} in namespace {args.namespace!r}{window}",
              file=sys.stderr)
        return 1
    print(msgspec.json.encode(found).decode() if args.json else format_trace(found), flush=True)
    return 0


def format_trace(t: Trace) -> str:
    """A readable timeline: ms from the first entry, each event indented under the event that caused it.

    Roots (saga transitions, events caused by a message or by nothing recorded) come in time
    order, each followed by what it caused, depth first.
    """
    events = sum(e.source == "event" for e in t.entries)
    letters = sum(e.source == "dead-letter" for e in t.entries)
    lines = [f"trace {t.correlation_id} in namespace {t.namespace!r}: {events} event(s), "
             f"{letters} dead letter(s) ({t.scanned} event(s) scanned)"]
    if t.saga is not None:
        s = t.saga
        lines.append(f"  saga {s.saga_id} ({s.saga}): {s.status.value}" + (f": {s.reason}" if s.reason else ""))
        if s.trace_id:  # one OpenTelemetry trace for the whole saga, across coordinator takeovers
            lines.append(f"  opentelemetry trace: {s.trace_id}")
        steps = [f"{name} {status.lower()}" + ("" if undo == "NONE" else f" (undo {undo.lower()})")
                 for name, status, undo in s.step_outcomes()]
        lines.append("  steps: " + ", ".join(steps))
    lines.append("  timeline:")
    start = t.entries[0].at if t.entries else 0.0
    children: dict[str, list[Entry]] = {}
    for e in t.entries:
        if e.parent:
            children.setdefault(e.parent, []).append(e)
    expanded: set[str] = set()
    shown: set[int] = set()

    def emit(e: Entry) -> None:
        shown.add(id(e))
        lines.append(_line(e, start))
        # Events and a step's "sent" hold children; a redriven copy or a re-sent step shares the id: once.
        if e.event_id and e.source != "dead-letter" and e.event_id not in expanded:
            expanded.add(e.event_id)
            for child in children.get(e.event_id, ()):
                emit(child)

    for e in t.entries:
        if not e.parent:
            emit(e)
    for e in t.entries:  # only under forged causes (a cycle): shown anyway, never dropped
        if id(e) not in shown:
            emit(e)
    return "\n".join(lines)


def _line(e: Entry, start: float) -> str:
    if e.source == "saga":
        what, where, detail = e.kind, f"{e.step} #{e.attempt}" if e.step else "", e.detail
    elif e.source == "event":
        what, where = e.kind, f"seq {e.seq}"
        detail = f"id {e.event_id}" + (f"  cause {e.cause}" if e.cause and not e.parent else "")
        detail += f"  ({e.detail})" if e.detail else ""
    else:
        what, where = f"dead-lettered: {e.kind}", f"by {e.consumer}"
        detail = f"after {e.attempt} attempt(s): {e.detail}  (corps dlq show {e.seq})"
    name = ("  " * e.depth + what).ljust(_NAME_WIDTH)
    return f"    {(e.at - start) * 1000:8.1f} ms  {_LABEL[e.source]:<5} {name} {where:<16} {detail}".rstrip()
