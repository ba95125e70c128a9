"""The idempotency marks of one event consumer (``idempotent=True`` handlers), kept per event id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corps.events._delivery import EventDelivery


class Marks:
    """Mixin: read, write and clear the mark of a delivery's event, under this consumer's name."""

    name: str
    events: Any  # corps.events._component.Events (which imports the consumers: typed there)

    async def mark(self, d: EventDelivery) -> bytes | None:
        found: bytes | None = await self.events.mark(self.name, d.event_id)
        return found

    async def put_mark(self, d: EventDelivery, mark: bytes) -> None:
        await self.events.put_mark(self.name, d.event_id, mark)

    async def clear_mark(self, d: EventDelivery) -> None:
        await self.events.clear_mark(self.name, d.event_id)
