"""The lean JetStream path (corps.wire._jetstream) against a real nats-server: KV semantics,
pipelining, direct and API gets, typed errors, and hostile answers on its reply subject."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StorageType

from corps.errors import (
    StoreConflict,
    StoreNoResponders,
    StoreRefused,
    StoreTimeout,
    StoreUnavailable,
    StoreUnreadable,
)
from corps.saga._config import SagaConfig, bucket_config, ensure_bucket
from corps.wire._embedded import EmbeddedServer
from corps.wire._jetstream import PAYLOAD_TOO_LARGE, SWEEPS_PER_TIMEOUT, Lean
from corps.wire._js_answers import decode_ack, decode_purged
from corps.wire._kv_bucket import Bucket
from corps.wire._snapshot import live_keys
from corps.wire._transport import connect, flush


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    client = await connect([nats_server.url], "lean-test")
    yield client
    await client.close()


async def _bucket(nc: Client, *, direct: bool) -> Bucket:
    name = f"lean{uuid.uuid4().hex[:8]}"
    await nc.jetstream().create_key_value(KeyValueConfig(bucket=name, history=1, direct=direct,
                                                         storage=StorageType.MEMORY))
    return Bucket(await Lean.of(nc), name, direct=direct)


@pytest.mark.parametrize("direct", [True, False])
async def test_put_create_update_delete_get_keep_kv_semantics(nc: Client, direct: bool) -> None:
    b = await _bucket(nc, direct=direct)
    assert await b.get("k") is None
    r1 = await b.create("k", b"one")
    with pytest.raises(StoreConflict):
        await b.create("k", b"again")
    got = await b.get("k")
    assert got is not None
    assert (got.value, got.revision) == (b"one", r1)
    r2 = await b.update("k", b"two", r1)
    with pytest.raises(StoreConflict):
        await b.update("k", b"stale", r1)  # CAS: the revision moved on
    await b.delete("k", last=r2)
    assert await b.get("k") is None
    marker = await b.entry("k")
    assert marker is not None
    assert marker.deleted
    r3 = await b.create("k", b"three")  # create goes over a delete marker
    assert r3 > r2
    await b.purge("k")
    assert await b.get("k") is None
    assert await b.put("k", b"four") > r3
    # What nats-py's own KV reads agrees with what the lean path wrote.
    entry = await (await nc.jetstream().key_value(b.name)).get("k")
    assert entry.value == b"four"


async def test_a_batch_of_writes_goes_out_together_and_each_gets_its_own_ack(nc: Client) -> None:
    b = await _bucket(nc, direct=True)
    futures = [b.create_soon(f"k{i}", b"%d" % i) for i in range(200)]  # all before one await
    revisions = [decode_ack(b.subject(f"k{i}"), await f) for i, f in enumerate(futures)]
    assert len(set(revisions)) == 200
    assert b.lean.in_flight == 0
    values = await asyncio.gather(*(b.get(f"k{i}") for i in range(200)))
    assert [v.value if v else None for v in values] == [b"%d" % i for i in range(200)]


async def test_fire_and_forget_delete_lands_and_a_failed_one_is_counted(nc: Client) -> None:
    b = await _bucket(nc, direct=True)
    rev = await b.put("k", b"v")
    await b.delete("k", wait=False)
    await b.put("barrier", b"")  # acked after the delete: the stream stores in order
    assert await b.get("k") is None
    before = b.lean.unawaited_failures
    await b.put("k", b"v2")
    await b.delete("k", last=rev, wait=False)  # a stale revision: refused, counted, not raised
    await b.put("barrier", b"")
    assert b.lean.unawaited_failures == before + 1
    assert (await b.get("k")) is not None


async def test_a_purge_up_to_a_marker_leaves_no_trace_and_keeps_a_later_write(nc: Client) -> None:
    """A listing reads every delete marker; purging one up to its own sequence removes it (and
    its key's older messages) and nothing written after it."""
    b = await _bucket(nc, direct=True)
    for key in ("gone", "back"):
        await b.put(key, b"v")
        await b.delete(key)
    markers: dict[str, int] = {}
    assert await live_keys(nc.jetstream(), b.name, ">", timeout=5, markers=markers) == []
    assert set(markers) == {"gone", "back"}
    await b.put("back", b"again")  # written after its marker: the purge must keep it
    for key, seq in markers.items():
        fut = b.purge_soon(key, seq)
        assert fut is not None
        # "back": its later write replaced the marker (history 1), and the purge stops below it
        assert decode_purged(key, await fut) == (1 if key == "gone" else 0)
    assert await b.entry("gone") is None  # no marker left: as if never written
    back = await b.get("back")
    assert back is not None
    assert back.value == b"again"
    markers.clear()
    assert await live_keys(nc.jetstream(), b.name, ">", timeout=5, markers=markers) == ["back"]
    assert markers == {}


async def test_no_stream_is_no_responders_and_silence_is_a_timeout(nc: Client) -> None:
    lean = await Lean.of(nc)
    with pytest.raises(StoreNoResponders):
        await lean.publish(f"nostream.{uuid.uuid4().hex}", b"x")
    # A subject someone subscribes to but never answers: the typed timeout.
    sub = await nc.subscribe("silent.lean")
    with pytest.raises(StoreTimeout) as info:
        await lean.publish("silent.lean", b"x", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    await sub.unsubscribe()
    assert lean.in_flight == 0


async def test_default_timeouts_share_one_sweeping_timer_that_fails_each_on_time(nc: Client) -> None:
    """Operations with the default timeout have no timer of their own: one sweep fails those past
    their deadline (at most timeout / SWEEPS_PER_TIMEOUT late), and is armed again for later ones."""
    lean = Lean(nc, timeout=0.4)
    await lean.start()
    sub = await nc.subscribe("silent.sweep")
    loop = asyncio.get_running_loop()
    for _ in range(2):  # the second round needs the sweep re-armed after the first emptied it
        began = loop.time()
        first = lean.request("silent.sweep", b"1")
        second = lean.request("silent.sweep", b"2")
        with pytest.raises(StoreTimeout):
            await asyncio.wait_for(first, 5)
        with pytest.raises(StoreTimeout):
            await asyncio.wait_for(second, 5)
        waited = loop.time() - began
        assert 0.4 <= waited < 0.4 * (1 + 2 / SWEEPS_PER_TIMEOUT) + 0.2, waited
        assert lean.in_flight == 0
        assert lean._sweeping is None  # nothing waits: no timer left armed
    await sub.unsubscribe()


async def test_garbage_answers_are_typed_errors_and_stray_ones_are_counted(nc: Client) -> None:
    lean = await Lean.of(nc)
    hostile = await nats.connect(nc.connected_url.geturl() if nc.connected_url else "")
    try:
        async def answer(msg: Msg) -> None:
            await hostile.publish(msg.reply, b"{" * 5000)  # nested deeper than the recursion limit

        await hostile.subscribe("garbage.lean", cb=answer)
        await flush(hostile)
        with pytest.raises(StoreUnreadable):
            await lean.publish("garbage.lean", b"x")
        dropped = lean.dropped
        for junk in (b"x", b"-1", b"99999999999999999999999", b"1e5", b"0"):
            await hostile.publish(lean._prefix_s + junk.decode(), b"{}")
        await flush(hostile)
        await flush(nc)  # the server delivers them to us before its PONG
        assert lean.dropped == dropped + 5
    finally:
        await hostile.close()


async def test_a_closed_connection_is_unavailable_and_a_fire_and_forget_write_there_is_counted(
        nats_server: EmbeddedServer) -> None:
    client = await connect([nats_server.url], "lean-closed")
    lean = await Lean.of(client)
    await client.close()
    with pytest.raises(StoreUnavailable):
        lean.request("x", b"")
    await Bucket(lean, "gone", direct=True).delete("k", wait=False)  # not raised: counted
    assert lean.unawaited_failures == 1


async def test_a_bucket_made_without_direct_get_gets_it_when_corps_opens_it(nc: Client) -> None:
    name = f"old{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.create_key_value(KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE))
    assert not (await js.stream_info(f"KV_{name}")).config.allow_direct
    want, _ = bucket_config(SagaConfig(), nc._server_info, name, "test")
    assert want.direct
    await ensure_bucket(js, want)
    assert (await js.stream_info(f"KV_{name}")).config.allow_direct


async def test_a_payload_over_max_payload_is_refused_before_it_is_sent(nc: Client) -> None:
    b = await _bucket(nc, direct=True)
    with pytest.raises(StoreRefused) as info:
        b.put_soon("big", b"x" * (nc.max_payload + 1))
    assert info.value.code == PAYLOAD_TOO_LARGE
    assert b.lean.in_flight == 0
    assert await b.put("small", b"x") > 0  # the connection is still fine
