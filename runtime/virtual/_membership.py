"""Membership of the nodes hosting virtual classes: a heartbeat in a KV bucket with a max age.

Each node puts ``{node}`` -> the virtual classes it hosts into ``{ns}_members`` every
``interval``; the bucket's max age (``member_ttl``) expires the record of a node that stopped.
Every node watches the bucket: a put adds (or refreshes) a member, a delete (a graceful leave)
removes it at once, and a member not heard for ``member_ttl`` is removed once the server
confirms that its record expired (``kv.get`` finds nothing), so a slow watch never evicts a
live node.

The lease: a node may handle ids only while ``monotonic() < lease_until``, which is the start
of its last acknowledged heartbeat plus 90% of ``member_ttl``. The server expires that record
no earlier than the put plus ``member_ttl``, so a node that is paused or cut off stops handling
before anyone can see it gone and take its ids over. A lapsed lease bumps ``epoch``: every
activation of the old epoch is fenced off for good (``on_lapse``), even once heartbeats resume.

After a lapse the node also takes no new activation until it has *caught up* (``catch_up``: a
flush of its connection, then every message read before the PONG routed): what sat in its
socket while it was paused is stale (another node may have handled it meanwhile) and must not
activate an id afresh once the heartbeat thread has renewed the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio
import msgspec
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from corps.virtual._config import VirtualConfig
from corps.virtual._kv import open_bucket
from corps.virtual._rendezvous import owner
from corps.wire._client import Throttled

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from nats.js.kv import KeyValue

    from corps.wire._client import CorpsClient

log = logging.getLogger("corps.virtual")

LEASE_SHARE: Final = 0.9
"""Share of member_ttl a heartbeat's lease lasts, from before the put: the margin is for clocks
that run at slightly different rates on two machines."""


class MemberRecord(msgspec.Struct, frozen=True):
    """What a node's heartbeat says: the virtual classes it hosts, and its counters per class
    (``Virtual.stats``), so tools (``corps ps``) read every node's view from the bucket."""

    classes: list[str]
    stats: dict[str, dict[str, int]] = {}
    epoch: int = 0
    """The node's lease epoch: ownership records of an older epoch of a live node are stale
    (that node fenced them off when its lease ran out, and no longer knows it holds them)."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(MemberRecord).decode


def members_bucket(namespace: str) -> str:
    return f"{namespace}_members"


class Membership:
    """This node's view of the live members and its own lease."""

    def __init__(self, js: object, namespace: str, me: str, cfg: VirtualConfig, on_change: Callable[[], None],
                 on_lapse: Callable[[], None], stats: Callable[[], dict[str, dict[str, int]]] = dict,
                 catch_up: Callable[[], Awaitable[None]] | None = None) -> None:
        self._stats = stats
        self._catch_up = catch_up
        self._js = js
        self._bucket = members_bucket(namespace)
        self.me = me
        self.cfg = cfg
        self._on_change = on_change
        self._on_lapse = on_lapse
        self.members: dict[str, frozenset[str]] = {}
        self.epochs: dict[str, int] = {}
        self._heard: dict[str, float] = {}
        self.classes: set[str] = set()
        self.placement: dict[str, Callable[[str], str]] = {}
        """Per class, the key an id is placed by, if not the id itself (partitioned classes)."""
        self.lease_until = 0.0
        self.epoch = 0
        self._caught_up = 0  # the latest epoch whose catch-up finished: new activations need epoch == it
        self._catching_up = False
        self.lapses = 0
        self.ignored = 0
        """Member records that did not decode (anyone with write access to the bucket can put one)."""
        self.changes = 0
        self._kv: KeyValue | None = None
        self._left = False
        self._quiet = Throttled(log)
        self._lease_lock = threading.Lock()  # the heartbeat thread and the loop both renew
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tg: TaskGroup | None = None
        self._guard: tuple[int, Callable[[], bool]] | None = None  # the latest epoch's guard

    # -- what placement asks ---------------------------------------------------------------

    @property
    def left(self) -> bool:
        return self._left

    def valid(self) -> bool:
        """May this node take a new activation now: its lease runs, and it has caught up since
        its last lapse (nothing it reads was sent before it)."""
        return self._caught_up == self.epoch and time.monotonic() < self.lease_until

    @property
    def stale(self) -> bool:
        """Lapsed and not caught up yet."""
        return self._caught_up != self.epoch

    def guard(self, epoch: int) -> Callable[[], bool]:
        """The check run before each message of an activation made in ``epoch``: one function
        per epoch, shared by its activations (a closure each was 5 of the 7 objects the garbage
        collector tracked per active id; 100,000 ids made full collections last seconds)."""
        shared = self._guard
        if shared is not None and shared[0] == epoch:
            return shared[1]
        monotonic = time.monotonic

        def ok() -> bool:
            return self.epoch == epoch and monotonic() < self.lease_until

        self._guard = (epoch, ok)
        return ok

    def owner(self, actor_name: str, key: str) -> str | None:
        place = self.placement.get(actor_name)
        return owner(key if place is None else place(key), (n for n, c in self.members.items() if actor_name in c))

    def alive(self, node: str) -> bool:
        return node in self.members

    def holds(self, tag: str) -> bool:
        """Does the owner named in an ownership record (``node:epoch``) still hold it: a live
        member whose epoch has not moved past the record's (a node whose lease ran out fenced
        off every activation of its old epoch)?"""
        node, _, epoch = tag.partition(":")
        if node not in self.members:
            return False
        try:
            return self.epochs.get(node, 0) <= int(epoch or 0)
        except ValueError:
            return False  # not a record corps wrote: free

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, tg: TaskGroup, connect: Callable[[], Awaitable[CorpsClient]]) -> None:
        """Open the bucket, read the members, put this node's record, then watch (on the node's
        loop) and beat (on a thread of its own, over ``connect()``'s connection)."""
        self._loop = asyncio.get_running_loop()
        self._tg = tg
        js = self._js
        self._kv = await open_bucket(js, KeyValueConfig(
            bucket=self._bucket, history=1, ttl=self.cfg.member_ttl, storage=StorageType.MEMORY,
            replicas=self.cfg.replicas, description="corps virtual actors: members (heartbeats)"), "membership")
        watcher = await self._kv.watchall()
        while (entry := await watcher.updates(timeout=10.0)) is not None:  # type: ignore[no-untyped-call]  # the members now
            self._apply(entry)
        await self.beat()
        tg.start_soon(self._watch, watcher, name="corps-virtual-watch")
        tg.start_soon(self._suspects, name="corps-virtual-suspects")
        # The heartbeat runs on a thread with its own loop and connection: a node whose loop is
        # saturated (measured: 12,000 new ids at once on a 2-core machine held it for > 2 s)
        # must not lose its lease to its own load; a paused or cut-off node still does.
        self._thread = threading.Thread(target=asyncio.run, args=(self._beat_thread(connect),),
                                        name=f"corps-heartbeat-{self.me}", daemon=True)
        self._thread.start()

    async def beat(self, kv: KeyValue | None = None) -> None:
        """Put this node's record; on its ack, extend the lease from before the put."""
        kv = kv or self._kv
        assert kv is not None
        if self._left:
            return
        t0 = time.monotonic()
        classes = frozenset(self.classes)  # one C-level copy: the loop may add a class meanwhile
        with self._lease_lock:
            if self.lease_until and t0 >= self.lease_until:
                self._lapse()
        try:
            await kv.put(self.me, _encode(MemberRecord(sorted(classes), self._stats(), self.epoch)))
        except Exception as exc:  # noqa: BLE001 -- the lease runs out on its own: the safe side
            self._quiet.warning("heartbeat", "heartbeat failed: %s: %s", type(exc).__name__, exc)
            return
        with self._lease_lock:
            if self.lease_until and t0 >= self.lease_until:
                self._lapse()  # it ran out while the put was in flight: fence before renewing
            if not self._left:
                self.lease_until = max(self.lease_until, t0 + LEASE_SHARE * self.cfg.member_ttl)
        if self._loop is not None and self.members.get(self.me) != classes:
            if asyncio.get_running_loop() is self._loop:
                self._see_myself(t0, classes)  # host(): placed here before it returns
            else:
                self._loop.call_soon_threadsafe(self._see_myself, t0, classes)

    def _see_myself(self, t0: float, classes: frozenset[str]) -> None:
        """On the loop: this node's own entry follows what its acknowledged heartbeat said."""
        if self.members.get(self.me) != classes:
            self.members[self.me] = classes
            self._heard[self.me] = t0
            self._changed()

    def _lapse(self) -> None:
        """Under ``_lease_lock``: bump the epoch (every guard of the old one fails from now on,
        on any thread), then let the loop drop the fenced activations."""
        self.epoch += 1
        self.lapses += 1
        self.lease_until = 0.0  # lapsed once: not again until a heartbeat renews it
        log.warning("membership lease of node %s ran out (paused or cut off): its activations are fenced off",
                    self.me)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._lapsed)

    def _lapsed(self) -> None:
        """On the loop, after a lapse: drop the fenced activations, then catch up."""
        self._on_lapse()
        if not self._catching_up and self._tg is not None:
            self._catching_up = True
            self._tg.start_soon(self._catching, name="corps-virtual-catch-up")

    async def _catching(self) -> None:
        """Until caught up with the latest epoch: run ``catch_up`` (every message sent to this
        node before now is read and routed, so none of them can activate an id), then allow new
        activations in the epoch it started in (a lapse meanwhile: again)."""
        try:
            while self.stale and not self._left:
                epoch = self.epoch
                try:
                    if self._catch_up is not None:
                        with anyio.fail_after(max(self.cfg.member_ttl, 5.0)):
                            await self._catch_up()
                except Exception as exc:  # noqa: BLE001 -- connection down or slow: stay stale, try again
                    self._quiet.warning("catch-up", "catching up after a lapse failed: %s: %s",
                                        type(exc).__name__, exc)
                    await anyio.sleep(self.cfg.interval)
                    continue
                with self._lease_lock:
                    if self.epoch == epoch:
                        self._caught_up = epoch
        finally:
            self._catching_up = False

    async def retire(self) -> None:
        """Host nothing any more, but stay a member (heartbeats go on): the others place this
        node's ids elsewhere and wait for it to hand each over, rather than taking them as
        from a dead node."""
        self.classes.clear()
        await self.beat()

    async def records(self) -> dict[str, MemberRecord]:
        """Every member's last heartbeat, read from the bucket (what ``corps ps`` can show)."""
        assert self._kv is not None
        out: dict[str, MemberRecord] = {}
        watcher = await self._kv.watchall()
        try:
            while (entry := await watcher.updates(timeout=5.0)) is not None:  # type: ignore[no-untyped-call]
                if entry.operation is None:
                    try:
                        out[entry.key] = _decode(entry.value or b"")
                    except Exception:  # noqa: BLE001 -- untrusted bytes: counted and skipped
                        self.ignored += 1
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    async def leave(self) -> None:
        """Stop heartbeats and delete this node's record: the others take its ids at once."""
        with self._lease_lock:
            self._left = True
            self.lease_until = 0.0
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join, 2 * self.cfg.interval)
        if self._kv is not None:
            try:
                await self._kv.delete(self.me)
            except Exception as exc:  # noqa: BLE001 -- leaving anyway: the record expires on its own
                log.warning("leave: could not delete the membership record: %r", exc)

    # -- background ------------------------------------------------------------------------

    async def _beat_thread(self, connect: Callable[[], Awaitable[CorpsClient]]) -> None:
        nc = None
        try:
            nc = await connect()
            kv = await nc.jetstream().key_value(self._bucket)
            while not self._left:
                await asyncio.sleep(self.cfg.interval)
                await self.beat(kv)
        except Exception as exc:  # noqa: BLE001 -- no heartbeat: the lease runs out, the safe side
            log.error("heartbeat thread of %s stopped: %s: %s", self.me, type(exc).__name__, exc)
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()

    async def _suspects(self) -> None:
        while not self._left:
            await anyio.sleep(self.cfg.interval)
            await self._suspect()

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self._apply(entry)

    def _apply(self, entry: KeyValue.Entry) -> None:
        node = entry.key
        if entry.operation in ("DEL", "PURGE"):
            if node != self.me and self.members.pop(node, None) is not None:
                self._heard.pop(node, None)
                self._changed()
            return
        try:
            record = _decode(entry.value or b"")
            classes = frozenset(record.classes)
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes: counted and skipped
            self.ignored += 1
            self._quiet.warning("member", "member record %r ignored: %s: %s", node[:60], type(exc).__name__, exc)
            return
        if node == self.me:
            return  # our own view of ourselves follows our acknowledged heartbeats
        self._heard[node] = time.monotonic()
        if self.members.get(node) != classes or self.epochs.get(node) != record.epoch:
            self.members[node] = classes
            self.epochs[node] = record.epoch  # a new epoch: its old records are free (a change too)
            self._changed()

    async def _suspect(self) -> None:
        """Remove members not heard for member_ttl, once the server confirms their record is gone."""
        assert self._kv is not None
        now = time.monotonic()
        for node, heard in list(self._heard.items()):
            if node == self.me or now - heard < self.cfg.member_ttl:
                continue
            try:
                await self._kv.get(node)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                if self.members.pop(node, None) is not None:
                    self._heard.pop(node, None)
                    self._changed()
            except Exception as exc:  # noqa: BLE001 -- cannot confirm: keep the member (the safe side)
                self._quiet.warning("suspect", "could not check member %s: %r", node, exc)

    def _changed(self) -> None:
        self.changes += 1
        self._on_change()
