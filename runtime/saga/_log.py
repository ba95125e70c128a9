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

import asyncio
import contextlib
import logging
import re
from typing import Final

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from corps.errors import SagaNotFound, SagaStoreUnavailable, SagaUnreadable, StoreConflict, StoreError, StoreRefused
from corps.saga._config import SagaConfig, bucket_config, ensure_bucket
from corps.saga._size import record_limit
from corps.saga._state import SagaState
from corps.wire._jetstream import PAYLOAD_TOO_LARGE, Lean
from corps.wire._js_answers import Reply, decode_ack, decode_purged
from corps.wire._kv_bucket import Bucket
from corps.wire._snapshot import live_keys
from corps.wire._transport import max_payload

log = logging.getLogger("corps.saga")

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
    """Reads and CAS-writes saga records in JetStream KV, through the lean path (``corps.wire._jetstream``).

    Per saga: a start writes the active index and the record in one flush and awaits both
    acks; each transition is one CAS write; the terminal write's index delete is sent once the
    write is durable and not awaited (a failure is counted in ``lean.unawaited_failures``: a
    stale index entry is dropped by the next scan that reads the terminal record).
    """

    def __init__(self, js: JetStreamContext, bucket: str, kv: Bucket) -> None:
        self._js = js
        self._bucket = bucket
        self._kv = kv
        self._last: tuple[SagaRecord, bytes] | None = None  # see encode
        self.purging = True
        """False once a purge of index markers failed (``active``): not tried again."""

    @classmethod
    async def open(cls, js: JetStreamContext, namespace: str, config: SagaConfig | None = None) -> SagaLog:
        """Open the namespace's saga bucket: created if missing, checked if present (``_config``).

        Raises:
            ProvisioningConflict: it exists with fewer replicas or another storage than ``config`` wants.
            SagaStoreUnavailable: JetStream is not enabled or does not answer.
        """
        bucket = saga_bucket(namespace)
        want, why = bucket_config(config or SagaConfig(), js._nc._server_info, bucket, "corps saga log")
        return await cls.attach(js, bucket, await ensure_bucket(js, want, why=why))

    @classmethod
    async def attach(cls, js: JetStreamContext, bucket: str, kv: KeyValue) -> SagaLog:
        """The log of an opened bucket (``kv``, nats-py's handle: whether it has direct get)."""
        return cls(js, bucket, Bucket(await Lean.of(js._nc), bucket, direct=bool(getattr(kv, "_direct", False))))

    @property
    def lean(self) -> Lean:
        """The connection's lean JetStream path (its counters: ``unawaited_failures``, ``dropped``)."""
        return self._kv.lean

    # -- size -----------------------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        """The server's max_payload, as the connection knows it now (it may change on reconnect)."""
        return max_payload(self._js._nc)

    @staticmethod
    def size(record: SagaRecord) -> int:
        """Bytes of ``record`` as written."""
        return len(_encode(record))

    def encode(self, record: SagaRecord) -> bytes:
        """``record`` as written; kept, so that a ``create`` or ``write`` of this very record
        that follows (the coordinator checks a record's size, then writes it) does not encode
        it a second time."""
        data = _encode(record)
        self._last = (record, data)
        return data

    def subject(self, saga_id: str) -> str:
        """The subject a saga's record is written on (what an InvalidMessage names)."""
        return f"$KV.{self._bucket}.s.{saga_id}"

    def _encoded(self, record: SagaRecord) -> bytes:
        last = self._last
        data = last[1] if last is not None and last[0] is record else _encode(record)  # frozen: same bytes
        self._last = None
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
        except StoreError as exc:
            raise SagaStoreUnavailable(f"read {saga_id}: {exc}") from exc
        if entry is None:
            raise SagaNotFound(saga_id)
        return decode_record(saga_id, entry.value), entry.revision

    async def create(self, record: SagaRecord) -> int | None:
        """Write a new saga; None if a saga with that id exists (starting is idempotent).

        The active index and the record go out in one flush, the index first: the stream
        stores them in that order, so a crash between the two leaves an index entry without a
        record (which the scanner drops), never a record nobody resumes. Both acks are awaited.

        Raises:
            TooLarge: the record cannot be one NATS message (nothing was written).
            SagaStoreUnavailable: the store did not answer.
        """
        saga_id = record.state.saga_id
        data = self._encoded(record)
        subject = self.subject(saga_id)
        try:
            index = self._kv.put_soon(f"a.{saga_id}", b"")
        except StoreError as exc:
            raise self._failed("create", saga_id, data, exc) from exc
        try:
            created = self._kv.create_soon(f"s.{saga_id}", data)
        except StoreError as exc:
            self.lean.settle(index, subject)
            raise self._failed("create", saga_id, data, exc) from exc
        try:
            revision = decode_ack(subject, await created)
        except StoreConflict:
            self.lean.settle(index, subject)  # an index entry for a saga that exists: harmless either way
            return None
        except StoreError as exc:
            self.lean.settle(index, subject)
            raise self._failed("create", saga_id, data, exc) from exc
        try:
            decode_ack(subject, await index)
        except StoreError:
            # The record is stored and its index is not (a timeout, a leader change): write it
            # again, or the saga would be resumed by nobody after a crash of its owner.
            try:
                await self._kv.put(f"a.{saga_id}", b"")
            except StoreError as exc:
                raise SagaStoreUnavailable(f"index {saga_id}: {exc}") from exc
        return revision

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
            rev = await self._kv.update(f"s.{saga_id}", data, revision)
        except StoreConflict as exc:
            raise Stale(saga_id) from exc
        except StoreError as exc:
            raise self._failed("write", saga_id, data, exc) from exc
        if record.state.status.terminal:
            await self.forget_active(saga_id)
        return rev

    def _failed(self, what: str, saga_id: str, data: bytes, exc: StoreError) -> Exception:
        if isinstance(exc, StoreRefused) and exc.code == PAYLOAD_TOO_LARGE:  # max_payload shrank since the check
            return TooLarge(saga_id, len(data), record_limit(self.max_payload))
        return SagaStoreUnavailable(f"{what} {saga_id}: {exc}")

    async def create_active(self, saga_id: str) -> None:
        """Put a saga back in the active index (an operator retry of a FAILED saga)."""
        try:
            await self._kv.put(f"a.{saga_id}", b"")
        except StoreError as exc:
            raise SagaStoreUnavailable(f"index {saga_id}: {exc}") from exc

    async def forget_active(self, saga_id: str) -> None:
        """Drop a saga from the active index, not waiting for the ack (a failure is counted):
        a stale index entry is harmless, the scanner drops it when it reads a terminal saga."""
        await self._kv.delete(f"a.{saga_id}", wait=False)

    async def active(self) -> list[str]:
        """Ids of sagas not known to be terminal.

        The index entries of ended sagas are delete markers, and a listing reads every marker
        there is: so the markers met are purged (not awaited, up to the marker's own sequence),
        and each is read by about one listing, not by every listing for ever.

        Raises:
            SagaStoreUnavailable: the store did not answer.
        """
        markers: dict[str, int] = {}
        ids = await self._ids("a", markers)
        for key, seq in markers.items():
            if seq > 0 and self.purging:
                fut = self._kv.purge_soon(key, seq)
                if fut is not None:
                    fut.add_done_callback(self._purged)
        return ids

    def _purged(self, fut: asyncio.Future[Reply]) -> None:
        """A purge failed (a server without the grant, say): stop purging, say so once. The
        markers then stay, as before, and every scan reads them all."""
        if fut.cancelled() or not self.purging:
            return
        try:
            decode_purged(self._bucket, fut.result())
        except Exception as exc:  # noqa: BLE001 -- StoreTimeout, StoreRefused, unreadable: all mean "not purged"
            self.purging = False
            log.warning("saga log %s: cannot purge the delete markers of ended sagas (%s); scans read "
                        "them all from now on (grant $JS.API.STREAM.PURGE.KV_%s)", self._bucket, exc, self._bucket)

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
        except StoreError as exc:
            raise SagaStoreUnavailable(f"liveness of {node}: {exc}") from exc

    async def heartbeat(self, node: str) -> tuple[bytes, int] | None:
        """Coordinator ``node``'s liveness key: its value and revision, or None if it has none.

        Raises:
            SagaStoreUnavailable: the store did not answer.
        """
        try:
            entry = await self._kv.get(f"c.{node}")
        except StoreError as exc:
            raise SagaStoreUnavailable(f"liveness of {node}: {exc}") from exc
        return None if entry is None else (entry.value, entry.revision)

    async def forget_heartbeat(self, node: str) -> None:
        """Delete coordinator ``node``'s liveness key (it stopped, or was found dead); best effort."""
        with contextlib.suppress(StoreError):
            await self._kv.delete(f"c.{node}")

    async def _ids(self, prefix: str, markers: dict[str, int] | None = None) -> list[str]:
        # Not KeyValue.keys()/watch(): their end-of-listing marker can come early and drop keys
        # (see corps.wire._snapshot); their filter is also a substring match in nats-py 2.16.
        try:
            keys = await live_keys(self._js, self._bucket, f"{prefix}.>", timeout=KV_TIMEOUT, markers=markers)
        except (nats.errors.Error, TimeoutError) as exc:
            raise SagaStoreUnavailable(f"list sagas: {exc!r}") from exc
        return [k[len(prefix) + 1 :] for k in keys]
