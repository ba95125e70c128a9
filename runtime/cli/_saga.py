"""``corps saga list | show ID | retry ID``: look into the saga log, and retry FAILED sagas."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgspec

from corps.cli._common import add_connection_arguments, add_json_argument
from corps.cli._connect import security_from
from corps.core._run import run
from corps.errors import SagaUnreadable
from corps.saga._info import SagaInfo
from corps.saga._state import SagaStatus
from corps.system._system import ActorSystem
from corps.tools._inspect import inspector
from corps.tools._loader import LoadError, load_saga_class

SAGA_EPILOG = """\
examples:
  corps saga list --nats nats://127.0.0.1:4222           every saga in the namespace's log
  corps saga list --json                                 the same as JSON
  corps saga list --active                               only those not finished
  corps saga show 3f2a9c...                              status, steps and the timed history
  corps saga retry 3f2a9c... --saga corps.examples.shop.orchestrated:PlaceOrder
                                                         a FAILED saga's compensations, once more

retry drives the saga from this process until it is finished, so the participants it talks to
must be running. It needs the saga class (--saga) to build the compensation requests.
"""


def add_saga_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps saga`` on the top-level subparsers."""
    saga = sub.add_parser("saga", help="list, show and retry orchestrated sagas",
                          description="Read the saga log (JetStream KV) of a namespace; retry a FAILED saga. "
                                      "list and show only read: a missing saga log is reported, never created.",
                          epilog=SAGA_EPILOG, formatter_class=formatter)
    add_connection_arguments(saga)
    add_json_argument(saga)
    actions = saga.add_subparsers(dest="saga_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every saga, with its status")
    listing.add_argument("--active", action="store_true", help="only sagas not finished")
    show = actions.add_parser("show", help="one saga: status, steps, history with timings")
    show.add_argument("saga_id", metavar="ID")
    retry = actions.add_parser("retry", help="retry a FAILED saga's compensations, and wait for the outcome")
    retry.add_argument("saga_id", metavar="ID")
    retry.add_argument("--saga", metavar="MODULE:CLASS", required=True, help="the saga class")
    retry.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the outcome")
    for action in (listing, show, retry):
        add_connection_arguments(action, anywhere=True)
        add_json_argument(action, anywhere=True)
    saga.set_defaults(func=cmd_saga)


def cmd_saga(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.saga_command == "retry":
        try:
            sagas = (load_saga_class(args.saga),)
        except LoadError as problem:
            parser.error(str(problem))
        code: int = run(_retry, args, sagas)
        return code
    code = run(_read, args)
    return code


def _info_json(info: SagaInfo) -> str:
    return msgspec.json.encode(info).decode()


async def _read(args: argparse.Namespace) -> int:
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        if args.saga_command == "list":
            infos = await look.sagas(active_only=args.active)
            if args.json:
                print("[" + ",".join(_info_json(i) for i in infos) + "]")
            else:
                print(_table(infos) if infos else "no sagas")
            return 0
        try:
            info = await look.saga(args.saga_id)
        except SagaUnreadable as exc:
            info = SagaInfo.unreadable(exc.saga_id, exc.reason)
            print(_info_json(info) if args.json else describe(info))
            return 1
        print(_info_json(info) if args.json else describe(info))
    return 0


async def _retry(args: argparse.Namespace, sagas: tuple[Any, ...]) -> int:
    # Never an embedded server (an empty one has no saga to retry), and a namespace without a saga
    # log (a typo) is reported before the ActorSystem below would provision anything in it.
    async with inspector(args.nats, args.namespace, security_from(args)) as look:
        await look.saga(args.saga_id)
    # A long scan interval: this process resumes nothing on its own, it only retries this one.
    async with ActorSystem(args.nats, namespace=args.namespace, sagas=sagas, saga_scan_interval=3600,
                           security=security_from(args)) as system:
        await system.retry_saga(args.saga_id)
        info = await system.wait_saga(args.saga_id, timeout=args.timeout)
        print(_info_json(info) if args.json else describe(info))
        return 0 if info.status != "FAILED" else 1


def _table(infos: list[SagaInfo]) -> str:
    rows = [("ID", "SAGA", "STATUS", "STEPS", "STARTED")]
    for info in infos:
        started = time.strftime("%H:%M:%S", time.localtime(info.history[0].at)) if info.history else "-"
        steps = " ".join(f"{name}:{status[:4].lower()}" for name, status, _ in info.step_outcomes())
        if info.status is SagaStatus.UNREADABLE:
            steps = f"(record cannot be decoded: {info.reason})"[:80]
        rows.append((info.saga_id, info.saga, info.status.value, steps, started))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def describe(info: SagaInfo) -> str:
    """A saga's status, its steps, and its history with times relative to its start."""
    lines = [f"saga {info.saga_id} ({info.saga}): {info.status.value}"]
    if info.status is SagaStatus.UNREADABLE:
        return "\n".join([*lines, f"  its record in the saga log cannot be decoded: {info.reason}",
                          "  no coordinator drives it; delete the key or write a valid record to resolve it"])
    if info.reason:
        lines.append(f"  reason: {info.reason}")
    if info.owner:
        lines.append(f"  owner: {info.owner} (lease {max(0.0, info.lease_until - time.time()):.1f}s left)")
    lines.append("  steps:")
    lines += [f"    {name:<16} {status:<10} undo {undo}" for name, status, undo in info.step_outcomes()]
    lines.append("  history:")
    start = info.history[0].at if info.history else 0.0
    for t in info.history:
        where = f"{t.step} #{t.attempt}" if t.step else ""
        lines.append(f"    {(t.at - start) * 1000:8.1f} ms  {t.kind.value:<22} {where:<16} {t.detail}".rstrip())
    return "\n".join(lines)
