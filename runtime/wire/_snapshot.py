"""Read what a JetStream stream holds now, and end by count: never early, never on a quiet timeout.

nats-py's ``KeyValue.keys()`` and ``watch()`` end the initial listing at a ``None`` marker that
can come too early: it is sent when the consumer's info reports nothing pending while messages
the server already sent are still in flight, and when one message reports ``num_pending == 0``
(nats-py issue 842, pull request 995). ``keys()`` then returns part of the bucket. The saga log
listed its sagas that way, and a listing that missed all three sagas of a run failed CI.

Here the end is a count: a fresh consumer is asked how many messages it has delivered plus how
many are pending. Everything stored when it answers is among that many deliveries, so exactly
that many are read. What is stored later may be among them too, or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Final

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_OPERATION: Final = "KV-Operation"
_REMOVED: Final = frozenset({"DEL", "PURGE"})


async def scan(js: JetStreamContext, stream: str, subject: str, config: ConsumerConfig,
               on_msg: Callable[[Msg], None], *, timeout: float, **subscribe: Any) -> int:
    """Pass each message that an ephemeral push consumer ``config`` on ``stream`` (filtered on
    ``subject``) has as it starts to ``on_msg``, in stream order; the number passed.

    ``config`` should not ack (``AckPolicy.NONE``) and should live in memory with one replica:
    it lives for one read. ``subscribe``: more options for ``js.subscribe`` (flow control...).

    Raises:
        TimeoutError: the read took longer than ``timeout`` seconds.
        nats.errors.Error: the server refused or did not answer.
    """
    read = 0
    name = ""
    with anyio.fail_after(timeout):
        sub = await js.subscribe(subject, stream=stream, config=config, pending_msgs_limit=-1,
                                 pending_bytes_limit=-1, **subscribe)
        try:
            info = await sub.consumer_info()
            name = info.name
            total = ((info.delivered.consumer_seq if info.delivered else None) or 0) + (info.num_pending or 0)
            while read < total:
                on_msg(await sub.next_msg(timeout=timeout))
                read += 1
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error, TimeoutError):
                await sub.unsubscribe()
                if name:  # gone now, not after its inactive threshold: a coordinator lists every 2 s
                    await js.delete_consumer(stream, name)
    return read


async def live_keys(js: JetStreamContext, bucket: str, pattern: str, *, timeout: float,
                    markers: dict[str, int] | None = None) -> list[str]:
    """Keys of ``bucket`` matching ``pattern`` (``>`` and ``*`` allowed) that are not deleted,
    sorted. Delete and purge markers are messages too; they remove their key.

    Args:
        markers: if given, filled with the removed keys met: key -> the marker's stream sequence
            (a marker is read by every listing until it is purged: ``Bucket.purge_soon``).

    Raises:
        TimeoutError, nats.errors.Error: as ``scan``.
    """
    prefix = f"$KV.{bucket}."
    live: set[str] = set()

    def on_msg(msg: Msg) -> None:
        key = msg.subject[len(prefix):]
        if msg.headers is not None and msg.headers.get(_OPERATION) in _REMOVED:
            live.discard(key)
            if markers is not None:
                markers[key] = _stream_seq(msg)
        else:
            live.add(key)
            if markers is not None:
                markers.pop(key, None)

    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                            headers_only=True, mem_storage=True, num_replicas=1,
                            inactive_threshold=max(timeout, 5.0))
    await scan(js, f"KV_{bucket}", prefix + pattern, config, on_msg, timeout=timeout)
    return sorted(live)


def _stream_seq(msg: Msg) -> int:
    """The stream sequence of a consumer's delivery (from its ack subject); 0 if it has none."""
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # noqa: BLE001 -- a reply subject that is not a JetStream ack subject: no sequence
        return 0
