"""One scenario's world: node processes, the driver's connections, its orders, the saga log monitor."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from corps import ActorSystem
from corps.events._wire import dlq_stream_name
from corps.examples.shop.messages import OrderRequest
from corps.saga._log import saga_bucket
from tests.fault.driver import Monitor, Result, check_sagas, connect, make_orders, read_effects, start_orders
from tests.fault.procs import Nodes
from tests.fault.roles import events_config

SETTLE: Final = 45.0
"""Bound on the wait for every saga to end after the fault (T_quiesce ceiling: catches hangs)."""
LEASE: Final = 2.0
SCAN: Final = 0.2


class KnownWindow(AssertionError):
    """A violation inside a window the README documents; only this may make a test xfail."""


class SagaWorld:
    """Use as ``async with SagaWorld(...) as w``: every node's process group is killed at the end."""

    def __init__(self, urls: list[str], ns: str, workdir: Path, seed: int, n: int, *, replicas: int = 1,
                 saga_replicas: int = 0) -> None:
        self.urls = urls
        self.ns = ns
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.n = n
        self.replicas = replicas
        self.nodes = Nodes(",".join(urls), ns, workdir, replicas, saga_replicas)
        self.orders: dict[str, tuple[OrderRequest, str]] = {}
        self.acked: set[str] = set()
        self.seq_at_fault: int | None = None
        self._stack = contextlib.AsyncExitStack()
        self.nc: Client
        self.system: ActorSystem
        self.monitor: Monitor

    async def __aenter__(self) -> SagaWorld:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self._stack.enter_async_context(self.nodes)
        self.nc = await connect(self.urls)
        self._stack.push_async_callback(self._close_nc)
        self.system = await self._stack.enter_async_context(
            ActorSystem(self.urls, namespace=self.ns, events=events_config(self.replicas), name="fault-driver"))
        return self

    async def _close_nc(self) -> None:
        with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
            await self.nc.close()

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    # -- the orchestrated shop ------------------------------------------------------------

    @property
    def latency(self) -> str:
        """Per-effect latency that keeps a participant's queue near 0.8 s for n sagas (in flight
        long enough to be hit, well inside the steps' 2 s timeout)."""
        return f"{0.8 / self.n:.4f}"

    def participants(self, label: str = "parts", *args: str, env: dict[str, str] | None = None) -> Any:
        return self.nodes.node(label, "participants", "--latency", self.latency, *args, env=env)

    def coordinator(self, label: str, *, url: str | None = None) -> Any:
        return self.nodes.node(label, "coordinator", "--front", f"front-{label}", "--lease", str(LEASE),
                               "--scan", str(SCAN), url=url)

    async def start_orders(self, front_label: str, prefix: str = "o") -> None:
        self.orders = make_orders(self.rng, self.n, f"{prefix}{self.seed}")
        self.monitor = Monitor(self.nc, self.ns, self.orders)
        self.acked = await start_orders(self.system, f"front-{front_label}", [o for o, _ in self.orders.values()])

    def in_flight(self, share: float = 0.25) -> bool:
        """At least ``share`` of the sagas got past their first step, and none has ended yet... or
        all are running: the moment to strike."""
        progressed = sum(1 for i in self.monitor.info.values()
                         if i is not None and any(t.kind == "succeeded" for t in i.history))
        return progressed >= max(1, int(self.n * share))

    async def strike_when_in_flight(self, share: float = 0.25) -> None:
        assert await self.monitor.until(lambda: self.in_flight(share), 20), "sagas made no progress before the fault"

    async def settle(self, timeout: float = SETTLE) -> bool:
        return await self.monitor.until(self.monitor.terminal, timeout)

    async def log_seq(self) -> int | None:
        """The saga log stream's last sequence now: log revisions above it were written after."""
        js = self.nc.jetstream(timeout=1.0)
        for _ in range(5):
            with contextlib.suppress(nats.errors.Error, TimeoutError, nats.js.errors.Error):
                return (await js.stream_info(f"KV_{saga_bucket(self.ns)}")).state.last_seq
            await anyio.sleep(0.1)
        return None

    async def mark_fault(self) -> float:
        """Call just before injecting the fault: its time, and where the log stood."""
        self.seq_at_fault = await self.log_seq()
        return now()

    async def dlq(self) -> int:
        """Entries in the namespace's dead-letter stream (-1: it could not be read in 3 tries)."""
        js = self.nc.jetstream()
        for _ in range(3):
            with contextlib.suppress(nats.errors.Error, TimeoutError, nats.js.errors.Error):
                return (await js.stream_info(dlq_stream_name(self.ns))).state.messages or 0
        return -1

    async def verdict(self, scenario: str, fault_at: float, *, may_compensate: bool, window: bool = True) -> Result:
        """The scenario's figures from the final log and the effects files (recover_s from fault_at)."""
        result = Result(scenario, self.seed)
        effects = read_effects(sorted(self.workdir.glob("*.effects.jsonl")))
        check_sagas(result, self.orders, self.acked, self.monitor.info, effects, may_compensate=may_compensate,
                    window=window)
        result.problems += self.monitor.chain_problems()
        result.dlq = await self.dlq()
        if self.monitor.errors:
            result.extra["read_errors"] = sum(self.monitor.errors.values())
        end = self.monitor.all_terminal_at()
        result.recover_s = None if end is None else max(0.0, end - fault_at)
        if result.detect_s is None:  # the first log write after the fault (T_avail)
            seq = self.seq_at_fault
            result.detect_s = self.monitor.first(fault_at, lambda s: seq is None or s.rev > seq)
        return result


def now() -> float:
    return time.monotonic()


async def wait_for(check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str,
                   interval: float = 0.05) -> None:
    """Poll ``check`` until true; AssertionError naming ``what`` at the deadline (a bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await anyio.sleep(interval)


async def run(plan_seeds: tuple[int, ...], once: Callable[[int], Awaitable[Result]],
              report: Callable[[Result], None]) -> None:
    """Run a scenario once per seed, printing each line; then judge them all together (so a soak
    run reports every seed, and a known window does not hide a later undocumented violation)."""
    results = []
    for seed in plan_seeds:
        results.append(await once(seed))
        report(results[-1])
    merged = Result(results[0].scenario, results[0].seed)
    for r in results:
        merged.problems += [f"seed {r.seed}: {p}" for p in r.problems]
        merged.window += [f"seed {r.seed}: {p}" for p in r.window]
    judge(merged, "\n".join(r.line() for r in results))


def judge(result: Result, lines: str) -> None:
    """Fail on anything undocumented; then raise KnownWindow for a documented window's violations."""
    assert not result.problems, f"{lines}\n" + "\n".join(result.problems[:30])
    if result.window:
        raise KnownWindow(f"{lines}\n" + "\n".join(result.window))
