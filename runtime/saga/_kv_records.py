"""Participant records in the namespace's JetStream KV bucket: for effects outside the process.

``{namespace}-idempotency``, created or checked once per system with the SagaConfig's replicas
and storage (direct get on), records expiring after ``RECORD_TTL``. Read and written through the
lean JetStream path (``corps.wire._jetstream``: pipelined writes, PubAcks decoded cheaply,
direct gets). A record outlives the process: a crash between the effect and its outcome record
leaves an intent (see ``corps.saga._records``).

``send_update`` is the outcome write that does not hold the mailbox: the CAS write is sent (and
out of the process before the instance's next message runs: the kernel delivers it even if the
process is killed then), and its PubAck is awaited later, by whoever holds the reply.
"""

from __future__ import annotations

import asyncio
import base64
import typing
import weakref
from collections.abc import Awaitable

import anyio

from corps.errors import SagaStoreUnavailable, StoreConflict, StoreError
from corps.saga._config import open_idempotency_bucket
from corps.saga._records import RECORD_TTL, Record, decode_record, encode
from corps.wire._jetstream import Lean
from corps.wire._js_answers import Reply, decode_ack
from corps.wire._kv_bucket import Bucket

if typing.TYPE_CHECKING:
    from corps.core._node import Node


def _unavailable(key: str, exc: StoreError) -> SagaStoreUnavailable:
    return SagaStoreUnavailable(f"idempotency record {key!r}: {type(exc).__name__}: {exc}")


class KvRecords:
    """Records in the namespace's idempotency bucket."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    @staticmethod
    def key(idempotency_key: str) -> str:
        # KV keys allow [-/_=.a-zA-Z0-9]: base64url keeps any key (':' included) valid and unique.
        return "k." + base64.urlsafe_b64encode(idempotency_key.encode()).decode()

    async def get(self, key: str) -> tuple[Record, int] | None:
        try:
            entry = await self.bucket.get(self.key(key))
        except StoreError as exc:
            raise _unavailable(key, exc) from exc
        if entry is None or not entry.value:
            return None
        return decode_record(key, entry.value), entry.revision

    async def create(self, key: str, record: Record, *, undo: bool = False) -> int | None:
        try:
            return await self.bucket.create(self.key(key), encode(record))
        except StoreConflict:
            return None
        except StoreError as exc:
            raise _unavailable(key, exc) from exc

    async def update(self, key: str, record: Record, revision: int) -> bool:
        try:
            await self.bucket.update(self.key(key), encode(record), revision)
        except StoreConflict:
            return False
        except StoreError as exc:
            raise _unavailable(key, exc) from exc
        return True

    async def clear(self, key: str, revision: int) -> None:
        try:
            await self.bucket.delete(self.key(key), last=revision)
        except StoreConflict:
            return  # changed meanwhile: not ours to clear any more
        except StoreError as exc:
            raise _unavailable(key, exc) from exc

    async def send_update(self, key: str, record: Record, revision: int) -> Awaitable[bool]:
        """Send ``update(key, record, revision)`` now; the awaitable of its outcome
        (True: written; False: the record changed; SagaStoreUnavailable: unknown, retry it).

        Raises:
            SagaStoreUnavailable: the connection cannot send it now.
        """
        try:
            sent = self.bucket.update_soon(self.key(key), encode(record), revision)
        except StoreError as exc:
            raise _unavailable(key, exc) from exc
        # In the connection's pending buffer now: flushed with this loop iteration's writes, or,
        # if the mailbox runs its next message at once, by the mailbox before it (Mailboxes._drain, core/_mailbox.py).
        return self._acked(key, sent)

    async def _acked(self, key: str, sent: asyncio.Future[Reply]) -> bool:
        try:
            decode_ack(self.bucket.subject(self.key(key)), await sent)
        except StoreConflict:
            return False
        except StoreError as exc:
            raise _unavailable(key, exc) from exc
        return True


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
                lean = await Lean.of(system._nc)
                bucket = Bucket(lean, kv._name, direct=bool(getattr(kv, "_direct", False)))
                store = _stores[system] = KvRecords(bucket)
    return store
