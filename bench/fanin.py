"""Tell fan-in: many sender tasks, many actors. 8 senders each send round-robin to 64 actors.

corps: 64 instances of one actor class (one wildcard subscription, routed in-process), each
counting its messages. raw nats-py: one wildcard subscription ``bench.raw.fanin.*`` whose
callback decodes ``Ping`` and counts per subject, the cheapest hand-written equivalent. The
clock stops when every message has been handled.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corps import Actor, ActorSystem, handler
from corps.bench import peers
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._raw import HandBatcher, raw_connection
from corps.bench._stats import now
from corps.bench._work import (
    ENCODER,
    FS_NOTE,
    ONE_CONNECTION,
    PING_DECODER,
    PINGS_DECODER,
    Ping,
    Tally,
    fan_out,
    tell_timeout,
)
from corps.bench.registry import register

RAW_PREFIX = "bench.raw.fanin"


class FanCounter(Actor):
    """Counts its own Pings and the class's shared tally."""

    tally: ClassVar[Tally] = Tally(0)

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @handler
    async def ping(self, msg: Ping) -> None:
        self.count += 1
        self.tally.hit()


async def corps_fanin(ctx: Context) -> Sample:
    n, warm, actors, senders = (ctx.params[k] for k in ("messages", "warmup", "actors", "senders"))
    async with ActorSystem(ctx.url) as system:
        refs = [await system.spawn(FanCounter, f"fan-{a}") for a in range(actors)]

        async def send(actor: int, i: int) -> None:
            await refs[actor].tell(Ping(i))

        for count in (warm, n):
            tally = FanCounter.tally = Tally(count)
            out0 = system.metrics()["system"]["nats_messages_out"]
            t0 = now()
            await fan_out(senders, actors, count, send)
            await tally.wait(tell_timeout(count), "corps fan-in")
            elapsed = now() - t0
        nats_out = system.metrics()["system"]["nats_messages_out"] - out0
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": n / max(nats_out, 1)}


async def raw_fanin(ctx: Context) -> Sample:
    n, warm, actors, senders = (ctx.params[k] for k in ("messages", "warmup", "actors", "senders"))
    subjects = [f"{RAW_PREFIX}.{a}" for a in range(actors)]
    counts: dict[str, int] = {}
    state = {"tally": Tally(0)}
    async with raw_connection(ctx.url) as nc:

        async def cb(msg: Any) -> None:
            PING_DECODER.decode(msg.data)
            counts[msg.subject] = counts.get(msg.subject, 0) + 1
            state["tally"].hit()

        await nc.subscribe(RAW_PREFIX + ".*", cb=cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()

        async def send(actor: int, i: int) -> None:
            await nc.publish(subjects[actor], ENCODER.encode(Ping(i)))

        for count in (warm, n):
            tally = state["tally"] = Tally(count)
            t0 = now()
            await fan_out(senders, actors, count, send)
            await tally.wait(tell_timeout(count), "raw fan-in")
            elapsed = now() - t0
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": 1.0}


async def raw_fanin_batched(ctx: Context) -> Sample:
    """The same, batched by hand (``HandBatcher``): a msgpack array of Pings per subject per loop
    iteration; the callback decodes it in one call, then counts each Ping for its subject."""
    n, warm, actors, senders = (ctx.params[k] for k in ("messages", "warmup", "actors", "senders"))
    subjects = [f"{RAW_PREFIX}.{a}" for a in range(actors)]
    counts: dict[str, int] = {}
    state = {"tally": Tally(0)}
    async with raw_connection(ctx.url) as nc:

        def handle(subject: str, msg: Ping) -> None:
            counts[subject] = counts.get(subject, 0) + 1
            state["tally"].hit()

        async def cb(msg: Any) -> None:
            subject = msg.subject
            for ping in PINGS_DECODER.decode(msg.data):
                handle(subject, ping)

        await nc.subscribe(RAW_PREFIX + ".*", cb=cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        batcher = HandBatcher(nc)

        async def send(actor: int, i: int) -> None:
            await batcher.send(subjects[actor], ENCODER.encode(Ping(i)))

        for count in (warm, n):
            tally = state["tally"] = Tally(count)
            out0 = batcher.published
            t0 = now()
            await fan_out(senders, actors, count, send)
            await tally.wait(tell_timeout(count), "raw batched fan-in")
            elapsed = now() - t0
        await batcher.close()
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": n / max(batcher.published - out0, 1)}


@register("fan-in")
def fan_in(quick: bool) -> Scenario:
    return Scenario(
        "fan-in",
        "tell fan-in: sender tasks round-robin to many actors, until every message is handled",
        {"messages": 20_000 if quick else 200_000, "warmup": 1_000 if quick else 5_000, "senders": 8, "actors": 64,
         "peer_messages": 4_000 if quick else 40_000},
        (Variant("corps", corps_fanin), Variant("raw", raw_fanin), Variant("raw-batched", raw_fanin_batched),
         *peers.variants(peers.fs_fanin)),
        (Row("tell fan-in 8x64 vs raw 1 pub/msg", "rate", "msg/s", "corps", "raw", Target(">=", 3.0), peer=peers.PEER),
         Row("tell fan-in 8x64 vs raw batched/iter", "rate", "msg/s", "corps", "raw-batched", Target(">=", 0.6))),
        ("raw: one wildcard subscription, decode + count per subject in the callback", ONE_CONNECTION,
         "raw-batched: by hand, one buffer per subject flushed once per loop iteration (or at max_payload) as a "
         "msgpack array; the callback decodes list[Ping] in one call, then counts each for its subject",
         FS_NOTE + "; one wildcard subscriber; fewer messages (peer_messages)"),
        peers.missing(),
    )
