"""The dead-letter stream: what goes in (payload, headers, where it came from, why) and back out.

An entry is the original payload, published to ``{ns}.dlq.{consumer}`` in the ``{ns}_dlq``
stream, with the original headers (its ``Nats-Msg-Id`` kept as ``Corps-Dlq-Msg-Id``) and
``Corps-Dlq-*`` headers: Subject, Stream, Seq, Consumer, Attempts, Reason (handler-error,
undecodable, max-deliver, no-instance, no-key, crashed-owners: a partitioned event begun by
``max_deliver`` owners that died), Error, At. Its own Nats-Msg-Id is derived from (stream, seq,
consumer), so a retried dead-letter write is stored once.

Reading an entry never raises on what it holds: its payload is often undecodable (that may be
why it is here), and anyone who can publish on ``{ns}.dlq.>`` can store anything. An entry whose
headers are not what corps writes is listed with ``problem`` saying so, and is not redriven.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import nats.js.errors

from corps.errors import EventError
from corps.events._wire import (
    CAUSE,
    CORR,
    DLQ_PREFIX,
    EVENT_ID,
    MSG_ID,
    REDRIVE_FOR,
    STATUS,
    EventDecoder,
    dlq_stream_name,
    dlq_subject,
)

if TYPE_CHECKING:
    from corps.events._component import Events
    from corps.events._delivery import EventDelivery

N = TypeVar("N", int, float)


class DeadLetterEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the dead-letter stream, as ``corps dlq show`` prints it."""

    dlq_seq: int
    subject: str
    stream: str
    stream_seq: int
    consumer: str
    attempts: int
    reason: str
    error: str
    at: float
    event_type: str
    data: bytes
    headers: dict[str, str]
    problem: str = ""
    """Why the entry is not as corps writes them ("" if it is): a header missing or not a number."""

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID) or self.headers.get(DLQ_PREFIX + "Msg-Id", "")


async def write_dead_letter(events: Events, d: EventDelivery, reason: str, error: str) -> None:
    """Store the delivery in the dead-letter stream (retrying like any publish).

    Raises:
        PublishFailed: the dead-letter stream did not acknowledge it.
    """
    meta = d.meta
    headers = {k: v for k, v in d.headers.items() if k not in (MSG_ID, STATUS, REDRIVE_FOR)}
    if d.headers.get(MSG_ID):
        headers[DLQ_PREFIX + "Msg-Id"] = d.headers[MSG_ID]
    headers.update({
        DLQ_PREFIX + "Subject": d.msg.subject,
        DLQ_PREFIX + "Stream": meta.stream,
        DLQ_PREFIX + "Seq": str(meta.stream_seq),
        DLQ_PREFIX + "Consumer": meta.consumer,
        DLQ_PREFIX + "Attempts": str(max(d.attempt, meta.delivered)),
        DLQ_PREFIX + "Reason": reason,
        DLQ_PREFIX + "Error": error[:2000],
        DLQ_PREFIX + "At": f"{time.time():.3f}",
    })
    msg_id = f"dlq-{meta.stream}-{meta.stream_seq}-{meta.consumer}"
    await events.publisher.publish(dlq_subject(events.namespace, meta.consumer), d.msg.data, msg_id, headers)


_TAG_ONLY = EventDecoder(dict[str, Any])


def _type_of(data: bytes) -> str:
    """The payload's ``$type``, or "?" if it has none or does not decode (at any depth)."""
    try:
        tag = _TAG_ONLY.decode(data).get("$type", "?")
    except Exception:  # noqa: BLE001 -- untrusted bytes: RecursionError on deep nesting, as any decode
        return "?"
    return tag if isinstance(tag, str) else "?"


def _entry(seq: int, data: bytes, headers: dict[str, str]) -> DeadLetterEvent:
    """The entry at ``seq``, from whatever its headers hold; never raises."""
    h = headers
    problems: list[str] = []

    def number(name: str, kind: Callable[[str], N], default: N) -> N:
        raw = h.get(DLQ_PREFIX + name)
        if raw is None:
            return default
        try:
            value = kind(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
        except (ValueError, OverflowError):
            problems.append(f"{DLQ_PREFIX}{name} is not a number: {raw[:40]!r}")
            return default
        return value

    for name in ("Subject", "Consumer"):
        if not h.get(DLQ_PREFIX + name):
            problems.append(f"no {DLQ_PREFIX}{name} header")
    return DeadLetterEvent(
        dlq_seq=seq, subject=h.get(DLQ_PREFIX + "Subject", ""), stream=h.get(DLQ_PREFIX + "Stream", ""),
        stream_seq=number("Seq", int, 0), consumer=h.get(DLQ_PREFIX + "Consumer", ""),
        attempts=number("Attempts", int, 0), reason=h.get(DLQ_PREFIX + "Reason", ""),
        error=h.get(DLQ_PREFIX + "Error", ""), at=number("At", float, 0.0),
        event_type=_type_of(data), data=data, headers=h, problem="; ".join(problems),
    )


async def dead_letters(events: Events, consumer: str | None = None) -> list[DeadLetterEvent]:
    """Every entry of the dead-letter stream (optionally for one consumer), oldest first."""
    js = events.js
    stream = dlq_stream_name(events.namespace)
    info = await js.stream_info(stream)
    out = []
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        entry = await dead_letter(events, seq)
        if entry is not None and (consumer is None or entry.consumer == consumer):
            out.append(entry)
    return out


async def dead_letter(events: Events, seq: int) -> DeadLetterEvent | None:
    """The entry at ``seq`` of the dead-letter stream, or None (deleted or never written)."""
    try:
        raw = await events.js.get_msg(dlq_stream_name(events.namespace), seq)
    except (nats.js.errors.NotFoundError, nats.js.errors.BadRequestError):
        return None
    headers: dict[str, Any] = dict(raw.headers or {})
    return _entry(seq, raw.data or b"", {str(k): str(v) for k, v in headers.items()})


async def redrive(events: Events, seq: int, *, keep: bool = False) -> DeadLetterEvent | None:
    """Publish a dead letter again, for a fresh delivery to the consumer that gave up on it.

    It goes back to its original subject under a new Nats-Msg-Id (the stream's dedupe would drop
    the old one), with ``Corps-Event-Id`` keeping its identity for idempotent handlers and
    ``Corps-Redrive-For`` naming the consumer (the others skip it). The entry is then deleted,
    unless ``keep``. Returns the entry, or None if there is none at ``seq``.

    Raises:
        EventError: the entry does not say where it came from (not written by corps): it stays.
        PublishFailed: the event stream did not acknowledge it.
    """
    entry = await dead_letter(events, seq)
    if entry is None:
        return None
    if not entry.subject.startswith(f"{events.namespace}.events.") or not entry.consumer:
        raise EventError(f"dead letter {seq} cannot be redriven: it names no event subject of namespace "
                         f"{events.namespace!r} and consumer ({entry.problem or entry.subject!r})")
    h = entry.headers
    headers: dict[str, str] = {k: h[k] for k in (CORR, CAUSE) if k in h}
    headers[EVENT_ID] = entry.event_id
    headers[REDRIVE_FOR] = entry.consumer
    await events.publisher.publish(entry.subject, entry.data, f"redrive-{dlq_stream_name(events.namespace)}-{seq}",
                                   headers)
    if not keep:
        await events.js.delete_msg(dlq_stream_name(events.namespace), seq)
    return entry
