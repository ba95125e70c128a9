"""uvloop vs asyncio: the tell and ask-latency work of bench/core.py under each event loop.

Each sample runs in a fresh child process (``python -m corps.bench.loops``) on the requested loop, for
corps and for raw nats-py, so the loops never share a process. A child asked for uvloop where
uvloop is not installed fails (reported), rather than silently measuring asyncio twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable

from corps import run
from corps.bench._child import run_child
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench.registry import register

CHILD_TIMEOUT = 300.0
LOOP_NAMES = ("uvloop", "asyncio")
SIDES = ("corps", "raw")


def _variant(side: str, loop: str) -> Variant:
    async def go(ctx: Context) -> Sample:
        args = ["--url", ctx.url, "--side", side, "--loop", loop,
                *(f"--{k}={v}" for k, v in ctx.params.items())]
        return await run_child("corps.bench.loops", args, CHILD_TIMEOUT)

    return Variant(f"{side}-{loop}", go)


@register("loops")
def loops(quick: bool) -> Scenario:
    rows: list[Row] = []
    for label, metric, unit in (("tell", "tell_rate", "msg/s"), ("ask p50", "ask_p50_us", "µs")):
        rows += [Row(f"{label} on uvloop", metric, unit, "corps-uvloop", "raw-uvloop"),
                 Row(f"{label} on asyncio", metric, unit, "corps-asyncio", "raw-asyncio"),
                 Row(f"{label} corps: uvloop vs asyncio", metric, unit, "corps-uvloop", "corps-asyncio")]
    return Scenario(
        "loops",
        "uvloop vs asyncio: tell (coalescing) and sequential ask latency, each in a fresh child process",
        {"messages": 20_000 if quick else 100_000, "warmup": 1_000 if quick else 5_000,
         "asks": 300 if quick else 3_000},
        tuple(_variant(side, loop) for loop in LOOP_NAMES for side in SIDES),
        tuple(rows),
        ("'X corps: uvloop vs asyncio' rows: the corps column is uvloop, the raw column is asyncio, "
         "ratio = uvloop/asyncio (for throughput > 1 means uvloop is faster, for latency < 1)",),
    )


async def measure(ctx: Context, side: str) -> dict[str, float]:
    from corps.bench import core

    loop = type(asyncio.get_running_loop()).__module__
    if ctx.loop == "uvloop" and not loop.startswith("uvloop"):
        raise RuntimeError("uvloop was requested but is not installed: this child runs on asyncio")
    tell: Callable[[Context], Awaitable[Sample]] = core._corps_tell_coalesced if side == "corps" else core.raw_tell
    ask: Callable[[Context], Awaitable[Sample]] = core.corps_ask_latency if side == "corps" else core.raw_ask_latency
    t = await tell(ctx)
    a = await ask(Context(ctx.url, ctx.loop, {"asks": ctx.params["asks"], "warmup": min(ctx.params["asks"], 300)}))
    return {"tell_rate": t["rate"], "ask_p50_us": a["p50_us"], "ask_p99_us": a["p99_us"], "seconds": t["seconds"],
            "msgs_per_nats_msg": t["msgs_per_nats_msg"]}


def main(argv: list[str] | None = None) -> None:
    """Child entry point: measure once on one loop and print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m corps.bench.loops")
    p.add_argument("--url", required=True)
    p.add_argument("--side", choices=SIDES, required=True)
    p.add_argument("--loop", choices=LOOP_NAMES, required=True)
    for key in ("messages", "warmup", "asks"):
        p.add_argument(f"--{key}", type=int, required=True)
    a = p.parse_args(argv)
    ctx = Context(a.url, a.loop, {"messages": a.messages, "warmup": a.warmup, "asks": a.asks})
    print(json.dumps(run(measure, ctx, a.side, loop=a.loop)))


if __name__ == "__main__":
    main()
