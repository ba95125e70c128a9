"""Memory of idle actor instances: spawn N instances of a stateless class in one system.

Each sample runs in fresh child processes (``python -m corps.bench.memory``), so that freed memory of
earlier scenarios cannot hide growth: one child measures the RSS delta, another the bytes that
``tracemalloc`` sees allocated (tracemalloc's own bookkeeping would inflate the RSS figure).
The class host (its subscription, decoders) is created by a first spawn before measuring; what is
measured is the per-instance cost: the actor object, its cell, its id string, the routing entry.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import tracemalloc

from corps import Actor, ActorSystem, handler, run
from corps.bench._child import run_child
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._work import Ping
from corps.bench.registry import register

CHILD_TIMEOUT = 600.0


class Idle(Actor):
    """An actor with no state of its own beyond what the Actor base sets."""

    @handler
    async def ping(self, msg: Ping) -> None:
        pass


def rss_bytes() -> int:
    """Current resident set size (Linux), else the peak RSS (the best other platforms offer)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


async def measure(url: str, n: int, traced: bool) -> dict[str, float]:
    """Spawn ``n`` idle instances; bytes per instance by tracemalloc (``traced``) or RSS delta."""
    async with ActorSystem(url) as system:
        await system.spawn(Idle, "first")  # the class host: not a per-instance cost
        gc.collect()
        if traced:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(n):
            await system.spawn(Idle, f"idle-{i}")
        seconds = loop.time() - t0
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
        if traced:
            tracemalloc.stop()
    key = "traced_bytes_per_instance" if traced else "rss_bytes_per_instance"
    return {key: (after - before) / n, "spawn_rate": n / seconds}


async def _child(ctx: Context, traced: bool) -> dict[str, float]:
    args = ["--url", ctx.url, "--n", str(ctx.params["instances"]), "--loop", ctx.loop]
    return await run_child("corps.bench.memory", [*args, *(["--traced"] if traced else [])], CHILD_TIMEOUT)


async def corps_memory(ctx: Context) -> Sample:
    rss = await _child(ctx, traced=False)
    traced = await _child(ctx, traced=True)
    return {**rss, "traced_bytes_per_instance": traced["traced_bytes_per_instance"]}


@register("memory")
def memory(quick: bool) -> Scenario:
    return Scenario(
        "memory",
        "idle instances of a stateless actor class in one system",
        {"instances": 10_000 if quick else 100_000},
        (Variant("corps", corps_memory),),
        (Row("memory/instance (tracemalloc)", "traced_bytes_per_instance", "B", "corps",
             target=Target("<", 1024, on="value", unit="B")),
         Row("memory/instance (RSS delta)", "rss_bytes_per_instance", "B", "corps"),
         Row("spawn rate (no tracemalloc)", "spawn_rate", "spawn/s", "corps")),
        ("no raw counterpart; each sample runs in fresh child processes",),
    )


def main(argv: list[str] | None = None) -> None:
    """Child entry point: measure once and print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.memory")
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--traced", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(run(measure, a.url, a.n, a.traced, loop=a.loop)))


if __name__ == "__main__":
    main()
