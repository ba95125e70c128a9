"""Peers: the same work through FastStream's NATS broker, shown as another column when installed.

FastStream is an optional extra (``pip install 'corps[peers]'``). It is imported lazily, so the
suite runs without it: the column then reads "not installed". To measure FastStream at its best
rather than its defaults, its logger is off (the default logs two lines per message) and handlers
take ``body: bytes`` and decode it with the same msgspec decoder as raw nats-py (no pydantic).
One broker (one connection) serves both sides, as one ``ActorSystem`` does.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats

from corps.bench._model import Context, Sample, Variant
from corps.bench._stats import latency_summary, now
from corps.bench._work import (
    ECHO_DECODER,
    ENCODER,
    PING_DECODER,
    PONG_DECODER,
    TICK_DECODER,
    Echo,
    Ping,
    Pong,
    Tally,
    Tick,
    fan_out,
    in_flight,
    tell_timeout,
)

PEER = "faststream"
SUBJECT = "bench.fs"
TIMEOUT = 30.0


def missing() -> dict[str, str]:
    """``{"faststream": "not installed"}`` when it cannot be imported, else ``{}``."""
    try:
        found = importlib.util.find_spec("faststream.nats") is not None
    except (ImportError, ValueError):
        found = False
    return {} if found else {PEER: "not installed (pip install 'corps[peers]')"}


def variants(run: Callable[[Context], Awaitable[Sample]]) -> tuple[Variant, ...]:
    """The FastStream variant of a scenario, or none when FastStream is not installed."""
    return () if missing() else (Variant(PEER, run),)


def _broker(url: str) -> Any:
    nats_mod: Any = importlib.import_module("faststream.nats")
    return nats_mod.NatsBroker(url, logger=None)


def _subscribe(broker: Any, subject: str, fn: Callable[..., Awaitable[Any]], returns: Any = None) -> None:
    """Register ``fn(body: bytes)``. FastStream reads the annotations at runtime, and this module's are
    strings (``from __future__ import annotations``): set real ones. ``bytes`` is its fastest path
    (measured: 13.8k msg/s; injecting the ``NatsMessage`` or a ``Path()`` subject part: 3-4k msg/s)."""
    fn.__annotations__ = {"body": bytes, "return": returns}
    broker.subscriber(subject)(fn)


async def fs_tell(ctx: Context) -> Sample:
    """``broker.publish`` per message -> a subscriber that decodes Ping and counts."""
    n, warm = ctx.params.get("peer_messages", ctx.params["messages"]), ctx.params["warmup"]
    broker = _broker(ctx.url)
    state = {"tally": Tally(0)}

    async def sink(body: bytes) -> None:
        PING_DECODER.decode(body)
        state["tally"].hit()

    _subscribe(broker, SUBJECT + ".tell", sink)

    await broker.start()
    try:
        for count in (warm, n):
            tally = state["tally"] = Tally(count)
            t0 = now()
            for i in range(count):
                await broker.publish(ENCODER.encode(Ping(i)), SUBJECT + ".tell")
            await tally.wait(tell_timeout(count), "faststream tell")
            elapsed = now() - t0
    finally:
        await broker.stop()
    return {"rate": n / elapsed, "seconds": elapsed, "messages": n}


def _responder(broker: Any) -> None:
    async def echo(body: bytes) -> bytes:
        return bytes(ENCODER.encode(Pong(ECHO_DECODER.decode(body).n)))

    _subscribe(broker, SUBJECT + ".ask", echo, bytes)


async def fs_ask_latency(ctx: Context) -> Sample:
    """``broker.request`` one at a time -> a subscriber that decodes Echo and returns a Pong."""
    n, warm = ctx.params.get("peer_asks", ctx.params["asks"]), ctx.params["warmup"]
    broker = _broker(ctx.url)
    _responder(broker)
    await broker.start()
    latencies: list[float] = []
    try:
        for i in range(warm + n):
            t0 = now()
            reply = await broker.request(ENCODER.encode(Echo(i)), SUBJECT + ".ask", timeout=TIMEOUT)
            PONG_DECODER.decode(reply.body)
            if i >= warm:
                latencies.append(now() - t0)
    finally:
        await broker.stop()
    return {**latency_summary(latencies), "rate": n / sum(latencies)}


async def fs_ask_concurrent(ctx: Context) -> Sample:
    """``concurrency`` tasks of sequential ``broker.request`` calls."""
    c, total = ctx.params["concurrency"], ctx.params.get("peer_asks", ctx.params["asks"])
    broker = _broker(ctx.url)
    _responder(broker)
    await broker.start()

    async def ask_one(i: int) -> None:
        reply = await broker.request(ENCODER.encode(Echo(i)), SUBJECT + ".ask", timeout=TIMEOUT)
        PONG_DECODER.decode(reply.body)

    try:
        await in_flight(c, max(ctx.params["warmup"] // c, 1), ask_one)
        seconds = await in_flight(c, max(total // c, 1), ask_one)
    finally:
        await broker.stop()
    done = max(total // c, 1) * c
    return {"rate": done / seconds, "seconds": seconds, "asks": done}


async def fs_fanin(ctx: Context) -> Sample:
    """``senders`` tasks publishing round-robin to ``actors`` subjects; one wildcard subscriber."""
    n, warm = ctx.params.get("peer_messages", ctx.params["messages"]), ctx.params["warmup"]
    actors, senders = ctx.params["actors"], ctx.params["senders"]
    broker = _broker(ctx.url)
    state = {"tally": Tally(0)}

    async def sink(body: bytes) -> None:  # no per-subject count: FastStream's subject injection is 4x slower
        PING_DECODER.decode(body)
        state["tally"].hit()

    _subscribe(broker, SUBJECT + ".fanin.*", sink)

    subjects = [f"{SUBJECT}.fanin.{a}" for a in range(actors)]

    async def send(actor: int, i: int) -> None:
        await broker.publish(ENCODER.encode(Ping(i)), subjects[actor])

    await broker.start()
    try:
        for count in (warm, n):
            tally = state["tally"] = Tally(count)
            t0 = now()
            await fan_out(senders, actors, count, send)
            await tally.wait(tell_timeout(count), "faststream fan-in")
            elapsed = now() - t0
    finally:
        await broker.stop()
    return {"rate": n / elapsed, "seconds": elapsed, "messages": n}


async def fs_events_publish(ctx: Context) -> Sample:
    """``broker.publish(..., stream=...)`` per event: FastStream's JetStream publish awaits the PubAck."""
    n = ctx.params["events"]
    ns = f"fs{secrets.token_hex(3)}"
    payloads = [msgspec.msgpack.encode(Tick(i, "x" * 64)) for i in range(n)]
    nc = await nats.connect(ctx.url)
    broker = _broker(ctx.url)
    try:
        await nc.jetstream().add_stream(name=f"{ns}_fs", subjects=[f"{ns}.fs"])
        await broker.start()
        t0 = now()
        for p in payloads:
            await broker.publish(p, f"{ns}.fs", stream=f"{ns}_fs")
        elapsed = now() - t0
        await nc.jetstream().delete_stream(f"{ns}_fs")
    finally:
        await broker.stop()
        await nc.close()
    return {"rate": n / elapsed, "seconds": elapsed}


async def fs_events_consume(ctx: Context) -> Sample:
    """A durable pull subscriber (batches of 256, ack after the handler): FastStream's JetStream
    consume, timed from ``broker.start()`` to the last event handled, as corps is from spawn."""
    nats_mod: Any = importlib.import_module("faststream.nats")
    ack: Any = importlib.import_module("faststream.middlewares").AckPolicy.ACK  # not nats's AckPolicy
    n = ctx.params["events"]
    ns = f"fs{secrets.token_hex(3)}"
    nc = await nats.connect(ctx.url)
    js = nc.jetstream()
    await js.add_stream(name=f"{ns}_fs", subjects=[f"{ns}.fs"])
    payload = msgspec.msgpack.encode(Tick(0, "x" * 64))
    await asyncio.gather(*(js.publish(f"{ns}.fs", payload, headers={"Nats-Msg-Id": f"{ns}-{i}"})
                           for i in range(n)))  # the bytes of corps's events (see events._raw_suite_consume)
    tally = Tally(n)
    broker = _broker(ctx.url)

    async def sink(body: bytes) -> None:
        TICK_DECODER.decode(body)
        tally.hit()

    sink.__annotations__ = {"body": bytes, "return": None}
    broker.subscriber(f"{ns}.fs", stream=nats_mod.JStream(f"{ns}_fs", declare=False), durable="fs",
                      pull_sub=nats_mod.PullSub(batch_size=256), ack_policy=ack)(sink)
    try:
        t0 = now()
        await broker.start()
        await tally.wait(TIMEOUT, "faststream consume")
        elapsed = now() - t0
    finally:
        await broker.stop()
        await js.delete_stream(f"{ns}_fs")
        await nc.close()
    return {"rate": n / elapsed, "seconds": elapsed}
