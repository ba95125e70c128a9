"""Where a participant's idempotency records live: JetStream KV, or the actor instance itself.

A record per idempotency key (``{saga_id}:{step}``, and ``...:undo`` for its compensation) says
what became of that request. ``@idempotent`` writes an *intent* before it runs the handler and
the outcome after, so a record is in one of these states:

=========================  ====================================================================
no record                  never started (or its handler raised, which says nothing applied)
intent                     started, no outcome recorded: the process died, or the handler was
                           cancelled, somewhere between the two writes: it *may have applied*
done (+ reply)             applied; the reply is the answer to every copy of the request
refusal                    the handler refused (StepRejected): nothing applied
refusal + intent           refused from now on, though an earlier attempt may have applied
fence                      compensated before it started: nothing applied, and nothing will
=========================  ====================================================================

Two stores with one interface (get with a revision, create, compare-and-set update, clear):

* :class:`KvRecords`: the namespace's KV bucket (``{namespace}-idempotency``), for effects outside
  the process (a card network, a database, another service). Records outlive the process, so a
  crash between the effect and its record leaves an intent behind: the window, named.
* :class:`MemoryRecords`: a dict on the actor instance, for effects that are the instance's own
  state. Record and effect live and die together (a crash, a restart by supervision): there is
  no window, and no I/O. The instance must be the only one holding its state: an entity, not a
  service (a queue group's instances do not share their memory).

``outcome`` writes the reply of a handler that ran; if the store is down it keeps the reply on
the instance (``unrecorded``), answers duplicates from there, and retries the write for
RECORD_RETRY_FOR seconds.
"""

from __future__ import annotations

import base64
import logging
import time
import typing
import weakref
from typing import Final, Protocol

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from corps.errors import SagaStoreUnavailable
from corps.saga._config import open_idempotency_bucket

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor
    from corps.core._node import Node

log = logging.getLogger("corps.saga")

RECORD_TTL: Final = 7 * 24 * 3600.0
"""Seconds a participant remembers a key: longer than any saga's retries and redeliveries."""


class Record(msgspec.Struct, frozen=True):
    """What became of one idempotency key (see the module doc for the states)."""

    done: bool
    """True: the handler ran and ``reply`` is its answer."""
    reply: bytes = b""
    refusal: str = ""
    """Non-empty: the request is refused with this reason (the handler refused, or it was fenced)."""
    intent: bool = False
    """An attempt began (written before the handler ran). Without ``done``: it may have applied.
    Records written before intents existed lack it: they read as False, as they meant."""

    @property
    def unfinished(self) -> bool:
        """An attempt began and recorded no outcome (nor was it refused since)."""
        return self.intent and not self.done and not self.refusal

    @property
    def may_have_applied(self) -> bool:
        """The effect applied, or may have: a compensation must run the undo."""
        return self.done or self.intent


INTENT: Final = Record(False, intent=True)
FENCE: Final = Record(False)

RECORD_RETRY_FOR: Final = 30.0
"""Seconds to keep retrying an outcome write inline before leaving it in the instance's memory."""
_WRONG_LAST: Final = (10071, 10164)  # JetStream: the subject's last sequence is not the expected one
encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


class Records(Protocol):
    """A participant's records; every method raises SagaStoreUnavailable if the store is down."""

    async def get(self, key: str) -> tuple[Record, int] | None:
        """The record of ``key`` and its revision, or None."""
        ...

    async def create(self, key: str, record: Record) -> int | None:
        """Write ``record`` unless ``key`` has one; its revision, or None if one existed."""
        ...

    async def update(self, key: str, record: Record, revision: int) -> bool:
        """Replace the record of ``key`` if it is still at ``revision``; False if it changed."""
        ...

    async def clear(self, key: str, revision: int) -> None:
        """Remove the record of ``key`` if it is still at ``revision`` (best effort)."""
        ...


class KvRecords:
    """Records in the namespace's idempotency bucket: for effects outside the process."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @staticmethod
    def key(idempotency_key: str) -> str:
        # KV keys allow [-/_=.a-zA-Z0-9]: base64url keeps any key (':' included) valid and unique.
        return "k." + base64.urlsafe_b64encode(idempotency_key.encode()).decode()

    async def get(self, key: str) -> tuple[Record, int] | None:
        try:
            entry = await self.kv.get(self.key(key))
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc
        if not entry.value:
            return None
        return _decode(entry.value), entry.revision or 0

    async def create(self, key: str, record: Record) -> int | None:
        try:
            return await self.kv.create(self.key(key), encode(record))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc

    async def update(self, key: str, record: Record, revision: int) -> bool:
        try:
            await self.kv.update(self.key(key), encode(record), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc
        return True

    async def clear(self, key: str, revision: int) -> None:
        try:
            await self.kv.delete(self.key(key), last=revision)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return  # changed meanwhile: not ours to clear any more
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"idempotency record {key!r}: {exc!r}") from exc


class MemoryRecords:
    """Records on the actor instance: for effects that are the instance's own state."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[Record, int, float]] = {}
        self._revision = 0

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def get(self, key: str) -> tuple[Record, int] | None:
        found = self._records.get(key)
        return None if found is None else (found[0], found[1])

    async def create(self, key: str, record: Record) -> int | None:
        if key in self._records:
            return None
        now = time.monotonic()
        # Oldest first (a dict keeps insertion order, and an update keeps a key's place): forget
        # what is older than any saga's retries, so an entity's memory stays bounded by its traffic.
        for old, (_, _, at) in list(self._records.items()):
            if now - at < RECORD_TTL:
                break
            del self._records[old]
        revision = self._next()
        self._records[key] = (record, revision, now)
        return revision

    async def update(self, key: str, record: Record, revision: int) -> bool:
        found = self._records.get(key)
        if found is None or found[1] != revision:
            return False
        self._records[key] = (record, self._next(), found[2])
        return True

    async def clear(self, key: str, revision: int) -> None:
        found = self._records.get(key)
        if found is not None and found[1] == revision:
            del self._records[key]


def memory_records(actor: Actor) -> MemoryRecords:
    """The records of this actor instance (a fresh instance, after a restart, has none)."""
    found = actor.__dict__.get("_corps_records")
    if not isinstance(found, MemoryRecords):
        found = actor.__dict__["_corps_records"] = MemoryRecords()
    return found


_stores: weakref.WeakKeyDictionary[Node, KvRecords] = weakref.WeakKeyDictionary()
_store_lock = anyio.Lock()


async def kv_records(system: Node) -> KvRecords:
    """The namespace's KV records, the bucket opened (created or checked) once per system.

    Raises:
        SagaStoreUnavailable: the bucket cannot be opened.
        ProvisioningConflict: it exists with other settings than the system's SagaConfig.
    """
    store = _stores.get(system)
    if store is None:
        async with _store_lock:
            store = _stores.get(system)
            if store is None:
                kv = await open_idempotency_bucket(system, ttl=RECORD_TTL)
                store = _stores[system] = KvRecords(kv)
    return store


# -- an actor's records, and writing outcomes ----------------------------------------------


async def records_for(actor: Actor, effect: str) -> Records:
    """The records of ``actor``'s effects of kind ``effect`` (``memory`` or ``external``)."""
    return memory_records(actor) if effect == "memory" else await kv_records(actor.system)


def unrecorded(actor: Actor) -> dict[str, bytes]:
    """Replies this instance gave whose records are not written yet (the store was down)."""
    found: dict[str, bytes] | None = actor.__dict__.get("_corps_unrecorded")
    if found is None:
        found = actor.__dict__["_corps_unrecorded"] = {}
    return found


async def outcome(actor: Actor, records: Records, key: str, revision: int | None, data: bytes) -> None:
    """Record the reply of a handler that ran (over its intent at ``revision``, or afresh).

    Never raises for an unavailable store: the reply stays in the instance's memory meanwhile.
    """
    pending = unrecorded(actor)
    pending[key] = data
    done = Record(True, data)
    delay = 0.05
    with anyio.move_on_after(RECORD_RETRY_FOR):
        while True:
            try:
                if revision is None:
                    written = await records.create(key, done) is not None
                else:
                    written = await records.update(key, done, revision)
                if not written:
                    now = await records.get(key)
                    if now is None or not now[0].done:
                        log.warning("%s: its record changed while the handler ran (a compensation on another "
                                    "instance?): the outcome is not recorded over it", key)
            except SagaStoreUnavailable:
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                del pending[key]
                return
    # Still unwritten: it stays in memory, so duplicates to this instance are answered from there.


async def clear(records: Records, key: str, revision: int) -> None:
    try:
        await records.clear(key, revision)
    except SagaStoreUnavailable as exc:
        # The intent stays: a retry runs the handler again all the same, and a compensation
        # runs the undo (the step looks as if it may have applied).
        log.warning("%s: the intent of a failed attempt could not be cleared: %s", key, exc)
