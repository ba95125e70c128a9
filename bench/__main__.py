"""``corps bench [SCENARIO...] [--quick] [--loop uvloop|asyncio] [--json FILE] [--markdown FILE] [--plot FILE]
[--nats URL]``, also ``python -m corps.bench``.

Runs every selected scenario, corps next to raw nats-py (and FastStream when installed), in one
process against one nats-server (embedded unless ``--nats``), prints a table, and writes the JSON
(every sample), markdown and PNG reports asked for. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from typing import Any

from corps import EmbeddedServer, run
from corps.bench import _check, _plot
from corps.bench._model import Scenario
from corps.bench._report import document, machine_line, markdown, table
from corps.bench._runner import Outcome, Progress, log, machine_info, run_scenario
from corps.bench.registry import ALIASES, load

LOOPS = ("uvloop", "asyncio")
EPILOG = """\
examples:
  corps bench --quick                       every scenario, small: a smoke run (< 1 min on 2 cores)
  corps bench                               the full suite, 5 repeats (~5-8 min on 2 cores)
  corps bench tell ask-latency --repeats 9  only these scenarios, more repeats
  corps bench --json r.json --markdown r.md --plot r.png
  corps bench --nats nats://127.0.0.1:4222  an existing server instead of the embedded one
  corps bench --check                       exit 3 if a row misses its target (gate a release on it)
  corps bench tell --check --target 'tell (coalesce) vs raw 1 pub/msg>=4x'
                                            another goal for one row

exit status: 0 all ran (and with --check, every target met); 1 a variant failed; 2 usage error;
3 with --check, a row missed its target (or had no number to decide). A failure wins over a miss.

scenarios: {names}.
Peers: FastStream runs as another column when installed (pip install 'corps[peers]');
--plot needs matplotlib (pip install 'corps[plot]'). See docs/benchmarks.md."""


def scenarios(quick: bool) -> list[Scenario]:
    return [factory(quick) for factory in load().values()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = list(load())
    p = argparse.ArgumentParser(
        prog="corps bench",
        description="Benchmark corps next to raw nats-py (and FastStream, when installed), in one run against one "
                    "nats-server. Variants alternate and repeat; the table shows median [min-max] and ratios. "
                    "The same as `python -m corps.bench`.",
        epilog=EPILOG.format(names=", ".join(names)), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small counts and 2 repeats: a smoke run, under a minute")
    p.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 5, --quick 2)")
    p.add_argument("--loop", choices=LOOPS, default="uvloop", help="event loop (default uvloop, if installed)")
    p.add_argument("--json", metavar="FILE", help="write machine info, parameters and every sample here")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown here")
    p.add_argument("--plot", metavar="FILE", help="write a PNG: throughput bars with ratios, ask latency CDF "
                                                  "(needs matplotlib)")
    p.add_argument("--nats", metavar="URL", help="use this nats-server instead of an embedded one")
    p.add_argument("--no-peers", action="store_true", help="skip the FastStream column even when installed")
    p.add_argument("--check", action="store_true", help="exit 3 when a row misses its target (default: report only)")
    p.add_argument("--target", action="append", default=[], metavar="'LABEL>=N[x]'",
                   help="replace a row's target: N x = on the corps/raw ratio, N alone = on the corps median in "
                        "the row's unit (op >=, <= or <); repeatable")
    args = p.parse_args(argv)
    try:
        args.targets = dict(_check.parse_target(t) for t in args.target)
    except ValueError as exc:
        p.error(str(exc))
    args.scenarios = [ALIASES.get(s, s) for s in args.scenarios]
    unknown = [s for s in args.scenarios if s not in names]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.plot and not _plot.available():
        p.error(_plot.MISSING)
    try:  # an override that names no row is a usage error, before anything runs
        _check.with_targets([s for s in scenarios(args.quick) if not args.scenarios or s.name in args.scenarios],
                            args.targets)
    except ValueError as exc:
        p.error(str(exc))
    return args


def _without_peers(sc: Scenario) -> Scenario:
    from dataclasses import replace

    from corps.bench.peers import PEER

    return replace(sc, variants=tuple(v for v in sc.variants if v.name != PEER),
                   missing={**sc.missing, PEER: "skipped (--no-peers)"} if any(r.peer for r in sc.rows)
                   else sc.missing)


async def bench(args: argparse.Namespace, url: str, embedded: bool) -> tuple[dict[str, Any], list[Outcome]]:
    repeats = args.repeats or (2 if args.quick else 5)
    chosen = [s for s in scenarios(args.quick) if not args.scenarios or s.name in args.scenarios]
    if args.no_peers:
        chosen = [_without_peers(s) for s in chosen]
    chosen = _check.with_targets(chosen, args.targets)
    machine = await machine_info(url, embedded)
    progress = Progress(sum(repeats * len(s.variants) for s in chosen))
    log(f"corps bench: {len(chosen)} scenario(s), {progress.total} runs ({repeats} repeats), loop {machine['loop']}, "
        f"nats-server {machine['nats_server']} at {url}")
    outcomes = [await run_scenario(s, url, args.loop, repeats, progress) for s in chosen]
    return machine, outcomes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    command = shlex.join(["corps", "bench", *argv])
    if args.json:  # the files first: a closed stdout (``| head``) must not lose them
        params = {"quick": args.quick, "repeats": args.repeats or (2 if args.quick else 5), "loop": args.loop,
                  "scenarios": [o.scenario.name for o in outcomes], "argv": argv, "command": command}
        _write(args.json, document(machine, params, outcomes) + "\n")
    if args.markdown:
        _write(args.markdown, markdown(machine_line(machine), command, outcomes))
    if args.plot:
        _plot.plot(outcomes, args.plot, f"{command}\n{machine_line(machine)}")
        log(f"wrote {args.plot}")
    try:
        print(machine_line(machine))
        print(table(outcomes), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.check:
        missed = _check.misses(outcomes)
        log(f"check: {len(missed)} row(s) missed their target" + "".join(f"\n  {m}" for m in missed)
            if missed else "check: every row with a target met it")
    return _check.exit_code(outcomes, args.check)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
