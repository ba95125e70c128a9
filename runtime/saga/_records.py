"""A participant's idempotency records: their states, and the interface of the stores that hold them.

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

Two stores with one interface (get with a revision, create, compare-and-set update, clear),
chosen by the effect kind a handler declares (``@idempotent(effect=...)``): a record is as
durable as the effect it guards.

* ``corps.saga._kv_records.KvRecords`` (``effect="external"``): the namespace's KV bucket, for
  effects outside the process (a card network, a database, another service). Records outlive the
  process, so a crash between the effect and its record leaves an intent behind: the window, named.
* ``corps.saga._memory_records.MemoryRecords`` (``effect="memory"``): on the actor instance, for
  effects that are the instance's own state. Record and effect live and die together: no window,
  no I/O; bounded by ``SagaConfig.memory_records`` and ``memory_horizon``.

How records are written around a handler (outcomes off the mailbox, per-key order) is
``corps.saga._recording``.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

from corps.errors import SagaStoreUnavailable

RECORD_TTL: Final = 7 * 24 * 3600.0
"""Seconds the KV bucket remembers a key: longer than any saga's retries and redeliveries."""
RECORD_RETRY_FOR: Final = 30.0
"""Seconds to keep retrying an outcome write before leaving it in the instance's memory."""


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

encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


def decode_record(key: str, data: bytes) -> Record:
    """A stored record, read back. The bytes come from a KV bucket anyone with access may write.

    Raises:
        SagaStoreUnavailable: they are no record (any exception of the decoder, RecursionError
            included). Never read as "no record": that would run a step again; the request
            fails instead (the asker retries) until the record is repaired or expires.
    """
    try:
        return _decode(data)
    except Exception as exc:  # untrusted bytes: every failure becomes one typed outcome
        raise SagaStoreUnavailable(f"idempotency record {key!r} is unreadable: {type(exc).__name__}") from exc


class Records(Protocol):
    """A participant's records; every method raises SagaStoreUnavailable if the store is down."""

    async def get(self, key: str) -> tuple[Record, int] | None:
        """The record of ``key`` and its revision, or None."""
        ...

    async def create(self, key: str, record: Record, *, undo: bool = False) -> int | None:
        """Write ``record`` unless ``key`` has one; its revision, or None if one existed.

        ``undo``: written by a compensation (a bounded store keeps room for those).
        """
        ...

    async def update(self, key: str, record: Record, revision: int) -> bool:
        """Replace the record of ``key`` if it is still at ``revision``; False if it changed."""
        ...

    async def clear(self, key: str, revision: int) -> None:
        """Remove the record of ``key`` if it is still at ``revision`` (best effort)."""
        ...
