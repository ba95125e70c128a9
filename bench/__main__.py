"""``python -m bench [--quick] [--json FILE] [--loop uvloop|asyncio] [--nats URL] [SCENARIO...]``.

Runs every selected scenario, corps next to raw nats-py, in one process against one nats-server
(embedded unless ``--nats``), prints a table, and with ``--json`` writes every sample.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from bench import core, memory
from bench._model import Scenario
from bench._report import document, machine_line, table
from bench._runner import Outcome, log, machine_info, run_scenario
from runtime import EmbeddedServer, run

LOOPS = ("uvloop", "asyncio")


def all_scenarios(quick: bool) -> list[Scenario]:
    return [*core.scenarios(quick), *memory.scenarios(quick)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in all_scenarios(False)]
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the corps hot path next to raw nats-py, in one run against one nats-server. "
                    "Variants alternate and repeat; the table shows median [min-max] and the ratio corps/raw.",
        epilog="Scenarios: " + ", ".join(names) + ". See bench/README.md.",
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small counts and 2 repeats: a smoke run, under a minute")
    p.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 5, --quick 2)")
    p.add_argument("--json", metavar="FILE", help="write machine info, parameters and every sample here")
    p.add_argument("--loop", choices=LOOPS, default="uvloop", help="event loop (default uvloop, if installed)")
    p.add_argument("--nats", metavar="URL", help="use this nats-server instead of an embedded one")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in names]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


async def bench(args: argparse.Namespace, url: str, embedded: bool) -> tuple[dict[str, Any], list[Outcome]]:
    repeats = args.repeats or (2 if args.quick else 5)
    chosen = [s for s in all_scenarios(args.quick) if not args.scenarios or s.name in args.scenarios]
    machine = await machine_info(url, embedded)
    log(f"corps bench: {len(chosen)} scenario(s), {repeats} repeats, loop {machine['loop']}, "
        f"nats-server {machine['nats_server']} at {url}")
    outcomes = [await run_scenario(s, url, args.loop, repeats) for s in chosen]
    return machine, outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    server = None if args.nats else EmbeddedServer().start()
    try:
        url = args.nats or server.url  # type: ignore[union-attr]
        machine, outcomes = run(bench, args, url, server is not None, loop=args.loop)
    finally:
        if server is not None:
            server.stop(cleanup=True)
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = list(os.getloadavg())
    print(machine_line(machine))
    print(table(outcomes))
    if args.json:
        params = {"quick": args.quick, "repeats": args.repeats or (2 if args.quick else 5), "loop": args.loop,
                  "scenarios": [o.scenario.name for o in outcomes], "argv": sys.argv[1:]}
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(document(machine, params, outcomes) + "\n")
        log(f"wrote {args.json}")
    return 1 if any(o.errors for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
