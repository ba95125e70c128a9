"""Every node answers ``corps ps``: on ``{ns}.nodes`` a request gets a JSON description of the node
(its id, connection name, the classes it hosts and their instance counts, and the counters of its
virtual classes). The request's payload
is never read (anyone may send one); a node that drains stops answering.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec

from corps.wire._subjects import nodes_subject

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from corps.core._host import ClassHost
    from corps.core._node import Node

log = logging.getLogger("corps.system")


class NodeReport(msgspec.Struct, frozen=True, kw_only=True):
    """One node's answer to ``corps ps``."""

    node: str
    name: str
    namespace: str
    started: float
    classes: dict[str, int]
    """Actor name -> instances running on this node (0: its event consumer runs, no instance yet)."""
    virtual: dict[str, dict[str, int]] = {}
    """Virtual classes hosted here -> their counters (``Virtual.stats``: active, activations,
    moves_out, fenced, ...), and ``membership`` -> this node's view (members, lapses, epoch)."""


def report(node: Node, started: float, virtual: dict[str, dict[str, int]] | None = None) -> NodeReport:
    classes = {h.name: len(h.cells) + len(h.services) for h in node._hosts.values()}
    return NodeReport(node=node.node, name=node.name, namespace=node.namespace, started=started, classes=classes,
                      virtual=virtual or {})


class NodeInfo:
    """The extension (``Node.extend``) that answers on ``{ns}.nodes``."""

    def __init__(self, virtual: Callable[[], dict[str, dict[str, int]]] = dict) -> None:
        self._virtual = virtual
        self._node: Node | None = None
        self._sub: Subscription | None = None
        self._started = time.time()

    async def start(self, node: Node) -> None:
        self._node = node
        self._started = time.time()
        self._sub = await node._nc.subscribe(nodes_subject(node.namespace), cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        if self._node is None or not msg.reply:
            return
        try:
            await self._node._nc.publish(msg.reply, msgspec.json.encode(report(self._node, self._started,
                                                                                    self._virtual())))
        except Exception as exc:  # noqa: BLE001 -- a reply subject we may not publish to: the asker's problem
            log.debug("corps ps reply to %s failed: %s", msg.reply, exc)

    async def attach(self, host: ClassHost) -> None:
        pass

    async def stop_intake(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
