"""``corps graph MODULE ...``: draw the actors and sagas of some modules as Mermaid, or as text."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from corps.cli._common import add_json_argument
from corps.tools._graph import Edge, Graph, NodeKind, build_graph, classes_in, is_actor_class, is_saga_class
from corps.tools._loader import LoadError, load_object

GRAPH_EPILOG = """\
examples:
  corps graph corps.examples.shop.choreographed                 the choreographed shop, as a Mermaid flowchart
  corps graph corps.examples.shop.orchestrated corps.examples.shop.hybrid --output shop.md
                                                        two modules in one picture, in a Markdown file
  corps graph corps.examples.shop.orchestrated:PlaceOrder       one saga and the actors its steps ask
  corps graph corps.examples.demo --format text                 one line per edge, for a terminal

Solid edges are declared: @handler and @on_event methods, saga steps. Dashed edges are read from
the source of the handlers (self.publish(X(...)), ref.tell(X(...)), ref.ask(X(...)),
system.start_saga(S, ...)): a message built somewhere else is missed, and a note (a %% comment,
and on stderr with --output) says where. A FILE ending in .md gets a ```mermaid block, which
GitHub and most Markdown viewers draw. MODULE is imported as `python -m` would (the current
directory first); nothing connects to NATS."""


def add_graph_parser(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Register ``corps graph`` on the top-level subparsers."""
    graph = sub.add_parser("graph", help="draw who sends what and who listens to what (Mermaid)",
                           description="Draw the actors and sagas of Python modules: the messages they "
                                       "handle, the events they consume and publish, the steps of sagas.",
                           epilog=GRAPH_EPILOG, formatter_class=formatter)
    graph.add_argument("targets", nargs="+", metavar="MODULE",
                       help="a module (every actor and saga it defines), or MODULE:CLASS for one class")
    graph.add_argument("--format", choices=("mermaid", "text"), default="mermaid",
                       help="mermaid (default) or text: one line per edge")
    graph.add_argument("--output", "-o", metavar="FILE", help="write there instead of stdout")
    add_json_argument(graph)
    graph.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    classes: list[type] = []
    for target in args.targets:
        try:
            classes += classes_named(target)
        except LoadError as problem:  # as `corps run` reports it: the traceback of a failed import, then one line
            if problem.detail:
                print(problem.detail, file=sys.stderr, end="")
            parser.exit(2, f"corps graph: error: {problem}\n")
    graph = build_graph(classes)
    if args.json:
        text = msgspec.json.encode(graph).decode() + "\n"
    else:
        text = to_mermaid(graph) if args.format == "mermaid" else to_text(graph)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.format == "mermaid" and not args.json and path.suffix.lower() == ".md":
        text = f"```mermaid\n{text}```\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"corps: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for note in graph.notes:  # in the file too, but the user is looking at the terminal
        print(f"corps graph: note: {note}", file=sys.stderr)
    print(f"wrote {path} ({len(graph.nodes)} nodes, {len(graph.edges)} edges)", file=sys.stderr)
    return 0


def classes_named(target: str) -> list[type]:
    """The classes ``target`` names: one ``module:Class``, or every actor and saga a module defines.

    Raises:
        LoadError: the module does not import, the class is not an actor or a saga, or the
            module defines neither.
    """
    if ":" in target:
        obj = load_object(target, "MODULE or MODULE:CLASS (for example corps.examples.shop.orchestrated:PlaceOrder)")
        if not (is_actor_class(obj) or is_saga_class(obj)):
            raise LoadError(f"{target} is not an Actor subclass or a Saga subclass with steps")
        assert isinstance(obj, type)
        return [obj]
    if target.endswith(".py") or "/" in target or "\\" in target:
        dotted = target.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
        raise LoadError(f"{target!r} is a file path; give a module name, such as {dotted}")
    # `module:__name__` goes through the loader for its import and its error messages (a missing
    # module, or one that fails to import, with the traceback); the module is then cached.
    load_object(f"{target}:__name__", "MODULE (for example corps.examples.shop.choreographed)")
    found = classes_in(importlib.import_module(target))
    if not found:
        raise LoadError(f"module {target!r} defines no Actor or Saga classes")
    return found


# -- rendering -------------------------------------------------------------------------------------

_SHAPES: Final[dict[NodeKind, tuple[str, str]]] = {"actor": ('["', '"]'), "event": ('(["', '"])'),
                                                    "saga": ('{{"', '"}}')}


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``flowchart LR``: actors as boxes listing what they handle, events as stadiums,
    sagas as hexagons; declared edges solid, inferred ones dashed. Notes become ``%%`` comments."""
    lines = ["flowchart LR",
             "  %% corps graph: solid = declared (@handler, @on_event, saga steps), dashed = read from the source"]
    lines += [f"  %% note: {' '.join(note.split())}" for note in graph.notes]
    for node in graph.nodes:
        opening, closing = _SHAPES[node.kind]
        parts = [node.label, node.detail, *(f"{h.message} → {h.reply}" if h.reply else h.message for h in node.handles)]
        lines.append(f"  {node.id}{opening}{'<br/>'.join(_escape(p) for p in parts if p)}{closing}")
    for edge in graph.edges:
        arrow = "-.->" if edge.inferred else "-->"
        label = _edge_label(edge)
        lines.append(f'  {edge.source} {arrow}|"{_escape(label)}"| {edge.target}' if label
                     else f"  {edge.source} {arrow} {edge.target}")
    return "\n".join(lines) + "\n"


def to_text(graph: Graph) -> str:
    """One line per edge (and per handled message), aligned, for a terminal or a diff."""
    labels = {node.id: node.label for node in graph.nodes}
    rows: list[tuple[str, str, str, str]] = []
    for node in graph.nodes:
        rows += [(node.label, "handles", h.message, f"replies {h.reply or 'nothing'} ({h.method})")
                 for h in node.handles]
    for edge in graph.edges:
        what = ("step " + _edge_label(edge) if edge.kind == "step"
                else f"{_edge_label(edge) or edge.kind} in {edge.via}" + (" (inferred)" if edge.inferred else ""))
        rows.append((labels[edge.source], "..>" if edge.inferred else "-->", labels[edge.target], what))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, [*widths, 0], strict=True)).rstrip() for row in rows]
    return "".join(f"{line}\n" for line in [*lines, *(f"note: {note}" for note in graph.notes)])


def _edge_label(edge: Edge) -> str:
    if edge.kind == "step":
        undo = "nothing to undo" if edge.undo == "NOTHING_TO_UNDO" else f"undo {edge.undo}"
        return f"{edge.stage} {edge.via}: {edge.message} / {undo}"
    if edge.kind in ("tells", "asks"):
        return f"{edge.kind[:-1]} {edge.message}"
    if edge.kind == "starts":
        return f"start_saga {edge.message}"
    return ""  # publishes, consumes: the event node names what travels


def _escape(text: str) -> str:
    # Mermaid entity codes: a raw quote ends the label, and '#' starts an entity of its own.
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text
