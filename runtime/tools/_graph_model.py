"""``corps graph``'s data: nodes, edges and the graph, and which classes it draws (no NATS)."""

from __future__ import annotations

import types
from typing import Any, Literal, TypeGuard

import msgspec

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.saga._definition import Saga
from corps.system._actor import Actor as UserActor

NodeKind = Literal["actor", "saga", "event"]
EdgeKind = Literal["consumes", "publishes", "tells", "asks", "step", "starts"]


class Handled(msgspec.Struct, frozen=True):
    """One ``@handler`` of an actor: the message it takes and the reply it returns (None: a tell)."""

    message: str
    reply: str | None
    method: str


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """An actor, a saga or an event type. ``id`` is unique and safe as a Mermaid id."""

    id: str
    kind: NodeKind
    label: str
    """The actor name (its token in subjects), the saga name, or the event class name."""
    name: str
    """``module:QualName`` of the class, as ``corps run`` and ``corps graph`` take it."""
    detail: str = ""
    """Actors: ``class X`` when the actor name differs; sagas: ``Saga[Input]``."""
    handles: tuple[Handled, ...] = ()


class Edge(msgspec.Struct, frozen=True, kw_only=True):
    """``source`` → ``target`` (node ids). Declared unless ``inferred`` (read from source code)."""

    source: str
    target: str
    kind: EdgeKind
    message: str
    """What travels: the event, the told or asked message, a step's request (``?`` if unread),
    or for ``starts`` the saga's input type."""
    inferred: bool = False
    via: str = ""
    """Where it comes from: the method(s) of the actor, or the step's name."""
    stage: int = 0
    """Steps only: 1-based position in the saga; steps of a Parallel group share one."""
    undo: str = ""
    """Steps only: the compensation's message type, or ``NOTHING_TO_UNDO``."""


class Graph(msgspec.Struct, frozen=True):
    """Nodes and edges in a deterministic (sorted) order, and what could not be read."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    notes: tuple[str, ...] = ()

    def node(self, label: str) -> Node:
        """The first node labelled ``label``.

        Raises:
            KeyError: no node has that label.
        """
        for node in self.nodes:
            if node.label == label:
                return node
        raise KeyError(label)


_BASES: tuple[type, ...] = (Actor, UserActor)
"""The framework's own actor bases: never drawn, and their methods are not the user's sends."""


def is_actor_class(obj: object) -> TypeGuard[type[Actor]]:
    return isinstance(obj, type) and issubclass(obj, Actor) and obj not in _BASES


def is_saga_class(obj: object) -> TypeGuard[type[Saga[Any]]]:
    """A concrete saga definition (the base and generic intermediates have no ``stages``)."""
    return isinstance(obj, type) and issubclass(obj, Saga) and "stages" in vars(obj)


def classes_in(module: types.ModuleType) -> list[type]:
    """The Actor and Saga classes ``module`` defines, deduplicated, in name order.

    Classes it only imports are left out (they belong to their own module's picture), unless it
    defines none: then it is a package that re-exports its actors, and those are what it means.
    """
    found = {obj for obj in vars(module).values() if is_actor_class(obj) or is_saga_class(obj)}
    own = {cls for cls in found if cls.__module__ == module.__name__}
    return sorted(own or found, key=qualified)



def is_message(obj: object) -> TypeGuard[type[Message]]:
    return isinstance(obj, type) and issubclass(obj, Message)


def qualified(cls: type) -> str:
    """``module:QualName``, as ``corps run`` and ``corps graph`` take a class."""
    return f"{cls.__module__}:{cls.__qualname__}"
