"""Sagas: the 3-step order flow, orchestrated and choreographed, with 1 and 64 in flight.

corps: ``start_saga`` + ``wait_saga`` per order, the participants in a second system. Every
transition is CAS-written to the JetStream KV saga log before its step is sent.
raw: a hand-written nats-py saga doing the same work: three requests to responders that decode
and answer, and a KV put of the saga's state before each step and at the end (no CAS, no
lease, no idempotency records: the floor a durable saga cannot go below on this server).
choreo: the same business flow by events (actors/shop/choreographed.py): publish OrderPlaced,
wait for the Order entity's OrderCompleted; every hop is a JetStream publish and a durable consumer.
``log share``: the share of corps's saga latency spent in saga-log writes.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
import nats
from nats.js.api import KeyValueConfig, StorageType

from corps import Actor, ActorOptions, ActorSystem, on_event
from corps.bench._model import Context, Row, Sample, Scenario, Variant
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
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping


class BenchInventory(Inventory, options=ActorOptions(name="Inventory")):
    """The shop's Inventory with stock enough for any run (same subject as Inventory)."""

    async def on_start(self) -> None:
        self.available = {"apple": 10**12}


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
    """Run ``one(i)`` for i in range(n), ``inflight`` at a time; (elapsed, latencies)."""
    latencies: list[float] = []
    limit = anyio.Semaphore(inflight)

    async def run(i: int) -> None:
        async with limit:
            t0 = now()
            await one(i)
            latencies.append(now() - t0)

    start = now()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(run, i)
    return now() - start, latencies


async def corps_sagas(ctx: Context) -> Sample:
    ns = f"b{uuid.uuid4().hex[:8]}"
    async with ActorSystem(ctx.url, namespace=ns) as parts, \
            ActorSystem(ctx.url, namespace=ns, sagas=(PlaceOrder,)) as system:
        await parts.spawn(BenchInventory, WAREHOUSE)
        await parts.spawn(Payments, PAYMENTS)
        await parts.spawn(Shipping, COURIER)
        coordinator = await system.coordinator()

        async def one(i: int) -> None:
            sid = await system.start_saga(PlaceOrder, _order(i))
            info = await system.wait_saga(sid, timeout=60)
            assert info.status == "COMPLETED", info

        await _drive(ctx.params["warmup"], ctx.params["inflight"], one)
        coordinator.write_seconds = 0.0
        elapsed, latencies = await _drive(ctx.params["sagas"], ctx.params["inflight"], one)
        share = coordinator.write_seconds / sum(latencies)
    return {"rate": len(latencies) / elapsed, "seconds": elapsed, "log_share": share * 100,
            **latency_summary(latencies)}


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
    return {"rate": len(latencies) / elapsed, "seconds": elapsed, **latency_summary(latencies)}


_enc = msgspec.msgpack.Encoder().encode


async def raw_sagas(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url)
    try:
        js = nc.jetstream()
        bucket = f"b{uuid.uuid4().hex[:8]}"
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE))
        steps: list[tuple[str, Any, Any]] = [
            ("inventory", msgspec.msgpack.Decoder(ReserveStock),
             lambda m: StockReserved(m.order_id, m.sku, m.qty)),
            ("payments", msgspec.msgpack.Decoder(ChargeCard), lambda m: PaymentCaptured(m.order_id, m.card, m.amount)),
            ("shipping", msgspec.msgpack.Decoder(BookCourier), lambda m: ShipmentBooked(m.order_id, "TRK")),
        ]
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
    return {"rate": len(latencies) / elapsed, "seconds": elapsed, **latency_summary(latencies)}


def _scenario(inflight: int, quick: bool) -> Scenario:
    sagas = (40 if inflight == 1 else 256) if quick else (300 if inflight == 1 else 3_000)
    return Scenario(
        f"saga-{inflight}",
        f"orchestrated PlaceOrder (3 steps), {inflight} in flight, start to COMPLETED",
        {"sagas": sagas, "warmup": 10 if quick else 50, "inflight": inflight},
        (Variant("corps", corps_sagas), Variant("choreo", choreo_sagas), Variant("raw", raw_sagas)),
        (
            Row(f"saga x{inflight} throughput", "rate", "saga/s", "corps", "raw"),
            Row(f"saga x{inflight} p50", "p50_us", "µs", "corps", "raw"),
            Row(f"saga x{inflight} p99", "p99_us", "µs", "corps", "raw"),
            Row(f"choreo x{inflight} throughput", "rate", "saga/s", "choreo", "raw"),
            Row(f"choreo x{inflight} p50", "p50_us", "µs", "choreo", "raw"),
            Row(f"saga x{inflight} log-write share", "log_share", "%", "corps", None, lower_is_better=True),
        ),
        ("raw: hand-written nats-py saga: a KV put before each of the 3 requests and at the end",
         "choreo: the choreographed shop: 5 events through JetStream per order (placed, reserved, "
         "captured, booked, completed)",
         "corps also writes CAS records, the active index, lease data and participant idempotency records"),
    )


@register("saga-1")
def saga_1(quick: bool) -> Scenario:
    return _scenario(1, quick)


@register("saga-64")
def saga_64(quick: bool) -> Scenario:
    return _scenario(64, quick)
