"""The ``corps`` command line, run as real processes against real nats-servers.

Waits are bounded and driven by what the process prints (its "ready" line, its exit), never by sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import anyio
import nats
import pytest
from anyio.abc import Process

from corps import ActorSystem, EmbeddedServer
from corps.examples.demo import STEPS, Account, Balance, Deposit, GetBalance, PriceOf, Pricing, Quote

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sysconfig.get_path("scripts")) / "corps"
CORPS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "corps.cli._main"]
ENV = {k: v for k, v in os.environ.items() if k != "NATS_URL"}  # no NATS_URL: embedded unless --nats
URL = re.compile(r"nats://127\.0\.0\.1:\d+")


def corps(*args: str, cwd: Path = REPO, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORPS, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def stderr_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    """A file for a corps process's stderr (a pipe nobody reads could fill up and block it)."""
    with open(tmp_path / "stderr.log", "w+b") as log:
        yield log


class Running:
    """A ``corps`` process whose stdout is read as it comes."""

    def __init__(self, process: Process, stderr: IO[bytes]) -> None:
        self.process = process
        self.stderr = stderr
        self.out = b""

    @property
    def text(self) -> str:
        return self.out.decode()

    async def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        """Read stdout until ``needle`` appears; return everything read so far."""
        assert self.process.stdout is not None
        with anyio.fail_after(timeout):
            while needle.encode() not in self.out:
                try:
                    self.out += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    self.stderr.seek(0)
                    raise AssertionError(f"corps exited before printing {needle!r}:\n{self.text}\n"
                                         f"stderr:\n{self.stderr.read().decode()}") from None
        return self.text

    async def finish(self, timeout: float = 20.0) -> int:
        """Read stdout to its end and return the exit code."""
        assert self.process.stdout is not None
        with anyio.fail_after(timeout):
            async for chunk in self.process.stdout:
                self.out += chunk
            return await self.process.wait()


@contextlib.asynccontextmanager
async def corps_process(*args: str, stderr: IO[bytes], cwd: Path = REPO) -> AsyncIterator[Running]:
    async with await anyio.open_process([*CORPS, *args], cwd=cwd, env=ENV, stderr=stderr) as process:
        try:
            yield Running(process, stderr)
        finally:
            if process.returncode is None:  # the test failed midway: leave no process behind
                process.kill()
                await process.wait()


# -- help ---------------------------------------------------------------------------------


def test_help_lists_every_subcommand_with_examples() -> None:
    result = corps("--help")
    assert result.returncode == 0
    for command in ("demo", "server", "run", "bench"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), command
    assert "examples:" in result.stdout
    assert "NATS_URL" in result.stdout


@pytest.mark.parametrize("command", ["demo", "server", "run"])
def test_each_subcommand_has_help_with_examples(command: str) -> None:
    result = corps(command, "--help")
    assert result.returncode == 0
    assert f"corps {command}" in result.stdout
    assert "examples:" in result.stdout


def test_bench_passes_its_arguments_to_the_benchmark_suite() -> None:
    result = corps("bench", "--help")
    assert result.returncode == 0
    assert "python -m corps.bench" in result.stdout  # the suite's own parser answered


# -- demo ---------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_demo_runs_every_step_on_an_embedded_server_and_exits_0() -> None:
    result = corps("demo", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "embedded nats-server" in out
    for number, (title, _) in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] {title}" in out
    assert "handled after the three tells" in out
    assert "RemoteError  type=InsufficientFunds" in out
    assert re.search(r"raised\s+(NoResponders|AskTimeout)", out)
    assert "corps.Error  kind=InvalidMessage" in out
    assert re.search(r"#1 took \d+, #2 took \d+", out)
    assert re.search(r"count\s+2 dead letters", out)
    assert "done:" in out
    assert "Traceback" not in result.stderr


# -- run ----------------------------------------------------------------------------------


async def test_run_hosts_an_actor_another_system_can_ask_then_drains_on_sigint(
    actor_system: ActorSystem, nats_server: EmbeddedServer, corps_namespace: str, stderr_log: IO[bytes]
) -> None:
    args = ["corps.examples.demo:Account", "--id", "a1", "--nats", nats_server.url, "--namespace", corps_namespace]
    async with corps_process("run", *args, stderr=stderr_log) as running:
        out = await running.wait_for("ready")
        assert f"spawned Account 'a1' on {corps_namespace}.actor.Account.a1" in out

        ref = actor_system.ref(Account, "a1")
        await ref.tell(Deposit(7))
        balance = await ref.ask(GetBalance(), timeout=5.0)  # the ask also shows the tell was handled
        assert balance == Balance("a1", 7)

        running.process.send_signal(signal.SIGINT)
        code = await running.finish()
    assert code == 0
    assert "SIGINT: draining" in running.text
    assert "drained: 2 message(s) processed" in running.text


async def test_run_without_nats_url_starts_an_embedded_server_and_hosts_service_instances(
    corps_namespace: str, stderr_log: IO[bytes]
) -> None:
    args = ["corps.examples.demo:Pricing", "--id", "prices", "--instances", "2", "--namespace", corps_namespace]
    async with corps_process("run", *args, stderr=stderr_log) as running:
        out = await running.wait_for("ready")
        assert out.count("spawned Pricing 'prices'") == 2
        match = URL.search(out)  # the embedded server's URL, printed for other processes
        assert match is not None, out

        async with ActorSystem(match.group(), namespace=corps_namespace) as system:
            quote = await system.ref(Pricing, "prices").ask(PriceOf("pear"), timeout=5.0)
        assert isinstance(quote, Quote)
        assert quote.cents == 65

        running.process.send_signal(signal.SIGTERM)
        code = await running.finish()
    assert code == 0
    assert "SIGTERM: draining" in running.text


def test_run_imports_from_the_current_directory_and_refuses_a_non_actor(tmp_path: Path) -> None:
    (tmp_path / "notactors.py").write_text("class Plain:\n    pass\n")
    result = corps("run", "notactors:Plain", "--id", "a1", cwd=tmp_path)
    assert result.returncode == 2
    assert "notactors:Plain is the class Plain, not an Actor subclass" in result.stderr


def test_run_refuses_a_missing_module() -> None:
    result = corps("run", "no_such_module_here:Thing", "--id", "a1")
    assert result.returncode == 2
    assert "no module named 'no_such_module_here'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_instances_for_an_entity_class() -> None:
    result = corps("run", "corps.examples.demo:Account", "--id", "a1", "--instances", "2")
    assert result.returncode == 2
    assert "needs a service class" in result.stderr
    assert "ActorOptions(service=True)" in result.stderr


def test_run_refuses_an_invalid_id_before_connecting_with_exit_2(nats_server: EmbeddedServer,
                                                                corps_namespace: str) -> None:
    args = ["corps.examples.demo:Account", "--id", "not.one.token",
            "--nats", nats_server.url, "--namespace", corps_namespace]
    result = corps("run", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "corps run: error: Invalid application Account for 1 reason: Account: invalid actor id 'not.one.token': "
        "actor id must not contain '.' ('.', '*', '>', whitespace)"
    ]


def test_run_reports_an_unreachable_server_in_one_line_with_exit_4() -> None:
    result = corps("run", "corps.examples.demo:Account", "--id", "a1", "--nats", "nats://127.0.0.1:1")
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1].startswith("corps: error: NATS unavailable at 'nats://127.0.0.1:1'")
    assert "Traceback" not in result.stderr


# -- server -------------------------------------------------------------------------------


async def test_server_prints_a_url_clients_can_connect_to_and_stops_on_sigterm(stderr_log: IO[bytes]) -> None:
    async with corps_process("server", "--port", "-1", stderr=stderr_log) as running:
        out = await running.wait_for("stops it.")  # the last line printed before it waits
        match = URL.search(out)
        assert match is not None, out
        assert f"export NATS_URL={match.group()}\n" in out

        nc = await nats.connect(match.group(), connect_timeout=5, max_reconnect_attempts=0)
        try:
            assert nc.is_connected
            await nc.flush(timeout=5)
        finally:
            await nc.close()

        running.process.send_signal(signal.SIGTERM)
        code = await running.finish()
    assert code == 0
    assert running.text.rstrip().endswith("stopped")



async def test_run_serves_prometheus_metrics_of_what_it_hosts(
    actor_system: ActorSystem, nats_server: EmbeddedServer, corps_namespace: str, stderr_log: IO[bytes]
) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    args = ["corps.examples.demo:Account", "--id", "a1", "--nats", nats_server.url, "--namespace", corps_namespace,
            "--metrics-port", "0"]
    async with corps_process("run", *args, stderr=stderr_log) as running:
        out = await running.wait_for("ready")
        url = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", out)
        assert url is not None, out
        await actor_system.ref(Account, "a1").ask(GetBalance(), timeout=5.0)

        def get() -> str:
            with urllib.request.urlopen(url[1], timeout=5) as response:
                return str(response.read().decode())

        text = await anyio.to_thread.run_sync(get)
        running.process.send_signal(signal.SIGINT)
        assert await running.finish() == 0
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("corps_messages_handled_total", (("class", "Account"), ("type", "GetBalance")))] == 1
