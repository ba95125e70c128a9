"""Node processes seen from the test: start (readiness by the node's ``ready`` line), signal, clean up.

Each node runs in a session (and process group) of its own, so the test can SIGKILL the whole
group, and a terminal's Ctrl-C reaches only the test. ``Nodes`` keeps every process it started
and kills the groups of those still alive when the test ends, in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

REPO: Final = Path(__file__).resolve().parents[2]
READY_TIMEOUT: Final = 30.0
"""Bound on a node's start-up (imports, connect, spawn): generous for a loaded 2-core box."""


class NodeFailed(RuntimeError):
    """A node did not come up (its stderr tail is in the message)."""


class Node:
    """One ``python -m tests.fault.node`` process (``module``: another node script, same protocol)."""

    module = "tests.fault.node"

    def __init__(self, label: str, role: str, args: list[str], logdir: Path, env: dict[str, str] | None) -> None:
        self.label = label
        self.role = role
        self.args = args
        self.env = env or {}
        self.log = logdir / f"{label}.log"
        self.proc: anyio.abc.Process | None = None
        self.node_id = ""
        self.pid = 0
        self.generation = 0

    async def start(self, *, extra_env: dict[str, str] | None = None) -> Node:
        """Start (again): returns once the node printed ``ready``."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        env.pop("NATS_URL", None)
        self.generation += 1
        with self._open_log() as log:
            self.proc = await anyio.open_process(
                [sys.executable, "-m", self.module, self.role, *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=str(REPO), env=env,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        lines = BufferedByteReceiveStream(self.proc.stdout)
        with anyio.move_on_after(READY_TIMEOUT):
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead):
                while True:
                    line = (await lines.receive_until(b"\n", 4096)).decode()
                    if line.startswith("ready "):
                        self.node_id = dict(kv.split("=", 1) for kv in line.split()[1:])["node"]
                        return self
        self.kill()
        raise NodeFailed(f"{self.label} did not print 'ready' within {READY_TIMEOUT}s: {self.tail()}")

    def _open_log(self) -> BinaryIO:
        log = open(self.log, "ab")  # noqa: SIM115 -- closed by the caller's with
        log.write(f"--- start #{self.generation} at {time.time():.3f}\n".encode())
        log.flush()
        return log

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def count_in_log(self, text: str) -> int:
        try:
            return self.log.read_text(errors="replace").count(text)
        except OSError:
            return 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the node process (SIGKILL, SIGSTOP, SIGCONT, SIGTERM)."""
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the node's whole process group (a stopped process dies too).

        Only while the process is not reaped: after that its pid (the group id) may be reused.
        """
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        with anyio.fail_after(timeout):
            return await self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (drain), then SIGKILL of the group if it does not exit in time."""
        if self.proc is None:
            return
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)  # a stopped node cannot drain
                os.kill(self.pid, signal.SIGTERM)
            with anyio.move_on_after(timeout):
                await self.proc.wait()
        self.kill()
        await self.close()

    async def close(self) -> None:
        if self.proc is not None:
            with anyio.move_on_after(5), contextlib.suppress(Exception):
                await self.proc.wait()
            with contextlib.suppress(Exception):
                await self.proc.aclose()


class Nodes:
    """The node processes of one test; ``async with Nodes(...)`` kills every group at the end."""

    def __init__(self, url: str, ns: str, workdir: Path, replicas: int = 1, saga_replicas: int = 0) -> None:
        self.url = url
        self.ns = ns
        self.workdir = workdir
        self.replicas = replicas
        self.saga_replicas = saga_replicas
        self.nodes: list[Node] = []

    def effects(self, label: str) -> Path:
        return self.workdir / f"{label}.effects.jsonl"

    def node(self, label: str, role: str, *args: str, env: dict[str, str] | None = None,
             url: str | None = None) -> Node:
        argv = ["--url", url or self.url, "--ns", self.ns, "--replicas", str(self.replicas),
                "--saga-replicas", str(self.saga_replicas), *args]
        if role in ("participants", "consumer", "ledger") and "--effects" not in args:
            argv += ["--effects", str(self.effects(label))]
        n = Node(label, role, argv, self.workdir, env)
        self.nodes.append(n)
        return n

    async def start(self, *nodes: Node) -> None:
        """Start several nodes at once (they import corps in parallel)."""
        async with anyio.create_task_group() as tg:
            for n in nodes:
                tg.start_soon(n.start)

    async def __aenter__(self) -> Nodes:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for n in self.nodes:  # no orphan: every group is killed, whatever happened
            n.kill()
        with anyio.CancelScope(shield=True):
            for n in self.nodes:
                await n.close()
