"""One corps node hosting a virtual class, as an OS process: ``python -m tests.virtual.vnode host
--url URLS --ns NS --out FILE [--ttl S]``.

It hosts ``Tally`` (virtual), with ``--till`` also ``DurableTill`` (durable state, memory
records), and with ``--ledger`` also ``Ledger`` (keyed events, partitioned:
one ``h`` line per handled event, sender ``ev``), and appends one JSON line to FILE per handled message (``h``: id,
token, sender, n, wall time) and per activation change (``a``: the ``Activation`` record), flushed
at once, so the test reads what happened even from a node it killed. Prints ``ready node=<node>
pid=<pid>`` once hosting, drains on SIGTERM, prints ``drained``, and dies with its parent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, ClassVar

import anyio
import msgspec

from corps import Activation, ActorOptions, ActorSystem, VirtualConfig, handler, run
from tests.fault.node import child_setup
from tests.virtual.domain import DurableTill, Handled, Hold, Ledger, Seeing, Stall


class Tally(Seeing, options=ActorOptions(virtual=True, idle_after=300.0)):
    out: ClassVar[IO[str] | None] = None

    def saw(self, token: int, sender: str, n: int) -> None:
        write({"h": [self.id, token, sender, n, time.time(), self.system.node]})

    @handler
    async def hold(self, msg: Hold) -> None:
        write({"hold": self.id})
        release = anyio.Path(msg.release)
        with anyio.move_on_after(60.0):
            while not await release.exists():  # noqa: ASYNC110 -- a file written by the test process
                await anyio.sleep(0.01)

    @handler
    async def stall(self, msg: Stall) -> None:
        write({"stall": self.system.node})
        release, deadline = Path(msg.release), time.monotonic() + 60.0
        while not release.exists() and time.monotonic() < deadline:  # noqa: ASYNC240 -- blocking on purpose
            time.sleep(0.01)  # noqa: ASYNC251 -- on purpose: the loop is busy, the heartbeat thread is not


def write(record: dict[str, object]) -> None:
    assert Tally.out is not None
    Tally.out.write(json.dumps(record) + "\n")
    Tally.out.flush()


def on_event(h: Handled) -> None:
    write({"h": [h.key, h.token, "ev", h.n, time.time(), h.node]})


def on_activation(a: Activation) -> None:
    write({"a": msgspec.to_builtins(a)})


async def serve(args: argparse.Namespace) -> None:
    Tally.out = open(args.out, "a")  # noqa: SIM115, ASYNC230 -- for the life of the process
    cfg = VirtualConfig(member_ttl=args.ttl, grace=args.grace, replicas=args.replicas)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(args.url.split(","), namespace=args.ns, virtual=cfg,
                               name=f"vnode-{os.getpid()}") as system:
            system.virtual.history.sink = on_activation
            await system.host(Tally)
            if args.till:
                await system.host(DurableTill)
            if args.ledger:
                Ledger.sink = on_event
                await system.host(Ledger)
            print(f"ready node={system.node} pid={os.getpid()}", flush=True)
            async for _ in signals:
                break
    print("drained", flush=True)


def main(argv: list[str]) -> None:
    child_setup()
    p = argparse.ArgumentParser(prog="python -m tests.virtual.vnode")
    p.add_argument("role", choices=("host",))
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ttl", type=float, default=3.0)
    p.add_argument("--grace", type=float, default=0.3)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--ledger", action="store_true")
    p.add_argument("--till", action="store_true", help="also host DurableTill (a durable memory-effect participant)")
    run(serve, p.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
