"""Ownership of virtual ids: one KV record per active id, claimed by compare-and-set.

``{ns}_owners``: ``{Class}.{id}`` -> ``{"node": owner, "through": {...}}``. The record's revision
is the activation's fencing token: it only grows (one stream, one sequence), so every
activation of an id has a larger token than the ones before it. A claim creates the record, or
replaces it (CAS on its revision) when it is released (``node == ""``), ours, held by a node
that is no longer a member, or held under an epoch its (live) node has left behind (its lease
ran out: it fenced that activation off and no longer knows it holds the record); otherwise the
claimer waits. A release
(a move) leaves ``through``: per sender, the last message handled, so the next owner skips the
messages it also received but the previous owner already handled. An idle deactivation deletes
the record (CAS too: a record that someone else took over is left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import anyio
import msgspec
import nats.js.errors
from nats.js.api import KeyValueConfig

from corps.virtual._kv import open_bucket
from corps.wire._client import Throttled

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("corps.virtual")

IN_FLIGHT: Final = 64


class OwnerRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    node: str
    through: dict[str, int] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(OwnerRecord).decode


def read_record(data: bytes) -> OwnerRecord | str:
    """Decode an ownership record (untrusted bytes: anyone allowed to write the bucket may); a
    string says why it is unreadable."""
    try:
        return _decode(data)
    except Exception as exc:  # noqa: BLE001 -- untrusted bytes: any failure is the writer's problem
        return f"{type(exc).__name__}: {exc}"[:200]


def owners_bucket(namespace: str) -> str:
    return f"{namespace}_owners"


class Claim(msgspec.Struct, frozen=True):
    token: int
    through: dict[str, int]
    taken: bool = False
    """Taken over from a holder that did not hand it over (it died, left its lease, or the
    record was unreadable): which messages it handled is unknown."""


class Owners:
    """The ownership records of one namespace. Keys are ``{Class}.{id}``: an id is one subject
    token (checked by ``actor_subject``), which may hold characters KV's key check refuses, so
    keys are not re-checked (``validate_keys=False``); the server takes any subject."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        # KV operations in flight, at most: thousands of claims at once (a burst of new ids)
        # queued the heartbeat behind them until the node's own lease ran out (measured: 12,000
        # new ids at once lapsed the lease within 2 s); 64 keep the pipeline full.
        self._in_flight = anyio.Semaphore(IN_FLIGHT)
        self.unreadable = 0
        """Records that did not decode: treated as free (their owner, if any, is fenced by CAS)."""
        self._quiet = Throttled(log)

    @classmethod
    async def open(cls, js: object, namespace: str, replicas: int) -> Owners:
        kv = await open_bucket(js, KeyValueConfig(bucket=owners_bucket(namespace), history=1, replicas=replicas,
                                                  description="corps virtual actors: owners"), "ownership")
        return cls(kv)

    async def claim(self, key: str, me: str, epoch: int, holds: Callable[[str], bool]) -> Claim | None:
        """Take ``key`` for this node; None while a live member holds it."""
        async with self._in_flight:
            return await self._claim(key, me, epoch, holds)

    async def _claim(self, key: str, me: str, epoch: int, holds: Callable[[str], bool]) -> Claim | None:
        mine = _encode(OwnerRecord(f"{me}:{epoch}"))
        try:
            return Claim(await self.kv.create(key, mine, validate_keys=False), {})
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None  # released between the two calls: the caller tries again
        held = read_record(entry.value or b"")
        if isinstance(held, str):
            self.unreadable += 1
            self._quiet.warning("owner", "ownership record %r unreadable: %s", key[:80], held)
            held = OwnerRecord("")
        holder = held.node.partition(":")[0]
        if held.node and holder != me and holds(held.node):
            return None
        try:
            token = await self.kv.update(key, mine, last=entry.revision, validate_keys=False)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None  # someone else was faster
        return Claim(token, held.through if not held.node else {}, taken=bool(held.node))

    async def release(self, key: str, token: int, through: dict[str, int] | None) -> bool:
        """Hand ``key`` over (``through`` given: a move) or delete it (an idle deactivation).
        False if the record is no longer ours (taken over: this activation was fenced off)."""
        async with self._in_flight:
            return await self._release(key, token, through)

    async def _release(self, key: str, token: int, through: dict[str, int] | None) -> bool:
        try:
            if through is None:
                await self.kv.delete(key, last=token, validate_keys=False)
            else:
                await self.kv.update(key, _encode(OwnerRecord("", through)), last=token, validate_keys=False)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True
