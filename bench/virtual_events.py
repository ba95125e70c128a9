"""Keyed events of a virtual class, partitioned over 1 and 2 host processes, against the same
keyed handler on a plain entity class with its durable consumer in one process.

Each host is a child process (``python -m corps.bench._events_host --url URL --ns NS host``);
the benchmark's own system publishes (pipelined: keys concurrently, each key's events in order)
and then asks every key how many events it handled until all are in. The rate is events over
the time from the first publish to the last event handled, so publishing is part of it on both
sides. Every host of a partitioned class reads every event of the class and handles its own
partitions' share: more hosts spread the handling, not the reading.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid

import anyio

from corps import Actor, ActorOptions, ActorSystem, Message, Request, VirtualConfig, handler, on_event, run
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench.registry import register
from corps.bench.virtual import Host, until_stopped


class Booked(Message):
    key: str
    n: int


class Count(Message):
    n: int


class HowMany(Request[Count]):
    pass


class _Counts(Actor):
    def __init__(self) -> None:
        self.n = 0

    @handler
    async def how_many(self, msg: HowMany) -> Count:
        return Count(self.n)


class PEntity(_Counts, options=ActorOptions(virtual=True, idle_after=600.0, name="BenchPE")):
    @on_event(Booked, key="key")
    async def booked(self, event: Booked) -> None:
        self.n += 1


class DEntity(_Counts, options=ActorOptions(name="BenchDE")):
    @on_event(Booked, key="key")
    async def booked(self, event: Booked) -> None:
        self.n += 1


async def _counted(system: ActorSystem, cls: type[Actor], keys: list[str]) -> int:
    total = 0

    async def one(k: str) -> None:
        nonlocal total
        try:
            n = (await system.ref(cls, k).ask(HowMany(), timeout=10.0)).n
        except Exception:  # noqa: BLE001 -- not there yet (an activation, a move): counted as 0
            return
        total += n  # after the await: `total += await ...` would read total before it (lost updates)

    async with anyio.create_task_group() as tg:
        for k in keys:
            tg.start_soon(one, k)
    return total


async def _run(ctx: Context, role: str, n_hosts: int) -> Sample:
    ns = f"bve{uuid.uuid4().hex[:8]}"
    keys = [f"k{i}" for i in range(ctx.params["keys"])]
    per_key = ctx.params["per_key"]
    cls: type[Actor] = PEntity if role == "host" else DEntity
    async with ActorSystem(ctx.url, namespace=ns) as sender:
        started = [await _start(ctx.url, ns, role) for _ in range(n_hosts)]
        try:
            await _counted(sender, cls, keys)  # activates every key where it is placed
            t0 = time.perf_counter()

            async def publish(k: str) -> None:
                for n in range(per_key):
                    await sender.publish(Booked(k, n))

            async with anyio.create_task_group() as tg:
                for k in keys:
                    tg.start_soon(publish, k)
            published = time.perf_counter() - t0
            total = len(keys) * per_key
            delay = 0.02
            while await _counted(sender, cls, keys) < total:
                await anyio.sleep(delay)  # polling the handled count: nothing signals "all handled"
                delay = min(delay * 2, 0.5)
            seconds = time.perf_counter() - t0
        finally:
            for h in started:
                await h.stop()
    return {"rate": total / seconds, "seconds": seconds, "publish_rate": total / published}


async def _start(url: str, ns: str, role: str) -> Host:
    return await Host.start(url, ns, role, module="corps.bench._events_host")


async def partitioned1(ctx: Context) -> Sample:
    return await _run(ctx, "host", 1)


async def partitioned2(ctx: Context) -> Sample:
    return await _run(ctx, "host", 2)


async def durable(ctx: Context) -> Sample:
    return await _run(ctx, "durable", 1)


@register("virtual-events")
def virtual_events(quick: bool) -> Scenario:
    return Scenario(
        "virtual-events",
        "keyed events: a virtual class's partitions over 1-2 host processes vs a durable consumer in one",
        {"keys": 200 if quick else 1_000, "per_key": 10 if quick else 20},
        (Variant("durable", durable), Variant("partitioned-1", partitioned1), Variant("partitioned-2", partitioned2)),
        (Row("keyed events, durable consumer, 1 process", "rate", "ev/s", "durable"),
         Row("keyed events, partitioned, 1 host", "rate", "ev/s", "partitioned-1", raw="durable"),
         Row("keyed events, partitioned, 2 hosts", "rate", "ev/s", "partitioned-2", raw="durable"),
         Row("publish rate (pipelined, keys concurrently)", "publish_rate", "ev/s", "partitioned-1")),
        ("rate = events / (first publish -> last handled), publishing included on both sides; every host "
         "reads every event of a partitioned class and handles its partitions' share",),
    )


async def serve(url: str, ns: str, role: str) -> None:
    parent = os.getppid()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with ActorSystem(url, namespace=ns, virtual=VirtualConfig()) as system:
            if role == "host":
                await system.host(PEntity)
            else:
                await system.serve_events(DEntity)
            print("ready", flush=True)
            await until_stopped(signals, parent)


def main(argv: list[str] | None = None) -> None:
    """Child entry point: host the partitioned class, or serve the durable one, until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.virtual_events")
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("role", choices=("host", "durable"))
    a = p.parse_args(argv)
    run(serve, a.url, a.ns, a.role)
