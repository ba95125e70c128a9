"""Overload is bounded and visible: a flood from another process against a 1 ms handler."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio

from corps import Actor, ActorOptions, ActorSystem, Message, Request, handler
from corps.wire._embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
FLOOD_SECONDS = float(os.environ.get("CORPS_FLOOD_SECONDS", "3"))  # the target run: 10


class Done(Message):
    n: int


class Work(Request[Done]):
    n: int


class Worker(Actor, options=ActorOptions(mailbox_size=2_000, overload_wait=0.25)):
    @handler
    async def work(self, msg: Work) -> Done:
        await anyio.sleep(0.001)  # a 1 ms handler
        return Done(msg.n)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_flood_is_shed_with_bounded_memory_while_other_instances_answer(
        nats_server: EmbeddedServer, actor_system: ActorSystem) -> None:
    busy = await actor_system.spawn(Worker, "busy")
    calm = await actor_system.spawn(Worker, "calm")
    assert (await calm.ask(Work(0), timeout=2.0)).n == 0
    rss_before = _rss_mb()
    flooder = await anyio.open_process(
        [sys.executable, "-m", "tests.flooder", nats_server.url, busy.subject, str(FLOOD_SECONDS)], cwd=ROOT)
    assert flooder.stdout is not None
    lines = flooder.stdout
    calm_worst = 0.0
    rss_peak = rss_before
    try:
        assert (await lines.receive()).startswith(b"ready")
        end = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < end:
            t0 = time.monotonic()
            assert (await calm.ask(Work(1), timeout=5.0)).n == 1  # another instance keeps answering
            calm_worst = max(calm_worst, time.monotonic() - t0)
            rss_peak = max(rss_peak, _rss_mb())
        out = b""
        with anyio.fail_after(30):
            async for chunk in lines:
                out += chunk
        await flooder.wait()
    finally:
        if flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
    report = json.loads(out.decode().strip().splitlines()[-1])
    m = actor_system.metrics()
    print(f"flood {FLOOD_SECONDS}s: {report}; overloaded={m['Worker']['overloaded']} "
          f"processed={m['Worker']['processed']} rss {rss_before:.0f}->{rss_peak:.0f} MB, "
          f"calm worst {calm_worst * 1000:.0f} ms")
    assert rss_peak - rss_before < 100
    assert m["Worker"]["overloaded"] > 0
    assert report.get("reply_MailboxFull", 0) > 0
    assert report.get("code_503", 0) == report["reply_MailboxFull"]  # Nats-Service-Error-Code on each
    assert sum(v for k, v in report.items() if k.startswith("reply_")) == report["asks"]  # every request answered
    assert calm_worst < 3.0  # one connection: its messages queue behind the flood at the server
    assert (await busy.ask(Work(3), timeout=10.0)).n == 3  # the flooded instance drains and answers again
    assert actor_system._nc.stats["reconnects"] == 0
    assert actor_system._nc.read_loop_restarts == 0
    assert actor_system._nc.is_connected
