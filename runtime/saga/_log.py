"""The durable saga log: one JetStream KV entry per saga, written with compare-and-set.

Bucket ``{namespace}-sagas`` holds, per saga, ``s.{saga_id}``: a :class:`SagaRecord` (the
engine's state, the owning coordinator and its lease), and while the saga is not terminal,
``a.{saga_id}``: the active index that coordinators scan for sagas to resume. Under the reserved
prefix ``c.``, each running coordinator keeps its liveness key ``c.{node}`` (``_liveness``).
Every write of a record names the revision it read (CAS), so a coordinator that lost its lease
cannot overwrite newer state: its write fails and it stops driving that saga.

Failure of the store is never guessed around: every error becomes SagaStoreUnavailable and the
coordinator sends nothing whose transition it could not write (fail closed). A record too large
for one NATS message is not a failure of the store: it is TooLarge, checked before sending
(``_size``), and no retry can change it. A record that cannot be decoded is SagaUnreadable:
scans skip it, and nobody drives that saga.
"""

from __future__ import annotations

import contextlib
import re
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from corps.errors import SagaNotFound, SagaStoreUnavailable, SagaUnreadable
from corps.saga._config import SagaConfig, bucket_config, ensure_bucket
from corps.saga._size import record_limit
from corps.saga._state import SagaState
from corps.wire._snapshot import live_keys
from corps.wire._transport import max_payload

SAGA_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""Saga ids become KV keys and parts of idempotency keys ("{saga_id}:{step}")."""

KV_TIMEOUT: Final = 5.0


class SagaRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the log holds per saga."""

    state: SagaState
    owner: str
    """The node id of the coordinator that drives the saga ("" once terminal)."""
    lease_until: float
    """Wall-clock time until which the owner holds the saga; others may take it over after."""


class Stale(Exception):  # a signal between log and coordinator, never seen by users
    """A CAS write lost: someone else wrote the saga since we read it."""


class TooLarge(Exception):  # a signal between log and coordinator, never seen by users
    """A record that cannot be one NATS message: ``size`` bytes, over ``limit``. Nothing was written."""

    def __init__(self, saga_id: str, size: int, limit: int) -> None:
        self.saga_id, self.size, self.limit = saga_id, size, limit
        super().__init__(f"saga {saga_id}: a {size}-byte record, over the saga log's {limit}-byte limit")


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(SagaRecord).decode


def decode_record(saga_id: str, data: bytes) -> SagaRecord:
    """The record in ``data``, the value of the saga's KV entry.

    Raises:
        SagaUnreadable: it is not a SagaRecord.
    """
    try:
        return _decode(data)
    except Exception as exc:  # untrusted bytes: msgspec errors, RecursionError, ... all mean "unreadable"
        raise SagaUnreadable(saga_id, f"{type(exc).__name__}: {exc}"[:300]) from exc


def check_saga_id(saga_id: str) -> str:
    """Return ``saga_id`` if it can be a saga id.

    Raises:
        ValueError: not 1-128 characters of letters, digits, '-' and '_'.
    """
    if not isinstance(saga_id, str) or not SAGA_ID.fullmatch(saga_id):
        raise ValueError(f"invalid saga id {saga_id!r}: use 1-128 letters, digits, '-' or '_'")
    return saga_id


def saga_bucket(namespace: str) -> str:
    """The KV bucket that holds a namespace's saga log."""
    return f"{namespace}-sagas"


class SagaLog:
    """Reads and CAS-writes saga records in JetStream KV."""

    def __init__(self, js: JetStreamContext, bucket: str, kv: KeyValue) -> None:
        self._js = js
        self._bucket = bucket
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, namespace: str, config: SagaConfig | None = None) -> SagaLog:
        """Open the namespace's saga bucket: created if missing, checked if present (``_config``).

        Raises:
            ProvisioningConflict: it exists with fewer replicas or another storage than ``config`` wants.
            SagaStoreUnavailable: JetStream is not enabled or does not answer.
        """
        bucket = saga_bucket(namespace)
        want, why = bucket_config(config or SagaConfig(), js._nc._server_info, bucket, "corps saga log")
        return cls(js, bucket, await ensure_bucket(js, want, why=why))

    # -- size -----------------------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        """The server's max_payload, as the connection knows it now (it may change on reconnect)."""
        return max_payload(self._js._nc)

    @staticmethod
    def size(record: SagaRecord) -> int:
        """Bytes of ``record`` as written."""
        return len(_encode(record))

    def subject(self, saga_id: str) -> str:
        """The subject a saga's record is written on (what an InvalidMessage names)."""
        return f"$KV.{self._bucket}.s.{saga_id}"

    def _encoded(self, record: SagaRecord) -> bytes:
        data = _encode(record)
        limit = record_limit(self.max_payload)
        if len(data) > limit:  # the server would close the connection (headers count too): never send it
            raise TooLarge(record.state.saga_id, len(data), limit)
        return data

    async def read(self, saga_id: str) -> tuple[SagaRecord, int]:
        """The record and its revision.

        Raises:
            SagaNotFound: no such saga.
            SagaUnreadable: the record cannot be decoded (corrupt, or not written by corps).
            SagaStoreUnavailable: the store did not answer.
        """
        try:
            entry = await self._kv.get(f"s.{saga_id}")
        except nats.js.errors.KeyNotFoundError as exc:
            raise SagaNotFound(saga_id) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"read {saga_id}: {exc!r}") from exc
        if entry.revision is None:
            raise SagaStoreUnavailable(f"read {saga_id}: an entry without a revision")
        return decode_record(saga_id, entry.value or b""), entry.revision

    async def create(self, record: SagaRecord) -> int | None:
        """Write a new saga; None if a saga with that id exists (starting is idempotent).

        The active index is written first: a crash between the two leaves an index entry
        without a record, which the scanner drops, never a record nobody resumes.

        Raises:
            TooLarge: the record cannot be one NATS message (nothing was written).
            SagaStoreUnavailable: the store did not answer.
        """
        saga_id = record.state.saga_id
        data = self._encoded(record)
        try:
            await self._kv.put(f"a.{saga_id}", b"")
            return await self._kv.create(f"s.{saga_id}", data)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except nats.errors.MaxPayloadError as exc:  # a server with a smaller max_payload since the check
            raise TooLarge(saga_id, len(data), record_limit(self.max_payload)) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"create {saga_id}: {exc!r}") from exc

    async def write(self, record: SagaRecord, revision: int) -> int:
        """CAS-write ``record`` over ``revision``; the new revision.

        Raises:
            Stale: the record changed since ``revision`` (another coordinator owns it now).
            TooLarge: the record cannot be one NATS message (nothing was written).
            SagaStoreUnavailable: the store did not answer (the write may or may not have landed).
        """
        saga_id = record.state.saga_id
        data = self._encoded(record)
        try:
            rev = await self._kv.update(f"s.{saga_id}", data, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Stale(saga_id) from exc
        except nats.errors.MaxPayloadError as exc:
            raise TooLarge(saga_id, len(data), record_limit(self.max_payload)) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"write {saga_id}: {exc!r}") from exc
        if record.state.status.terminal:
            await self.forget_active(saga_id)
        return rev

    async def create_active(self, saga_id: str) -> None:
        """Put a saga back in the active index (an operator retry of a FAILED saga)."""
        try:
            await self._kv.put(f"a.{saga_id}", b"")
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"index {saga_id}: {exc!r}") from exc

    async def forget_active(self, saga_id: str) -> None:
        # A stale index entry is harmless: the scanner drops it when it reads a terminal saga.
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._kv.delete(f"a.{saga_id}")

    async def active(self) -> list[str]:
        """Ids of sagas not known to be terminal.

        Raises:
            SagaStoreUnavailable: the store did not answer.
        """
        return await self._ids("a")

    async def all(self) -> list[str]:
        """Ids of every saga in the log."""
        return await self._ids("s")

    # -- liveness keys (see _liveness) ----------------------------------------------------

    async def beat(self, node: str, data: bytes) -> None:
        """Write coordinator ``node``'s liveness key.

        Raises:
            SagaStoreUnavailable: the store did not answer.
        """
        try:
            await self._kv.put(f"c.{node}", data)
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"liveness of {node}: {exc!r}") from exc

    async def heartbeat(self, node: str) -> tuple[bytes, int] | None:
        """Coordinator ``node``'s liveness key: its value and revision, or None if it has none.

        Raises:
            SagaStoreUnavailable: the store did not answer.
        """
        try:
            entry = await self._kv.get(f"c.{node}")
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"liveness of {node}: {exc!r}") from exc
        return entry.value or b"", entry.revision or 0

    async def forget_heartbeat(self, node: str) -> None:
        """Delete coordinator ``node``'s liveness key (it stopped, or was found dead); best effort."""
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._kv.delete(f"c.{node}")

    async def _ids(self, prefix: str) -> list[str]:
        # Not KeyValue.keys()/watch(): their end-of-listing marker can come early and drop keys
        # (see corps.wire._snapshot); their filter is also a substring match in nats-py 2.16.
        try:
            keys = await live_keys(self._js, self._bucket, f"{prefix}.>", timeout=KV_TIMEOUT)
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"list sagas: {exc!r}") from exc
        return [k[len(prefix) + 1 :] for k in keys]
