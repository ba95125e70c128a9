"""Keyed events of a virtual class, partitioned over 1 and 2 host processes, against the same
keyed handler on a plain entity class with its durable consumer in one process.

Each host is a child process (``python -m corps.bench._events_host --url URL --ns NS host``);
the benchmark's own system publishes a backlog first (pipelined: keys concurrently, each key's
events in order), then starts the hosts and asks every key how many events it handled until
all are in. The rate is the backlog over the time from the hosts being ready to the last event
handled: it includes claiming the partitions, activating every key and the count polling.
Every host of a partitioned class reads every event of the class and handles its own
partitions' share: more hosts spread the handling, not the reading.
"""

from __future__ import annotations

import argparse
import time
import uuid

import anyio
import msgspec

from corps import Actor, ActorOptions, ActorSystem, Message, Request, VirtualConfig, handler, on_event, run
from corps.bench._hosts import hosts, serve
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench.registry import register
from corps.virtual._partition_record import read_partition_record

MODULE = "corps.bench._events_host"
"""The hosts' module (the classes under their importable names, not as copies in ``__main__``)."""


class Booked(Message):
    key: str
    n: int


class Count(Message):
    n: int


class HowMany(Request[Count]):
    pass


class Tally(msgspec.Struct):
    n: int = 0


class PEntity(Actor, options=ActorOptions(virtual=True, idle_after=600.0, name="BenchPE", durable="deactivate")):
    """Its count is durable state (saved when the id moves, loaded on activation): the ids that move
    while the hosts start keep what they counted."""

    state: Tally = Tally()

    @on_event(Booked, key="key")
    async def booked(self, event: Booked) -> None:
        self.state.n += 1

    @handler
    async def how_many(self, msg: HowMany) -> Count:
        return Count(self.state.n)


class DEntity(Actor, options=ActorOptions(name="BenchDE")):
    def __init__(self) -> None:
        self.n = 0

    @on_event(Booked, key="key")
    async def booked(self, event: Booked) -> None:
        self.n += 1

    @handler
    async def how_many(self, msg: HowMany) -> Count:
        return Count(self.n)


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


async def _settled(sender: ActorSystem, n_hosts: int, partitions: int) -> bool:
    """Every partition record claimed, by ``n_hosts`` distinct nodes (read from KV)."""
    try:
        kv = await sender._nc.jetstream().key_value(f"{sender.namespace}_owners")
        nodes = []
        for p in range(partitions):
            record = read_partition_record((await kv.get(f"BenchPE.partition.{p}")).value or b"")
            nodes.append("" if isinstance(record, str) else record.node.partition(":")[0])
    except Exception:  # noqa: BLE001 -- not there yet: asked again
        return False
    return all(nodes) and len(set(nodes)) == n_hosts


async def _run(ctx: Context, role: str, n_hosts: int) -> Sample:
    """Start the hosts, let the partitions settle and every key activate, then time publishing
    the events and handling them all."""
    ns = f"bve{uuid.uuid4().hex[:8]}"
    keys = [f"k{i}" for i in range(ctx.params["keys"])]
    per_key = ctx.params["per_key"]
    total = len(keys) * per_key
    cls: type[Actor] = PEntity if role == "host" else DEntity
    async with ActorSystem(ctx.url, namespace=ns) as sender, hosts(ctx.url, ns, n_hosts, role, module=MODULE):
        delay = 0.02
        while role == "host" and not await _settled(sender, n_hosts, VirtualConfig().partitions):
            await anyio.sleep(delay)  # polled: the records say when the hosts agree
            delay = min(delay * 2, 0.2)
        await _counted(sender, cls, keys)  # activates the keys of the partitioned class
        t0 = time.perf_counter()

        async def publish(k: str) -> None:
            for n in range(per_key):
                await sender.publish(Booked(k, n))

        async with anyio.create_task_group() as tg:
            for k in keys:
                tg.start_soon(publish, k)
        published = time.perf_counter() - t0
        delay = 0.02
        while await _counted(sender, cls, keys) < total:
            await anyio.sleep(delay)  # polling the handled count: nothing signals "all handled"
            delay = min(delay * 2, 0.2)
        seconds = time.perf_counter() - t0
    return {"rate": total / seconds, "seconds": seconds, "publish_rate": total / published}


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
        ("rate = events / (first publish -> last handled), with the partitions settled and the keys active; "
         "every host reads every event of a partitioned class and handles its partitions' share",),
    )


async def _setup(system: ActorSystem, role: str) -> None:
    if role == "host":
        await system.host(PEntity)
    else:
        await system.serve_events(DEntity)


def main(argv: list[str] | None = None) -> None:
    """Child entry point: host the partitioned class, or serve the durable one, until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.virtual_events")
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("role", choices=("host", "durable"))
    a = p.parse_args(argv)
    run(serve, a.url, a.ns, lambda system: _setup(system, a.role))
