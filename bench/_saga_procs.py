"""Saga coordinators in their own processes, for the scale-out row of ``bench/sagas.py``.

``python -m corps.bench._saga_procs URL NAMESPACE SAGAS INFLIGHT START_AT LOOP [SAGA]`` runs one
coordinator system (``ActorSystem(sagas=(PlaceOrder,))``, or ``SlowOrder`` with SAGA ``slow``:
``_slow_saga``) that starts and waits for SAGAS sagas, INFLIGHT at a time, from the wall-clock
time START_AT on (so that several processes run at once), and prints
``{"sagas": n, "t0": ..., "t1": ..., "cpu": ...}``: its measured window, in wall-clock seconds,
and the CPU seconds the process used in it.

The participants run elsewhere (the bench process), the shop's as it declares them: their
idempotency records in memory (``@idempotent(effect="memory")``: no KV round trip), so that they
are not the bottleneck: the row measures what a second coordinator process adds.
``KV_PARTICIPANTS``: the same participants with their records in KV, for the 12-write rows.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Final

import anyio

from corps import ActorOptions, ActorSystem, handler, run
from corps.bench._slow_saga import SlowOrder
from corps.examples.shop.messages import (
    BookCourier,
    ChargeCard,
    OrderRequest,
    PaymentCaptured,
    ReserveStock,
    ShipmentBooked,
    StockReserved,
)
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import Saga, idempotent


class BenchInventory(Inventory, options=ActorOptions(name="Inventory")):
    """The shop's Inventory (records in memory, as the shop declares) with stock enough for any run."""

    async def on_start(self) -> None:
        self.available = {"apple": 10**12}


class KvInventory(BenchInventory, options=ActorOptions(name="Inventory")):
    """As if its effect were outside the process: idempotency records in JetStream KV."""

    @handler
    @idempotent(effect="external")
    async def reserve(self, msg: ReserveStock) -> StockReserved:
        self.available[msg.sku] -= msg.qty
        return StockReserved(msg.order_id, msg.sku, msg.qty)


class KvPayments(Payments, options=ActorOptions(name="Payments")):
    @handler
    @idempotent(effect="external")
    async def charge(self, msg: ChargeCard) -> PaymentCaptured:
        self.captured[msg.card] = self.captured.get(msg.card, 0) + msg.amount
        return PaymentCaptured(msg.order_id, msg.card, msg.amount)


class KvShipping(Shipping, options=ActorOptions(name="Shipping")):
    @handler
    @idempotent(effect="external")
    async def book(self, msg: BookCourier) -> ShipmentBooked:
        return ShipmentBooked(msg.order_id, f"TRK-{msg.order_id}")


MEMORY_PARTICIPANTS: Final = ((BenchInventory, WAREHOUSE), (Payments, PAYMENTS), (Shipping, COURIER))
"""The shop's participants as it declares them: records in memory (6 KV writes per saga, all the coordinator's)."""
KV_PARTICIPANTS: Final = ((KvInventory, WAREHOUSE), (KvPayments, PAYMENTS), (KvShipping, COURIER))
"""The same with records in KV (12 KV writes per saga: 2 more per step)."""


def order(prefix: str, i: int) -> OrderRequest:
    return OrderRequest(f"{prefix}{i}", "apple", 1, "visa", 100, "home")


SAGAS: Final[dict[str, type[Saga[OrderRequest]]]] = {"place": PlaceOrder, "slow": SlowOrder}


async def drive(system: ActorSystem, prefix: str, n: int, inflight: int,
                saga: type[Saga[OrderRequest]] = PlaceOrder) -> None:
    """Start ``n`` sagas (PlaceOrder) and wait for each to complete, ``inflight`` at a time."""
    next_i = iter(range(n))

    async def worker() -> None:
        for i in next_i:
            sid = await system.start_saga(saga, order(prefix, i))
            info = await system.wait_saga(sid, timeout=60)
            if info.status != "COMPLETED":
                raise RuntimeError(f"saga {sid} ended {info.status}: {info.reason}")

    async with anyio.create_task_group() as tg:
        for _ in range(inflight):
            tg.start_soon(worker)


async def coordinator(url: str, namespace: str, sagas: int, inflight: int, start_at: float,
                      saga: type[Saga[OrderRequest]] = PlaceOrder) -> dict[str, float]:
    prefix = uuid.uuid4().hex[:6]
    async with ActorSystem(url, namespace=namespace, sagas=(saga,)) as system:
        await system.coordinator()
        await drive(system, f"w{prefix}-", 20, min(inflight, 20), saga)  # warm up
        await anyio.sleep(max(0.0, start_at - time.time()))
        t0, cpu0 = time.time(), time.process_time()
        await drive(system, prefix, sagas, inflight, saga)
        t1, cpu1 = time.time(), time.process_time()
    return {"sagas": sagas, "t0": t0, "t1": t1, "cpu": cpu1 - cpu0}


def main() -> None:
    url, namespace, sagas, inflight, start_at, loop = sys.argv[1:7]
    saga = SAGAS[sys.argv[7] if len(sys.argv) > 7 else "place"]
    print(json.dumps(run(coordinator, url, namespace, int(sagas), int(inflight), float(start_at), saga, loop=loop)))


if __name__ == "__main__":
    main()
