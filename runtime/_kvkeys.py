"""Every live key of a JetStream KV bucket under a subject filter, and no fewer.

nats-py's ``KeyValue.keys()`` and ``watch()`` end the initial listing at a ``None`` marker that
can come too early: it is sent when the consumer's info reports nothing pending while messages
the server already sent are still in flight, and when one message reports ``num_pending == 0``
(nats-py issue 842, pull request 995). ``keys()`` then returns part of the bucket. The saga log
listed its sagas that way, and a listing that missed all three sagas of a run failed CI.

Here the end is a count: a fresh consumer (last message per subject, headers only, no acks) is
asked how many messages it has delivered plus how many are pending. Every key that exists when
it answers is among that many deliveries, so exactly that many are read. Delete and purge
markers are deliveries too; they remove their key.
"""

from __future__ import annotations

import contextlib
from typing import Final

import anyio
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_OPERATION: Final = "KV-Operation"
_REMOVED: Final = frozenset({"DEL", "PURGE"})


async def live_keys(js: JetStreamContext, bucket: str, pattern: str, *, timeout: float) -> list[str]:
    """Keys of ``bucket`` matching ``pattern`` (``>`` and ``*`` allowed) that are not deleted,
    sorted.

    Raises:
        TimeoutError: the listing took longer than ``timeout`` seconds.
        nats.errors.Error: the server refused or did not answer.
    """
    prefix = f"$KV.{bucket}."
    live: set[str] = set()
    with anyio.fail_after(timeout):
        sub = await js.subscribe(
            prefix + pattern,
            stream=f"KV_{bucket}",
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            headers_only=True,
            # In memory, one replica, as nats-py's ordered consumers: it lives for one listing.
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=max(timeout, 5.0),
                                  mem_storage=True, num_replicas=1),
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        try:
            info = await sub.consumer_info()
            delivered = (info.delivered.consumer_seq if info.delivered else None) or 0
            for _ in range(delivered + (info.num_pending or 0)):
                msg = await sub.next_msg(timeout=timeout)
                key = msg.subject[len(prefix):]
                if msg.headers is not None and msg.headers.get(_OPERATION) in _REMOVED:
                    live.discard(key)
                else:
                    live.add(key)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
    return sorted(live)
