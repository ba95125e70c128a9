"""corps.wire._snapshot on a real nats-server: every live key, deleted ones gone, never a partial list."""

from __future__ import annotations

import uuid

import anyio
from nats.js.api import KeyValueConfig

from corps import EmbeddedServer
from corps.wire._snapshot import live_keys
from corps.wire._transport import connect


async def test_it_lists_live_keys_under_the_pattern_only(nats_server: EmbeddedServer) -> None:
    nc = await connect([nats_server.url], "snapshot-test")
    bucket = f"kk{uuid.uuid4().hex[:8]}"
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
        assert await live_keys(js, bucket, "a.>", timeout=5) == []
        for key in ("a.1", "a.2", "a.3", "a.4", "b.1"):
            await kv.put(key, b"v")
        await kv.delete("a.2")
        await kv.purge("a.3")
        await kv.put("a.4", b"again")
        assert await live_keys(js, bucket, "a.>", timeout=5) == ["a.1", "a.4"]
        await kv.put("a.2", b"back")
        assert await live_keys(js, bucket, "a.>", timeout=5) == ["a.1", "a.2", "a.4"]
        assert await live_keys(js, bucket, ">", timeout=5) == ["a.1", "a.2", "a.4", "b.1"]
        # Each listing's consumer is deleted when it is done (nats-py's watch leaves one for 5 min).
        assert (await js.stream_info(f"KV_{bucket}")).state.consumer_count == 0
    finally:
        await nc.close()


async def test_a_listing_right_after_writes_is_never_partial(nats_server: EmbeddedServer) -> None:
    """nats-py's watch-based ``keys()`` returns part of the keys about once in a hundred such
    rounds (its end marker comes while deliveries are in flight); every round here must be whole."""
    nc = await connect([nats_server.url], "snapshot-race")
    bucket = f"kr{uuid.uuid4().hex[:8]}"
    partial: list[tuple[int, list[str]]] = []
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1))

        async def other_writes(stop: anyio.Event) -> None:
            i = 0
            while not stop.is_set():
                await kv.put(f"z.{i % 50}", b"x")
                i += 1

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(other_writes, stop)
            for n in range(400):
                for j in range(3):
                    await kv.put(f"p{n}.{j}", b"v")
                got = await live_keys(js, bucket, f"p{n}.>", timeout=5)
                if got != [f"p{n}.0", f"p{n}.1", f"p{n}.2"]:
                    partial.append((n, got))
            stop.set()
        assert partial == []
    finally:
        await nc.close()
