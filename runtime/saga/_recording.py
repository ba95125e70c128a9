"""Writing a participant's records around its handler: which store, outcomes off the mailbox, per-key order.

* ``records_for``: the store a handler's declared effect kind calls for (KV or the instance).
* ``finish``: record the reply of a handler that ran. Records in memory are written at once. A
  KV record is written *off the mailbox*: the write is sent (and flushed before the
  instance's next message runs, so a process killed while it handles that message has still
  sent it), the handler returns, the
  instance takes its next message, and the reply is held (``corps.core._context.hold_reply``)
  until the write's PubAck says the record is durable. Meanwhile the reply is in the instance's
  memory (``unrecorded``), and a later message for the same key on this instance waits for the
  write (``settled``), so per-key order holds: a duplicate's reply, like the first, goes out
  only once the record is written, and a compensation reads the forward step's outcome, not
  the intent it replaces.
* ``outcome``: the write, retried. A store that is down never turns into an error after the
  effect (the coordinator would retry it into a second effect): the reply stays in memory,
  answered from there to duplicates, and the write is retried for RECORD_RETRY_FOR seconds.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Coroutine
from typing import Any

import anyio

from corps.core._context import hold_reply
from corps.errors import SagaStoreUnavailable
from corps.saga._kv_records import KvRecords, kv_records
from corps.saga._memory_records import MemoryRecords, memory_records
from corps.saga._records import RECORD_RETRY_FOR, Record, Records

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor

log = logging.getLogger("corps.saga")

_SETTLE_FOR = RECORD_RETRY_FOR + 5.0
"""Seconds a message waits for an earlier write of its key on this instance (it ends within
RECORD_RETRY_FOR; this bounds a wait on a write whose task was cancelled at shutdown)."""


async def records_for(actor: Actor, effect: str) -> Records:
    """The records of ``actor``'s effects of kind ``effect`` (``memory`` or ``external``)."""
    return memory_records(actor) if effect == "memory" else await kv_records(actor.system)


def unrecorded(actor: Actor) -> dict[str, bytes]:
    """Replies this instance gave (or holds) whose records are not written yet."""
    found: dict[str, bytes] | None = actor.__dict__.get("_corps_unrecorded")
    if found is None:
        found = actor.__dict__["_corps_unrecorded"] = {}
    return found


def _writing(actor: Actor) -> dict[str, anyio.Event]:
    """Outcome writes of this instance in flight, by key: set once each ends."""
    found: dict[str, anyio.Event] | None = actor.__dict__.get("_corps_writing")
    if found is None:
        found = actor.__dict__["_corps_writing"] = {}
    return found


async def settled(actor: Actor, key: str) -> None:
    """Wait for this instance's outcome write of ``key``, if one is in flight (bounded)."""
    done = _writing(actor).get(key)
    if done is not None:
        with anyio.move_on_after(_SETTLE_FOR):
            await done.wait()


async def answered_from_memory(actor: Actor, key: str) -> bytes | None:
    """The reply this instance gave for ``key`` whose record is not written yet, or None. Its
    reply is held until the write in flight ends, as the first reply was."""
    data = unrecorded(actor).get(key)
    if data is not None:
        done = _writing(actor).get(key)
        if done is not None:
            await _hold(settled(actor, key))
    return data


async def finish(actor: Actor, records: Records, key: str, revision: int, data: bytes) -> None:
    """Record the reply ``data`` of a handler that ran, over its intent at ``revision``.

    In memory: now. In KV: sent now, its ack awaited off the mailbox with the reply held until
    it is written (see the module doc).
    """
    if isinstance(records, MemoryRecords):
        if not await records.update(key, Record(True, data), revision):
            log.warning("%s: its record changed while the handler ran: the outcome is not recorded over it", key)
        return
    if not isinstance(records, KvRecords):  # another store: written inline
        await outcome(actor, records, key, revision, data)
        return
    unrecorded(actor)[key] = data
    writing = _writing(actor)
    done = writing[key] = anyio.Event()
    try:
        sent: Awaitable[bool] | None = await records.send_update(key, Record(True, data), revision)
    except SagaStoreUnavailable:
        sent = None  # not sent: written (and retried) by outcome() below

    async def write() -> None:
        try:
            written: bool | None = None
            if sent is not None:
                try:
                    written = await sent
                except SagaStoreUnavailable:
                    written = None  # no ack: it may have landed; outcome() finds out (a CAS conflict, then a read)
            if written is None:
                await outcome(actor, records, key, revision, data)
            else:
                if not written:
                    await _changed(records, key)
                unrecorded(actor).pop(key, None)
        finally:
            done.set()
            if writing.get(key) is done:
                del writing[key]

    await _hold(write())


async def _changed(records: Records, key: str) -> None:
    """The outcome's CAS write lost: fine if the record is done (a copy wrote it), else said."""
    try:
        now = await records.get(key)
    except SagaStoreUnavailable:
        now = None
    if now is None or not now[0].done:
        log.warning("%s: its record changed while the handler ran (a compensation on another "
                    "instance?): the outcome is not recorded over it", key)


async def _hold(work: Coroutine[Any, Any, None]) -> None:
    """The reply waits for ``work``, off the mailbox; run by no mailbox (called directly): now."""
    try:
        hold_reply(work)
    except RuntimeError:
        await work


async def outcome(actor: Actor, records: Records, key: str, revision: int, data: bytes) -> None:
    """Write the outcome record of ``key``. Never raises for an unavailable store (see module doc)."""
    pending = unrecorded(actor)
    pending[key] = data
    done = Record(True, data)
    delay = 0.05
    with anyio.move_on_after(RECORD_RETRY_FOR):
        while True:
            try:
                written = await records.update(key, done, revision)
                if not written:
                    await _changed(records, key)
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
