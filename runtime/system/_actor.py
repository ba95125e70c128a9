"""``corps.Actor``: the core actor, plus what events add to a class (``@on_event``, ``publish``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corps.core._actor import Actor as _CoreActor
from corps.core._messages import Message
from corps.events._classes import define_event_handlers

if TYPE_CHECKING:
    from corps.events._wire import PubAck
    from corps.system._system import ActorSystem


class Actor(_CoreActor):
    """Base class of user actors.

    Subclass it, write ``@handler`` (and ``@on_event``) methods, and spawn instances with
    ``system.spawn(cls, id)``. ``__init__`` takes no arguments (an instance can be restarted by
    supervision); ``self.id`` and ``self.system`` are already set when it runs. Class keywords:
    ``options=ActorOptions(...)``.
    """

    __slots__ = ()

    system: ActorSystem

    @classmethod
    def _extend_class(cls, problems: list[str], dispatch: dict[type[Message], Any]) -> None:
        define_event_handlers(cls, problems, dispatch)

    async def publish(self, event: Message, *, msg_id: str | None = None) -> PubAck:
        """Publish a domain event from this actor; see ``ActorSystem.publish``.

        Inside an ``@on_event`` handler the default ``msg_id`` is derived from the event being
        handled, so a retried handler's publishes are deduplicated by the stream.
        """
        return await self.system.publish(event, msg_id=msg_id)
