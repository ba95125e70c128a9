"""The Actor base class: identity, lifecycle hooks, and the class-time handler table."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from runtime._codec import Decoders, union_of
from runtime._handlers import HandlerSpec, collect_handlers
from runtime._messages import Message
from runtime._options import ActorOptions
from runtime._subjects import check_token
from runtime.errors import ActorDefinitionError, InvalidActorId
from runtime.events._delivery import EventDelivery, run_delivery
from runtime.events._spec import EventHandlerSpec, collect_event_handlers

if TYPE_CHECKING:
    from typing import Self

    from runtime._ref import ActorRef
    from runtime._system import ActorSystem
    from runtime.events._wire import PubAck


class Actor:
    """Base class of user actors.

    Subclass it, write ``@handler`` methods, and spawn instances with ``system.spawn(cls, id)``.
    ``__init__`` takes no arguments (an instance can be restarted by supervision); ``self.id`` and
    ``self.system`` are already set when it runs. Class keywords: ``options=ActorOptions(...)``.
    """

    __slots__ = ("__dict__", "id", "system")

    actor_name: ClassVar[str] = "Actor"
    options: ClassVar[ActorOptions] = ActorOptions()
    _handlers: ClassVar[dict[type[Message], HandlerSpec]] = {}
    _event_handlers: ClassVar[dict[type[Message], EventHandlerSpec]] = {}
    _dispatch: ClassVar[dict[type[Message], Any]] = {}
    _decoders: ClassVar[Decoders | None] = None

    id: str
    system: ActorSystem

    def __init_subclass__(cls, *, options: ActorOptions | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        problems: list[str] = []
        if options is not None:
            if isinstance(options, ActorOptions):
                cls.options = options
            else:  # a runtime check for callers without a type checker
                problems.append(f"options must be an ActorOptions, not {type(options).__name__}")  # type: ignore[unreachable,unused-ignore]
        cls.actor_name = cls.options.name or cls.__name__
        try:
            check_token(cls.actor_name, "actor name")
        except InvalidActorId as exc:
            problems.append(exc.reason)
        init = cls.__init__
        if init is not object.__init__:
            try:
                inspect.signature(init).bind(object())
            except TypeError:
                problems.append("__init__ must take no arguments besides self (use on_start for setup)")
        for hook in ("on_start", "on_stop"):
            if not inspect.iscoroutinefunction(getattr(cls, hook)):
                problems.append(f"{hook} must be async")
        handlers = collect_handlers(cls, problems)
        decoders = None
        if handlers:
            try:
                decoders = Decoders(union_of(list(handlers)))
                decoders.frame_and_bare(False)  # build now: a tag clash must fail at class creation
            except TypeError as exc:
                problems.append(f"its message types cannot be decoded together: {exc}")
        event_handlers = collect_event_handlers(cls, problems)
        if event_handlers:
            try:
                Decoders(union_of(list(event_handlers))).frame_and_bare(False)
            except TypeError as exc:
                problems.append(f"its event types cannot be decoded together: {exc}")
        if problems:
            raise ActorDefinitionError(cls.__qualname__, problems)
        cls._handlers = handlers
        cls._event_handlers = event_handlers
        cls._dispatch = {tp: spec.fn for tp, spec in handlers.items()}
        if event_handlers:  # events reach an instance through its mailbox, like tells
            cls._dispatch[EventDelivery] = run_delivery  # type: ignore[index]  # not a Message: internal
        cls._decoders = decoders

    async def on_start(self) -> None:
        """Called before the instance takes its first message (again after a restart)."""

    async def on_stop(self) -> None:
        """Called when the instance stops: system shutdown, supervision stop, or before a restart."""

    async def publish(self, event: Message, *, msg_id: str | None = None) -> PubAck:
        """Publish a domain event from this actor; see ``ActorSystem.publish``.

        Inside an ``@on_event`` handler the default ``msg_id`` is derived from the event being
        handled, so a retried handler's publishes are deduplicated by the stream.
        """
        return await self.system.publish(event, msg_id=msg_id)

    @property
    def ref(self) -> ActorRef[Self]:
        """A reference to this instance, to hand to other actors."""
        return self.system.ref(type(self), self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={getattr(self, 'id', '?')!r}>"


def new_instance(cls: type[Actor], actor_id: str, system: ActorSystem) -> Actor:
    """Create an instance with id and system set before the user's ``__init__`` runs."""
    obj = cls.__new__(cls)
    obj.id = actor_id
    obj.system = system
    obj.__init__()  # type: ignore[misc]
    return obj


def overrides(cls: type[Actor], hook: str) -> bool:
    return getattr(cls, hook) is not getattr(Actor, hook)
