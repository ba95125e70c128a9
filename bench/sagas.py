"""Sagas: the 3-step order flow, orchestrated and choreographed, with 1 and 64 in flight.

corps: ``start_saga`` + ``wait_saga`` per order, the participants in a second system. Every
transition is CAS-written to the JetStream KV saga log before its step is sent.
raw (4 puts): a hand-written nats-py saga: three requests to responders that decode and answer,
and a KV put of the saga's state before each step and at the end (no CAS, no lease, no
idempotency records: the floor a durable saga cannot go below on this server).
raw (6 KV ops): hand-written nats-py doing corps's durable work, written as a throughput-minded
user would: the active index and the record created together (one flush, both awaited), a
request per step to a responder that dedupes in a dict (the shop's participants keep their
records in memory), a CAS update of the saga record after each step (the last one terminal),
and the index delete not awaited. raw (12 KV ops): the same with the responders' records in KV
(an intent create, then a CAS of the outcome, before answering), against corps participants
declared ``effect="external"``.
choreo: the same business flow by events (actors/shop/choreographed.py): publish OrderPlaced,
wait for the Order entity's OrderCompleted; every hop is a JetStream publish and a durable consumer.
``log share``: the share of corps's saga latency spent in saga-log writes.
Coordinators in processes of their own (1 and 2): ``bench/saga_scale.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import anyio
import msgspec
import nats
from nats.js.api import KeyValueConfig, StorageType

from corps import Actor, ActorOptions, ActorSystem, on_event
from corps.bench._model import Context, Row, Sample, Scenario, Target, Variant
from corps.bench._saga_procs import KV_PARTICIPANTS, MEMORY_PARTICIPANTS
from corps.bench._stats import latency_summary, now
from corps.bench.registry import register
from corps.examples.shop import choreographed as choreo
from corps.examples.shop.messages import (
    BookCourier,
    ChargeCard,
    OrderCompleted,
    OrderPlaced,
    OrderRequest,
    PaymentCaptured,
    ReserveStock,
    ShipmentBooked,
    StockReserved,
)
from corps.examples.shop.orchestrated import PlaceOrder


class BenchStock(choreo.Inventory, options=ActorOptions(name="InventoryEvents")):
    """The choreographed Inventory with stock enough for any run."""

    async def on_start(self) -> None:
        self.available = {"apple": 10**12}


_COMPLETED: dict[str, anyio.Event] = {}


class Completion(Actor, options=ActorOptions(name="BenchCompletion")):
    """Wakes the bench when an order's OrderCompleted event arrives."""

    @on_event(OrderCompleted)
    async def completed(self, event: OrderCompleted) -> None:
        done = _COMPLETED.pop(event.order_id, None)
        if done is not None:
            done.set()


def _order(i: int) -> OrderRequest:
    return OrderRequest(f"o{i}", "apple", 1, "visa", 100, "home")


async def _drive(n: int, inflight: int, one: Any) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i in range(n), ``inflight`` at a time; (elapsed, latencies). The CPU
    time this process spent meanwhile is kept in ``_cpu``, for ``_summary``."""
    latencies: list[float] = []
    limit = anyio.Semaphore(inflight)

    async def run(i: int) -> None:
        async with limit:
            t0 = now()
            await one(i)
            latencies.append(now() - t0)

    start, cpu = now(), time.process_time()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(run, i)
    _cpu[0] = time.process_time() - cpu
    return now() - start, latencies


_cpu = [0.0]


def _summary(elapsed: float, latencies: list[float]) -> Sample:
    """Rate, latencies, and the CPU this process spent per saga in the last ``_drive`` (every
    client side of the run: coordinator and participants, or the raw code; not the nats-server)."""
    return {"rate": len(latencies) / elapsed, "seconds": elapsed, "cpu_us": 1e6 * _cpu[0] / len(latencies),
            **latency_summary(latencies)}


def corps_sagas(participants: Any) -> Any:
    async def run(ctx: Context) -> Sample:
        return await _corps_sagas(ctx, participants)

    return run


async def _corps_sagas(ctx: Context, participants: Any) -> Sample:
    ns = f"b{uuid.uuid4().hex[:8]}"
    async with ActorSystem(ctx.url, namespace=ns) as parts, \
            ActorSystem(ctx.url, namespace=ns, sagas=(PlaceOrder,)) as system:
        for cls, actor_id in participants:
            await parts.spawn(cls, actor_id)
        coordinator = await system.coordinator()

        async def one(i: int) -> None:
            sid = await system.start_saga(PlaceOrder, _order(i))
            info = await system.wait_saga(sid, timeout=60)
            assert info.status == "COMPLETED", info

        await _drive(ctx.params["warmup"], ctx.params["inflight"], one)
        coordinator.write_seconds = 0.0
        elapsed, latencies = await _drive(ctx.params["sagas"], ctx.params["inflight"], one)
        share = coordinator.write_seconds / sum(latencies)
    return {**_summary(elapsed, latencies), "log_share": share * 100}


async def choreo_sagas(ctx: Context) -> Sample:
    ns = f"b{uuid.uuid4().hex[:8]}"
    async with ActorSystem(ctx.url, namespace=ns) as system:
        for cls, actor_id in choreo.SERVICES:
            await system.spawn(BenchStock if cls is choreo.Inventory else cls, actor_id)
        await system.serve_events(choreo.Order)
        await system.spawn(Completion, "bench")

        async def one(i: int) -> None:
            order = _order(i)
            done = _COMPLETED[order.order_id] = anyio.Event()
            await system.publish(OrderPlaced(order), msg_id=f"{ns}-{i}")
            with anyio.fail_after(60):
                await done.wait()

        await _drive(ctx.params["warmup"], ctx.params["inflight"], lambda i: one(10**9 + i))
        elapsed, latencies = await _drive(ctx.params["sagas"], ctx.params["inflight"], one)
    return _summary(elapsed, latencies)


_enc = msgspec.msgpack.Encoder().encode


def _raw_steps() -> list[tuple[str, Any, Any]]:
    """The raw sagas' participants: (subject, request decoder, reply maker) per step."""
    return [
        ("inventory", msgspec.msgpack.Decoder(ReserveStock), lambda m: StockReserved(m.order_id, m.sku, m.qty)),
        ("payments", msgspec.msgpack.Decoder(ChargeCard), lambda m: PaymentCaptured(m.order_id, m.card, m.amount)),
        ("shipping", msgspec.msgpack.Decoder(BookCourier), lambda m: ShipmentBooked(m.order_id, "TRK")),
    ]


async def raw_sagas(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url)
    try:
        js = nc.jetstream()
        bucket = f"b{uuid.uuid4().hex[:8]}"
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE))
        steps = _raw_steps()
        for subject, decoder, answer in steps:
            async def respond(msg: Any, decoder: Any = decoder, answer: Any = answer) -> None:
                await msg.respond(_enc(answer(decoder.decode(msg.data))))

            await nc.subscribe(f"{bucket}.{subject}", cb=respond)
        await nc.flush()
        reply_decoders = [msgspec.msgpack.Decoder(t) for t in (StockReserved, PaymentCaptured, ShipmentBooked)]

        async def one(i: int) -> None:
            o = _order(i)
            requests = [ReserveStock(o.order_id, o.sku, o.qty), ChargeCard(o.order_id, o.card, o.amount),
                        BookCourier(o.order_id, o.address)]
            key = f"s{i}"
            for n, ((subject, _, _), request) in enumerate(zip(steps, requests, strict=True)):
                await kv.put(key, _enc({"step": n, "status": "sending"}))
                reply = await nc.request(f"{bucket}.{subject}", _enc(request), timeout=10)
                reply_decoders[n].decode(reply.data)
            await kv.put(key, _enc({"status": "COMPLETED"}))

        await _drive(ctx.params["warmup"], ctx.params["inflight"], one)
        elapsed, latencies = await _drive(ctx.params["sagas"], ctx.params["inflight"], one)
        await js.delete_key_value(bucket)
    finally:
        await nc.close()
    return _summary(elapsed, latencies)


def raw_same_sagas(kv_records: bool) -> Any:
    async def run(ctx: Context) -> Sample:
        return await _raw_same_sagas(ctx, kv_records)

    return run


async def _raw_same_sagas(ctx: Context, kv_records: bool) -> Sample:
    """The same durable work as corps, by hand (see the module doc): 6 KV writes per saga, or 12
    with the participants' records in KV."""
    nc = await nats.connect(ctx.url)
    try:
        js = nc.jetstream()
        name = f"b{uuid.uuid4().hex[:8]}"
        log = await js.create_key_value(KeyValueConfig(bucket=f"{name}-log", history=1, direct=True,
                                                       storage=StorageType.FILE))
        records = await js.create_key_value(KeyValueConfig(bucket=f"{name}-idem", history=1, direct=True,
                                                           storage=StorageType.FILE))
        steps = _raw_steps()
        for subject, decoder, answer in steps:
            seen: dict[str, bytes] = {}  # the records in memory: (key -> reply), as a dict does it

            async def respond(msg: Any, subject: str = subject, decoder: Any = decoder, answer: Any = answer,
                              seen: dict[str, bytes] = seen) -> None:
                request = decoder.decode(msg.data)
                key = f"{subject}.{request.order_id}"
                if kv_records:
                    revision = await records.create(key, b"intent")
                    reply = _enc(answer(request))
                    await records.update(key, reply, last=revision)
                else:
                    reply = seen.get(key) or _enc(answer(request))
                    seen[key] = reply
                await msg.respond(reply)

            await nc.subscribe(f"{name}.{subject}", cb=respond)
        await nc.flush()
        reply_decoders = [msgspec.msgpack.Decoder(t) for t in (StockReserved, PaymentCaptured, ShipmentBooked)]
        forgotten: set[asyncio.Task[Any]] = set()

        async def one(i: int) -> None:
            o = _order(i)
            requests = [ReserveStock(o.order_id, o.sku, o.qty), ChargeCard(o.order_id, o.card, o.amount),
                        BookCourier(o.order_id, o.address)]
            key = f"s.{i}"
            _, revision = await asyncio.gather(log.put(f"a.{i}", b""),
                                               log.create(key, _enc({"step": 0, "status": "RUNNING"})))
            for n, ((subject, _, _), request) in enumerate(zip(steps, requests, strict=True)):
                reply = await nc.request(f"{name}.{subject}", _enc(request), timeout=10)
                reply_decoders[n].decode(reply.data)
                status = "COMPLETED" if n == len(steps) - 1 else "RUNNING"
                revision = await log.update(key, _enc({"step": n + 1, "status": status}), last=revision)
            task = asyncio.ensure_future(log.delete(f"a.{i}"))  # not awaited, as corps
            forgotten.add(task)
            task.add_done_callback(forgotten.discard)

        await _drive(ctx.params["warmup"], ctx.params["inflight"], lambda i: one(10**9 + i))
        elapsed, latencies = await _drive(ctx.params["sagas"], ctx.params["inflight"], one)
        await asyncio.gather(*forgotten)
        await js.delete_key_value(f"{name}-log")
        await js.delete_key_value(f"{name}-idem")
    finally:
        await nc.close()
    return _summary(elapsed, latencies)


RAW4 = "raw saga (4 KV puts)"
RAW6 = "raw saga (6 KV ops)"
RAW12 = "raw saga (12 KV ops)"


def _scenario(inflight: int, quick: bool) -> Scenario:
    sagas = (40 if inflight == 1 else 256) if quick else (300 if inflight == 1 else 3_000)
    return Scenario(
        f"saga-{inflight}",
        f"orchestrated PlaceOrder (3 steps), {inflight} in flight, start to COMPLETED",
        {"sagas": sagas, "warmup": 10 if quick else 50, "inflight": inflight},
        (Variant("corps", corps_sagas(MEMORY_PARTICIPANTS)), Variant("corps-kv", corps_sagas(KV_PARTICIPANTS)),
         Variant("choreo", choreo_sagas), Variant("raw", raw_sagas), Variant("raw-same", raw_same_sagas(False)),
         Variant("raw-same-kv", raw_same_sagas(True))),
        (
            Row(f"saga x{inflight} throughput vs {RAW4}", "rate", "saga/s", "corps", "raw",
                Target(">=", 1500, on="value", unit="saga/s") if inflight > 1 else None),
            Row(f"saga x{inflight} throughput vs {RAW6}", "rate", "saga/s", "corps", "raw-same",
                Target(">=", 0.8) if inflight > 1 else None),
            Row(f"saga x{inflight} p50 vs {RAW4}", "p50_us", "µs", "corps", "raw",
                Target("<=", 3000, on="value", unit="µs") if inflight == 1 else None),
            Row(f"saga x{inflight} p50 vs {RAW6}", "p50_us", "µs", "corps", "raw-same"),
            Row(f"saga x{inflight} p99 vs {RAW6}", "p99_us", "µs", "corps", "raw-same"),
            Row(f"saga x{inflight} KV records: throughput vs {RAW12}", "rate", "saga/s", "corps-kv", "raw-same-kv"),
            Row(f"saga x{inflight} KV records: p50 vs {RAW12}", "p50_us", "µs", "corps-kv", "raw-same-kv"),
            Row(f"choreo x{inflight} throughput vs {RAW4}", "rate", "saga/s", "choreo", "raw"),
            Row(f"choreo x{inflight} p50 vs {RAW4}", "p50_us", "µs", "choreo", "raw"),
            Row(f"saga x{inflight} client CPU per saga vs {RAW6}", "cpu_us", "µs", "corps", "raw-same"),
            Row(f"saga x{inflight} KV records: client CPU per saga vs {RAW12}", "cpu_us", "µs", "corps-kv",
                "raw-same-kv"),
            Row(f"saga x{inflight} log-write share", "log_share", "%", "corps", None, lower_is_better=True),
        ),
        (f"{RAW4}: hand-written nats-py saga: a KV put before each of the 3 requests and at the end",
         "corps: the shop as declared (participants' records in memory): the coordinator's index put + record "
         "create (one flush), 3 CAS writes, the index delete (not awaited): 6 KV writes, 4 awaited round trips",
         f"{RAW6}: the same durable work by hand in nats-py: index + record in one flush (gather), a CAS per "
         "step, the index delete not awaited; the participants dedupe in a dict",
         f"KV records rows: corps-kv's participants keep their records in KV (@idempotent(effect='external'): "
         f"an intent create and an outcome CAS per step) against {RAW12}: the same by hand",
         "choreo: the choreographed shop: 5 events through JetStream per order (placed, reserved, "
         "captured, booked, completed)"),
    )


@register("saga-1")
def saga_1(quick: bool) -> Scenario:
    return _scenario(1, quick)


@register("saga-64")
def saga_64(quick: bool) -> Scenario:
    return _scenario(64, quick)
