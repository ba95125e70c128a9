"""What a handler sends, read from its class's source with ``ast`` (drawn dashed by ``corps graph``).

Calls ``<x>.publish(X(...))``, ``<x>.tell(X(...))``, ``<x>.ask(X(...))`` and
``<x>.start_saga(S, ...)``, with ``X`` a Message class named in the module (also through a local
``event = X(...)``). A message built elsewhere, or a class whose source cannot be read, becomes a
note: never an exception. Nothing here runs user code (names are looked up statically).
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types
from typing import Any, Final, Protocol

from corps.core._actor import Actor
from corps.tools._graph_model import EdgeKind, NodeKind, is_actor_class, is_message, is_saga_class, qualified

_VERBS: Final[dict[str, EdgeKind]] = {"publish": "publishes", "tell": "tells", "ask": "asks"}


class Sink(Protocol):
    """Where the reader puts what it finds (``corps.tools._graph``'s builder)."""

    notes: list[str]

    def edge(self, source: type, source_kind: NodeKind, target: type, kind: EdgeKind, message: str, via: str,
             *, inferred: bool = False, stage: int = 0, undo: str = "", target_kind: NodeKind | None = None) -> None:
        ...

    def handlers_of(self, tp: type) -> list[type[Actor]]:
        ...


class SourceReader:
    """Read one actor class (and its user-defined bases) for the sends drawn dashed."""

    def __init__(self, cls: type[Actor], b: Sink) -> None:
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
            self.b.notes.append(f"{qualified(klass)}: source not readable ({exc}); what it sends is not drawn")
            return None
        node = tree.body[0] if tree.body else None
        if not (isinstance(node, ast.ClassDef) and node.name == klass.__name__):
            self.b.notes.append(f"{qualified(klass)}: its source is not a class statement; what it sends is not drawn")
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
            verb, where = node.func.attr, f"{qualified(klass)}.{fn.name} (line {first_line + node.lineno - 1})"
            if verb == "start_saga":
                saga = _lookup(node.args[0], scope)
                if is_saga_class(saga):
                    self.b.edge(self.cls, "actor", saga, "starts", saga.input_type.__name__, fn.name, inferred=True)
            elif verb in _VERBS:
                built = _built(node.args[0], scope, assigned)
                if not built:
                    self.b.notes.append(f"{where}: {verb}() of a message not built there; not drawn")
                for tp in sorted(built, key=qualified):
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
        return {obj} if is_message(obj) else set()
    if isinstance(expr, ast.IfExp):
        return _built(expr.body, scope, assigned, depth) | _built(expr.orelse, scope, assigned, depth)
    if isinstance(expr, ast.Name) and depth == 0:  # one step through locals: `event = X(...)`, `event: X`
        return set().union(*(_built(value, scope, assigned, 1) for value in assigned.get(expr.id, [])))
    if depth and isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return _built(expr.left, scope, assigned, depth) | _built(expr.right, scope, assigned, depth)
    if depth and isinstance(expr, ast.Name | ast.Attribute):
        obj = _lookup(expr, scope)
        return {obj} if is_message(obj) else set()
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
