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

import ast
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Iterable
from typing import Any, Final, Literal, TypeGuard

import msgspec

from corps.core._actor import Actor
from corps.core._messages import Message
from corps.events._classes import event_handlers_of
from corps.saga._definition import NOTHING_TO_UNDO, Saga
from corps.system._actor import Actor as UserActor

NodeKind = Literal["actor", "saga", "event"]
EdgeKind = Literal["consumes", "publishes", "tells", "asks", "step", "starts"]

_VERBS: Final[dict[str, EdgeKind]] = {"publish": "publishes", "tell": "tells", "ask": "asks"}
_KIND_ORDER: Final = {"saga": 0, "actor": 1, "event": 2}


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
    return sorted(own or found, key=_qualified)


def build_graph(classes: Iterable[type]) -> Graph:
    """Draw ``classes`` (Actor and Saga subclasses): their declarations, and the sends their source shows.

    Saga participants and the actors a send names are added as nodes even when not in ``classes``.

    Raises:
        TypeError: a class is neither an Actor nor a Saga subclass.
    """
    b = _Builder()
    subjects = sorted(set(classes), key=_qualified)
    for cls in subjects:
        if not (is_actor_class(cls) or is_saga_class(cls)):
            raise TypeError(f"{_qualified(cls)} is not an Actor or Saga subclass")
        b.node(cls, "saga" if is_saga_class(cls) else "actor")
    for cls in subjects:
        if is_saga_class(cls):
            _add_steps(cls, b)
        elif is_actor_class(cls):
            for event_type, spec in event_handlers_of(cls).items():
                b.edge(event_type, "event", cls, "consumes", event_type.__name__, via=spec.name)
    for cls in subjects:
        if is_actor_class(cls):
            _SourceReader(cls, b).read()
    return b.build()


# -- declared: saga steps -------------------------------------------------------------------------


def _add_steps(saga: type[Saga[Any]], b: _Builder) -> None:
    for stage_number, stage in enumerate(saga.stages, 1):
        for step in stage:
            where = f"{_qualified(saga)} step {step.name!r}"
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
        if _is_message(cell.cell_contents):
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
            found |= {m for m in (inspect.getattr_static(obj, n, None) for n in names) if _is_message(m)}
        elif _is_message(obj):
            found.add(obj)
    return found


# -- inferred: what handlers send, read from the source -------------------------------------------


class _SourceReader:
    """Read one actor class (and its user-defined bases) for the sends drawn dashed."""

    def __init__(self, cls: type[Actor], b: _Builder) -> None:
        self.cls = cls
        self.b = b

    def read(self) -> None:
        seen: set[str] = set()  # a method overridden in a subclass is read there, not in the base
        for klass in self.cls.__mro__:
            if not is_actor_class(klass):
                continue
            parsed = self._parse(klass)
            if parsed is None:
                continue
            tree, first_line = parsed
            scope = vars(sys.modules[klass.__module__]) if klass.__module__ in sys.modules else {}
            for item in tree.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name not in seen:
                    seen.add(item.name)
                    self._method(klass, item, scope, first_line)

    def _parse(self, klass: type) -> tuple[ast.ClassDef, int] | None:
        try:
            lines, first_line = inspect.getsourcelines(klass)
            tree = ast.parse(textwrap.dedent("".join(lines)))
        except (OSError, TypeError, SyntaxError) as exc:
            # Dynamically created classes, classes from a REPL or a zip without source: no picture
            # of their sends, but the rest of the graph is still worth having.
            self.b.notes.append(f"{_qualified(klass)}: source not readable ({exc}); what it sends is not drawn")
            return None
        node = tree.body[0] if tree.body else None
        if not (isinstance(node, ast.ClassDef) and node.name == klass.__name__):
            self.b.notes.append(f"{_qualified(klass)}: its source is not a class statement; what it sends is not drawn")
            return None
        return node, first_line

    def _method(self, klass: type, fn: ast.FunctionDef | ast.AsyncFunctionDef, scope: dict[str, Any],
                first_line: int) -> None:
        # What a local name may hold: the values assigned to it, or its parameter annotation.
        assigned: dict[str, list[ast.expr]] = {}
        for arg in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs):
            if arg.annotation is not None:
                assigned[arg.arg] = [arg.annotation]
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
                assigned.setdefault(node.target.id, []).append(node.value)
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            verb, where = node.func.attr, f"{_qualified(klass)}.{fn.name} (line {first_line + node.lineno - 1})"
            if verb == "start_saga":
                saga = _lookup(node.args[0], scope)
                if is_saga_class(saga):
                    self.b.edge(self.cls, "actor", saga, "starts", saga.input_type.__name__, fn.name, inferred=True)
            elif verb in _VERBS:
                built = _built(node.args[0], scope, assigned)
                if not built:
                    self.b.notes.append(f"{where}: {verb}() of a message not built there; not drawn")
                for tp in sorted(built, key=_qualified):
                    self._send(_VERBS[verb], tp, node.func.value, scope, fn.name, where)

    def _send(self, kind: EdgeKind, tp: type, receiver: ast.expr, scope: dict[str, Any], via: str, where: str) -> None:
        if kind == "publishes":
            self.b.edge(self.cls, "actor", tp, kind, tp.__name__, via, inferred=True, target_kind="event")
            return
        # `system.ref(Stock, id).ask(...)` names the target; otherwise, whoever handles the type.
        named = None
        if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and receiver.func.attr == "ref":
            named = _lookup(receiver.args[0], scope) if receiver.args else None
        targets = [named] if is_actor_class(named) else self.b.handlers_of(tp)
        if not targets:
            self.b.notes.append(f"{where}: {tp.__name__} is handled by no actor in the graph; not drawn")
        for target in targets:
            self.b.edge(self.cls, "actor", target, kind, tp.__name__, via, inferred=True)


def _built(expr: ast.expr, scope: dict[str, Any], assigned: dict[str, list[ast.expr]], depth: int = 0) -> set[type]:
    """The Message classes ``expr`` builds: ``X(...)``, ``a if c else b``, or a local set to one.

    At ``depth`` 1 (the value or annotation of a local) a bare class name or ``A | B`` counts too.
    """
    if isinstance(expr, ast.Call):
        obj = _lookup(expr.func, scope)
        return {obj} if _is_message(obj) else set()
    if isinstance(expr, ast.IfExp):
        return _built(expr.body, scope, assigned, depth) | _built(expr.orelse, scope, assigned, depth)
    if isinstance(expr, ast.Name) and depth == 0:  # one step through locals: `event = X(...)`, `event: X`
        return set().union(*(_built(value, scope, assigned, 1) for value in assigned.get(expr.id, [])))
    if depth and isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return _built(expr.left, scope, assigned, depth) | _built(expr.right, scope, assigned, depth)
    if depth and isinstance(expr, ast.Name | ast.Attribute):
        obj = _lookup(expr, scope)
        return {obj} if _is_message(obj) else set()
    return set()


def _lookup(expr: ast.expr, scope: dict[str, Any]) -> object:
    """What a name or a dotted name denotes in the module, without running any code."""
    if isinstance(expr, ast.Name):
        return scope.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _lookup(expr.value, scope)
        if isinstance(base, types.ModuleType | type):
            return inspect.getattr_static(base, expr.attr, None)  # static: no property or __getattr__ runs
    return None


def _is_message(obj: object) -> TypeGuard[type[Message]]:
    return isinstance(obj, type) and issubclass(obj, Message)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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
        return sorted((cls for cls in self.kinds if is_actor_class(cls) and tp in cls._handlers), key=_qualified)

    def build(self) -> Graph:
        ids: dict[type, str] = {}
        taken: set[str] = set()
        nodes = []
        for cls, kind in sorted(self.kinds.items(), key=lambda item: (_KIND_ORDER[item[1]], _label(*item),
                                                                      _qualified(item[0]))):
            base = f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', _label(cls, kind))}"
            node_id, n = base, 1
            while node_id in taken:  # two classes with one label (from two modules): number the later one
                n += 1
                node_id = f"{base}_{n}"
            taken.add(node_id)
            ids[cls] = node_id
            nodes.append(Node(id=node_id, kind=kind, label=_label(cls, kind), name=_qualified(cls),
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
