"""The one extension point of the actor core: what events and sagas attach to a Node with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from corps.core._host import ClassHost
    from corps.core._node import Node


class Extension(Protocol):
    """A part that lives as long as a node: ``Node.extend(part)`` before the node is entered."""

    async def start(self, node: Node) -> None:
        """The node is connected and its task group runs; provision, start background tasks."""

    async def attach(self, host: ClassHost) -> None:
        """The node hosts ``host.cls`` (its first instance was spawned, or its consumer asked for)."""

    async def stop_intake(self) -> None:
        """The node drains: take nothing new; what is in flight finishes."""
