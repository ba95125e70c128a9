"""Idempotent saga participants: their records live in JetStream KV, not in process memory.

Every step request carries an idempotency key (``{saga_id}:{step}``; its compensation
``{saga_id}:{step}:undo``). Two decorators, placed under ``@handler``, use it::

    @handler
    @idempotent
    async def reserve(self, msg: ReserveStock) -> StockReserved: ...

    @handler
    @compensation(noop=lambda msg: StockReleased(msg.order_id, msg.sku, 0))
    async def release(self, msg: ReleaseStock) -> StockReleased: ...

* ``@idempotent``: a repeated key gets the first reply without running the handler again; a
  forward request that arrives after its compensation (the fence below) is refused with
  StepRejected, so a late retry can never apply after the undo.
* ``@compensation``: compensating a step that never ran is a recorded no-op: the decorator
  fences the forward key and answers ``noop(msg)`` without calling the handler (bare, without
  ``noop``, it calls the handler, which must then find nothing to undo). A repeated
  compensation gets the first reply.

Once the handler has run, its reply is the truth: if the record cannot be written (the store is
down), the reply is kept on the actor instance, answered from there to duplicates, and written
in the background until the store is back. A store error *after* an effect never turns into an
error reply, which the coordinator would retry into a second effect (seen in a server-restart
test: one reservation applied twice).

What it cannot do: make the handler's effect and the record one atomic write. A participant
that crashes after its effect and before the record is written applies the effect again on the
retry. Entity actors handle one message at a time, so a forward and its compensation never race
on one instance; service actors (queue groups) can, and should keep their own effects idempotent.
"""

from __future__ import annotations

import base64
import functools
import typing
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from corps.core._context import current_idempotency_key
from corps.core._messages import Message
from corps.errors import SagaStoreUnavailable, StepRejected

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor
    from corps.core._node import Node

M = TypeVar("M", bound=Message)
R = TypeVar("R")
Handler = Callable[[Any, M], Awaitable[R]]

RECORD_TTL: Final = 7 * 24 * 3600.0
"""Seconds a participant remembers a key: longer than any saga's retries and redeliveries."""
UNDO_SUFFIX: Final = ":undo"


class _Record(msgspec.Struct, frozen=True):
    done: bool
    """True: the handler ran and ``reply`` is its answer. False: it did not apply: a fence
    (compensated first) or, with ``refusal``, the handler refused (StepRejected)."""
    reply: bytes = b""
    refusal: str = ""


_encode = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(_Record).decode


class _Store:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @staticmethod
    def key(idempotency_key: str) -> str:
        # KV keys allow [-/_=.a-zA-Z0-9]: base64url keeps any key (':' included) valid and unique.
        return "k." + base64.urlsafe_b64encode(idempotency_key.encode()).decode()

    async def get(self, key: str) -> _Record | None:
        try:
            entry = await self.kv.get(self.key(key))
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc
        return _decode_record(entry.value) if entry.value else None

    async def create(self, key: str, record: _Record) -> bool:
        """Write a record unless one exists; False if one did."""
        try:
            await self.kv.create(self.key(key), _encode(record))
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc
        return True


_stores: weakref.WeakKeyDictionary[Node, _Store] = weakref.WeakKeyDictionary()
_store_lock = anyio.Lock()


async def _store(system: Node) -> _Store:
    store = _stores.get(system)
    if store is None:
        async with _store_lock:
            store = _stores.get(system)
            if store is None:
                js = system._nc.jetstream()
                bucket = f"{system.namespace}-idempotency"
                try:
                    try:
                        kv = await js.key_value(bucket)
                    except nats.js.errors.BucketNotFoundError:
                        kv = await js.create_key_value(KeyValueConfig(
                            bucket=bucket, history=1, ttl=RECORD_TTL, storage=StorageType.FILE,
                            description="corps participant idempotency records"))
                except (nats.errors.Error, TimeoutError) as exc:
                    raise SagaStoreUnavailable(f"cannot open KV bucket {bucket!r}: {exc!r}") from exc
                store = _stores[system] = _Store(kv)
    return store


RECORD_RETRY_FOR: Final = 30.0
"""Seconds to keep retrying a record write inline before leaving it to the background."""


def _unrecorded(actor: Actor) -> dict[str, bytes]:
    """Replies this instance gave whose records are not written yet (the store was down)."""
    found: dict[str, bytes] | None = actor.__dict__.get("_corps_unrecorded")
    if found is None:
        found = actor.__dict__["_corps_unrecorded"] = {}
    return found


async def _record(actor: Actor, store: _Store, key: str, reply: Any) -> None:
    """Write the record of an effect that happened; never raises for an unavailable store."""
    data = _encode(reply)
    pending = _unrecorded(actor)
    pending[key] = data
    delay = 0.05
    with anyio.move_on_after(RECORD_RETRY_FOR):
        while True:
            try:
                await store.create(key, _Record(True, data))
            except SagaStoreUnavailable:
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                del pending[key]
                return
    # Still unwritten: it stays in memory, so duplicates to this instance are answered from there.


async def _earlier(actor: Actor, key: str) -> tuple[_Store, _Record | None]:
    """The store, and what this key was answered (or fenced) with before, if anything."""
    remembered = _unrecorded(actor).get(key)
    store = await _store(actor.system)
    if remembered is not None:
        return store, _Record(True, remembered)
    return store, await store.get(key)


def _reply_decoder(fn: Callable[..., Any]) -> Callable[[bytes], Any]:
    decoder: msgspec.msgpack.Decoder[Any] | None = None

    def decode(data: bytes) -> Any:
        nonlocal decoder
        if decoder is None:  # resolved on first use: the reply class may be defined after the actor
            decoder = msgspec.msgpack.Decoder(typing.get_type_hints(fn)["return"])
        return decoder.decode(data)

    return decode


def idempotent(fn: Handler[M, R]) -> Handler[M, R]:
    """Make a forward step handler idempotent by the request's idempotency key (see module doc).

    Requests without a key run the handler as usual.

    Raises:
        StepRejected: the step was compensated before this request arrived (fenced).
        SagaStoreUnavailable: the records cannot be read or written (the handler did not run,
            or ran and its record could not be written: the asker sees an error and retries).
    """
    decode = _reply_decoder(fn)

    @functools.wraps(fn)
    async def wrapper(self: Actor, msg: M) -> R:
        key = current_idempotency_key()
        if key is None:
            return await fn(self, msg)
        store, seen = await _earlier(self, key)
        if seen is not None:
            if seen.refusal:
                raise StepRejected(seen.refusal)  # refused before: a late copy is refused the same way
            if not seen.done:
                raise StepRejected(f"{key} was compensated before it ran; refusing the late request")
            result: R = decode(seen.reply)
            return result
        try:
            reply = await fn(self, msg)
        except StepRejected as refusal:
            # A refusal is an outcome too: recorded, so a late duplicate of this request cannot
            # apply once conditions change (say, stock came back) under a saga that compensated.
            await store.create(key, _Record(False, refusal=str(refusal) or "refused"))
            raise
        await _record(self, store, key, reply)
        return reply

    return wrapper


@typing.overload
def compensation(fn: Handler[M, R], /) -> Handler[M, R]: ...
@typing.overload
def compensation(*, noop: Callable[[Any], Any] | None = None) -> Callable[[Handler[M, R]], Handler[M, R]]: ...


def compensation(fn: Handler[M, R] | None = None, /, *,
                 noop: Callable[[Any], Any] | None = None) -> Any:
    """Make a compensation handler idempotent, and a no-op for a step that never ran.

    Use as ``@compensation(noop=...)``, or bare (``@compensation``) for a handler that is a
    no-op by itself when there is nothing to undo (``self.booked.pop(order_id, None)``).

    Args:
        noop: builds the reply for a compensation whose step never applied (the handler is
            not called then); it gets the compensation message. Without it, the handler is
            called then too, after the forward request has been fenced all the same.
    """

    def decorate(fn: Handler[M, R]) -> Handler[M, R]:
        decode = _reply_decoder(fn)

        @functools.wraps(fn)
        async def wrapper(self: Actor, msg: M) -> R:
            key = current_idempotency_key()
            if key is None:
                return await fn(self, msg)
            store, seen = await _earlier(self, key)
            if seen is not None:
                result: R = decode(seen.reply)
                return result
            forward = key.removesuffix(UNDO_SUFFIX)
            applied = await store.get(forward)
            # Never ran: fence the forward key so a late forward request is refused, and answer
            # without undoing anything. If the fence loses the race, the forward just recorded.
            never_ran = (applied is None and await store.create(forward, _Record(False))) or (
                applied is not None and not applied.done)
            reply: R = noop(msg) if never_ran and noop is not None else await fn(self, msg)
            await _record(self, store, key, reply)
            return reply

        return wrapper

    if fn is not None:
        if not callable(fn):
            raise TypeError(f"@compensation takes a handler, or only noop=...; not {fn!r}")
        return decorate(fn)
    return decorate
