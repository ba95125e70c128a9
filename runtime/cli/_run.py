"""``corps run MODULE:APP``: host an application until SIGINT or SIGTERM, then drain.

Probes (``--http-port``): ``/healthz`` is 200 while the NATS connection is up; ``/readyz`` is 200
once every actor is spawned, every event consumer attached and the saga coordinator running, and
503 again while draining. ``--reload`` runs the application in a child process and restarts it
when a source file changes (``corps.cli._reload``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

import anyio

from corps.cli._common import add_connection_arguments
from corps.cli._connect import security_from
from corps.cli._http import Route, serve_http
from corps.core._ref import ActorRef
from corps.core._run import run
from corps.observe import Metrics, serve_metrics
from corps.system._app import App, Ready
from corps.system._system import ActorSystem
from corps.tools._loader import LoadError, load_app
from corps.wire._security import Security

log = logging.getLogger("corps.run")

RUN_EPILOG: Final = """\
examples:
  corps run corps.examples.shop.app:app --nats nats://127.0.0.1:4222
        the reference shop: its services, the Order consumers and the PlaceOrder coordinator
  corps run myservice.app:app --http-port 8080      probes on :8080/healthz and /readyz
  corps run myservice.app:app --reload              restart when a .py file of myservice changes
  corps run corps.examples.demo:Account --id alice --id bob          one class, these ids
  corps run corps.examples.demo:Pricing --id prices --instances 3    3 instances in one queue group

MODULE:APP names a corps.App (or a function returning one): the actors and their ids, service
groups, event consumers, sagas to coordinate and the ActorSystem settings, in one place. Several
processes may run the same App on one NATS. MODULE is imported as `python -m` would (the current
directory first). Each spawned actor prints its NATS subject, {namespace}.actor.{Class}.{id}:
`corps ask`, `corps tell` or clients in any language reach it there (README: Talking to actors).
Ctrl-C or SIGTERM drains: readyz turns 503, no new messages are taken, in-flight ones finish,
on_stop runs; then exit 0. Give containers a grace period above the drain timeout."""

PROBE_HOST: Final = "0.0.0.0"
HEALTHZ: Final = "/healthz"
READYZ: Final = "/readyz"


def add_run_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> argparse.ArgumentParser:
    """Register ``corps run``; returns its parser, to which other parts may add options."""
    p: argparse.ArgumentParser = sub.add_parser(
                       "run", help="host an application (or actors of one class) until Ctrl-C, then drain",
                       description="Host an application: spawn its actors, start its event consumers and "
                                   "saga coordinator, and serve until Ctrl-C or SIGTERM.",
                       epilog=RUN_EPILOG, formatter_class=formatter)
    p.add_argument("target", metavar="MODULE:APP", help="a corps.App (or factory), or MODULE:ActorClass with --id")
    p.add_argument("--id", dest="ids", metavar="ID", action="append", default=[],
                   help="with MODULE:ActorClass: an actor id to spawn (repeat for more)")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="with MODULE:ActorClass: instances per id, in one queue group (service classes only)")
    p.add_argument("--http-port", type=int, metavar="PORT",
                   help="serve /healthz and /readyz on this port (0: any free port; default: none)")
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus metrics at http://HOST:N/metrics (0: any free port; default: none)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address the metrics endpoint binds (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--reload", action="store_true",
                   help="development: restart when a source file of the application changes")
    add_connection_arguments(p)
    p.set_defaults(func=cmd_run, namespace=None)  # None: the App's namespace
    return p


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.instances < 1:
        parser.exit(2, f"corps run: error: --instances must be at least 1, not {args.instances}\n")
    if args.http_port is not None and not 0 <= args.http_port < 65536:
        parser.exit(2, f"corps run: error: --http-port must be 0..65535, not {args.http_port}\n")
    try:
        app = load_app(args.target, args.ids, args.instances)
    except LoadError as problem:
        if problem.detail:
            print(problem.detail, file=sys.stderr, end="")
        parser.exit(2, f"corps run: error: {problem}\n")
    if args.reload:
        from corps.cli._reload import supervise

        return supervise(args.target, app)
    namespace = args.namespace or app.namespace
    metrics = (args.metrics_host, args.metrics_port) if args.metrics_port is not None else None
    run(host, app, args.nats, namespace, security_from(args), args.http_port, metrics)
    return 0


def say(text: str) -> None:
    print(text, flush=True)  # per line: tools and tests wait for the "ready" line


class Probes:
    """What /healthz and /readyz answer, from the system's connection and the App's start."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.ready: Ready | None = None
        self.draining = False

    def connected(self) -> bool:
        nc = self.system._nc
        return nc is not None and nc.is_connected

    def healthz(self) -> tuple[int, Any]:
        up = self.connected()
        return (200 if up else 503), {"connected": up, "node": self.system.node}

    def readyz(self) -> tuple[int, Any]:
        ok = self.ready is not None and not self.draining and self.connected()
        body: dict[str, Any] = {"ready": ok, "connected": self.connected(), "draining": self.draining}
        if self.ready is not None:
            body |= {"spawned": self.ready.spawned, "consumers": list(self.ready.consumers),
                     "coordinator": self.ready.coordinator}
        return (200 if ok else 503), body

    def routes(self) -> dict[str, Route]:
        return {HEALTHZ: self.healthz, READYZ: self.readyz}


async def host(app: App, url: str | None, namespace: str, security: Security | None = None,
               http_port: int | None = None, metrics_at: tuple[str, int] | None = None) -> None:
    """Start ``app``, host it until SIGINT or SIGTERM, then drain.

    Raises:
        CorpsError: NATS unavailable, an invalid id, a failing ``on_start``, a provisioning conflict.
        OSError: the probe port cannot be bound.
    """
    # Installed first: a signal that arrives while spawning waits here and drains afterwards.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        metrics = Metrics() if metrics_at is not None else None
        system = app.system(url, namespace=namespace, security=security, name=app.name, observers=metrics)
        probes = Probes(system)
        # The probe server's task group encloses the system: the probes answer (readyz 503)
        # until the drain is over, not only until the signal.
        async with anyio.create_task_group() as tg:
            async with system, contextlib.AsyncExitStack() as stack:
                if system.embedded:
                    say(f"embedded nats-server at {system.url}  (other processes: export NATS_URL={system.url})")
                if http_port is not None:
                    port = await tg.start(serve_http, probes.routes(), PROBE_HOST, http_port)
                    say(f"probes on http://127.0.0.1:{port}{HEALTHZ} and {READYZ}")
                if metrics is not None and metrics_at is not None:
                    port = await stack.enter_async_context(serve_metrics(metrics.scrape, metrics_at[1], metrics_at[0]))
                    say(f"metrics at http://{metrics_at[0]}:{port}/metrics")

                def spawned(ref: ActorRef[Any], n: int, of: int) -> None:
                    which = f" #{n}/{of}" if of > 1 else ""
                    say(f"spawned {ref.actor_cls.actor_name} {ref.actor_id!r}{which} on {ref.subject}")

                probes.ready = await app.start(system, spawned)
                r = probes.ready
                extra = "".join([f", {len(r.consumers)} event consumer(s)" if r.consumers else "",
                                 ", coordinating " + ", ".join(s.saga_name for s in app.sagas) if app.sagas else ""])
                say(f"ready: {app.name}: {r.spawned} actor(s){extra} on {system.url}, namespace {namespace!r}; "
                    f"Ctrl-C to drain and stop")
                log.info("ready: %s on %s, namespace %r, node %s", app.name, system.url, namespace, system.node)
                async for signum in signals:
                    say(f"{signal.Signals(signum).name}: draining (finishing in-flight messages)")
                    log.info("%s: draining", signal.Signals(signum).name)
                    break
                probes.draining = True
            tg.cancel_scope.cancel()
        counts = system.metrics()
    processed = sum(v.get("processed", 0) for k, v in counts.items() if k != "system")
    say(f"drained: {processed} message(s) processed, {counts['system']['dead_letters']} dead letter(s); stopped")
