"""What one saga costs the saga log, seen from the wire: which KV writes and reads it makes.

A plain subscriber on the saga bucket's subjects (``$KV.{bucket}.>``) sees every write as it is
published, and one on ``$JS.API.DIRECT.GET.KV_{bucket}.>`` every direct get: the counts are
the server's view, not the runtime's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from corps import ActorSystem
from corps.examples.shop.messages import OrderRequest
from corps.examples.shop.orchestrated import COURIER, PAYMENTS, WAREHOUSE, Inventory, Payments, PlaceOrder, Shipping
from corps.saga import SagaStatus
from corps.saga._log import saga_bucket
from corps.wire._embedded import EmbeddedServer
from corps.wire._transport import flush

Factory = Callable[..., Any]


class Tap:
    """Every message on the saga bucket's write and direct-get subjects: (subject, headers)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def on(self, msg: Msg) -> None:
        self.seen.append((msg.subject, dict(msg.headers or {})))

    def of(self, saga_id: str) -> list[tuple[str, dict[str, str]]]:
        return [(s, h) for s, h in self.seen if s.endswith(f".{saga_id}")]


@pytest.fixture
async def tap(nats_server: EmbeddedServer, corps_namespace: str) -> AsyncIterator[tuple[Tap, Client]]:
    nc = await nats.connect(nats_server.url)
    tap = Tap()
    bucket = saga_bucket(corps_namespace)
    await nc.subscribe(f"$KV.{bucket}.>", cb=tap.on)
    await nc.subscribe(f"$JS.API.DIRECT.GET.KV_{bucket}.>", cb=tap.on)
    await nc.subscribe(f"$JS.API.STREAM.MSG.GET.KV_{bucket}", cb=tap.on)
    await flush(nc)
    yield tap, nc
    await nc.close()


async def shop(actor_system_factory: Factory) -> ActorSystem:
    parts: ActorSystem = await actor_system_factory()
    for cls, actor_id in ((Inventory, WAREHOUSE), (Payments, PAYMENTS), (Shipping, COURIER)):
        await parts.spawn(cls, actor_id)
    return parts


async def test_a_saga_driven_here_writes_six_times_and_reads_nothing(
        actor_system_factory: Factory, tap: tuple[Tap, Client]) -> None:
    taps, nc = tap
    await shop(actor_system_factory)
    system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,))
    sid = await system.start_saga(PlaceOrder, OrderRequest("w1", "apple", 1, "visa", 10, "home"))
    info = await system.wait_saga(sid, timeout=10)  # from the coordinator's memory: no read
    assert info.status is SagaStatus.COMPLETED
    assert info.owner == ""
    with anyio.fail_after(5):  # the index delete is not awaited: wait until the server has it
        while len(taps.of(sid)) < 6:
            await nc.flush()
            await anyio.sleep(0.01)
    ops = [("read", "") if s.startswith("$JS.API.") else (s.split(".")[2], h.get("KV-Operation", "PUT"))
           for s, h in taps.of(sid)]
    # The index and the record (one flush), a CAS per step (the last one terminal), the index delete.
    assert ops == [("a", "PUT"), ("s", "PUT"), ("s", "PUT"), ("s", "PUT"), ("s", "PUT"), ("a", "DEL")]
    expected = [h.get("Nats-Expected-Last-Subject-Sequence") for s, h in taps.of(sid) if ".s." in s]
    assert expected[0] == "0"  # created, never overwritten
    assert all(e is not None and int(e) > 0 for e in expected[1:])  # every transition a CAS
    assert await system.saga_status(sid) == info  # what wait_saga answered is what the log holds
    await nc.flush()
    assert any("DIRECT.GET" in s for s, _ in taps.of(sid))  # the status read shows on the tap: it sees reads


async def test_a_stale_index_entry_of_a_finished_saga_is_dropped_by_the_next_scan(
        actor_system_factory: Factory, tap: tuple[Tap, Client], corps_namespace: str) -> None:
    # As if the unawaited index delete had been lost: the entry is back, the saga is terminal.
    _, nc = tap
    await shop(actor_system_factory)
    system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,), saga_scan_interval=0.05)
    sid = await system.start_saga(PlaceOrder, OrderRequest("w2", "apple", 1, "visa", 10, "home"))
    assert (await system.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    kv = await nc.jetstream().key_value(saga_bucket(corps_namespace))
    await kv.put(f"a.{sid}", b"")
    coordinator = await system.coordinator()
    with anyio.fail_after(5):
        # Polled: the scan signals nothing when it drops an entry.
        while sid in await coordinator.log.active():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert sid not in coordinator.taken  # read as terminal, never resumed
    assert (await system.saga_status(sid)).status is SagaStatus.COMPLETED


async def test_each_record_is_encoded_once_its_size_checked_on_the_bytes_written(
        actor_system_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator checks a record's size on its encoding and the log writes those bytes:
    4 writes of the record (create, 3 CAS), 4 encodes, and what is written is what was checked."""
    from corps.saga import _log

    encoded: list[bytes] = []
    encode = _log._encode

    def counting(record: Any) -> bytes:
        encoded.append(data := encode(record))
        return data

    monkeypatch.setattr(_log, "_encode", counting)
    await shop(actor_system_factory)
    system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,))
    sid = await system.start_saga(PlaceOrder, OrderRequest("e1", "apple", 1, "visa", 10, "home"))
    info = await system.wait_saga(sid, timeout=10)
    assert info.status is SagaStatus.COMPLETED
    assert len(encoded) == 4, [len(e) for e in encoded]
    final, _ = await (await system.coordinator()).log.read(sid)
    assert _log._decode(encoded[-1]) == final  # the terminal record, owner "" and all


async def test_a_scan_purges_the_index_markers_it_reads_so_the_next_reads_none(
        actor_system_factory: Factory, tap: tuple[Tap, Client], corps_namespace: str) -> None:
    """Each ended saga leaves a delete marker in the active index, and a listing reads every
    marker: without the purge, every scan would read every saga that ever ended."""
    from corps.wire._snapshot import live_keys

    taps, nc = tap
    await shop(actor_system_factory)
    system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,))
    sids = [await system.start_saga(PlaceOrder, OrderRequest(f"m{i}", "apple", 1, "visa", 10, "home"))
            for i in range(3)]
    for sid in sids:
        assert (await system.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
    with anyio.fail_after(5):  # the index deletes are not awaited: wait until the server has them
        while sum(h.get("KV-Operation") == "DEL" for sid in sids for _, h in taps.of(sid)) < 3:
            await nc.flush()
            await anyio.sleep(0.01)
    js, bucket = nc.jetstream(), saga_bucket(corps_namespace)
    markers: dict[str, int] = {}
    await live_keys(js, bucket, "a.>", timeout=5, markers=markers)
    assert {f"a.{sid}" for sid in sids} <= set(markers)
    assert await (await system.coordinator()).log.active() == []  # reads them, and purges them
    with anyio.fail_after(5):  # the purges are not awaited
        while markers:
            markers.clear()
            await live_keys(js, bucket, "a.>", timeout=5, markers=markers)
            await anyio.sleep(0.01)


async def test_a_scan_whose_purges_fail_stops_purging_and_says_so(
        actor_system_factory: Factory, tap: tuple[Tap, Client], caplog: pytest.LogCaptureFixture) -> None:
    """A server that refuses the purge (no grant for it, say): the first failure stops the
    purges, with a warning naming the grant; the markers stay, as before."""
    taps, nc = tap
    await shop(actor_system_factory)
    system: ActorSystem = await actor_system_factory(sagas=(PlaceOrder,))
    log = (await system.coordinator()).log
    log._kv._purge_api = "corps.test.no-purge"  # nobody answers: a 503, as for a request nobody may take
    for round_ in range(2):
        sid = await system.start_saga(PlaceOrder, OrderRequest(f"p{round_}", "apple", 1, "visa", 10, "home"))
        assert (await system.wait_saga(sid, timeout=10)).status is SagaStatus.COMPLETED
        with anyio.fail_after(5):  # the index delete is not awaited: wait until the server has it
            while not any(h.get("KV-Operation") == "DEL" for _, h in taps.of(sid)):
                await nc.flush()
                await anyio.sleep(0.01)
        failures = log.lean.unawaited_failures
        await log.active()
        with anyio.fail_after(5):  # the purges' 503s are not awaited either: wait for every answer
            while log.lean.in_flight or (log.purging and round_ == 0):
                await nc.flush()
                await anyio.sleep(0.01)
        assert not log.purging
        if round_ == 1:
            assert log.lean.unawaited_failures == failures  # no purge tried
    assert "cannot purge the delete markers" in caplog.text
