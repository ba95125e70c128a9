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
import time
import uuid

import anyio

from corps import Actor, ActorOptions, ActorSystem, handler, run
from corps.bench._hosts import hosts, serve
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench._stats import latency_summary
from corps.bench._work import Echo, Ping, Pong
from corps.bench.registry import register

MODULE = "corps.bench.virtual"


class Counting(Actor):
    """What both sides' entities do: count the tells, answer an ask with the count."""

    def __init__(self) -> None:
        self.n = 0

    @handler
    async def ping(self, msg: Ping) -> None:
        self.n += 1

    @handler
    async def echo(self, msg: Echo) -> Pong:
        return Pong(self.n)


class VEntity(Counting, options=ActorOptions(virtual=True, idle_after=600.0, name="BenchV")):
    pass


class SEntity(Counting, options=ActorOptions(name="BenchS")):
    pass


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
    async with hosts(ctx.url, ns, 1, "spawn", str(n), module=MODULE), ActorSystem(ctx.url, namespace=ns) as sender:
        await _asks(sender, SEntity, ids)
        return await _tell_rate(sender, SEntity, ids, ctx.params["per_id"])


async def _virtual(ctx: Context, n_hosts: int) -> Sample:
    ns = f"bv{uuid.uuid4().hex[:8]}"
    n = ctx.params["entities"]
    ids = [f"e{i}" for i in range(n)]
    async with hosts(ctx.url, ns, n_hosts, "host", module=MODULE), ActorSystem(ctx.url, namespace=ns) as sender:
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
    async with hosts(ctx.url, ns, 3, "host", module=MODULE) as hs, ActorSystem(ctx.url, namespace=ns) as sender:
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


async def _setup(system: ActorSystem, role: str, n: int) -> None:
    if role == "host":
        await system.host(VEntity)
    else:
        for i in range(n):
            await system.spawn(SEntity, f"e{i}")


def main(argv: list[str] | None = None) -> None:
    """Child entry point: host the virtual class, or spawn N entities, until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.virtual")
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("role", choices=("host", "spawn"))
    p.add_argument("n", type=int, nargs="?", default=0)
    a = p.parse_args(argv)
    run(serve, a.url, a.ns, lambda system: _setup(system, a.role, a.n))


if __name__ == "__main__":
    main()
