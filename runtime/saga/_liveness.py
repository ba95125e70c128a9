"""Coordinator liveness: a heartbeat key per coordinator, so a dead one's sagas are taken over in seconds.

Leases alone make a takeover wait for the lease (10 s by default). So each running coordinator
also rewrites its key ``c.{node}`` in the saga log bucket every ``heartbeat`` seconds, and
deletes it when it stops cleanly. A coordinator that scans the log watches the keys of the
owners of the sagas it meets: one whose key has not changed for ``liveness_timeout`` seconds, or
whose key it saw and then saw deleted, is taken for dead, and its sagas are taken over at once
with the usual CAS write, whatever their leases say.

Judged on the watcher's own monotonic clock (a revision that has not changed), not on the
writer's wall clock, so clock skew cannot make a live coordinator look dead. The one exception
is a key seen for the first time: its written time (wall clock) back-dates the watch by at most
``liveness_timeout``, so an owner that died before anyone watched it is not given a second
timeout. While the watcher cannot read the store (or write its own key), nothing is judged, and
every watch starts over when it can again: an outage that stopped every heartbeat is no death.

Being taken for dead is never unsafe: a paused coordinator that wakes up after its sagas were
taken over finds its next write refused (the CAS revision moved on) and stops driving them. A
key that never existed (an owner from a version without heartbeats) tells nothing: the lease decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
import msgspec

from corps.errors import SagaStoreUnavailable

if TYPE_CHECKING:
    from corps.saga._log import SagaLog

log = logging.getLogger("corps.saga")


class Heartbeat(msgspec.Struct, frozen=True):
    """The value of a liveness key."""

    at: float
    """Wall-clock time of the write: read only when a watcher first sees the key."""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Heartbeat).decode


class _Watch:
    """What a watcher knows of one owner's key."""

    def __init__(self, revision: int | None, since: float) -> None:
        self.revision = revision
        """The key's revision when last read; None: no key."""
        self.since = since
        """Watcher's monotonic time since which the revision has not changed."""
        self.seen = revision is not None
        """The key existed at some read: its absence now means the owner stopped."""
        self.dead = False


class Liveness:
    """One coordinator's heartbeat, and its watch over the other owners' heartbeats."""

    def __init__(self, saga_log: SagaLog, node: str, *, timeout: float) -> None:
        self._log = saga_log
        self.node = node
        self.timeout = timeout
        self._watches: dict[str, _Watch] = {}

    async def beat(self) -> bool:
        """Write this coordinator's key; False if the store did not take it (watches start over)."""
        try:
            await self._log.beat(self.node, _encode(Heartbeat(time.time())))
        except SagaStoreUnavailable:
            self._restart_watches()
            return False
        return True

    async def stop(self) -> None:
        """Delete this coordinator's key (a clean stop): its sagas are taken over at once."""
        await self._log.forget_heartbeat(self.node)

    async def is_dead(self, owner: str) -> bool:
        """True if ``owner`` is known dead; reads its key the first time it is asked about."""
        if not owner or owner == self.node:
            return False  # our own sagas, from an earlier coordinator of this node: the lease decides
        watch = self._watches.get(owner)
        if watch is None:
            try:
                found = await self._log.heartbeat(owner)
            except SagaStoreUnavailable:
                return False
            watch = self._watches[owner] = self._first_sight(found)
        self._judge(owner, watch)
        return watch.dead

    async def poll(self) -> list[str]:
        """Read the key of every watched owner; the owners found dead by this poll."""
        died = []
        for owner, watch in list(self._watches.items()):
            try:
                found = await self._log.heartbeat(owner)
            except SagaStoreUnavailable:
                self._restart_watches()
                return []
            revision = None if found is None else found[1]
            if revision != watch.revision:
                watch.revision, watch.since = revision, anyio.current_time()
                watch.seen = watch.seen or revision is not None
                if watch.dead and revision is not None:  # it was only paused: alive again, its key rewritten
                    watch.dead = False
            if self._judge(owner, watch):
                died.append(owner)
        return died

    def keep(self, owners: Iterable[str]) -> None:
        """Watch only ``owners`` from now on (the owners of the sagas the last scan met)."""
        wanted = set(owners)
        self._watches = {k: v for k, v in self._watches.items() if k in wanted}

    async def bury(self, owner: str) -> None:
        """Delete a dead owner's key once its sagas are all taken over (keys do not pile up)."""
        watch = self._watches.get(owner)
        if watch is not None and watch.dead and watch.revision is not None:
            await self._log.forget_heartbeat(owner)
            watch.revision = None

    def _first_sight(self, found: tuple[bytes, int] | None) -> _Watch:
        now = anyio.current_time()
        if found is None:
            return _Watch(None, now)
        data, revision = found
        try:
            age = time.time() - _decode(data).at
        except Exception:  # noqa: BLE001 -- untrusted bytes: an unreadable key is watched from now on
            age = 0.0
        return _Watch(revision, now - min(max(age, 0.0), self.timeout))

    def _judge(self, owner: str, watch: _Watch) -> bool:
        """Mark ``watch`` dead if it is; True if it just became so."""
        if watch.dead:
            return False
        quiet = anyio.current_time() - watch.since
        if (watch.revision is None and watch.seen) or (watch.revision is not None and quiet >= self.timeout):
            watch.dead = True
            log.warning("coordinator %s: presumed dead (%s); %s takes over its sagas", owner,
                        "its liveness key was deleted" if watch.revision is None else
                        f"no heartbeat for {quiet:.1f}s", self.node)
            return True
        return False

    def _restart_watches(self) -> None:
        now = anyio.current_time()
        for watch in self._watches.values():
            watch.since = now
