"""A durable virtual instance's stored value through a real KV bucket: an extra that no layer of
this process reads (written by a newer version, or a layer not loaded here) is written back
unchanged with the new state and records, not erased by the next save."""

from __future__ import annotations

import msgspec

from corps import ActorSystem
from corps.saga._durable_records import decode_records, encode_records
from corps.virtual._envelope import decode_value, encode_value
from tests.virtual.domain import Add, DurableTill, TillState


async def test_an_extra_no_layer_here_reads_survives_the_next_save(actor_system: ActorSystem) -> None:
    await actor_system.host(DurableTill)
    kv = await actor_system._nc.jetstream().key_value(f"{actor_system.namespace}_state")
    await kv.put("DurableTill.x1", encode_value(TillState(10), {"saga.memory": encode_records([]),
                                                                "future.layer": b"\x00opaque"}))
    assert (await actor_system.ref(DurableTill, "x1").ask(Add(5), idempotency_key="s1:add", timeout=5)).total == 15
    state, extras = decode_value("k", (await kv.get("DurableTill.x1")).value or b"", msgspec.msgpack.Decoder(TillState))
    assert state == TillState(15)
    assert extras["future.layer"] == b"\x00opaque"
    assert [key for key, _ in decode_records(extras["saga.memory"], 10)] == ["s1:add"]
