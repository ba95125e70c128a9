"""A JetStream KV bucket through the lean path (``Lean``): one idea, the KV operations.

``Bucket`` puts, creates (expected last subject sequence 0, over a delete marker if the key was
deleted), CAS updates, deletes and purges (awaited, or fire-and-forget with failures counted),
and gets by direct get (``$JS.API.DIRECT.GET``) when the bucket's stream allows it, else by the API.
"""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec

from corps.errors import StoreConflict, StoreError
from corps.wire._jetstream import Lean
from corps.wire._js_answers import (
    EXPECTED_LAST,
    KV_OPERATION,
    Entry,
    Reply,
    decode_ack,
    decode_api_get,
    decode_direct,
    decode_purged,
    header_block,
)

_json = msgspec.json.Encoder().encode

_DEL: Final = header_block({KV_OPERATION: "DEL"})
_CAS: Final = b"NATS/1.0\r\n" + EXPECTED_LAST.encode() + b": %d\r\n\r\n"
"""``header_block({EXPECTED_LAST: str(last)})`` as one %-format (a CAS write per saga transition)."""
_PURGE: Final = header_block({KV_OPERATION: "PURGE", "Nats-Rollup": "sub"})


class Bucket:
    """A JetStream KV bucket through ``Lean``: keys are the caller's to validate.

    Args:
        direct: the bucket's stream has ``allow_direct``: gets are direct gets.
    """

    def __init__(self, lean: Lean, bucket: str, *, direct: bool) -> None:
        self.lean = lean
        self.name = bucket
        self.stream = f"KV_{bucket}"
        self.direct = direct
        self._pre = f"$KV.{bucket}."
        self._get_api = f"$JS.API.STREAM.MSG.GET.{self.stream}"
        self._purge_api = f"$JS.API.STREAM.PURGE.{self.stream}"
        self._get_direct = f"$JS.API.DIRECT.GET.{self.stream}.{self._pre}"

    def subject(self, key: str) -> str:
        return self._pre + key

    # -- writes: *_soon send now and return the ack's future; the plain forms await it ---------

    def put_soon(self, key: str, value: bytes) -> asyncio.Future[Reply]:
        return self.lean.request(self._pre + key, value)

    def create_soon(self, key: str, value: bytes) -> asyncio.Future[Reply]:
        return self.update_soon(key, value, 0)

    def update_soon(self, key: str, value: bytes, last: int) -> asyncio.Future[Reply]:
        return self.lean.request(self._pre + key, value, _CAS % last)

    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; its revision."""
        return decode_ack(self._pre + key, await self.put_soon(key, value))

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``value`` if the key's revision is ``last`` (0: the key has no value); the new revision.

        Raises:
            StoreConflict: it is not.
        """
        return decode_ack(self._pre + key, await self.update_soon(key, value, last))

    async def create(self, key: str, value: bytes) -> int:
        """Write ``value`` if the key has none (never written, or deleted); its revision.

        Raises:
            StoreConflict: the key has a value.
        """
        try:
            return await self.update(key, value, 0)
        except StoreConflict:
            found = await self.entry(key)  # a delete marker is a message: create goes over it
            if found is None or not found.deleted:
                raise
            return await self.update(key, value, found.revision)

    async def delete(self, key: str, *, last: int | None = None, wait: bool = True) -> None:
        """Put a delete marker (if the revision is still ``last``, when given).

        ``wait=False`` sends it and returns: a failure is counted (``Lean.unawaited_failures``).

        Raises:
            StoreConflict: ``last`` given and the key has moved on (only with ``wait``).
        """
        headers = _DEL if last is None else header_block({KV_OPERATION: "DEL", EXPECTED_LAST: str(last)})
        await self._marker(key, headers, wait)

    async def purge(self, key: str, *, wait: bool = True) -> None:
        """Remove every value of the key, leaving a purge marker."""
        await self._marker(key, _PURGE, wait)

    def purge_soon(self, key: str, upto: int) -> asyncio.Future[Reply] | None:
        """Remove the key's messages up to stream sequence ``upto`` (its delete marker, read at
        ``upto``: what a listing would otherwise read again each time), leaving nothing behind.
        A write after ``upto`` stays. Not awaited: a failure is counted (``Lean.unawaited_failures``);
        the answer's future (``decode_purged`` reads it), None if it could not be sent."""
        subject = self._pre + key
        request = _json({"filter": subject, "seq": upto + 1})  # seq: purge below it
        try:
            fut = self.lean.request(self._purge_api, request)
        except StoreError as exc:
            self.lean.failed(subject, exc)
            return None
        self.lean.settle(fut, subject, decode_purged)
        return fut

    async def _marker(self, key: str, headers: bytes, wait: bool) -> None:
        subject = self._pre + key
        if wait:
            decode_ack(subject, await self.lean.request(subject, b"", headers))
            return
        try:
            fut = self.lean.request(subject, b"", headers)
        except StoreError as exc:
            self.lean.failed(subject, exc)
        else:
            self.lean.settle(fut, subject)

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The key's value and revision; None if it has none (never written, deleted or purged)."""
        found = await self.entry(key)
        return None if found is None or found.deleted else found

    async def entry(self, key: str) -> Entry | None:
        """The key's last message, delete markers included; None if there is none."""
        subject = self._pre + key
        if self.direct:
            reply = await self.lean.request(self._get_direct + key, b"")
            return decode_direct(subject, reply)
        reply = await self.lean.request(self._get_api, _json({"last_by_subj": subject}))
        return decode_api_get(subject, reply)

