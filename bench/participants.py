"""Saga participants alone: keyed step requests (``@idempotent``) asked with many in flight.

What one participant entity can take is ``1 / service time``: with 64 requests in flight its
mailbox never empties, so the rate is the inverse of the time each message holds the mailbox.
corps variants, each the shop's Payments ``charge`` (effect in memory) asked with a fresh
idempotency key per request, as a saga's step is:

* ``memory``: ``@idempotent(effect="memory")``: records on the instance, no I/O.
* ``kv``: ``@idempotent`` (external effect): records in the JetStream KV bucket.
* ``kv x4``: the same, spread over 4 keyed instances (``psp-0`` .. ``psp-3``), 16 in flight each:
  what more instances add when the records' round trips, not the CPU, bound one instance.

raw: ``nc.request`` to a responder that decodes and answers, no records (the floor of an ask).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
import nats

from corps import ActorOptions, ActorSystem, handler
from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench._stats import now
from corps.bench.registry import register
from corps.examples.shop.messages import ChargeCard, PaymentCaptured
from corps.examples.shop.orchestrated import Payments
from corps.saga import idempotent
from corps.saga._participant_spec import Effect


def _payments(effect: Effect, name: str) -> type[Payments]:
    """The shop's Payments, its charge recorded as ``effect`` says (under its own actor name)."""

    class Recorded(Payments, options=ActorOptions(name=name)):
        @handler
        @idempotent(effect=effect)
        async def charge(self, msg: ChargeCard) -> PaymentCaptured:
            self.captured[msg.card] = self.captured.get(msg.card, 0) + msg.amount
            return PaymentCaptured(msg.order_id, msg.card, msg.amount)

    return Recorded


KvPayments = _payments("external", "KvPayments")
MemoryPayments = _payments("memory", "MemoryPayments")


async def _drive(n: int, inflight: int, one: Any) -> float:
    """Run ``one(i)`` for i in range(n) from ``inflight`` workers; the elapsed seconds."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    start = now()
    async with anyio.create_task_group() as tg:
        for _ in range(inflight):
            tg.start_soon(worker)
    return now() - start


def _variant(cls: type[Payments], instances: int) -> Any:
    async def run(ctx: Context) -> Sample:
        ns = f"b{uuid.uuid4().hex[:8]}"
        async with ActorSystem(ctx.url, namespace=ns) as parts, ActorSystem(ctx.url, namespace=ns) as asker:
            for k in range(instances):
                await parts.spawn(cls, f"psp-{k}")
            refs = [asker.ref(cls, f"psp-{k}") for k in range(instances)]
            tag = uuid.uuid4().hex[:6]

            async def one(i: int) -> None:
                msg = ChargeCard(f"o{i}", "visa", 1)
                await refs[i % instances].ask(msg, idempotency_key=f"{tag}-{i}:charge", timeout=30)

            await _drive(ctx.params["warmup"], ctx.params["inflight"], lambda i: one(10**9 + i))
            elapsed = await _drive(ctx.params["requests"], ctx.params["inflight"], one)
        n = ctx.params["requests"]
        return {"rate": n / elapsed, "service_us": elapsed / n * 1e6 * instances, "seconds": elapsed}

    return run


_enc = msgspec.msgpack.Encoder().encode


async def raw_requests(ctx: Context) -> Sample:
    nc = await nats.connect(ctx.url)
    try:
        subject = f"b{uuid.uuid4().hex[:8]}.payments"
        decoder = msgspec.msgpack.Decoder(ChargeCard)

        async def respond(msg: Any) -> None:
            m = decoder.decode(msg.data)
            await msg.respond(_enc(PaymentCaptured(m.order_id, m.card, m.amount)))

        await nc.subscribe(subject, cb=respond)
        await nc.flush()

        async def one(i: int) -> None:
            await nc.request(subject, _enc(ChargeCard(f"o{i}", "visa", 1)), timeout=30)

        await _drive(ctx.params["warmup"], ctx.params["inflight"], one)
        elapsed = await _drive(ctx.params["requests"], ctx.params["inflight"], one)
    finally:
        await nc.close()
    n = ctx.params["requests"]
    return {"rate": n / elapsed, "service_us": elapsed / n * 1e6, "seconds": elapsed}


@register("participant")
def participant(quick: bool) -> Scenario:
    return Scenario(
        "participant",
        "an @idempotent saga step handler, 64 requests in flight, fresh idempotency key each",
        {"requests": 500 if quick else 4_000, "warmup": 50 if quick else 200, "inflight": 64},
        (Variant("memory", _variant(MemoryPayments, 1)), Variant("kv", _variant(KvPayments, 1)),
         Variant("kv x4", _variant(KvPayments, 4)), Variant("raw", raw_requests)),
        (
            Row("participant memory records", "rate", "req/s", "memory", "raw"),
            Row("participant KV records", "rate", "req/s", "kv", "raw"),
            Row("participant KV records, 4 instances", "rate", "req/s", "kv x4", "raw"),
            Row("participant KV service time", "service_us", "µs", "kv", None, lower_is_better=True),
            Row("participant memory service time", "service_us", "µs", "memory", None, lower_is_better=True),
        ),
        ("service time: elapsed / requests x instances (the time each request holds a mailbox)",
         "raw: nc.request to a responder that decodes and answers, no records (the floor of an ask)"),
    )
