"""``App``: what one service runs, in one place: actors and ids, service groups, event consumers,
sagas to coordinate, and the ``ActorSystem`` settings. ``corps run MODULE:APP`` hosts it;
``corps provision MODULE:APP`` creates its streams, consumers and buckets. Several processes may
run the same App on one NATS: entity ids are then spread by the user (one process per id set),
service groups and event consumers share the load, coordinators share the sagas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from corps.core._actor import Actor
from corps.core._node import DEFAULT_ASK_TIMEOUT, DEFAULT_DRAIN_TIMEOUT
from corps.core._observe import Observer
from corps.errors import AppDefinitionError, InvalidActorId
from corps.events._classes import event_handlers_of
from corps.events._config import EventsConfig
from corps.saga._config import SagaConfig
from corps.saga._definition import Saga
from corps.system._system import ActorSystem
from corps.wire._security import Security
from corps.wire._subjects import check_token

MAX_INSTANCES: Final = 1024
"""Instances of one service id in one process (``services={Cls: {"id": n}}``): a typo such as
10000 is refused, not spawned."""


@dataclass(frozen=True)
class Ready:
    """What ``App.start`` brought up: the readiness a probe reports (``corps run --http-port``)."""

    spawned: int
    consumers: tuple[str, ...]
    coordinator: bool


@dataclass(frozen=True, kw_only=True)
class App:
    """An application: the actors one service process runs, and its system's settings.

    Args:
        name: shown by ``corps run`` and ``corps ps`` (the connection name is ``{name}-{node}``).
        actors: entity (or service) class -> the ids to spawn, one instance each.
        services: service class -> ``{id: instances}``: a queue group of N instances per id.
        serve_events: entity classes whose ``@on_event`` consumers run with no instance spawned
            (instances are activated by their events).
        sagas: saga classes this process coordinates (starts, and resumes after a crash elsewhere).
        namespace, events, saga, ask_timeout, drain_timeout: as for ``ActorSystem``.

    Raises:
        AppDefinitionError: every problem at once (not an Actor or Saga class, a bad id, instances
            for an entity class, no actor, consumer or saga at all).
    """

    name: str
    actors: Mapping[type[Actor], Sequence[str] | str] = field(default_factory=dict)
    services: Mapping[type[Actor], Mapping[str, int]] = field(default_factory=dict)
    serve_events: Sequence[type[Actor]] = ()
    sagas: Sequence[type[Saga[Any]]] = ()
    namespace: str = "corps"
    events: EventsConfig | None = None
    saga: SagaConfig | None = None
    ask_timeout: float = DEFAULT_ASK_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise AppDefinitionError(self.name if isinstance(self.name, str) else repr(self.name), problems)

    @classmethod
    def single(cls, actor_cls: type[Actor], ids: Iterable[str], instances: int = 1, *,
               namespace: str = "corps") -> App:
        """The App of ``corps run MODULE:CLASS --id ID [--instances N]``."""
        ids = list(ids)
        if actor_cls.options.service:
            return cls(name=actor_cls.actor_name, services={actor_cls: dict.fromkeys(ids, instances)},
                       namespace=namespace)
        if instances != 1:
            raise AppDefinitionError(actor_cls.actor_name, [
                f"instances={instances} needs a service class, and {actor_cls.__qualname__} is an entity (one "
                f"instance per id). Declare it stateless with class {actor_cls.__qualname__}(Actor, "
                f"options=ActorOptions(service=True))"])
        return cls(name=actor_cls.actor_name, actors={actor_cls: ids}, namespace=namespace)

    @property
    def actor_classes(self) -> list[type[Actor]]:
        """Every actor class the App hosts or serves events for, in declaration order, once."""
        out: list[type[Actor]] = []
        for c in [*self.actors, *self.services, *self.serve_events]:
            if c not in out:
                out.append(c)
        return out

    def ids(self, actor_cls: type[Actor]) -> list[str]:
        ids = self.actors.get(actor_cls, ())
        return [ids] if isinstance(ids, str) else list(ids)

    def system(self, url: str | list[str] | None = None, *, namespace: str | None = None,
               security: Security | None = None, name: str | None = None,
               observers: Observer | Sequence[Observer] | None = None) -> ActorSystem:
        """An ``ActorSystem`` with the App's settings (``namespace`` overrides the App's)."""
        return ActorSystem(url, namespace=namespace or self.namespace, sagas=self.sagas, saga=self.saga,
                           events=self.events, ask_timeout=self.ask_timeout, drain_timeout=self.drain_timeout,
                           security=security, name=name, observers=observers)

    async def start(self, system: ActorSystem, on_spawn: Any = None) -> Ready:
        """Spawn every actor and service instance and start the event consumers, in declaration
        order; the coordinator of ``sagas`` started with the system. ``on_spawn(ref, n, of)`` is
        called after each spawn (``corps run`` prints a line).

        Raises:
            SpawnError, InvalidActorId: an instance could not be started.
            EventError, ProvisioningConflict: an event consumer could not be set up.
        """
        spawned = 0
        for actor_cls in self.actors:
            for actor_id in self.ids(actor_cls):
                ref = await system.spawn(actor_cls, actor_id)
                spawned += 1
                if on_spawn is not None:
                    on_spawn(ref, 1, 1)
        for actor_cls, groups in self.services.items():
            for actor_id, n in groups.items():
                for i in range(1, n + 1):
                    ref = await system.spawn(actor_cls, actor_id)
                    spawned += 1
                    if on_spawn is not None:
                        on_spawn(ref, i, n)
        for actor_cls in self.serve_events:
            await system.serve_events(actor_cls)
        if self.sagas:
            await system.coordinator()  # started with the system already; this waits for it
        consumers = tuple(c.actor_name for c in self.actor_classes if event_handlers_of(c))
        return Ready(spawned=spawned, consumers=consumers, coordinator=bool(self.sagas))


def _problems(app: App) -> Iterable[str]:
    if not isinstance(app.name, str) or not app.name:
        yield "name must be a non-empty str"
    try:
        check_token(app.namespace, "namespace")
    except InvalidActorId as exc:
        yield exc.reason
    for what, classes in (("actors", list(app.actors)), ("services", list(app.services)),
                          ("serve_events", list(app.serve_events))):
        for c in classes:
            if not _is_actor_class(c):
                yield f"{what}: {c!r} is not an Actor subclass"
    for s in app.sagas:
        if not _is_saga_class(s):
            yield f"sagas: {s!r} is not a Saga subclass with steps"
    for c, ids in app.actors.items():
        for actor_id in [ids] if isinstance(ids, str) else ids:
            yield from _bad_id(c, actor_id)
    for c, groups in app.services.items():
        if isinstance(c, type) and issubclass(c, Actor) and not c.options.service:
            yield (f"services: {c.__qualname__} is an entity class (one instance per id): list it under "
                   f"actors, or declare it with ActorOptions(service=True)")
        for actor_id, n in groups.items():
            yield from _bad_id(c, actor_id)
            if not (isinstance(n, int) and 1 <= n <= MAX_INSTANCES):
                yield f"services: {getattr(c, '__qualname__', c)} {actor_id!r}: instances must be 1..{MAX_INSTANCES}"
    for c in app.serve_events:
        if isinstance(c, type) and issubclass(c, Actor) and not event_handlers_of(c):
            yield f"serve_events: {c.__qualname__} has no @on_event handler"
    if not (app.actors or app.services or app.serve_events or app.sagas):
        yield "it runs nothing: give actors, services, serve_events or sagas"


def _is_actor_class(c: object) -> bool:
    return isinstance(c, type) and issubclass(c, Actor)


def _is_saga_class(c: object) -> bool:
    return isinstance(c, type) and issubclass(c, Saga) and "stages" in vars(c)


def _bad_id(c: Any, actor_id: Any) -> Iterable[str]:
    try:
        check_token(actor_id)
    except InvalidActorId as exc:
        yield f"{getattr(c, '__qualname__', c)}: {exc}"
