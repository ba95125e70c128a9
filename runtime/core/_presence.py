"""Which nodes host an entity class, so that a message for an unknown id is answered correctly.

When one node hosts a class, a message for an id it does not host gets NoResponders (ask) or a
dead letter (tell). When several nodes host it, the id may live elsewhere, so a node stays
silent for ids it does not know (counted as ``unrouted``); an ask for an id no node hosts then
ends in AskTimeout rather than NoResponders.

Protocol on ``{ns}.host.{Class}.>``: a node that starts hosting sends ``join`` as a request on
``.all``: a 503 (no responders) means it is alone, a reply means it is not. Hosts record every
``join`` they hear and answer it, and drop a node on its ``leave``. A crashed host never says
``leave``: the others stay in shared mode, the safe direction. Two nodes that join within the
same round trip can both believe they are alone for that moment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import nats.errors

from corps.wire._client import Throttled
from corps.wire._subjects import check_token, presence_subject

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from corps.core._node import Node

log = logging.getLogger("corps.actor")

JOIN_TIMEOUT: Final = 0.5


class Presence:
    def __init__(self, system: Node, actor_name: str) -> None:
        self._system = system
        self._base = presence_subject(system.namespace, actor_name)
        self.peers: set[str] = set()
        self._sub: Subscription | None = None
        self.ignored = 0
        """Presence messages that were not ``join|here|leave <node>``: anyone can publish there."""
        self._quiet = Throttled(log)

    @property
    def shared(self) -> bool:
        return bool(self.peers)

    async def join(self) -> None:
        nc = self._system._nc
        me = self._system.node
        try:
            reply = await nc.request(f"{self._base}.all", b"join " + me.encode(), timeout=JOIN_TIMEOUT)
            self._hear(reply.data)
        except nats.errors.NoRespondersError:
            pass  # alone
        except nats.errors.TimeoutError:
            self.peers.add("?")  # someone listens but did not answer: assume shared (the safe side)
        self._sub = await nc.subscribe(f"{self._base}.>", cb=self._on_msg)

    def _hear(self, data: bytes) -> bool:
        """Record a peer's ``join``/``here``/``leave``; False (counted, ignored) for anything else."""
        try:
            op, _, node = data.decode(errors="replace").partition(" ")
            if op not in ("join", "here", "leave"):
                raise ValueError(f"not a presence message: {data[:60]!r}")
            check_token(node, "node")  # a node id is one subject token: not "", "a.b" or 300 characters
        except Exception as exc:  # noqa: BLE001 -- untrusted bytes
            self.ignored += 1
            self._quiet.warning("presence", "presence on %s: ignored: %s", self._base, exc)
            return False
        if node == self._system.node:
            return True
        if op == "leave":
            self.peers.discard(node)
        else:
            self.peers.add(node)
        return True

    async def _on_msg(self, msg: Msg) -> None:
        if self._hear(msg.data) and msg.reply and msg.data.startswith(b"join ") \
                and msg.data[5:] != self._system.node.encode():
            await self._system._nc.publish(msg.reply, b"here " + self._system.node.encode())

    async def leave(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
            await self._system._nc.publish(f"{self._base}.all", b"leave " + self._system.node.encode())
