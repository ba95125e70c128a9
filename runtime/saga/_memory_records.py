"""Participant records on the actor instance: for effects that are the instance's own state.

Record and effect live and die together (a crash, a restart by supervision, a fresh instance
elsewhere): no window between them, and no I/O. The instance must be the only one holding its
state: an entity, not a service (a queue group's instances do not share their memory).

Bounded, as every store is: an instance keeps at most ``SagaConfig.memory_records`` records of
forward steps (compensations may add a quarter more, so that the saga's way out, its undo, is
not refused for lack of room while forward steps are). A record is kept at least
``SagaConfig.memory_horizon`` seconds: the saga's retry horizon, within which a copy of a request
may still come (retries, a coordinator's takeover). Only older records are evicted, oldest
first; when the store is full of younger ones, a new key is refused with ParticipantRecordsFull
before its handler runs (the coordinator retries it as any error), so eviction never breaks
dedupe within the horizon. A copy arriving after the horizon finds no record and runs again:
the horizon is the promise, and the sustained rate one instance takes is at most
``memory_records / memory_horizon`` keys per second.
"""

from __future__ import annotations

import time
import typing
from collections import OrderedDict
from collections.abc import Callable

from corps.core import _extras
from corps.errors import ActorDefinitionError, ParticipantRecordsFull
from corps.saga._config import config_of
from corps.saga._durable_records import NAME, decode_records, encode_records
from corps.saga._records import Record

if typing.TYPE_CHECKING:
    from corps.core._actor import Actor

_ATTR = "_corps_records"


class MemoryRecords:
    """Records on one actor instance, at most ``limit`` (plus a quarter for compensations)."""

    def __init__(self, limit: int, horizon: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.undo_limit = limit + max(limit // 4, 1)
        self.horizon = horizon
        self._clock = clock
        # Oldest first: an update keeps a key's place, so the order is the order of creation.
        self._records: OrderedDict[str, tuple[Record, int, float]] = OrderedDict()
        self._revision = 0
        self.evicted = 0
        """Records forgotten after the horizon (counted: nothing is dropped silently)."""

    def __len__(self) -> int:
        return len(self._records)

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def get(self, key: str) -> tuple[Record, int] | None:
        found = self._records.get(key)
        return None if found is None else (found[0], found[1])

    async def create(self, key: str, record: Record, *, undo: bool = False) -> int | None:
        records = self._records
        if key in records:
            return None
        now = self._clock()
        bound = self.undo_limit if undo else self.limit
        if len(records) >= bound:
            self._evict(now)
            if len(records) >= bound:
                oldest = now - next(iter(records.values()))[2]
                raise ParticipantRecordsFull(bound, self.horizon, oldest)
        revision = self._next()
        records[key] = (record, revision, now)
        return revision

    def _evict(self, now: float) -> None:
        """Forget the records older than the horizon, oldest first (O(1) each)."""
        records = self._records
        while records:
            key, (_, _, at) = next(iter(records.items()))
            if now - at < self.horizon:
                return
            del records[key]
            self.evicted += 1

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

    def dump(self) -> bytes:
        """The records, oldest first, to save with a durable instance's state."""
        return encode_records([(key, record) for key, (record, _, _) in self._records.items()])

    def load(self, records: list[tuple[str, Record]]) -> None:
        """Take saved records (this store is new): stamped now, so each is kept a full horizon."""
        now = self._clock()
        for key, record in records:
            self._records[key] = (record, self._next(), now)


def memory_records(actor: Actor) -> MemoryRecords:
    """The records of this actor instance (a fresh instance, after a restart, has none), bounded
    as its system's SagaConfig says.

    Raises:
        ActorDefinitionError: the class is a service (its instances share no memory).
    """
    found = actor.__dict__.get(_ATTR)
    if not isinstance(found, MemoryRecords):
        cls = type(actor)
        if cls.options.service:
            raise ActorDefinitionError(cls.__qualname__, [
                "a service (ActorOptions(service=True)) cannot keep @idempotent(effect=\"memory\") records: its "
                "instances share no memory, so a retry on another instance would apply again; use an entity, "
                "or effect=\"external\""])
        config = config_of(actor.system)
        found = actor.__dict__[_ATTR] = MemoryRecords(config.memory_records, config.memory_horizon)
        _extras.register(actor, NAME, found)  # saved with its state if the instance's state is durable
    return found


def _restore(actor: Actor, data: bytes) -> None:
    """Records saved with a durable instance's state, back on its new activation.

    Raises:
        SagaStoreUnavailable: the saved bytes are no records (or over the bound).
    """
    records = memory_records(actor)
    records.load(decode_records(data, records.undo_limit))


_extras.restorer(NAME, _restore)
