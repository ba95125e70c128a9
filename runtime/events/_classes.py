"""The event side of an actor class: its ``@on_event`` table, built when the class is created.

``corps.Actor`` calls ``define_event_handlers`` from the core's class hook; everything in events
reads a class's table through ``event_handlers_of`` (the core Actor has no such table).
"""

from __future__ import annotations

from typing import Any

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.events._delivery import EventDelivery, run_delivery
from corps.events._spec import EventHandlerSpec, collect_event_handlers
from corps.wire._codec import Decoders, union_of

_TABLE = "_event_handlers"


def define_event_handlers(cls: type[Actor], problems: list[str], dispatch: dict[type[Message], Any]) -> None:
    """Collect and check ``cls``'s event handlers; route deliveries through its mailbox."""
    table = collect_event_handlers(cls, problems)
    if table:
        try:
            Decoders(union_of(list(table))).frame_and_bare(False)
        except TypeError as exc:
            problems.append(f"its event types cannot be decoded together: {exc}")
        dispatch[EventDelivery] = run_delivery  # type: ignore[index]  # not a Message: internal
    setattr(cls, _TABLE, table)  # harmless if the class is refused: it is never created


def event_handlers_of(cls: type[Actor]) -> dict[type[Message], EventHandlerSpec]:
    """The class's ``@on_event`` handlers by event type (empty for a class with none)."""
    table: dict[type[Message], EventHandlerSpec] = getattr(cls, _TABLE, {})
    return table
