"""A flood from another OS process: ``python -m tests.flooder URL SUBJECT SECONDS [EVERY]``.

Publishes bare msgpack ``Work`` tells to SUBJECT as fast as one nats-py client can, for SECONDS;
every EVERY-th message is a request (reply on its own ``_INBOX``). Prints one JSON line: what it
sent and the replies it got by kind, after waiting (bounded) for the last replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

import msgspec
import nats
from nats.aio.msg import Msg


async def flood(url: str, subject: str, seconds: float, every: int) -> dict[str, int | float]:
    nc = await nats.connect(url, pending_size=8 * 1024 * 1024)
    replies: dict[str, int] = {}
    codes: dict[str, int] = {}
    inbox = nc.new_inbox()
    all_in = asyncio.Event()
    asks = 0
    flooding = True

    async def on_reply(msg: Msg) -> None:
        try:
            kind = str(msgspec.msgpack.decode(msg.data).get("kind", "ok"))
        except Exception:
            kind = "unreadable"
        replies[kind] = replies.get(kind, 0) + 1
        code = (msg.headers or {}).get("Nats-Service-Error-Code")  # what NATS clients read
        if code is not None:
            codes[code] = codes.get(code, 0) + 1
        if not flooding and sum(replies.values()) >= asks:
            all_in.set()

    await nc.subscribe(f"{inbox}.>", cb=on_reply)
    print("ready", flush=True)
    tell = msgspec.msgpack.encode({"$type": "Work", "n": 1})
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            sent += 1
            if sent % every == 0:
                asks += 1
                await nc.publish(subject, tell, reply=f"{inbox}.{asks}")
            else:
                await nc.publish(subject, tell)
        await asyncio.sleep(0)  # let the flusher run: the flood is as fast as this client writes
    await nc.flush()
    flooding = False
    if sum(replies.values()) < asks:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 15)  # bounded: missing replies are reported
    await nc.close()
    return {"sent": sent, "asks": asks, **{f"reply_{k}": v for k, v in replies.items()},
            **{f"code_{k}": v for k, v in codes.items()}}


if __name__ == "__main__":
    url, subject, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    every = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    print(json.dumps(asyncio.run(flood(url, subject, seconds, every))), flush=True)
