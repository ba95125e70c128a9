"""Virtual actors: messages/s to many virtual entities with 1, 2 and 3 host processes, against
the same work to entities spawned by hand on one node; activation latency; recovery of a killed
host's ids.

Hosts run as child processes (``python -m corps.bench.virtual host --url URL --ns NS``) on the
benchmark's server; the sender is the benchmark's own system (it hosts nothing). Every host of a
class subscribes to the class's wildcard, so each message reaches every host and one handles it:
more hosts spread the handling, not the receiving (the table says what that costs on this
machine). The hand-spawned entities run in one child process too, so both sides pay the same
process boundary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from corps import Actor, ActorOptions, ActorSystem, VirtualConfig, handler, run
from corps.bench._child import REPO_ROOT
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench._stats import latency_summary
from corps.bench._work import Echo, Ping, Pong
from corps.bench.registry import register

READY_TIMEOUT = 60.0


class VEntity(Actor, options=ActorOptions(virtual=True, idle_after=600.0, name="BenchV")):
    def __init__(self) -> None:
        self.n = 0

    @handler
    async def ping(self, msg: Ping) -> None:
        self.n += 1

    @handler
    async def echo(self, msg: Echo) -> Pong:
        return Pong(self.n)


class SEntity(Actor, options=ActorOptions(name="BenchS")):
    def __init__(self) -> None:
        self.n = 0

    @handler
    async def ping(self, msg: Ping) -> None:
        self.n += 1

    @handler
    async def echo(self, msg: Echo) -> Pong:
        return Pong(self.n)


class Host:
    """One child process: ``host`` (a virtual host) or ``spawn N`` (N entities spawned by hand)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, ns: str, *extra: str, module: str = "corps.bench.virtual") -> Host:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--url", url, "--ns", ns, *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=env, start_new_session=True)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        if not line.startswith(b"ready"):
            proc.kill()
            raise RuntimeError(f"bench host did not start: {line!r}")
        return cls(proc)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()


@asynccontextmanager
async def hosts(url: str, ns: str, n: int, *extra: str) -> AsyncIterator[list[Host]]:
    started = await asyncio.gather(*(Host.start(url, ns, *extra) for _ in range(n)))
    try:
        yield list(started)
    finally:
        await asyncio.gather(*(h.stop() for h in started))


async def _asks(system: ActorSystem, cls: type[Actor], ids: list[str], timeout: float = 30.0) -> list[float]:
    """One ask per id, all at once (the barrier behind the tells); each one's latency."""
    lat: list[float] = []

    async def one(i: str) -> None:
        t0 = time.perf_counter()
        await system.ref(cls, i).ask(Echo(0), timeout=timeout)
        lat.append(time.perf_counter() - t0)

    async with anyio.create_task_group() as tg:
        for i in ids:
            tg.start_soon(one, i)
    return lat


async def _tell_rate(system: ActorSystem, cls: type[Actor], ids: list[str], per_id: int) -> Sample:
    """Tells, ``per_id`` to each id, then an ask to each as the barrier: msg/s and seconds."""
    t0 = time.perf_counter()
    for k in range(per_id):
        for i in ids:
            await system.ref(cls, i).tell(Ping(k))
    await _asks(system, cls, ids)  # per-sender order: every tell before it is handled
    seconds = time.perf_counter() - t0
    return {"rate": len(ids) * per_id / seconds, "seconds": seconds}


async def spawned(ctx: Context) -> Sample:
    ns = f"bv{uuid.uuid4().hex[:8]}"
    n = ctx.params["entities"]
    ids = [f"e{i}" for i in range(n)]
    async with hosts(ctx.url, ns, 1, "spawn", str(n)), ActorSystem(ctx.url, namespace=ns) as sender:
        await _asks(sender, SEntity, ids)
        return await _tell_rate(sender, SEntity, ids, ctx.params["per_id"])


async def _virtual(ctx: Context, n_hosts: int) -> Sample:
    ns = f"bv{uuid.uuid4().hex[:8]}"
    n = ctx.params["entities"]
    ids = [f"e{i}" for i in range(n)]
    async with hosts(ctx.url, ns, n_hosts, "host"), ActorSystem(ctx.url, namespace=ns) as sender:
        # Activation latency: one id at a time, first message (claim in KV, on_start, reply).
        fresh = [await _asks(sender, VEntity, [f"first{i}"]) for i in range(ctx.params["activations"])]
        act = latency_summary([x[0] for x in fresh])
        t0 = time.perf_counter()
        await _asks(sender, VEntity, ids)  # activates every id, all at once
        activate_all = time.perf_counter() - t0
        tells = await _tell_rate(sender, VEntity, ids, ctx.params["per_id"])
        return {**tells, "activation_p50_us": act["p50_us"], "activation_p99_us": act["p99_us"],
                "activations_per_s": n / activate_all}


async def virtual1(ctx: Context) -> Sample:
    return await _virtual(ctx, 1)


async def virtual2(ctx: Context) -> Sample:
    return await _virtual(ctx, 2)


async def virtual3(ctx: Context) -> Sample:
    """Three hosts; then one is SIGKILLed and the time until all its ids answer again is measured."""
    ns = f"bv{uuid.uuid4().hex[:8]}"
    n = ctx.params["entities"]
    ids = [f"e{i}" for i in range(n)]
    async with hosts(ctx.url, ns, 3, "host") as hs, ActorSystem(ctx.url, namespace=ns) as sender:
        await _asks(sender, VEntity, ids)
        tells = await _tell_rate(sender, VEntity, ids, ctx.params["per_id"])
        hs[0].kill()
        t0 = time.perf_counter()
        pending = list(ids)
        while pending:  # rounds of asks with a short timeout until every id answers
            failed: list[str] = []
            async with anyio.create_task_group() as tg:
                for i in pending:
                    tg.start_soon(_ask_or_note, sender, i, failed)
            pending = failed
        return {**tells, "recovery_s": time.perf_counter() - t0}


async def _ask_or_note(system: ActorSystem, actor_id: str, failed: list[str]) -> None:
    try:
        await system.ref(VEntity, actor_id).ask(Echo(0), timeout=1.0)
    except Exception:  # noqa: BLE001 -- any failure: asked again next round
        failed.append(actor_id)


@register("virtual")
def virtual(quick: bool) -> Scenario:
    return Scenario(
        "virtual",
        "virtual entities: tells to N ids through 1-3 host processes vs hand-spawned on one; activation; recovery",
        {"entities": 1_000 if quick else 10_000, "per_id": 3 if quick else 10, "activations": 50 if quick else 300},
        (Variant("spawned", spawned), Variant("virtual-1", virtual1), Variant("virtual-2", virtual2),
         Variant("virtual-3", virtual3)),
        (Row("tells to N entities, hand-spawned, 1 process", "rate", "msg/s", "spawned"),
         Row("tells to N virtual entities, 1 host", "rate", "msg/s", "virtual-1", raw="spawned"),
         Row("tells to N virtual entities, 2 hosts", "rate", "msg/s", "virtual-2", raw="spawned"),
         Row("tells to N virtual entities, 3 hosts", "rate", "msg/s", "virtual-3", raw="spawned"),
         Row("activation latency p50 (first ask)", "activation_p50_us", "µs", "virtual-1"),
         Row("activation latency p99 (first ask)", "activation_p99_us", "µs", "virtual-1"),
         Row("activations/s (N ids at once)", "activations_per_s", "act/s", "virtual-1"),
         Row("recovery of a SIGKILLed host's ids (3 hosts)", "recovery_s", "s", "virtual-3")),
        ("ratios are against the hand-spawned entities ('raw' column = spawned); every host hears every "
         "message of the class, so more hosts spread the handling but not the receiving; recovery is "
         "bounded by VirtualConfig.member_ttl (3 s)",),
    )


async def _orphaned(parent: int) -> None:
    """Return once the parent is gone (the benchmark was killed): no host outlives it."""
    while os.getppid() == parent:  # noqa: ASYNC110 -- nothing signals a parent's death: polled
        await anyio.sleep(1.0)


async def serve(url: str, ns: str, role: str, n: int) -> None:
    parent = os.getppid()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(url, namespace=ns, virtual=VirtualConfig()) as system:
            if role == "host":
                await system.host(VEntity)
            else:
                for i in range(n):
                    await system.spawn(SEntity, f"e{i}")
            print("ready", flush=True)
            await until_stopped(signals, parent)


async def until_stopped(signals: AsyncIterator[int], parent: int) -> None:
    """Return on SIGTERM/SIGINT, or once the parent is gone."""
    async with anyio.create_task_group() as tg:
        async def until_signal() -> None:
            async for _ in signals:
                break
            tg.cancel_scope.cancel()

        async def until_orphaned() -> None:
            await _orphaned(parent)
            tg.cancel_scope.cancel()
        tg.start_soon(until_signal)
        tg.start_soon(until_orphaned)


def main(argv: list[str] | None = None) -> None:
    """Child entry point: host the virtual class, or spawn N entities, until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.virtual")
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("role", choices=("host", "spawn"))
    p.add_argument("n", type=int, nargs="?", default=0)
    a = p.parse_args(argv)
    run(serve, a.url, a.ns, a.role, a.n)


if __name__ == "__main__":
    main()
