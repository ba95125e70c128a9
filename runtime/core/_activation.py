"""Virtual activations on a class's host: ``corps.virtual`` decides where an id lives; the host
registers, starts, deactivates and abandons its instances (a mixin of ``ClassHost``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from corps.core._cell import Cell, envelopes_of
from corps.wire._codec import Envelope

if TYPE_CHECKING:
    from corps.wire._client import Route


class Activator(Protocol):
    """What a virtual class's host asks (corps.virtual) about a message for an id not active here."""

    async def unknown(self, subject: str, reply: str, envs: list[Any], is_json: bool) -> None:
        """Activate the id here (``ClassHost.activate``), or leave it to its owner (and count it)."""


def _never() -> bool:
    return False


class Activations:
    """The host's side of virtual activations (``ClassHost`` provides the rest)."""

    cells: dict[str, Cell]
    fenced: int
    _entity_route: Route | None

    if TYPE_CHECKING:
        def _admit(self, cell: Cell, reply: str, envs: list[Envelope[Any]], is_json: bool) -> bool: ...
        async def _start_instance(self, cell: Cell) -> None: ...
        async def _stop_cell(self, cell: Cell, why: str) -> None: ...
        async def _stopped(self, cell: Cell, reply: str, envs: list[Envelope[Any]], is_json: bool) -> None: ...
        def _release(self, cell: Cell) -> None: ...
        async def _call_on_stop(self, cell: Cell) -> None: ...

    def activate(self, actor_id: str, subject: str, guard: Callable[[], bool]) -> Cell:
        """Register a virtual instance, not started yet: messages admitted now wait in its mailbox
        (in arrival order) until ``start_activation``. Synchronous, so nothing overtakes them."""
        cell = Cell(actor_id, subject)
        cell.guard = guard
        cell.marks = {}
        self.cells[actor_id] = cell
        return cell

    def admit(self, cell: Cell, reply: str, envs: list[Envelope[Any]], is_json: bool) -> None:
        """Queue messages for an instance registered by ``activate`` (bounded as any mailbox)."""
        self._admit(cell, reply, envs, is_json)

    async def start_activation(self, cell: Cell) -> bool:
        """Run ``__init__`` and ``on_start``, then the queued messages. False (the instance is
        gone, its queued asks answered NoResponders) if either raised."""
        try:
            await self._start_instance(cell)
        except Exception as exc:  # noqa: BLE001 -- user code: on_start failed, the activation is refused
            await self._stop_cell(cell, f"{type(exc).__name__} in __init__ or on_start: {exc}")
            if cell.queue:
                q, cell.queue, cell.depth = cell.queue, None, 0
                for envs, reply, is_json in q:
                    await self._stopped(cell, reply, envelopes_of(envs), is_json)
            return False
        self._release(cell)
        return True

    async def deactivate(self, cell: Cell, *, call_on_stop: bool = True) -> bool:
        """Remove an idle instance (no queued or running message) and run its ``on_stop``.
        False if it is busy: it stays."""
        if cell.busy or cell.queue or self.cells.get(cell.actor_id) is not cell:
            return False
        del self.cells[cell.actor_id]
        cell.stopped = True  # a message routed to it in between is refused, not lost silently
        if call_on_stop:
            await self._call_on_stop(cell)
        return True

    async def caught_up(self) -> None:
        """Return once every message the class's subscription read so far has been routed (the
        slow path included): after a flush, nothing sent before it is still on its way in."""
        if self._entity_route is not None:
            await self._entity_route.caught_up()

    def abandon(self, cell: Cell) -> None:
        """Drop an instance whose id this node may no longer handle (fenced off), without
        ``on_stop``: its queued messages are dropped and counted as ``fenced`` (every host of
        the class hears them: the id's owner handles them)."""
        if self.cells.get(cell.actor_id) is cell:
            del self.cells[cell.actor_id]
        cell.guard = _never
        if cell.queue and not cell.busy:
            self.fenced += cell.depth
            cell.queue, cell.depth = None, 0
