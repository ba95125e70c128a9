"""Create streams and consumers idempotently, and report how existing ones differ from the code."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from corps.errors import EventError, ProvisioningConflict
from corps.events._config import EventsConfig


def stream_config(name: str, subjects: list[str], cfg: EventsConfig, *, dlq: bool = False) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        storage=StorageType.FILE if cfg.storage == "file" else StorageType.MEMORY,
        num_replicas=cfg.replicas,
        retention=RetentionPolicy.LIMITS if dlq or cfg.retention == "limits" else RetentionPolicy.INTEREST,
        duplicate_window=cfg.duplicate_window,
        max_age=cfg.dlq_max_age if dlq else cfg.max_age,
        max_bytes=cfg.max_bytes,
        discard=DiscardPolicy.OLD,
    )


_STREAM_FIELDS = ("subjects", "storage", "num_replicas", "retention", "duplicate_window", "max_age", "max_bytes")


def _show(v: Any) -> str:
    return str(getattr(v, "value", v))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(float(a) - float(b)) < 1e-6
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a) == sorted(b)
    return bool(a == b)


def diff(want: Any, have: Any, fields: tuple[str, ...]) -> list[str]:
    out = []
    for f in fields:
        w, h = getattr(want, f), getattr(have, f)
        if w is not None and not _close(w, h):
            out.append(f"{f} is {_show(h)} on the server, {_show(w)} in the code")
    return out


PROVISION_TIMEOUT: Final = 20.0
"""Seconds to keep retrying while JetStream does not answer: a cluster electing a meta leader
takes 6-9 s (measured on a 3-node loopback cluster with one node killed)."""

T = TypeVar("T")


async def _answered(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried while JetStream times out or answers 503; then a typed error.

    Raises:
        EventError: no answer within PROVISION_TIMEOUT, or JetStream refused (nats errors never escape).
    """
    delay = 0.1
    deadline = anyio.current_time() + PROVISION_TIMEOUT
    while True:
        try:
            return await call()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError) as exc:
            if anyio.current_time() + delay > deadline:
                raise EventError(f"JetStream did not answer ({what}) within {PROVISION_TIMEOUT}s: {exc!r}") from exc
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
        except ProvisioningConflict:
            raise
        except nats.errors.Error as exc:
            raise EventError(f"JetStream refused {what}: {exc!r}") from exc


async def ensure_stream(js: JetStreamContext, want: StreamConfig) -> None:
    """Create the stream, or check that the existing one matches (retrying while JetStream is
    electing a leader).

    Raises:
        ProvisioningConflict: it exists with other settings (every difference listed).
        EventError: JetStream did not answer or refused.
    """
    await _answered(f"stream {want.name}", lambda: _ensure_stream(js, want))


async def _ensure_stream(js: JetStreamContext, want: StreamConfig) -> None:
    assert want.name is not None
    try:
        info = await js.stream_info(want.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(want)
            return
        except nats.js.errors.BadRequestError:  # created concurrently by another node: check it
            info = await js.stream_info(want.name)
    problems = diff(want, info.config, _STREAM_FIELDS)
    if problems:
        raise ProvisioningConflict("stream", want.name, problems)


def consumer_config(durable: str | None, filters: list[str], cfg: EventsConfig, max_deliver: int, *,
                    deliver: DeliverPolicy = DeliverPolicy.ALL, start_seq: int | None = None,
                    start_time: datetime.datetime | None = None, ack: bool = True) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        name=durable,
        deliver_policy=deliver,
        opt_start_seq=start_seq,
        opt_start_time=start_time,
        ack_policy=AckPolicy.EXPLICIT if ack else AckPolicy.NONE,
        ack_wait=cfg.ack_wait if ack else None,
        # One more than the handlers' own limit: if a process dies during the last attempt, the
        # next delivery (seen as over the limit) goes to the dead-letter stream instead of staying
        # unacked forever. Never the server default of unlimited.
        max_deliver=max_deliver + 1 if ack else None,
        max_ack_pending=cfg.max_ack_pending if ack else None,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
        inactive_threshold=None if durable else 30.0,
    )


_CONSUMER_FIELDS = ("ack_policy", "ack_wait", "max_deliver", "max_ack_pending", "filter_subject", "filter_subjects")


async def ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> None:
    """Create the durable consumer, or check that the existing one matches.

    Raises:
        ProvisioningConflict: it exists with other settings (every difference listed).
        EventError: JetStream did not answer or refused.
    """
    await _answered(f"consumer {stream}/{want.durable_name}", lambda: _ensure_consumer(js, stream, want))


async def _ensure_consumer(js: JetStreamContext, stream: str, want: ConsumerConfig) -> None:
    assert want.durable_name is not None
    try:
        info = await js.consumer_info(stream, want.durable_name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, want)
        return
    problems = diff(want, info.config, _CONSUMER_FIELDS)
    if problems:
        raise ProvisioningConflict("consumer", f"{stream}/{want.durable_name}", problems)
