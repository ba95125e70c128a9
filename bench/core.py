"""The core hot path: tell throughput, ask latency, ask throughput at 1/16/256 in flight, next to raw nats-py.

Each corps variant and its raw counterpart do the same work with the same msgspec Structs: the
raw side encodes with ``msgspec.msgpack.Encoder`` and decodes with ``Decoder(Ping)`` (or
``Decoder(Echo)``) in its subscription callback. Both sides use one NATS connection for sender
and receiver. Every variant opens its own system or connection, warms up, then times. The
FastStream column (bench/peers.py) does the same work through FastStream's NATS broker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corps import Actor, ActorOptions, ActorSystem, handler
from corps.bench import peers
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._raw import RAW_SUBJECT, HandBatcher, raw_connection
from corps.bench._stats import latency_summary, now
from corps.bench._work import (
    ECHO_DECODER,
    ENCODER,
    FS_NOTE,
    ONE_CONNECTION,
    PING_DECODER,
    PINGS_DECODER,
    PONG_DECODER,
    Echo,
    Ping,
    Pong,
    Tally,
    in_flight,
    tell_timeout,
)
from corps.bench.registry import register

ASK_TIMEOUT = 30.0
"""Per-ask timeout: generous, a bench never fails on a slow machine, it reports."""


class Counter(Actor, options=ActorOptions(mailbox_size=1_000_000)):
    """Counts Pings into the class's current tally (one instance per system in this bench).

    The scenarios burst their whole run at one instance, which raw nats-py buffers without bound;
    the mailbox is sized to hold the burst (corps's default, 10,000, would shed the rest).
    """

    tally: ClassVar[Tally] = Tally(0)

    @handler
    async def ping(self, msg: Ping) -> None:
        self.tally.hit()


class Responder(Actor):
    @handler
    async def echo(self, msg: Echo) -> Pong:
        return Pong(msg.n)


# -- (a) tell: N one-way messages to one actor ----------------------------------------------


async def corps_tell(ctx: Context, coalesce: bool) -> Sample:
    n, warm = ctx.params["messages"], ctx.params["warmup"]
    async with ActorSystem(ctx.url, coalesce=coalesce) as system:
        ref = await system.spawn(Counter, "sink")
        for count in (warm, n):
            tally = Counter.tally = Tally(count)
            out0 = system.metrics()["system"]["nats_messages_out"]
            t0 = now()
            for i in range(count):
                await ref.tell(Ping(i))
            await tally.wait(tell_timeout(count), "corps tell")
            elapsed = now() - t0
        nats_out = system.metrics()["system"]["nats_messages_out"] - out0
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": n / max(nats_out, 1)}


async def raw_tell(ctx: Context) -> Sample:
    n, warm = ctx.params["messages"], ctx.params["warmup"]
    async with raw_connection(ctx.url) as nc:
        tally = Tally(0)

        async def cb(msg: Any) -> None:
            PING_DECODER.decode(msg.data)
            tally.hit()

        await nc.subscribe(RAW_SUBJECT, cb=cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        for count in (warm, n):
            tally = Tally(count)
            t0 = now()
            for i in range(count):
                await nc.publish(RAW_SUBJECT, ENCODER.encode(Ping(i)))
            await tally.wait(tell_timeout(count), "raw tell")
            elapsed = now() - t0
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": 1.0}


async def raw_tell_batched(ctx: Context) -> Sample:
    """Raw nats-py batching by hand (``HandBatcher``): a msgpack array of Pings per NATS message,
    decoded in one call by the subscriber, which then handles (counts) each Ping."""
    n, warm = ctx.params["messages"], ctx.params["warmup"]
    async with raw_connection(ctx.url) as nc:
        tally = Tally(0)

        def handle(msg: Ping) -> None:
            tally.hit()

        async def cb(msg: Any) -> None:
            for ping in PINGS_DECODER.decode(msg.data):
                handle(ping)

        await nc.subscribe(RAW_SUBJECT, cb=cb, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        batcher = HandBatcher(nc)
        for count in (warm, n):
            tally = Tally(count)
            out0 = batcher.published
            t0 = now()
            for i in range(count):
                await batcher.send(RAW_SUBJECT, ENCODER.encode(Ping(i)))
            await tally.wait(tell_timeout(count), "raw batched tell")
            elapsed = now() - t0
        await batcher.close()
    return {"rate": n / elapsed, "seconds": elapsed, "msgs_per_nats_msg": n / max(batcher.published - out0, 1)}


async def _corps_tell_coalesced(ctx: Context) -> Sample:
    return await corps_tell(ctx, True)


async def _corps_tell_plain(ctx: Context) -> Sample:
    return await corps_tell(ctx, False)


# -- (b) ask-latency: sequential asks, one at a time -------------------------------------


async def corps_ask_latency(ctx: Context) -> Sample:
    n, warm = ctx.params["asks"], ctx.params["warmup"]
    latencies: list[float] = []
    async with ActorSystem(ctx.url) as system:
        ref = await system.spawn(Responder, "echo")
        for i in range(warm):
            await ref.ask(Echo(i), timeout=ASK_TIMEOUT)
        for i in range(n):
            t0 = now()
            await ref.ask(Echo(i), timeout=ASK_TIMEOUT)
            latencies.append(now() - t0)
    return {**latency_summary(latencies), "rate": n / sum(latencies)}


async def _raw_responder(nc: Any) -> None:
    async def respond(msg: Any) -> None:
        req = ECHO_DECODER.decode(msg.data)
        await msg.respond(ENCODER.encode(Pong(req.n)))

    await nc.subscribe(RAW_SUBJECT, cb=respond, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()


async def raw_ask_latency(ctx: Context) -> Sample:
    n, warm = ctx.params["asks"], ctx.params["warmup"]
    latencies: list[float] = []
    async with raw_connection(ctx.url) as nc:
        await _raw_responder(nc)
        for i in range(warm):
            PONG_DECODER.decode((await nc.request(RAW_SUBJECT, ENCODER.encode(Echo(i)), timeout=ASK_TIMEOUT)).data)
        for i in range(n):
            t0 = now()
            reply = await nc.request(RAW_SUBJECT, ENCODER.encode(Echo(i)), timeout=ASK_TIMEOUT)
            PONG_DECODER.decode(reply.data)
            latencies.append(now() - t0)
    return {**latency_summary(latencies), "rate": n / sum(latencies)}


# -- (c) ask-1, ask-16, ask-256: asks in flight ------------------------------------------------------


async def corps_ask_concurrent(ctx: Context) -> Sample:
    c, total = ctx.params["concurrency"], ctx.params["asks"]
    async with ActorSystem(ctx.url) as system:
        ref = await system.spawn(Responder, "echo")

        async def ask_one(i: int) -> None:
            await ref.ask(Echo(i), timeout=ASK_TIMEOUT)

        await in_flight(c, max(ctx.params["warmup"] // c, 1), ask_one)
        seconds = await in_flight(c, max(total // c, 1), ask_one)
    return {"rate": max(total // c, 1) * c / seconds, "seconds": seconds}


async def raw_ask_concurrent(ctx: Context) -> Sample:
    c, total = ctx.params["concurrency"], ctx.params["asks"]
    async with raw_connection(ctx.url) as nc:
        await _raw_responder(nc)

        async def ask_one(i: int) -> None:
            reply = await nc.request(RAW_SUBJECT, ENCODER.encode(Echo(i)), timeout=ASK_TIMEOUT)
            PONG_DECODER.decode(reply.data)

        await in_flight(c, max(ctx.params["warmup"] // c, 1), ask_one)
        seconds = await in_flight(c, max(total // c, 1), ask_one)
    return {"rate": max(total // c, 1) * c / seconds, "seconds": seconds}


# -- the scenarios -------------------------------------------------------------------------


def _size(quick: bool, full: int, small: int) -> int:
    return small if quick else full


@register("tell")
def tell(quick: bool) -> Scenario:
    return Scenario(
        "tell",
        "one-way messages to one actor, until its handler has counted them all",
        {"messages": _size(quick, 200_000, 20_000), "warmup": _size(quick, 5_000, 1_000),
         "peer_messages": _size(quick, 40_000, 4_000)},
        (Variant("corps", _corps_tell_coalesced), Variant("corps-nocoalesce", _corps_tell_plain),
         Variant("raw", raw_tell), Variant("raw-batched", raw_tell_batched), *peers.variants(peers.fs_tell)),
        (Row("tell (coalesce) vs raw 1 pub/msg", "rate", "msg/s", "corps", "raw", Target(">=", 3.0), peer=peers.PEER),
         Row("tell (coalesce) vs raw batched/iter", "rate", "msg/s", "corps", "raw-batched", Target(">=", 0.6)),
         Row("tell (coalesce=False) vs raw 1 pub/msg", "rate", "msg/s", "corps-nocoalesce", "raw",
             Target(">=", 1.0), peer=peers.PEER)),
        ("raw: publish per message -> subscribe(cb) with msgspec Decoder(Ping) in the callback",
         "raw-batched: by hand, one buffer per subject flushed once per loop iteration (or at max_payload) as a "
         "msgpack array -> subscribe(cb) decoding list[Ping] in one call, then a handler call per Ping",
         ONE_CONNECTION, FS_NOTE + "; fewer messages (peer_messages): it is slower, the rate is per second"),
        peers.missing(),
    )


@register("ask-latency")
def ask_latency(quick: bool) -> Scenario:
    return Scenario(
        "ask-latency",
        "sequential asks, one in flight, after a warm-up; percentiles from a log-bucketed histogram",
        {"asks": _size(quick, 5_000, 500), "warmup": _size(quick, 500, 100)},
        (Variant("corps", corps_ask_latency), Variant("raw", raw_ask_latency), *peers.variants(peers.fs_ask_latency)),
        (Row("ask p50", "p50_us", "µs", "corps", "raw", Target("<=", 1.1), peer=peers.PEER),
         Row("ask p99", "p99_us", "µs", "corps", "raw", peer=peers.PEER),
         Row("ask p99.9", "p999_us", "µs", "corps", "raw", peer=peers.PEER)),
        ("raw: nc.request -> subscribe(cb) that decodes Echo and responds with an encoded Pong",
         ONE_CONNECTION, FS_NOTE, "latency ratios: lower is better"),
        peers.missing(),
    )


def _ask_in_flight(concurrency: int) -> None:
    name = f"ask-{concurrency}"

    @register(name)
    def factory(quick: bool) -> Scenario:
        total = {1: _size(quick, 5_000, 500), 16: _size(quick, 12_800, 1_600)}.get(
            concurrency, _size(quick, 20_480, 2_560))
        return Scenario(
            name,
            f"{concurrency} ask{'s' if concurrency > 1 else ''} in flight ({concurrency} task(s) of sequential asks) "
            "to one actor",
            {"asks": total, "concurrency": concurrency, "warmup": max(total // 8, concurrency)},
            (Variant("corps", corps_ask_concurrent), Variant("raw", raw_ask_concurrent),
             *peers.variants(peers.fs_ask_concurrent)),
            (Row(f"ask, {concurrency} in flight", "rate", "req/s", "corps", "raw",
                 Target(">=", 1.0) if concurrency == 256 else None, peer=peers.PEER),),
            (f"raw: the same {concurrency} task(s) over nc.request", ONE_CONNECTION, FS_NOTE),
            peers.missing(),
        )


for _c in (1, 16, 256):
    _ask_in_flight(_c)
