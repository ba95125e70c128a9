"""Publishing events to JetStream: Nats-Msg-Id, correlation headers, acks, retries with the same id.

Acks come back on one wildcard subscription of this node (``{ns}.evack.{node}.*``) and resolve a
future per publish, so concurrent publishes are pipelined on the connection. nats-py's
``js.publish`` does not retry a 503 (no stream responder, e.g. during a leader election) or a
timeout; this does, with the same Nats-Msg-Id, so a retry whose first attempt was stored is
dropped by the stream's dedupe (the ack says ``duplicate``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from corps.core._messages import Message
from corps.errors import InvalidMessage, PublishFailed
from corps.events._wire import CAUSE, CORR, MSG_ID, PUBACK_DECODER, STATUS, PubAck, build_headers, hpub
from corps.wire._client import Route, subscribe_route
from corps.wire._codec import undecodable
from corps.wire._transport import nats_errors

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from corps.events._config import EventsConfig

log = logging.getLogger("corps.events")

_encode = msgspec.msgpack.Encoder().encode

RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)


class _Retry(Exception):
    """This attempt got a retryable answer (503, no responders, timeout)."""


class Publisher:
    def __init__(self, nc: Client, namespace: str, node: str, cfg: EventsConfig) -> None:
        self._nc = nc
        self._cfg = cfg
        self._prefix = f"{namespace}.evack.{node}."
        self._pending: dict[str, asyncio.Future[tuple[bytes, str | None]]] = {}
        self._ids = itertools.count(1)
        self._node = node
        self.published = 0
        self.retries = 0

    async def start(self) -> None:
        await subscribe_route(self._nc, self._prefix + "*", Route(self._take, self._on_ack))

    def new_id(self) -> str:
        return f"{self._node}-{next(self._ids)}"

    def _take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """PubAcks straight from nats-py's parser (see ``Route``); statuses (503) go to _on_ack."""
        if headers is not None:
            return False
        self._answer(subject.decode(), data, None)
        return True

    async def _on_ack(self, msg: Msg) -> None:
        self._answer(msg.subject, msg.data, msg.headers.get(STATUS) if msg.headers else None)

    def _answer(self, subject: str, data: bytes, status: str | None) -> None:
        fut = self._pending.pop(subject[len(self._prefix):], None)
        if fut is not None and not fut.done():
            fut.set_result((data, status))

    async def publish(self, subject: str, event: Message | bytes, msg_id: str,
                      headers: dict[str, str] | None = None, *, timeout: float | None = None) -> PubAck:
        """Publish until the stream acks it, retrying 503s and timeouts with the same ``msg_id``.

        Raises:
            InvalidMessage: ``event`` cannot be encoded.
            PublishFailed: no ack within ``timeout`` (default ``EventsConfig.publish_timeout``),
                or the stream refused it (e.g. no stream for the subject).
        """
        if isinstance(event, bytes):
            payload = event
        else:
            try:
                if not isinstance(event, Message):
                    raise TypeError(f"{type(event).__name__} is not a Message")
                payload = _encode(event)
            except (TypeError, msgspec.EncodeError) as exc:
                raise InvalidMessage(subject, f"cannot encode event: {exc}") from exc
        hdr = build_headers({MSG_ID: msg_id, **(headers or {})})
        deadline = time.monotonic() + (timeout if timeout is not None else self._cfg.publish_timeout)
        last = "no attempt"
        for attempt in itertools.count():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ack = await self._attempt(subject, hdr, payload, min(left, self._cfg.publish_attempt_timeout))
            except _Retry as why:
                last = str(why)
                self.retries += 1
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                if deadline - time.monotonic() <= delay:
                    break
                log.info("publish on %s (id %s): %s; retrying", subject, msg_id, last)
                await anyio.sleep(delay)
                continue
            if ack.error is not None:
                raise PublishFailed(subject, msg_id, f"{ack.error.code} {ack.error.description}")
            self.published += 1
            return ack
        raise PublishFailed(subject, msg_id, last)

    async def _attempt(self, subject: str, hdr: bytes, payload: bytes, timeout: float) -> PubAck:
        token = str(next(self._ids))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[bytes, str | None]] = loop.create_future()
        self._pending[token] = fut
        timer = None
        try:
            try:
                await hpub(self._nc, subject, self._prefix + token, hdr, payload)
            except Exception as exc:
                with nats_errors(subject):
                    raise exc from None
                raise
            # A timer, not asyncio.timeout(): that costs a cancel scope per publish (measured).
            timer = loop.call_later(timeout, _expire, fut, timeout)
            data, status = await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(token, None)
        if status is not None:
            if status == "503":
                raise _Retry("503: no stream is listening (yet) on this subject")
            raise _Retry(f"status {status}")
        try:
            ack = PUBACK_DECODER.decode(data)
        except Exception as exc:
            raise PublishFailed(subject, "?", f"unreadable ack: {undecodable(exc)}") from exc
        if ack.error is not None and ack.error.code == 503:
            raise _Retry(f"503 {ack.error.description}")
        return ack


def _expire(fut: asyncio.Future[tuple[bytes, str | None]], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(_Retry(f"no ack within {timeout:.2f}s"))


def merge_headers(corr: str | None, cause: str | None, extra: dict[str, Any] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    if corr:
        out[CORR] = corr
    if cause:
        out[CAUSE] = cause
    if extra:
        out.update({k: str(v) for k, v in extra.items()})
    return out
