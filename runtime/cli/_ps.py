"""``corps ps``: the nodes of a namespace, the classes each hosts and its instance counts, as the
live nodes answer them (every ``ActorSystem`` answers on ``{ns}.nodes``). Read-only."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from corps.cli._common import NOT_FOUND, add_connection_arguments, add_json_argument
from corps.cli._connect import security_from
from corps.core._run import run
from corps.system._nodeinfo import NodeReport
from corps.tools._inspect import PS_WAIT, inspector

PS_EPILOG: Final = """\
examples:
  corps ps --nats nats://127.0.0.1:4222 --namespace shop
  corps ps --json                         [{"node": ..., "name": ..., "classes": {"Inventory": 1},
                                            "virtual": {"Tally": {"active": 3, "activations": 5, ...}}}, ...]

Every corps process (ActorSystem) of the namespace answers within --wait seconds; a node that is
draining no longer answers. A node hosting virtual classes also shows, per class, its activations,
ids moved out and messages fenced off (and its view of the membership). Exit code 5 if none answers."""


def add_ps_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps ps`` on the top-level subparsers."""
    p = sub.add_parser("ps", help="the live nodes of a namespace and the actors each hosts",
                       description="Ask every node of a namespace what it hosts: its classes and instance "
                                   "counts.", epilog=PS_EPILOG, formatter_class=formatter)
    add_connection_arguments(p)
    add_json_argument(p)
    p.add_argument("--wait", type=float, default=PS_WAIT, metavar="SECONDS",
                   help=f"how long to collect answers (default {PS_WAIT})")
    p.set_defaults(func=cmd_ps)


def cmd_ps(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not 0 < args.wait <= 60:
        parser.error(f"--wait must be in (0, 60] seconds, not {args.wait}")
    code: int = run(_ps, args)
    return code


async def _ps(args: argparse.Namespace) -> int:
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        reports, bad = await look.nodes(args.wait)
    if args.json:
        print(msgspec.json.encode(reports).decode())
    else:
        print(table(reports, args.namespace))
    if bad:
        print(f"corps ps: {bad} answer(s) that were not node reports ignored", flush=True)
    return 0 if reports else NOT_FOUND


VIRTUAL_COLUMNS: Final = (("ACTIVATIONS", "activations"), ("MOVES", "moves_out"), ("FENCED", "fenced"),
                           ("PARTITIONS", "partitions"))
"""The counters of a virtual class shown per row (``Virtual.stats``); a column no node reports
(partitions: keyed events partitioned across nodes) is left out."""


def table(reports: list[NodeReport], namespace: str) -> str:
    if not reports:
        return f"no node answers in namespace {namespace!r}"
    shown = [(title, key) for title, key in VIRTUAL_COLUMNS
             if any(key in counts for r in reports for counts in r.virtual.values())]
    rows = [("NODE", "NAME", "UP", "CLASS", "INSTANCES", *(title for title, _ in shown))]
    now = time.time()
    for r in reports:
        up = f"{max(0.0, now - r.started):.0f}s"
        classes = sorted(r.classes.items()) or [("-", 0)]
        for i, (name, n) in enumerate(classes):
            counts = r.virtual.get(name)
            extra = (str(counts.get(key, "-")) if counts is not None else "-" for _, key in shown)
            rows.append((r.node if i == 0 else "", r.name if i == 0 else "", up if i == 0 else "", name, str(n),
                         *extra))
        if "membership" in r.virtual and shown:
            m = r.virtual["membership"]
            rows.append(("", "", "", f"(members {m.get('members', 0)}, lapses {m.get('lapses', 0)})", "",
                         *("" for _ in shown)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
