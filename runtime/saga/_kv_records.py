"""Participant records in the namespace's JetStream KV bucket: for effects outside the process.

``{namespace}-idempotency``, created or checked once per system with the SagaConfig's replicas
and storage, records expiring after ``RECORD_TTL``. A record outlives the process: a crash
between the effect and its outcome record leaves an intent (see ``corps.saga._records``).
"""

from __future__ import annotations

import base64
import typing
import weakref
from typing import Final

import anyio
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from corps.errors import SagaStoreUnavailable
from corps.saga._config import open_idempotency_bucket
from corps.saga._records import RECORD_TTL, Record, decode_record, encode

if typing.TYPE_CHECKING:
    from corps.core._node import Node

_WRONG_LAST: Final = (10071, 10164)  # JetStream: the subject's last sequence is not the expected one


class KvRecords:
    """Records in the namespace's idempotency bucket."""

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
        return decode_record(key, entry.value), entry.revision or 0

    async def create(self, key: str, record: Record, *, undo: bool = False) -> int | None:
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
