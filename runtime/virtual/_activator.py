"""One virtual class on one node: activate on first message, deactivate when idle, move on
membership changes.

Every node hosting the class subscribes to the class's wildcard (as for any entity class), so
every host hears every message, in each sender's order. A message for an id not active here
reaches ``unknown``: the node that the id is placed on (rendezvous over the members hosting the
class) registers the instance at once, so later messages queue behind in arrival order, claims
the id in KV, and only then runs ``on_start`` and the queue. The other hosts drop it (counted
``not_owner``): the owner has it too.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from corps.core import _extras
from corps.core._cell import envelopes_of
from corps.errors import StateFenced, StepRejected
from corps.virtual._history import History
from corps.wire._client import Throttled

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from corps.core._cell import Cell as _Cell
    from corps.core._host import ClassHost
    from corps.virtual._config import VirtualConfig
    from corps.virtual._membership import Membership
    from corps.virtual._ownership import Owners
    from corps.virtual._state import StateStore

log = logging.getLogger("corps.virtual")

_POLL = 0.01  # waiting for a release, or a move's drain: polled, doubling up to 0.2 s
_POLL_MAX = 0.2


class ClassActivator:
    """The ``Activator`` of one virtual class's ``ClassHost``."""

    def __init__(self, host: ClassHost, membership: Membership, owners: Owners, cfg: VirtualConfig,
                 tg: TaskGroup, history: History, store: StateStore | None = None) -> None:
        self.host = host
        self.store = store
        self._revisions: dict[str, int] = {}  # durable state: the revision each instance last read or wrote
        if store is not None:
            default = host.cls.state  # type: ignore[attr-defined]  # checked by Virtual.host
            self._state_type = type(default)
            self._state_decoder = msgspec.msgpack.Decoder(type(default))
            self._default = msgspec.msgpack.encode(default)
            host.prepare = self._load
            if host.options.durable == "message":
                host.dispatch = {tp: self._saving(fn) for tp, fn in host.cls._dispatch.items()}
        self.m = membership
        self.owners = owners
        self.cfg = cfg
        self._tg = tg
        self._prefix_len = len(host.system.namespace) + len(host.name) + 8  # "{ns}.actor.{name}."
        self.tokens: dict[str, int] = {}
        """Active ids here -> their fencing token (the ownership record's revision)."""
        self._moving: set[str] = set()
        self._claiming: dict[str, int] = {}
        """Ids waiting for their claim -> how many message batches they held at the last
        membership change: read while the previous holder was still a live member here."""
        self.activating = 0
        self.history = history
        self.activations = 0
        self.deactivations = 0
        self.moves_out = 0
        self.not_owner = 0
        self.fenced = 0
        self.skipped = 0
        """Messages a new owner skipped because the previous owner had handled them (a move)."""
        self.waited = 0
        """Times the class's intake waited for an activation to finish (``max_activating``)."""
        self._room = anyio.Event()  # set when an activation finishes (claimed or not)
        self.unknown_outcome = 0
        """Messages a new owner dropped because the holder it took the id from (without a
        hand-over) may have handled them (asks time out)."""
        self._quiet = Throttled(log)
        self._peak = 0  # most instances held at once since the cells dict was last compacted

    def _key(self, actor_id: str) -> str:
        return f"{self.host.name}.{actor_id}"

    # -- Activator -------------------------------------------------------------------------

    async def unknown(self, subject: str, reply: str, envs: list[Any], is_json: bool) -> None:
        actor_id = subject[self._prefix_len:]
        m = self.m
        while True:
            if not m.valid():
                self.fenced += len(envs)  # lease ran out: this node may not take anything
                return
            if m.owner(self.host.name, actor_id) != m.me:
                self.not_owner += len(envs)
                return
            if self.activating < self.cfg.max_activating:
                break
            # Back-pressure, not refusal: the class's intake waits here for a claim to finish;
            # what arrives meanwhile waits behind it, in order, within the subscription's
            # pending bounds (beyond them it is shed, as for any class: ClassHost's Route).
            self.waited += 1
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        cell = self.host.activate(actor_id, subject, m.guard(m.epoch))
        self.host.admit(cell, reply, envs, is_json)
        self._claiming[actor_id] = 0
        self.activating += 1
        self._tg.start_soon(self._activate, cell, m.epoch)

    async def _activate(self, cell: _Cell, epoch: int) -> None:
        actor_id = cell.actor_id
        key = self._key(actor_id)
        try:
            deadline = time.monotonic() + self.cfg.claim_wait
            delay = _POLL
            while True:
                claim = await self.owners.claim(key, self.m.me, epoch, self.m.holds)
                if claim is not None:
                    break
                if (time.monotonic() > deadline or self.m.epoch != epoch or self.host.cells.get(actor_id) is not cell
                        or self.m.owner(self.host.name, actor_id) != self.m.me):
                    self._fence(cell, "not handed over in time" if time.monotonic() > deadline else "moved")
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
        except Exception as exc:  # noqa: BLE001 -- KV unusable: the activation is refused, loudly
            self._quiet.warning("activate", "activation of %s failed: %s: %s", cell.subject, type(exc).__name__, exc)
            self._fence(cell, "ownership store unavailable")
            return
        finally:
            self.activating -= 1
            self._room.set()
            suspect = self._claiming.pop(actor_id, 0)
        if self.m.epoch != epoch or self.host.cells.get(actor_id) is not cell:
            if self.host.cells.get(actor_id) is cell:
                self._fence(cell, "lease ran out")  # else it would hold the id's messages for good
            await self.owners.release(key, claim.token, claim.through or None)  # the marks stay
            return
        if claim.through and cell.queue:
            self.skipped += _skip_handled(cell, claim.through)
        if claim.taken and suspect and cell.queue:
            # Taken from a holder that did not hand it over: what it handled before it stopped
            # is unknown. The messages read while it was a live member here may be among them:
            # dropped (their asks time out, as any ask to a node that dies); later ones are not
            # (it stopped handling before the server expired its record, and we saw that after).
            self.unknown_outcome += _drop_first(cell, suspect)
        self.tokens[actor_id] = claim.token
        self.activations += 1
        self.history.record(self.host.name, actor_id, self.m.me, claim.token, "activate")
        if not await self.host.start_activation(cell):
            self.tokens.pop(actor_id, None)
            await self.owners.release(key, claim.token, None)
        elif self.m.owner(self.host.name, actor_id) != self.m.me:
            self.rebalance()  # members changed while it was claimed: it moves on at once

    def _fence(self, cell: _Cell, why: str) -> None:
        n = cell.depth if cell.queue else 0  # counted as fenced by abandon
        if n:
            log.info("%s: %d message(s) dropped (%s); the id's owner handles them", cell.subject, n, why)
        self.host.abandon(cell)

    # -- durable state ---------------------------------------------------------------------

    async def _load(self, actor: Any) -> None:
        assert self.store is not None
        key = self._key(actor.id)
        state, extras, revision = await self.store.load(key, self._state_decoder)
        actor.state = state if state is not None else self._state_decoder.decode(self._default)  # a fresh copy
        if extras:
            try:
                _extras.restore(actor, extras)  # its saga memory records: saved with the state
            except Exception as exc:  # untrusted bytes (re-raised typed): the activation is refused
                raise StateFenced(key, f"stored records unreadable: {type(exc).__name__}: {exc}"[:300]) from exc
        self._revisions[actor.id] = revision

    def _saving(self, fn: Any) -> Any:
        async def call(actor: Any, msg: Any) -> Any:
            try:
                result = await fn(actor, msg)
            except StepRejected:
                # A saga step's refusal is an outcome too (nothing applied): its record is saved
                # before the refusal goes out, so a late copy on another node is refused as well.
                await self.save(actor)
                raise
            await self.save(actor)
            return result
        return call

    async def save(self, actor: Any) -> None:
        """Save the instance's state (CAS on the revision it last read or wrote).

        Its durable extras (saga ``effect="memory"`` records) go in the same write.

        Raises:
            StateFenced: another activation wrote the state since.
            StateTooLarge: state and records exceed the bucket's largest value (not written).
        """
        if self.store is None or actor is None:
            return
        self._revisions[actor.id] = await self.store.save(self._key(actor.id), actor.state,
                                                          self._revisions.get(actor.id, 0), _extras.dump(actor))

    async def _save_last(self, cell: _Cell) -> None:
        """On deactivation or hand-over, after on_stop: the final state (a failure is logged)."""
        try:
            await self.save(cell.actor)
        except Exception as exc:  # noqa: BLE001 -- StateFenced or KV unusable: the state stays as last saved
            self._quiet.warning("save", "final state of %s not saved: %r", cell.subject, exc)
        self._revisions.pop(cell.actor_id, None)

    # -- idle deactivation -----------------------------------------------------------------

    async def sweep_forever(self) -> None:
        """Deactivate instances idle for ``idle_after`` (two sweeps without a message)."""
        period = max(self.host.options.idle_after / 2, 0.005)
        while True:
            await anyio.sleep(period)
            await self.sweep()

    async def sweep(self) -> None:
        cells = self.host.cells
        self._peak = max(self._peak, len(cells))
        if len(cells) < self._peak // 4:
            # A dict never shrinks its table on deletion: 100k ids once active would keep ~5 MB
            # after they all went idle. Copy it, so memory follows the active set.
            self.host.cells = dict(cells)
            self._peak = len(cells)
        idle = []
        for cell in list(self.host.cells.values()):
            if cell.used:
                cell.used = False
            elif cell.actor_id in self.tokens and cell.actor_id not in self._moving:
                idle.append(cell)
        if not idle:
            return
        async with anyio.create_task_group() as tg:  # releases are pipelined, at most 256 at once
            limit = anyio.Semaphore(256)
            for cell in idle:
                await limit.acquire()
                tg.start_soon(self._deactivate, cell, limit)

    async def _deactivate(self, cell: _Cell, limit: anyio.Semaphore) -> None:
        try:
            token = self.tokens.get(cell.actor_id)
            if token is None or not _owned(cell) or not await self.host.deactivate(cell):
                return
            if self.tokens.pop(cell.actor_id, None) is None:
                return  # the lease ran out during on_stop: fenced off (``lapse`` recorded it)
            await self._save_last(cell)
            self.deactivations += 1
            self.history.record(self.host.name, cell.actor_id, self.m.me, token, "deactivate")
            try:
                await self.owners.release(self._key(cell.actor_id), token, None)
            except Exception as exc:  # noqa: BLE001 -- the record stays: the next claim by this node takes it
                self._quiet.warning("release", "release of %s failed: %r", cell.subject, exc)
        finally:
            limit.release()

    # -- moves -----------------------------------------------------------------------------

    def rebalance(self) -> None:
        """Membership changed: hand over the ids now placed elsewhere (after ``grace``)."""
        cells = self.host.cells
        for actor_id in self._claiming:
            cell = cells.get(actor_id)
            self._claiming[actor_id] = len(cell.queue) if cell is not None and cell.queue else 0
        for actor_id in list(self.tokens):
            to = self.m.owner(self.host.name, actor_id)
            if actor_id not in self._moving and to is not None and to != self.m.me:  # None: nowhere to go
                self._moving.add(actor_id)
                self._tg.start_soon(self._move_out, actor_id)

    async def _move_out(self, actor_id: str) -> None:
        try:
            await anyio.sleep(self.cfg.grace)  # the new owner sees the change and holds new messages
            cell = self.host.cells.get(actor_id)
            token = self.tokens.get(actor_id)
            if cell is None or token is None or self.m.owner(self.host.name, actor_id) == self.m.me:
                return
            await self.hand_over(cell, token)
        finally:
            self._moving.discard(actor_id)

    async def hand_over(self, cell: _Cell, token: int) -> None:
        """Stop taking messages for the id, finish those queued, run on_stop, release with marks."""
        if self.host.cells.get(cell.actor_id) is cell:
            del self.host.cells[cell.actor_id]  # later messages: not ours (the new owner holds them)
        delay = _POLL
        while cell.busy or cell.queue:
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        if self.tokens.get(cell.actor_id) != token or not _owned(cell):
            return  # the lease ran out while it drained: fenced off (``lapse`` records it), no on_stop
        await self.host._call_on_stop(cell)
        await self._save_last(cell)
        self.tokens.pop(cell.actor_id, None)
        self.moves_out += 1
        self.history.record(self.host.name, cell.actor_id, self.m.me, token, "move")
        try:
            await self.owners.release(self._key(cell.actor_id), token, dict(cell.marks or {}))
        except Exception as exc:  # noqa: BLE001 -- the record stays ours: the next owner waits for our lease
            self._quiet.warning("hand-over", "hand-over of %s failed: %r", cell.subject, exc)

    def busy_moving(self) -> bool:
        """Ids activating or moving out."""
        return bool(self._moving or self.activating)

    async def leave(self) -> None:
        """Graceful shutdown, after the moves: hand over any id still here, at once. With no
        other host of the class, nothing is handed over: the records stay, and whoever claims an
        id next takes it from a node that is no longer a member."""
        if self.m.owner(self.host.name, "") is None:
            self.tokens.clear()
            return
        async with anyio.create_task_group() as tg:
            for actor_id, token in list(self.tokens.items()):
                cell = self.host.cells.get(actor_id)
                if cell is not None and actor_id not in self._moving:
                    tg.start_soon(self.hand_over, cell, token)

    def lapse(self) -> None:
        """This node's lease ran out: every activation is fenced off, without on_stop, and so
        is every instance still waiting for its claim."""
        for actor_id in list(self._claiming):
            cell = self.host.cells.get(actor_id)
            if cell is not None:
                self._fence(cell, "lease ran out")
        for actor_id in list(self.tokens):
            cell = self.host.cells.get(actor_id)
            if cell is not None:
                self.host.abandon(cell)
            self.history.record(self.host.name, actor_id, self.m.me, self.tokens[actor_id], "fenced")
        self.tokens.clear()
        self._revisions.clear()

    def stats(self) -> dict[str, int]:
        return {"active": len(self.tokens), "activating": self.activating, "activations": self.activations,
                "deactivations": self.deactivations, "moves_out": self.moves_out, "not_owner": self.not_owner,
                "fenced": self.fenced + self.host.fenced, "skipped": self.skipped, "waited": self.waited,
                "unknown_outcome": self.unknown_outcome, "moving": len(self._moving)}


def _owned(cell: _Cell) -> bool:
    """Does this node still hold the activation (its epoch unchanged, its lease valid)?"""
    return cell.guard is None or cell.guard()


def _skip_handled(cell: _Cell, through: dict[str, int]) -> int:
    """Drop queued messages that the previous owner handled (per sender, up to its mark)."""
    assert cell.queue is not None
    kept: list[Any] = []
    skipped = 0
    for entry, reply, is_json in cell.queue:
        envs = envelopes_of(entry)  # (a virtual class's mailbox holds envelopes only: total all the same)
        mark = through.get(reply.rpartition(".")[0], 0)
        keep = [env for env in envs if not (env.mid and env.mid <= mark)]
        skipped += len(envs) - len(keep)
        if keep:
            kept.append((keep, reply, is_json))
    cell.queue.clear()
    cell.queue.extend(kept)
    cell.depth -= skipped
    return skipped


def _drop_first(cell: _Cell, batches: int) -> int:
    """Drop the first ``batches`` queued batches (read before the previous holder was seen gone)."""
    assert cell.queue is not None
    dropped = 0
    for _ in range(min(batches, len(cell.queue))):
        envs, _reply, _is_json = cell.queue.popleft()
        dropped += len(envelopes_of(envs))
    cell.depth -= dropped
    return dropped
