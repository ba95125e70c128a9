"""``corps graph``'s finer rules (runtime/tools/_graph_source.py, _graph.py, _graph_model.py), one
case each from tests/unit/tools/graph_sample_more.py: each test kills a mutation of the sweep of
2026-12-06 that the shop and the first sample let through."""

from __future__ import annotations

import types

from corps import Actor
from corps.examples.shop import orchestrated
from corps.saga import Saga
from corps.tools._graph import Graph, build_graph, classes_in
from tests.unit.tools import graph_sample_more as more


def sends(graph: Graph, source: str) -> set[tuple[str, str, str]]:
    """``(kind, target label, message)`` of every inferred edge from the node labelled ``source``."""
    labels = {node.id: node.label for node in graph.nodes}
    src = graph.node(source).id
    return {(e.kind, labels[e.target], e.message) for e in graph.edges if e.source == src and e.inferred}


def test_a_ref_names_its_target_even_when_another_actor_handles_the_message() -> None:
    graph = build_graph([more.Caller, more.Front, more.Back])
    assert sends(graph, "Caller") == {("asks", "Front", "Ping"), ("tells", "Sink", "Left")}


def test_an_overridden_method_is_read_in_the_subclass_only_and_locals_resolve_by_annotation() -> None:
    graph = build_graph([more.Override])
    assert sends(graph, "Override") == {
        ("asks", "Front", "Ping"),  # inherited, not overridden: read in the base
        ("tells", "Sink", "Right"),  # `note: Right = Right(...)`; the base's Left send is overridden
        ("tells", "Sink", "Left"),  # `side: Left | Right`
    }
    vias = {e.message: e.via for e in graph.edges if e.kind == "tells"}
    assert vias == {"Left": "either", "Right": "either, send"}  # both sides of the union; the annotated local


def test_a_send_no_actor_in_the_graph_handles_is_a_note() -> None:
    graph = build_graph([more.Override])
    assert [n for n in graph.notes if "Orphan is handled by no actor in the graph; not drawn" in n] != []
    assert all(e.message != "Orphan" for e in graph.edges)


def test_a_step_request_is_found_through_a_module_a_closure_a_nested_lambda_and_beside_another_message() -> None:
    graph = build_graph([more.Steps])
    steps = {e.via: e.message for e in graph.edges if e.kind == "step"}
    assert steps == {"module": "OrderPlaced", "closure": "Left", "nested": "Right", "beside": "Ping"}
    assert graph.notes == ()


def test_only_own_classes_are_drawn_and_bases_are_never_drawn() -> None:
    package = types.ModuleType("mixed")
    own = type("Own", (Actor,), {"__module__": "mixed"})
    package.Own = own  # type: ignore[attr-defined]
    package.Inventory = orchestrated.Inventory  # type: ignore[attr-defined]  # imported: its module's picture
    package.Saga = Saga  # type: ignore[attr-defined]  # the base has no steps
    assert classes_in(package) == [own]
    reexports = types.ModuleType("reexports")
    reexports.Inventory = orchestrated.Inventory  # type: ignore[attr-defined]
    reexports.Saga = Saga  # type: ignore[attr-defined]
    assert classes_in(reexports) == [orchestrated.Inventory]


def test_an_actor_named_as_its_class_has_no_detail() -> None:
    graph = build_graph([more.Front])
    assert graph.node("Front").detail == ""
