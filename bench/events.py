"""Events next to raw nats-py, in one run: publish with acks, and consume + decode + ack.

    python -m corps.bench.events [--quick]

raw publish: ``await js.publish(subject, payload)`` per message (each ack awaited).
corps publish: ``await system.publish(event)`` per message (Nats-Msg-Id and ack awaited), and
the same with 256 publishes in flight (``asyncio.gather``), which raw js.publish can also do
but a sequential caller does not.
raw consume: a durable pull subscription, ``fetch(batch=256)``, msgspec decode, ``await msg.ack()``.
corps consume: an actor class with an ``@on_event`` handler (durable consumer, batched pulls,
acks written together), from spawn until the handler saw every event.
Each repetition alternates which side goes first; figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from typing import Any

import msgspec
import nats
import nats.errors

from corps import Actor, ActorSystem, EmbeddedServer, on_event, run
from corps.bench import peers
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._work import TICK_DECODER, Tick
from corps.bench.registry import register


class Sink(Actor):
    target = 0
    seen = 0
    done: asyncio.Event | None = None

    @on_event(Tick)
    async def tick(self, event: Tick) -> None:
        Sink.seen += 1
        if Sink.seen >= Sink.target and Sink.done is not None:
            Sink.done.set()


async def raw_publish(js: Any, subject: str, payloads: list[bytes]) -> float:
    t = time.perf_counter()
    for p in payloads:
        await js.publish(subject, p)
    return len(payloads) / (time.perf_counter() - t)


async def corps_publish(system: ActorSystem, events: list[Tick], window: int = 1) -> float:
    t = time.perf_counter()
    if window == 1:
        for e in events:
            await system.publish(e)
    else:
        for i in range(0, len(events), window):
            await asyncio.gather(*(system.publish(e) for e in events[i:i + window]))
    return len(events) / (time.perf_counter() - t)


async def raw_consume(js: Any, subject: str, n: int, durable: str) -> float:
    t = time.perf_counter()
    psub = await js.pull_subscribe(subject, durable=durable)
    got = 0
    while got < n:
        try:
            msgs = await psub.fetch(batch=256, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            TICK_DECODER.decode(m.data)
            await m.ack()
            got += 1
    rate = n / (time.perf_counter() - t)
    await psub.unsubscribe()
    return rate


async def raw_push_consume(js: Any, subject: str, n: int, durable: str) -> float:
    """A durable push consumer (``js.subscribe(cb=..., manual_ack=True)``): the server pushes up to
    max_ack_pending (nats-py's default consumer config) un-acked messages; the callback decodes and
    awaits ``msg.ack()`` per message: the fastest plain nats-py consumer with an ack per message."""
    done = asyncio.Event()
    got = 0

    async def cb(m: Any) -> None:
        nonlocal got
        TICK_DECODER.decode(m.data)
        await m.ack()
        got += 1
        if got == n:
            done.set()

    t = time.perf_counter()
    sub = await js.subscribe(subject, durable=durable, cb=cb, manual_ack=True, pending_msgs_limit=-1,
                             pending_bytes_limit=-1)
    await asyncio.wait_for(done.wait(), 30.0 + n / 1_000)
    rate = n / (time.perf_counter() - t)
    await sub.unsubscribe()
    return rate


async def corps_consume(url: str, namespace: str, n: int) -> float:
    Sink.target, Sink.seen, Sink.done = n, 0, asyncio.Event()
    async with ActorSystem(url, namespace=namespace) as system:
        t = time.perf_counter()
        await system.spawn(Sink, "sink")
        await Sink.done.wait()
        rate = n / (time.perf_counter() - t)
    return rate


async def main(quick: bool) -> None:
    n = 3_000 if quick else 10_000
    repeats = 3 if quick else 5
    results: dict[str, list[float]] = {k: [] for k in ("raw_pub", "corps_pub", "corps_pub256", "raw_con", "corps_con")}
    with EmbeddedServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        for r in range(repeats):
            ns = f"bench{secrets.token_hex(3)}"
            async with ActorSystem(server.url, namespace=ns) as system:
                subject = f"{ns}.events.Tick"
                events = [Tick(i, "x" * 64) for i in range(n)]
                payloads = [msgspec.msgpack.encode(e) for e in events]
                order = ("raw", "corps") if r % 2 == 0 else ("corps", "raw")
                for side in order:
                    if side == "raw":
                        results["raw_pub"].append(await raw_publish(js, subject, payloads))
                    else:
                        results["corps_pub"].append(await corps_publish(system, events))
                        results["corps_pub256"].append(await corps_publish(system, events, 256))
            # the stream now holds 3n events (with and without corps headers); consume n of them each
            for side in order:
                if side == "raw":
                    results["raw_con"].append(await raw_consume(js, subject, n, f"raw{r}"))
                else:
                    results["corps_con"].append(await corps_consume(server.url, ns, n))
        await nc.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"events bench: {n} messages x {repeats} repetitions (medians), nats-server {server.url}")
    print(f"  publish, ack awaited each   raw js.publish {med['raw_pub']:>9,.0f}/s   corps publish "
          f"{med['corps_pub']:>9,.0f}/s   {med['corps_pub'] / med['raw_pub']:.2f}x")
    print(f"  publish, 256 in flight      (corps)                          "
          f"{med['corps_pub256']:>9,.0f}/s   {med['corps_pub256'] / med['raw_pub']:.2f}x raw sequential")
    print(f"  consume + decode + ack      raw fetch+ack  {med['raw_con']:>9,.0f}/s   corps on_event "
          f"{med['corps_con']:>9,.0f}/s   {med['corps_con'] / med['raw_con']:.2f}x")


# -- the same two measurements as scenarios of the suite (corps bench events-publish events-consume)


def _ns() -> str:
    return f"bench{secrets.token_hex(3)}"


async def _suite_corps_publish(ctx: Context) -> Sample:
    async with ActorSystem(ctx.url, namespace=_ns()) as system:
        return _sample(ctx, await corps_publish(system, [Tick(i, "x" * 64) for i in range(ctx.params["events"])]))


async def _suite_raw_publish(ctx: Context) -> Sample:
    ns = _ns()
    nc = await nats.connect(ctx.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=f"{ns}_raw", subjects=[f"{ns}.raw"])
        payloads = [msgspec.msgpack.encode(Tick(i, "x" * 64)) for i in range(ctx.params["events"])]
        rate = await raw_publish(js, f"{ns}.raw", payloads)
        await js.delete_stream(f"{ns}_raw")
    finally:
        await nc.close()
    return _sample(ctx, rate)


async def _suite_corps_consume(ctx: Context) -> Sample:
    ns, n = _ns(), ctx.params["events"]
    async with ActorSystem(ctx.url, namespace=ns) as system:  # publish first (untimed)
        await corps_publish(system, [Tick(i, "x" * 64) for i in range(n)], 256)
    return _sample(ctx, await corps_consume(ctx.url, ns, n))


async def _suite_raw_consume(ctx: Context) -> Sample:
    return await _raw_suite_consume(ctx, raw_consume)


async def _suite_raw_push_consume(ctx: Context) -> Sample:
    return await _raw_suite_consume(ctx, raw_push_consume)


async def _raw_suite_consume(ctx: Context, consume: Any) -> Sample:
    ns, n = _ns(), ctx.params["events"]
    nc = await nats.connect(ctx.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=f"{ns}_raw", subjects=[f"{ns}.raw"])
        # The same bytes as corps's events: a deduplicating publisher's Nats-Msg-Id header (without
        # it, each delivery is ~40 bytes shorter and the server and nats-py parse no header block).
        payload = msgspec.msgpack.encode(Tick(0, "x" * 64))
        await asyncio.gather(*(js.publish(f"{ns}.raw", payload, headers={"Nats-Msg-Id": f"{ns}-{i}"})
                               for i in range(n)))
        rate = await consume(js, f"{ns}.raw", n, "raw")
        await js.delete_stream(f"{ns}_raw")
    finally:
        await nc.close()
    return _sample(ctx, rate)


def _sample(ctx: Context, rate: float) -> Sample:
    return {"rate": rate, "seconds": ctx.params["events"] / rate}


@register("events-publish")
def events_publish(quick: bool) -> Scenario:
    return Scenario(
        "events-publish", "JetStream publish, each ack awaited before the next",
        {"events": 1_000 if quick else 10_000},
        (Variant("corps", _suite_corps_publish), Variant("raw", _suite_raw_publish),
         *peers.variants(peers.fs_events_publish)),
        (Row("event publish (acked)", "rate", "msg/s", "corps", "raw", Target(">=", 1.0), peer=peers.PEER),),
        ("raw: await js.publish(subject, payload) per event; corps: await system.publish(event) "
         "(Nats-Msg-Id, correlation headers, retry on 503)",
         "faststream: await broker.publish(payload, subject, stream=...) per event (PubAck awaited)"),
        missing=peers.missing(),
    )


@register("events-consume")
def events_consume(quick: bool) -> Scenario:
    return Scenario(
        "events-consume", "JetStream consume + decode + ack of events already in the stream",
        {"events": 2_000 if quick else 10_000},
        (Variant("corps", _suite_corps_consume), Variant("raw", _suite_raw_consume),
         Variant("raw-push", _suite_raw_push_consume), *peers.variants(peers.fs_events_consume)),
        (Row("event consume+ack vs raw pull fetch(256)", "rate", "msg/s", "corps", "raw", Target(">=", 2.0),
             peer=peers.PEER),
         Row("event consume+ack vs raw push, manual ack", "rate", "msg/s", "corps", "raw-push", Target(">=", 1.2))),
        ("raw: pull_subscribe + fetch(batch=256) + decode + await msg.ack() per message; corps: an @on_event "
         "actor (batched pulls, acks written together), timed from spawn to the last event handled",
         "raw-push: a durable push consumer, js.subscribe(cb, manual_ack=True) (nats-py's default consumer "
         "config: max_ack_pending 1,000), decode + await msg.ack() per message, timed from subscribe",
         "faststream: a durable pull subscriber (PullSub(batch_size=256), AckPolicy.ACK) decoding bytes, "
         "timed from broker.start()",
         "every side consumes the same bytes: events published with a Nats-Msg-Id header, as corps publishes "
         "them (headerless events are ~40 bytes shorter and cost the server and nats-py less per delivery)"),
        missing=peers.missing(),
    )


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m corps.bench.events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages and repetitions")
    args = parser.parse_args(argv)
    run(main, args.quick)


if __name__ == "__main__":
    cli()
