"""Events as an extension of a Node: the streams at start, a consumer per hosted class, drain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corps.errors import NatsUnavailable
from corps.events._component import Events
from corps.events._config import EventsConfig

if TYPE_CHECKING:
    from corps.core._host import ClassHost
    from corps.core._node import Node
    from corps.events._consumer import EventConsumer


class EventsExtension:
    """``system.events`` once the node runs; ``Node.extend`` hooks it into start, spawn and drain."""

    def __init__(self, cfg: EventsConfig) -> None:
        self.cfg = cfg
        self._events: Events | None = None
        self._url = ""

    @property
    def events(self) -> Events:
        if self._events is None:
            raise NatsUnavailable(self._url, "the actor system is not running")
        return self._events

    def consumers(self) -> dict[str, EventConsumer]:
        """The event consumers running now, by class name (none before start)."""
        return dict(self._events.consumers) if self._events is not None else {}

    async def start(self, node: Node) -> None:
        self._url = node.url
        self._events = Events(node._nc, node.namespace, node.node, self.cfg)
        self._events.observer = node.observer
        await self._events.start()  # event streams provisioned (and checked) at start-up

    async def attach(self, host: ClassHost) -> None:
        if self._events is not None:
            await self._events.attach(host)  # its durable event consumer, once the first instance runs

    async def stop_intake(self) -> None:
        if self._events is not None:
            await self._events.stop_intake()
