"""``NatsCluster``: a real 3-node JetStream cluster on loopback ports, from corps's deploy/ configs.

No pytest here: ``corps.testing`` imports it eagerly, and ``corps.testing.plugin`` wraps it in
the ``nats_cluster`` fixtures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import nats
import nats.errors

from corps.errors import NatsUnavailable
from corps.wire._embedded import EmbeddedServer

DEPLOY_DIR: Final = Path(__file__).resolve().parents[2] / "deploy"
"""corps's deploy/ folder in a source checkout: node-1.conf ... shared with docker-compose.yml."""

FORM_TIMEOUT: Final = 15.0
START_ATTEMPTS: Final = 3
_POLL: Final = 0.02


class ClusterNotFormed(RuntimeError):
    """A test cluster's nodes did not agree on routes and a JetStream meta leader in time."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class NatsCluster:
    """An n-node nats-server cluster with JetStream on loopback, from ``node-<i>.conf`` files.

    The node files are the ones docker-compose runs; every address, port, server_name and the
    store dir are passed as flags, which take precedence over the files. Each run has its own
    cluster name and server names, so a node left over from another run cannot join or answer.
    Kill and restart nodes through ``nodes[i].kill()`` / ``nodes[i].start()`` (same ports and store).
    """

    def __init__(self, size: int = 3, *, config_dir: str | Path | None = None, name: str | None = None) -> None:
        self.config_dir = Path(config_dir) if config_dir is not None else DEPLOY_DIR
        configs = [self.config_dir / f"node-{i}.conf" for i in range(1, size + 1)]
        missing = [str(c) for c in configs if not c.is_file()]
        if missing:
            raise FileNotFoundError(f"cluster node config(s) not found: {', '.join(missing)} "
                                    f"(they live in corps's deploy/ folder; pass config_dir=...)")
        self.name = name or f"corps-{uuid.uuid4().hex[:8]}"
        self._configs = configs
        self.nodes: list[EmbeddedServer] = []

    @property
    def urls(self) -> list[str]:
        """Client URLs of all nodes, in node order: ``ActorSystem(cluster.urls)``."""
        return [n.url for n in self.nodes]

    @property
    def server_names(self) -> list[str]:
        return [n.server_name for n in self.nodes]

    def node(self, server_name: str) -> EmbeddedServer:
        """The node with this server_name (e.g. the one a connection reports)."""
        for n in self.nodes:
            if n.server_name == server_name:
                return n
        raise KeyError(f"no node {server_name!r} in cluster {self.name} ({', '.join(self.server_names)})")

    def start(self, timeout: float = FORM_TIMEOUT) -> NatsCluster:
        """Start every node and return once the cluster has formed (see ``wait_formed``).

        Raises:
            NatsUnavailable: a node did not start.
            ClusterNotFormed: no agreed meta leader within ``timeout``.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            # Route ports must be known before any node starts (each node lists the others), so
            # they are picked up front; another process may take one in between: then start over.
            ports = free_ports(len(self._configs))
            routes = [f"nats://127.0.0.1:{p}" for p in ports]
            self.nodes = [
                EmbeddedServer(
                    config=str(config), name=f"{self.name}-n{i + 1}", cluster_name=self.name,
                    cluster_port=ports[i], routes=[r for j, r in enumerate(routes) if j != i], monitor_port=-1,
                )
                for i, config in enumerate(self._configs)
            ]
            try:
                for node in self.nodes:
                    node.start()
            except NatsUnavailable:
                self.stop()
                if attempt == START_ATTEMPTS:
                    raise
                continue
            except BaseException:
                self.stop()
                raise
            break
        try:
            self.wait_formed(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def monitor(self, node: EmbeddedServer, path: str) -> dict[str, Any]:
        """GET a monitoring endpoint of ``node`` (``/varz``, ``/jsz``, ``/routez``, ...) as JSON."""
        assert node.monitor_url is not None
        try:
            with urllib.request.urlopen(node.monitor_url + path, timeout=1.0) as resp:
                data: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:  # e.g. /healthz: 503 with a JSON body while forming
            data = json.load(exc)
        return data

    def meta_leader(self, nodes: list[EmbeddedServer] | None = None) -> str | None:
        """The JetStream meta leader's server_name if every given running node agrees on it, else None."""
        live = [n for n in (self.nodes if nodes is None else nodes) if n.running]
        try:
            leaders = {self.monitor(n, "/jsz").get("meta_cluster", {}).get("leader") or None for n in live}
        except OSError:
            return None
        leader = leaders.pop() if len(leaders) == 1 else None
        return leader if leader in self.server_names else None

    def wait_formed(self, timeout: float = FORM_TIMEOUT, nodes: list[EmbeddedServer] | None = None) -> str:
        """Wait until the running nodes (or ``nodes``) are this cluster's: each answers with its own
        server_name, has routes to every other running node, all agree on a meta leader, and a
        JetStream API request through each of them is answered.

        Returns:
            the meta leader's server_name.

        Raises:
            ClusterNotFormed: not within ``timeout`` (the message says what was missing).
        """
        deadline = time.monotonic() + timeout
        while True:
            problem = self._formation_problem(nodes)
            if not problem:
                leader = self.meta_leader(nodes)
                # Agreement on a leader is not enough: the leader's RAFT layer reports itself
                # before its JetStream layer serves the API, and a request in between is never
                # answered (seen: a stream lookup at start-up timing out after 5 s).
                problem = self._js_api_problem(nodes) if leader else "no agreed JetStream meta leader"
                if leader and not problem:
                    return leader
            if time.monotonic() > deadline:
                raise ClusterNotFormed(f"cluster {self.name} not formed within {timeout}s: {problem}")
            time.sleep(_POLL)

    def _formation_problem(self, nodes: list[EmbeddedServer] | None) -> str:
        live = [n for n in (self.nodes if nodes is None else nodes) if n.running]
        names = {n.server_name for n in live}
        for n in live:
            try:
                varz = self.monitor(n, "/varz")
                routez = self.monitor(n, "/routez")
            except OSError as exc:
                return f"{n.server_name}: monitoring not answering ({exc})"
            if varz.get("server_name") != n.server_name:
                return f"port {n.port} answers as {varz.get('server_name')!r}, expected {n.server_name!r}"
            if varz.get("cluster", {}).get("name") != self.name:
                return f"{n.server_name} is in cluster {varz.get('cluster', {}).get('name')!r}"
            peers = {r.get("remote_name") for r in routez.get("routes") or []}
            if not names - {n.server_name} <= peers:
                return f"{n.server_name} has routes to {sorted(p for p in peers if p)} only"
        return ""

    def _js_api_problem(self, nodes: list[EmbeddedServer] | None) -> str:
        """'' once a JetStream API request through each running node gets the meta leader's answer."""
        live = [n for n in (self.nodes if nodes is None else nodes) if n.running]

        async def probe() -> str:
            for n in live:
                try:
                    nc = await nats.connect(n.url, connect_timeout=1, allow_reconnect=False)
                except (OSError, TimeoutError, nats.errors.Error) as exc:
                    return f"{n.server_name}: cannot connect ({exc!r})"
                try:
                    if nc._server_info.get("server_name") != n.server_name:
                        return f"port {n.port} answers as {nc._server_info.get('server_name')!r}"
                    # A stream that does not exist: only the meta leader answers, "not found".
                    await nc.request("$JS.API.STREAM.INFO.corps_formation_probe", b"", timeout=0.5)
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                    return f"{n.server_name}: the JetStream API did not answer ({type(exc).__name__})"
                finally:
                    await nc.close()
            return ""

        # In a thread of its own: the caller may be a sync fixture of an async test's event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: asyncio.run(probe())).result()

    def stop(self, *, cleanup: bool = True) -> None:
        """Stop every node; ``cleanup`` (default) removes their stores and logs."""
        for node in self.nodes:
            node.stop(cleanup=cleanup)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
