"""``corps graph``: who sends what and who listens to what, drawn from the actor declarations.

Choreography spreads one flow over many services: no file says that OrderPlaced leads to
StockReserved and then to PaymentCaptured. The graph puts it in one picture. What the runtime
declares is exact and drawn solid: the ``@handler`` and ``@on_event`` tables built when a class
is created, and saga steps (participant, request, compensation). What a handler *sends* is not
declared, so it is read from the class source with ``ast`` and drawn dashed: calls
``<x>.publish(X(...))``, ``<x>.tell(X(...))``, ``<x>.ask(X(...))`` and ``<x>.start_saga(S, ...)``,
with ``X`` a Message class named in the module (also through a local ``event = X(...)``). A
message built elsewhere is missed, and a class whose source cannot be read is skipped: both are
listed in ``Graph.notes``, never raised, so the picture says where it may be incomplete.

Pure: no NATS, nothing started. runtime/cli/_graph.py loads the modules and prints.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterable
from typing import Any, Final

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.events._classes import event_handlers_of
from corps.saga._definition import NOTHING_TO_UNDO, Saga
from corps.tools._graph_model import Edge as Edge
from corps.tools._graph_model import EdgeKind as EdgeKind
from corps.tools._graph_model import Graph as Graph
from corps.tools._graph_model import Handled as Handled
from corps.tools._graph_model import Node as Node
from corps.tools._graph_model import NodeKind as NodeKind
from corps.tools._graph_model import classes_in as classes_in
from corps.tools._graph_model import is_actor_class as is_actor_class
from corps.tools._graph_model import is_message, qualified
from corps.tools._graph_model import is_saga_class as is_saga_class
from corps.tools._graph_source import SourceReader

_KIND_ORDER: Final = {"saga": 0, "actor": 1, "event": 2}


def build_graph(classes: Iterable[type]) -> Graph:
    """Draw ``classes`` (Actor and Saga subclasses): their declarations, and the sends their source shows.

    Saga participants and the actors a send names are added as nodes even when not in ``classes``.

    Raises:
        TypeError: a class is neither an Actor nor a Saga subclass.
    """
    b = _Builder()
    subjects = sorted(set(classes), key=qualified)
    for cls in subjects:
        if not (is_actor_class(cls) or is_saga_class(cls)):
            raise TypeError(f"{qualified(cls)} is not an Actor or Saga subclass")
        b.node(cls, "saga" if is_saga_class(cls) else "actor")
    for cls in subjects:
        if is_saga_class(cls):
            _add_steps(cls, b)
        elif is_actor_class(cls):
            for event_type, spec in event_handlers_of(cls).items():
                b.edge(event_type, "event", cls, "consumes", event_type.__name__, via=spec.name)
    for cls in subjects:
        if is_actor_class(cls):
            SourceReader(cls, b).read()
    return b.build()



# -- declared: saga steps -------------------------------------------------------------------------


def _add_steps(saga: type[Saga[Any]], b: _Builder) -> None:
    for stage_number, stage in enumerate(saga.stages, 1):
        for step in stage:
            where = f"{qualified(saga)} step {step.name!r}"
            request = _message_built_by(step.request, step.to, f"{where} request", b)
            undo = "NOTHING_TO_UNDO" if step.undo is NOTHING_TO_UNDO else _message_built_by(
                step.undo, step.to, f"{where} undo", b)
            via = f"{step.name} (pivot)" if step.pivot else step.name
            b.edge(saga, "saga", step.to, "step", request, via=via, stage=stage_number, undo=undo)


def _message_built_by(fn: object, participant: type, where: str, b: _Builder) -> str:
    """The Message type(s) a step function builds, read from the names its code uses.

    A step's ``request`` and ``undo`` are functions (usually lambdas), so the message type is in
    their code, not in an annotation. Names are looked up in the function's globals and closure;
    types the participant handles are preferred, so a lambda that also names another Message
    (in a field value, say) still gives the request.
    """
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        b.notes.append(f"{where}: not a plain function; its message type is shown as '?'")
        return "?"
    scope: dict[str, Any] = getattr(fn, "__globals__", {})
    names = _code_names(code)
    found = _messages_named(names, scope)
    for cell in getattr(fn, "__closure__", None) or ():
        if is_message(cell.cell_contents):
            found.add(cell.cell_contents)
    handled = getattr(participant, "_handlers", {})
    chosen = {tp for tp in found if tp in handled} or found
    if not chosen:
        b.notes.append(f"{where}: names no Message class; its message type is shown as '?'")
        return "?"
    return " | ".join(sorted(tp.__name__ for tp in chosen))


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # a nested lambda or comprehension
            names |= _code_names(const)
    return names


def _messages_named(names: set[str], scope: dict[str, Any]) -> set[type[Message]]:
    found: set[type[Message]] = set()
    for name in names:
        obj = scope.get(name)
        if isinstance(obj, types.ModuleType):  # `shop.ReserveStock(...)` puts both names in co_names
            found |= {m for m in (inspect.getattr_static(obj, n, None) for n in names) if is_message(m)}
        elif is_message(obj):
            found.add(obj)
    return found


# -- assembling ------------------------------------------------------------------------------------

_RawEdge = tuple[type, type, EdgeKind, str, bool, int, str]  # source, target, kind, message, inferred, stage, undo


class _Builder:
    """Collect nodes by class and edges between classes; ids and order are settled in ``build``."""

    def __init__(self) -> None:
        self.kinds: dict[type, NodeKind] = {}
        self.edges: dict[_RawEdge, set[str]] = {}
        self.notes: list[str] = []

    def node(self, cls: type, kind: NodeKind) -> None:
        self.kinds.setdefault(cls, kind)

    def edge(self, source: type, source_kind: NodeKind, target: type, kind: EdgeKind, message: str, via: str,
             *, inferred: bool = False, stage: int = 0, undo: str = "", target_kind: NodeKind | None = None) -> None:
        self.node(source, source_kind)
        self.node(target, target_kind or ("saga" if kind == "starts" else "actor"))
        self.edges.setdefault((source, target, kind, message, inferred, stage, undo), set()).add(via)

    def handlers_of(self, tp: type) -> list[type[Actor]]:
        return sorted((cls for cls in self.kinds if is_actor_class(cls) and tp in cls._handlers), key=qualified)

    def build(self) -> Graph:
        ids: dict[type, str] = {}
        taken: set[str] = set()
        nodes = []
        for cls, kind in sorted(self.kinds.items(), key=lambda item: (_KIND_ORDER[item[1]], _label(*item),
                                                                      qualified(item[0]))):
            base = f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', _label(cls, kind))}"
            node_id, n = base, 1
            while node_id in taken:  # two classes with one label (from two modules): number the later one
                n += 1
                node_id = f"{base}_{n}"
            taken.add(node_id)
            ids[cls] = node_id
            nodes.append(Node(id=node_id, kind=kind, label=_label(cls, kind), name=qualified(cls),
                              detail=_detail(cls, kind),
                              handles=_handles(cls) if kind == "actor" else ()))
        edges = sorted(
            (Edge(source=ids[src], target=ids[dst], kind=kind, message=message, inferred=inferred,
                  via=", ".join(sorted(vias)), stage=stage, undo=undo)
             for (src, dst, kind, message, inferred, stage, undo), vias in self.edges.items()),
            key=lambda e: (e.source, e.stage, e.target, e.kind, e.message, e.inferred, e.via, e.undo),
        )
        return Graph(tuple(nodes), tuple(edges), tuple(dict.fromkeys(self.notes)))


def _label(cls: type, kind: NodeKind) -> str:
    if kind == "actor":
        return str(getattr(cls, "actor_name", cls.__name__))
    if kind == "saga":
        return str(getattr(cls, "saga_name", cls.__name__))
    return cls.__name__


def _detail(cls: type, kind: NodeKind) -> str:
    if kind == "saga":
        return f"Saga[{cls.input_type.__name__}]" if is_saga_class(cls) else ""
    if kind == "actor" and getattr(cls, "actor_name", cls.__name__) != cls.__name__:
        return f"class {cls.__qualname__}"
    return ""


def _handles(cls: type) -> tuple[Handled, ...]:
    specs = getattr(cls, "_handlers", {}).values()
    found = (Handled(s.msg_type.__name__, getattr(s.reply, "__name__", None) if s.reply else None, s.name)
             for s in specs)
    return tuple(sorted(found, key=lambda h: h.message))
