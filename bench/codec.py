"""The codec's ceiling: msgspec msgpack encode/decode of corps' envelope frames vs a bare Struct.

No NATS, no event loop work: the most messages per second the wire format allows on one core.
corps encodes each message as the envelope tuple ``(msg, rid, mid)`` with the runtime's own
``WireCodec`` and joins the parts into frames (``join_frame``, as the coalescing outbox does);
it decodes a frame with the actor class's ``list[Envelope[Ping]]`` decoder. raw encodes and
decodes the bare ``Ping`` Struct. ``corps-frame1`` decodes frames of one envelope: the cost per
NATS message when nothing coalesces.
"""

from __future__ import annotations

from corps.bench._model import Context, Row, Sample, Scenario, Variant
from corps.bench._stats import now
from corps.bench._work import ENCODER, PING_DECODER, Ping
from corps.bench.registry import register
from corps.wire._codec import Decoders, WireCodec, join_frame

FRAME = 64
"""Envelopes per frame for the coalesced case (a tight tell loop coalesces far more)."""


def _messages(n: int) -> list[Ping]:
    return [Ping(i) for i in range(n)]


async def corps_codec(ctx: Context, frame: int) -> Sample:
    n = ctx.params["messages"] // frame * frame
    msgs = _messages(n)
    encode = WireCodec("msgpack").encode
    frame_decoder, _ = Decoders(Ping).frame_and_bare(False)
    t0 = now()
    frames: list[bytes] = []
    for start in range(0, n, frame):
        parts = [encode((m, 0, start + j)) for j, m in enumerate(msgs[start : start + frame])]
        frames.append(join_frame(parts, False))
    t_enc = now() - t0
    t0 = now()
    decoded = 0
    for data in frames:
        decoded += len(frame_decoder.decode(data))
    t_dec = now() - t0
    if decoded != n:
        raise RuntimeError(f"decoded {decoded} of {n} envelopes")
    return {"encode_rate": n / t_enc, "decode_rate": n / t_dec, "bytes_per_msg": sum(map(len, frames)) / n,
            "seconds": t_enc + t_dec}


async def raw_codec(ctx: Context) -> Sample:
    n = ctx.params["messages"]
    msgs = _messages(n)
    encode, decode = ENCODER.encode, PING_DECODER.decode
    t0 = now()
    payloads = [encode(m) for m in msgs]
    t_enc = now() - t0
    t0 = now()
    for data in payloads:
        decode(data)
    t_dec = now() - t0
    return {"encode_rate": n / t_enc, "decode_rate": n / t_dec, "bytes_per_msg": sum(map(len, payloads)) / n,
            "seconds": t_enc + t_dec}


async def _corps_framed(ctx: Context) -> Sample:
    return await corps_codec(ctx, FRAME)


async def _corps_single(ctx: Context) -> Sample:
    return await corps_codec(ctx, 1)


@register("codec")
def codec(quick: bool) -> Scenario:
    return Scenario(
        "codec",
        "msgspec msgpack encode/decode ceiling: corps envelope frames vs the bare Struct (no NATS, one core)",
        {"messages": 50_000 if quick else 500_000, "frame": FRAME},
        (Variant("corps", _corps_framed), Variant("corps-frame1", _corps_single), Variant("raw", raw_codec)),
        (Row("codec encode (envelope)", "encode_rate", "msg/s", "corps", "raw"),
         Row(f"codec decode (frame of {FRAME})", "decode_rate", "msg/s", "corps", "raw"),
         Row("codec decode (frame of 1)", "decode_rate", "msg/s", "corps-frame1", "raw")),
        ("encode includes building the (msg, rid, mid) tuple and joining frames; messages are built untimed",
         "no peer column: FastStream has no codec of its own for this (it would be the same msgspec calls)"),
    )
