"""The Actor base class: identity, lifecycle hooks, and the class-time handler table."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from corps.core._handlers import HandlerSpec, collect_handlers
from corps.core._messages import Message
from corps.core._options import ActorOptions
from corps.errors import ActorDefinitionError, InvalidActorId
from corps.wire._codec import Decoders, union_of
from corps.wire._subjects import check_token

if TYPE_CHECKING:
    from typing import Self

    from corps.core._node import Node
    from corps.core._ref import ActorRef


class Actor:
    """The actor core's base class: identity, lifecycle hooks, the class-time handler table.

    Users subclass ``corps.Actor`` (corps.system), which adds what events need (``@on_event``,
    ``publish``) through ``_extend_class``. ``__init__`` takes no arguments (an instance can be
    restarted by supervision); ``self.id`` and ``self.system`` are already set when it runs.
    """

    __slots__ = ("__dict__", "id", "system")

    actor_name: ClassVar[str] = "Actor"
    options: ClassVar[ActorOptions] = ActorOptions()
    _handlers: ClassVar[dict[type[Message], HandlerSpec]] = {}
    _dispatch: ClassVar[dict[type[Message], Any]] = {}
    _decoders: ClassVar[Decoders | None] = None

    id: str
    system: Node

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
        dispatch: dict[type[Message], Any] = {tp: spec.fn for tp, spec in handlers.items()}
        cls._extend_class(problems, dispatch)
        if problems:
            raise ActorDefinitionError(cls.__qualname__, problems)
        cls._handlers = handlers
        cls._dispatch = dispatch
        cls._decoders = decoders

    @classmethod
    def _extend_class(cls, problems: list[str], dispatch: dict[type[Message], Any]) -> None:
        """Layers above the core check their own declarations here (appending to ``problems``, so
        that one ActorDefinitionError lists everything) and add internal entries to ``dispatch``."""

    async def on_start(self) -> None:
        """Called before the instance takes its first message (again after a restart)."""

    async def on_stop(self) -> None:
        """Called when the instance stops: system shutdown, supervision stop, or before a restart."""

    @property
    def ref(self) -> ActorRef[Self]:
        """A reference to this instance, to hand to other actors."""
        return self.system.ref(type(self), self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={getattr(self, 'id', '?')!r}>"


def new_instance(cls: type[Actor], actor_id: str, system: Node) -> Actor:
    """Create an instance with id and system set before the user's ``__init__`` runs."""
    obj = cls.__new__(cls)
    obj.id = actor_id
    obj.system = system
    obj.__init__()  # type: ignore[misc]
    return obj


def overrides(cls: type[Actor], hook: str) -> bool:
    return getattr(cls, hook) is not getattr(Actor, hook)
