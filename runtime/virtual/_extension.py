"""``system.virtual``: hosting virtual classes on a node (the extension ActorSystem attaches)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from corps.core._actor import Actor
from corps.errors import PlacementError
from corps.virtual._activator import ClassActivator
from corps.virtual._config import VirtualConfig
from corps.virtual._history import Activation, History
from corps.virtual._membership import Membership
from corps.virtual._ownership import Owners
from corps.virtual._partition_reader import Reader
from corps.virtual._partitions import ClassPartitions
from corps.virtual._state import StateStore
from corps.wire._security import Security
from corps.wire._transport import connect, flush

if TYPE_CHECKING:
    from collections.abc import Callable

    from corps.core._cell import Cell
    from corps.core._host import ClassHost
    from corps.core._node import Node

log = logging.getLogger("corps.virtual")


class Virtual:
    """Virtual actors on this node (``system.virtual``); an Extension of the node.

    Nothing happens until the first ``host(cls)``: then the node joins the membership of its
    namespace (KV ``{ns}_members``) and opens the ownership records (KV ``{ns}_owners``).
    """

    def __init__(self, cfg: VirtualConfig, sink: Callable[[Activation], None] | None = None) -> None:
        self.cfg = cfg
        self.history = History(sink)
        self._node: Node | None = None
        self._membership: Membership | None = None
        self._owners: Owners | None = None
        self._store: StateStore | None = None
        self._classes: dict[str, ClassActivator] = {}
        self._partitions: dict[str, ClassPartitions] = {}
        """Classes whose keyed events are partitioned (see ``_partitions``)."""
        self._lock = anyio.Lock()

    # -- Extension -------------------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node

    async def attach(self, host: ClassHost) -> None:
        pass

    async def stop_intake(self) -> None:
        """Leave gracefully: retire (the others place this node's ids elsewhere and wait for
        them), hand every id over (drained, in order), then leave the membership."""
        m, node = self._membership, self._node
        if m is None or node is None:
            return
        await m.retire()  # rebalance: every active id moves out after the grace period
        with anyio.move_on_after(node.drain_timeout):
            delay = 0.01
            while any(a.busy_moving() for a in self._classes.values()) or \
                    any(p.busy() for p in self._partitions.values()):
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.2)
        for activator in self._classes.values():
            await activator.leave()  # whatever is left (an activation that finished meanwhile)
        for parts in self._partitions.values():
            await parts.leave()
        await m.leave()

    # -- API -------------------------------------------------------------------------------

    async def host(self, actor_cls: type[Actor],
                   reader: Callable[[ClassHost, Callable[[Any], Cell | None]], Reader] | None = None) -> None:
        """Host the virtual class ``actor_cls`` on this node: its ids may be placed here.

        ``reader`` (given by ``ActorSystem.host`` for a class with keyed event handlers) builds
        the consumer of its partitioned events from the class's host and the routing function.

        Raises:
            PlacementError: the class is not virtual, or the KV buckets are unusable (no JetStream).
            SpawnError: another class with the same actor name is hosted here.
        """
        node = self._node
        if node is None or node._tg is None or node._closing:
            raise PlacementError("the actor system is not running")
        if not (isinstance(actor_cls, type) and issubclass(actor_cls, Actor)) or not actor_cls.options.virtual:
            raise PlacementError(f"{actor_cls!r} is not a virtual actor class (ActorOptions(virtual=True))")
        async with self._lock:
            if actor_cls.actor_name in self._classes:
                return
            if self._membership is None:
                js = node._nc.jetstream()
                self._owners = await Owners.open(js, node.namespace, self.cfg.replicas)
                m = Membership(js, node.namespace, node.node, self.cfg, self._rebalance, self._lapse, self._counts,
                               self._read_all)
                security = Security() if node.embedded else node.security
                await m.start(node._tg, lambda: connect(node._servers, f"{node.name}-heartbeat",
                                                        lambda: m.left, security))
                self._membership = m
            store = None
            if actor_cls.options.durable is not None:
                if not isinstance(getattr(actor_cls, "state", None), msgspec.Struct):
                    raise PlacementError(f"{actor_cls.__qualname__} is durable: declare its state as a msgspec "
                                         f"Struct with a default, e.g. 'state: MyState = MyState()'")
                if self._store is None:
                    self._store = await StateStore.open(node._nc.jetstream(), node.namespace, self.cfg.replicas,
                                                        node._nc.max_payload)
                store = self._store
            host = await node.host_for(actor_cls)
            assert self._owners is not None
            activator = ClassActivator(host, self._membership, self._owners, self.cfg, node._tg, self.history, store)
            parts = None
            if reader is not None:
                parts = ClassPartitions(activator, self._membership, self._owners.kv, self.cfg, node._tg,
                                        self.history, node.drain_timeout)
                parts.reader = reader(host, parts.route)  # raises EventError for a class it cannot serve
                await parts.reader.start()
                # Before the first heartbeat naming the class: its ids are placed with their partitions.
                self._membership.placement[actor_cls.actor_name] = parts.place
                self._partitions[actor_cls.actor_name] = parts
                node._tg.start_soon(parts.checkpoint_forever, name=f"corps-partitions-{actor_cls.actor_name}")
            host.activator = activator
            self._classes[actor_cls.actor_name] = activator
            node._tg.start_soon(activator.sweep_forever, name=f"corps-virtual-idle-{actor_cls.actor_name}")
            self._membership.classes.add(actor_cls.actor_name)
            await self._membership.beat()  # the others place ids here from now on
            if parts is not None:
                parts.rebalance()

    def token(self, actor_cls: type[Actor], actor_id: str) -> int | None:
        """The fencing token of ``actor_id``'s activation on this node (None: not active here)."""
        activator = self._classes.get(actor_cls.actor_name)
        return None if activator is None else activator.tokens.get(actor_id)

    @property
    def members(self) -> list[str]:
        """The node ids this node sees as live members (itself included once it hosts a class)."""
        return sorted(self._membership.members) if self._membership is not None else []

    def stats(self) -> dict[str, dict[str, int]]:
        """Per virtual class: ``active`` ids here, ``activating``, ``activations``,
        ``deactivations``, ``moves_out``, ``not_owner`` (messages left to another node),
        ``fenced`` (dropped: this node's lease or claim on the id was gone), ``skipped`` (already
        handled by the previous owner), ``waited`` (times the intake waited for room under
        ``max_activating``), ``unknown_outcome`` (dropped on a takeover: the previous holder may
        have handled them), ``moving``; and ``membership``: ``members``, ``changes``,
        ``lapses``, ``ignored`` records, ``epoch``."""
        out = {name: a.stats() for name, a in self._classes.items()}
        for name, parts in self._partitions.items():
            out[name].update(parts.stats())
        m = self._membership
        if m is not None:
            out["membership"] = {"members": len(m.members), "changes": m.changes, "lapses": m.lapses,
                                 "ignored": m.ignored, "epoch": m.epoch}
        return out

    def _counts(self) -> dict[str, dict[str, int]]:
        """Per class counters for the heartbeat (read on the heartbeat thread: plain ints)."""
        out = {name: a.stats() for name, a in list(self._classes.items())}
        for name, parts in list(self._partitions.items()):
            out[name] = {**out.get(name, {}), "partitions": len(parts.tokens),
                         "partition_moves_in": parts.moves_in, "partition_moves_out": parts.moves_out}
        return out

    async def members_beat(self) -> None:
        """Heartbeat now (the counters in the membership record are at most one heartbeat old)."""
        if self._membership is not None:
            await self._membership.beat()

    async def cluster(self) -> dict[str, dict[str, object]]:
        """Every hosting node's last heartbeat: ``{node: {"classes": [...], "stats": {...}}}``,
        read from the membership bucket (``corps ps`` can show it; empty before ``host``)."""
        if self._membership is None:
            return {}
        records = await self._membership.records()
        return {n: {"classes": r.classes, "stats": r.stats} for n, r in records.items()}

    def _rebalance(self) -> None:
        for activator in self._classes.values():
            activator.rebalance()
        for parts in self._partitions.values():
            parts.rebalance()

    def _lapse(self) -> None:
        for activator in self._classes.values():
            activator.lapse()
        for parts in self._partitions.values():
            parts.lapse()

    async def _read_all(self) -> None:
        """Return once every message the server sent this node so far has been read and routed
        (a flush, then each virtual class's slow path): the barrier after a lapse."""
        assert self._node is not None
        await flush(self._node._nc)
        for activator in list(self._classes.values()):
            await activator.host.caught_up()

