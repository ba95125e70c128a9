"""``system.events``: the JetStream side of one ActorSystem (streams, publisher, consumers, replay)."""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy

from corps.core._context import current
from corps.core._messages import Message
from corps.errors import EventError, InvalidMessage
from corps.events import _dlq
from corps.events._classes import event_handlers_of
from corps.events._config import EventsConfig
from corps.events._consumer import EventConsumer
from corps.events._delivery import current_event
from corps.events._provision import consumer_config, ensure_consumer, ensure_stream, stream_config
from corps.events._publish import Publisher, merge_headers
from corps.events._wire import (
    TRACEPARENT,
    EventDecoder,
    PubAck,
    dlq_stream_name,
    event_tag,
    events_subject,
    kv_bucket_name,
    parse_ack_subject,
    stream_name,
)
from corps.wire._codec import undecodable, union_of

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.kv import KeyValue

    from corps.core._host import ClassHost
    from corps.core._observe import Observer

log = logging.getLogger("corps.events")

_KV_KEY_OK = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class Events:
    """Publishing, consumers of hosted classes, the dead-letter stream and replay, for one system."""

    def __init__(self, nc: Client, namespace: str, node: str, cfg: EventsConfig) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.namespace = namespace
        self.node = node
        self.cfg = cfg
        self.stream = stream_name(namespace)
        self.publisher = Publisher(nc, namespace, node, cfg)
        self.consumers: dict[str, EventConsumer] = {}
        self.available = False
        self._kv: KeyValue | None = None
        self.skipped = 0
        """Events ``replay`` skipped because they did not decode (logged one by one)."""
        self.observer: Observer | None = None
        """The node's observer (tracing, metrics), set by the extension at start."""

    async def start(self) -> None:
        """Provision the event and dead-letter streams (if the server has JetStream).

        Raises:
            ProvisioningConflict: a stream exists with other settings.
        """
        await self.publisher.start()
        if not self.nc._server_info.get("jetstream"):  # core-only server: events are unavailable
            return
        await ensure_stream(self.js, stream_config(self.stream, [f"{self.namespace}.events.>"], self.cfg))
        await ensure_stream(self.js, stream_config(dlq_stream_name(self.namespace), [f"{self.namespace}.dlq.>"],
                                                   self.cfg, dlq=True))
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise EventError("events need a nats-server with JetStream enabled (nats-server -js)")

    async def attach(self, host: ClassHost) -> None:
        """Start the durable consumer of a class with ``@on_event`` handlers (once per class)."""
        if not event_handlers_of(host.cls) or host.name in self.consumers:
            return
        self._check()
        consumer = EventConsumer(self, host)
        self.consumers[host.name] = consumer
        try:
            await consumer.start()
        except BaseException:
            del self.consumers[host.name]
            raise

    async def stop_intake(self) -> None:
        for consumer in self.consumers.values():
            await consumer.stop()

    async def ensure_consumer(self, name: str, filters: list[str], max_deliver: int) -> None:
        await ensure_consumer(self.js, self.stream, consumer_config(name, filters, self.cfg, max_deliver))

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, event: Message, *, msg_id: str | None = None) -> PubAck:
        """Publish ``event`` on ``{ns}.events.{Type}``; see ``ActorSystem.publish``."""
        self._check()
        if not isinstance(event, Message):
            raise InvalidMessage(f"{self.namespace}.events.?", f"{type(event).__name__} is not a Message")
        subject = events_subject(self.namespace, type(event))
        d = current_event.get()
        if d is not None:  # inside an event handler: ids derived from the event, stable on retries
            corr, cause = d.correlation_id, d.event_id
            if msg_id is None:
                msg_id = f"{d.consumer.name}:{d.event_id}:{next(d.publishes)}"
        else:
            cur = current.get()
            if cur is not None and cur.item is None:
                cur = None  # outside any handler
            corr, cause = cur.ids() if cur is not None else ("", "")
            if msg_id is None:
                msg_id = (cur.publish_id(type(event)) if cur is not None else None) or self.publisher.new_id()
        obs = self.observer
        if obs is None:
            return await self.publisher.publish(subject, event, msg_id, merge_headers(corr, cause))
        token = obs.publish_begin(subject, event, msg_id)
        try:
            headers = merge_headers(corr, cause)
            tp = obs.traceparent()  # the publish span's: the consumer's span continues the trace
            if tp:
                headers[TRACEPARENT] = tp
            ack = await self.publisher.publish(subject, event, msg_id, headers)
        except BaseException as exc:
            obs.publish_end(token, exc)
            raise
        obs.publish_end(token, None)
        return ack

    # -- idempotency -----------------------------------------------------------------------

    async def ensure_kv(self) -> KeyValue:
        if self._kv is None:
            bucket = kv_bucket_name(self.namespace)
            try:
                self._kv = await self.js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self.js.create_key_value(bucket=bucket, ttl=self.cfg.idempotency_ttl,
                                                          replicas=self.cfg.replicas)
        return self._kv

    @staticmethod
    def _kv_key(consumer: str, event_id: str) -> str:
        if not _KV_KEY_OK.match(event_id):
            event_id = hashlib.sha256(event_id.encode()).hexdigest()
        return f"{consumer}.{event_id}"

    async def mark(self, consumer: str, event_id: str) -> bytes | None:
        """The idempotency mark of an event for a consumer: DONE, INTENT, or None (never begun).

        Raises:
            nats.errors.Error, TimeoutError: the bucket cannot be read.
        """
        kv = await self.ensure_kv()
        try:
            entry = await kv.get(self._kv_key(consumer, event_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value or None

    async def put_mark(self, consumer: str, event_id: str, mark: bytes) -> None:
        """Write an event's mark (INTENT before its handler runs, DONE after).

        Raises:
            nats.errors.Error, TimeoutError: the bucket cannot be written.
        """
        kv = await self.ensure_kv()
        await kv.put(self._kv_key(consumer, event_id), mark)

    async def clear_mark(self, consumer: str, event_id: str) -> None:
        """Remove an event's mark (its handler raised: the retry is a first attempt again).

        Raises:
            nats.errors.Error, TimeoutError: the bucket cannot be written.
        """
        kv = await self.ensure_kv()
        await kv.delete(self._kv_key(consumer, event_id))

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, consumer: str | None = None) -> list[_dlq.DeadLetterEvent]:
        """Every entry of the dead-letter stream (optionally of one consumer), oldest first."""
        self._check()
        return await _dlq.dead_letters(self, consumer)

    async def dead_letter(self, seq: int) -> _dlq.DeadLetterEvent | None:
        self._check()
        return await _dlq.dead_letter(self, seq)

    async def redrive(self, seq: int, *, keep: bool = False) -> _dlq.DeadLetterEvent | None:
        """Publish the dead letter at ``seq`` again for its consumer; see ``_dlq.redrive``."""
        self._check()
        return await _dlq.redrive(self, seq, keep=keep)

    # -- replay ----------------------------------------------------------------------------

    async def replay(self, *types: type[Message], from_seq: int | None = None,
                     from_time: datetime.datetime | None = None, follow: bool = False,
                     subject: str | None = None) -> AsyncIterator[tuple[Any, int]]:
        """Yield ``(event, stream sequence)`` from a position, through a new ephemeral consumer.

        Without ``follow`` it stops at the last event stored when it started (rebuild a
        projection); with ``follow`` it keeps waiting for new ones (``corps events tail``).
        With no types, every event is yielded as a dict (decoded without a schema). An event that
        does not decode (as one of ``types``, or at all: nested too deeply) is skipped, logged
        and counted in ``skipped``.
        """
        self._check()
        start_seq: int | None
        start_time: datetime.datetime | None
        if from_seq is not None:
            deliver, start_seq, start_time = DeliverPolicy.BY_START_SEQUENCE, from_seq, None
        elif from_time is not None:
            deliver, start_seq, start_time = DeliverPolicy.BY_START_TIME, None, from_time.astimezone(datetime.UTC)
        else:
            deliver, start_seq, start_time = (DeliverPolicy.NEW if follow else DeliverPolicy.ALL), None, None
        filters = [events_subject(self.namespace, tp) for tp in types] or [subject or f"{self.namespace}.events.>"]
        cfg = consumer_config(None, filters, self.cfg, 0, deliver=deliver, start_seq=start_seq,
                              start_time=start_time, ack=False)
        info = await self.js.add_consumer(self.stream, cfg)
        decoder = EventDecoder(union_of(list(types))) if types else EventDecoder()
        remaining = info.num_pending or 0
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        nxt = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{info.name}"
        try:
            while follow or remaining > 0:
                batch = 256 if follow else min(256, remaining)
                req = msgspec.json.encode({"batch": batch, "expires": int(2e9)})
                await self.nc.publish(nxt, req, reply=inbox)
                got = 0
                while got < batch:
                    try:
                        msg = await sub.next_msg(timeout=3.0)
                    except nats.errors.TimeoutError:
                        break
                    if not msg.reply:  # status: the request is over
                        break
                    got += 1
                    remaining -= 1
                    meta = parse_ack_subject(msg.reply)
                    try:
                        event = decoder.decode(msg.data)
                    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: RecursionError on deep nesting
                        self.skipped += 1
                        log.warning("replay: undecodable event at seq %s skipped: %s", meta and meta.stream_seq,
                                    undecodable(exc))
                        continue
                    yield event, meta.stream_seq if meta else 0
        finally:
            await sub.unsubscribe()
            try:
                await self.js.delete_consumer(self.stream, info.name)
            except Exception:  # noqa: BLE001 -- ephemeral: the server removes it after 30 s anyway
                log.debug("replay consumer %s not deleted", info.name)


__all__ = ["Events", "event_tag"]
