"""One corps node as an OS process, for the fault suite: ``python -m tests.fault.node ROLE ...``.

Roles (see tests/fault/roles.py):

* ``participants --effects FILE [--classes Inventory,Payments] [--latency S]``: the orchestrated
  shop's participants, instrumented; crash points from ``CORPS_FAULT_CRASH`` / ``_STEP`` / ``_AT``.
* ``coordinator --front ID [--lease S] [--scan S]``: an ActorSystem with ``sagas=(PlaceOrder,)``
  and a Front actor ``ID`` that starts sagas, so they are driven by this process.

Every role takes ``--saga-replicas`` (the SagaConfig replicas of the saga log and idempotency
buckets; 0 = corps's default, which follows the cluster) and ``--replicas`` (the events streams').
* ``consumer --effects FILE``: the choreographed shop, recording handled event ids.
* ``ledger --effects FILE``: FaultLedger, one ``@on_event(idempotent=True)`` handler; crash points
  from ``CORPS_FAULT_CRASH`` / ``_AT`` (before-handler, after-effect, after-done).

``participants --unfinished compensate`` hosts Payments with ``@idempotent(unfinished="compensate")``.

The node prints ``ready node=<node id> pid=<pid>`` on stdout once everything is spawned, and on
SIGTERM (or SIGINT) drains, prints ``drained`` and exits 0. It dies with its parent (Linux
PR_SET_PDEATHSIG), so a killed test run leaves no orphan; warnings go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

import anyio

from corps import ActorSystem, SagaConfig, run
from corps.examples.shop.orchestrated import PlaceOrder
from tests.fault import roles


def child_setup() -> None:
    """What a test's node process does first: die with its parent (SIGKILL on its death), and log
    warnings to stderr with the time and pid (the harness collects them)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        raise SystemExit("parent gone")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(process)d %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.fault.node")
    p.add_argument("role", choices=("participants", "coordinator", "consumer", "ledger"))
    p.add_argument("--url", required=True, help="NATS URL, or several comma-separated (a cluster)")
    p.add_argument("--ns", required=True, help="corps namespace")
    p.add_argument("--effects", help="the effects file (participants, consumer)")
    p.add_argument("--classes", default="Inventory,Payments,Shipping", help="participants to host")
    p.add_argument("--latency", type=float, default=0.0, help="seconds each forward effect takes")
    p.add_argument("--unfinished", choices=("rerun", "compensate"), default="rerun",
                   help="participants: Payments.charge's @idempotent(unfinished=...)")
    p.add_argument("--front", default="front", help="id of the coordinator's Front actor")
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--scan", type=float, default=0.2)
    p.add_argument("--replicas", type=int, default=1, help="replicas of the events streams")
    p.add_argument("--saga-replicas", type=int, default=0,
                   help="replicas of the saga log and idempotency buckets (0: corps's default, per the cluster)")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    urls = args.url.split(",")
    # Every role gets the same SagaConfig: participants open the idempotency bucket with it.
    saga = SagaConfig(replicas=args.saga_replicas or None, lease=args.lease, scan_interval=args.scan)
    options: dict[str, object] = {"namespace": args.ns, "events": roles.events_config(args.replicas),
                                  "saga": saga, "name": f"fault-{args.role}-{os.getpid()}"}
    if args.role == "coordinator":
        options.update(sagas=(PlaceOrder,))
    else:
        if not args.effects:
            raise SystemExit(f"{args.role} needs --effects FILE")
        roles.Faults.configure(args.effects, args.latency)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(urls, **options) as system:  # type: ignore[arg-type]
            if args.role == "participants":
                for name in args.classes.split(","):
                    cls, actor_id = roles.PARTICIPANTS[name]
                    if name == "Payments" and args.unfinished == "compensate":
                        cls = roles.PaymentsAtMostOnce
                    await system.spawn(cls, actor_id)
            elif args.role == "coordinator":
                await system.spawn(roles.Front, args.front)
            elif args.role == "ledger":
                roles.install_after_done_crash()
                await system.spawn(roles.FaultLedger, "ledger")
            else:
                for cls, actor_id in roles.CONSUMER_SERVICES:
                    await system.spawn(cls, actor_id)
                await system.serve_events(roles.Order)
            print(f"ready node={system.node} pid={os.getpid()}", flush=True)
            async for _ in signals:
                break
        print("drained", flush=True)


def main(argv: list[str]) -> None:
    child_setup()
    run(serve, parse(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
