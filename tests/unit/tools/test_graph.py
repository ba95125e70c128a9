"""``corps graph`` (runtime/tools/_graph.py, runtime/cli/_graph.py): declared edges exact, sends read from source.

Pure: the modules are imported and drawn, nothing connects to NATS.
"""

from __future__ import annotations

import argparse
import functools
import re
import types
from pathlib import Path

import pytest

import corps.examples.demo
import corps.examples.shop.choreographed as choreographed
import corps.examples.shop.hybrid as hybrid
import corps.examples.shop.orchestrated as orchestrated
from corps import Actor, handler
from corps.cli._graph import add_graph_parser, to_mermaid, to_text
from corps.examples.shop.messages import OrderRequest
from corps.saga import NOTHING_TO_UNDO, Saga, Step
from corps.tools._graph import EdgeKind, Graph, build_graph, classes_in
from tests.unit.tools import graph_sample as sample


def graph_of(*modules: types.ModuleType) -> Graph:
    return build_graph(cls for module in modules for cls in classes_in(module))


def edges(graph: Graph, kind: EdgeKind) -> set[tuple[str, str]]:
    """``(source label, target label)`` of every edge of ``kind``."""
    labels = {node.id: node.label for node in graph.nodes}
    return {(labels[e.source], labels[e.target]) for e in graph.edges if e.kind == kind}


# -- the reference shop ---------------------------------------------------------------------------


def test_the_choreographed_shop_consumes_exactly_what_its_on_event_handlers_declare() -> None:
    graph = graph_of(choreographed)
    assert edges(graph, "consumes") == {
        ("OrderPlaced", "InventoryEvents"), ("OrderPlaced", "Order"),
        ("StockReserved", "PaymentsEvents"),
        ("PaymentCaptured", "ShippingEvents"),
        ("PaymentDeclined", "InventoryEvents"), ("PaymentRefunded", "InventoryEvents"),
        ("ShipmentFailed", "PaymentsEvents"),
        ("ShipmentBooked", "Order"), ("OutOfStock", "Order"), ("StockReleased", "Order"),
    }
    assert not any(e.inferred for e in graph.edges if e.kind == "consumes")


def test_the_choreographed_shop_publishes_are_read_from_the_handlers_and_marked_inferred() -> None:
    graph = graph_of(choreographed)
    assert edges(graph, "publishes") == {
        ("InventoryEvents", "StockReserved"), ("InventoryEvents", "OutOfStock"), ("InventoryEvents", "StockReleased"),
        ("PaymentsEvents", "PaymentCaptured"), ("PaymentsEvents", "PaymentDeclined"),
        ("PaymentsEvents", "PaymentRefunded"),
        ("ShippingEvents", "ShipmentBooked"), ("ShippingEvents", "ShipmentFailed"),
        ("Order", "OrderCompleted"), ("Order", "OrderCancelled"),
    }
    assert all(e.inferred for e in graph.edges if e.kind == "publishes")
    reserved = next(e for e in graph.edges if e.target == graph.node("StockReserved").id and e.kind == "publishes")
    assert reserved.via == "reserve"
    assert graph.notes == ()


def test_an_actor_shows_its_actor_name_its_class_and_what_it_handles() -> None:
    inventory = graph_of(choreographed).node("InventoryEvents")
    assert (inventory.kind, inventory.name, inventory.detail) == (
        "actor", "corps.examples.shop.choreographed:Inventory", "class Inventory")
    assert [(h.message, h.reply, h.method) for h in inventory.handles] == [("GetStock", "StockLevel", "stock")]


def test_the_orchestrated_saga_shows_each_step_with_its_participant_request_and_compensation() -> None:
    graph = graph_of(orchestrated)
    labels = {node.id: node.label for node in graph.nodes}
    steps = [(e.stage, e.via, labels[e.target], e.message, e.undo) for e in graph.edges if e.kind == "step"]
    assert steps == [
        (1, "reserve", "Inventory", "ReserveStock", "ReleaseStock"),
        (2, "charge", "Payments", "ChargeCard", "RefundCard"),
        (3, "ship", "Shipping", "BookCourier", "CancelCourier"),
    ]
    saga = graph.node("PlaceOrder")
    assert (saga.kind, saga.detail) == ("saga", "Saga[OrderRequest]")
    assert all(e.source == saga.id and not e.inferred for e in graph.edges)
    assert ("ReserveStock", "StockReserved", "reserve") in {(h.message, h.reply, h.method)
                                                           for h in graph.node("Inventory").handles}


def test_the_hybrid_shows_the_request_its_context_answers_and_the_events_other_contexts_consume() -> None:
    graph = graph_of(hybrid)
    orders = graph.node("OrdersContext")
    assert [(h.message, h.reply) for h in orders.handles] == [("SubmitOrder", "OrderDecided")]
    assert edges(graph, "publishes") == {("OrdersContext", "OrderCompleted"), ("OrdersContext", "OrderCancelled")}
    assert edges(graph, "consumes") == {
        ("OrderCompleted", "Notifications"), ("OrderCancelled", "Notifications"),
        ("OrderCompleted", "SalesProjection"), ("OrderCancelled", "SalesProjection"),
    }


def test_the_hybrid_drawn_with_the_orchestrated_saga_has_both_styles_in_one_picture() -> None:
    graph = graph_of(orchestrated, hybrid)
    kinds = {(e.kind, e.inferred) for e in graph.edges}
    assert {("step", False), ("consumes", False), ("publishes", True)} <= kinds
    assert {"PlaceOrder", "Inventory", "OrdersContext", "Notifications"} <= {n.label for n in graph.nodes}


def test_the_demo_actors_have_no_edges_and_list_what_they_handle() -> None:
    graph = graph_of(corps.examples.demo)
    assert [n.label for n in graph.nodes] == ["Account", "Pricing"]
    assert graph.edges == ()
    assert [(h.message, h.reply) for h in graph.node("Account").handles] == [
        ("Deposit", None), ("GetBalance", "Balance"), ("Withdraw", "Balance")]


# -- what the source reader finds -----------------------------------------------------------------


def test_tells_and_asks_go_to_the_named_or_handling_actor_and_locals_and_dotted_names_resolve() -> None:
    graph = graph_of(sample)
    labels = {node.id: node.label for node in graph.nodes}
    sends = {(e.kind, (labels[e.source], labels[e.target]), e.message) for e in graph.edges
             if e.kind in ("tells", "asks", "publishes", "starts")}
    assert all(e.inferred for e in graph.edges if e.kind != "consumes" and e.kind != "step")
    assert sends == {
        ("asks", ("Cashier", "Stock"), "Check"),
        ("tells", ("Cashier", "Auditor"), "Audit"),
        ("publishes", ("Cashier", "Paid"), "Paid"),  # event = Paid(...) if ok else Declined(...)
        ("publishes", ("Cashier", "Declined"), "Declined"),
        ("publishes", ("Cashier", "OrderPlaced"), "OrderPlaced"),  # shop.OrderPlaced(...)
        ("starts", ("Cashier", "Fulfil"), "Checkout"),
    }
    tell = next(e for e in graph.edges if e.kind == "tells")
    assert tell.via == "_log, checkout"  # the annotation of `audit` in _log says what it holds


def test_a_send_of_a_message_built_elsewhere_is_a_note_with_its_line_not_an_edge() -> None:
    (note,) = graph_of(sample).notes
    assert note.startswith("tests.unit.tools.graph_sample:Cashier.paid (line ")
    assert "publish() of a message not built there" in note


def test_parallel_steps_share_a_stage_and_the_pivot_is_marked() -> None:
    graph = graph_of(sample)
    steps = [(e.stage, e.via, e.message, e.undo) for e in graph.edges if e.kind == "step"]
    assert steps == [
        (1, "audit", "Audit", "Audit"),
        (1, "check", "Check", "NOTHING_TO_UNDO"),
        (2, "close (pivot)", "Audit", "NOTHING_TO_UNDO"),
    ]


async def _ghost_check(self: Actor, msg: sample.Check) -> sample.Level:
    return sample.Level(0)


def test_a_class_whose_source_cannot_be_read_is_drawn_from_its_declarations_and_noted() -> None:
    ghost = type("Ghost", (Actor,), {"check": handler(_ghost_check)})  # made at run time: no source
    graph = build_graph([ghost])
    assert [(h.message, h.reply) for h in graph.node("Ghost").handles] == [("Check", "Level")]
    (note,) = graph.notes
    assert note.startswith("tests.unit.tools.test_graph:Ghost: source not readable")
    assert "what it sends is not drawn" in note


def test_a_step_function_that_is_not_a_plain_function_is_shown_as_unknown_and_noted() -> None:
    def build(order_id: str, _ctx: object) -> sample.Check:
        return sample.Check(order_id)

    check = Step("check", to=sample.Stock, key="main", request=functools.partial(build, "o1"), undo=NOTHING_TO_UNDO,
                 uncertain_is_safe=True)
    body = {"steps": (check,), "__module__": __name__}
    saga = types.new_class("Partial", (Saga[sample.Checkout],), exec_body=lambda ns: ns.update(body))
    graph = build_graph([saga])
    (step,) = graph.edges
    assert (step.message, step.undo) == ("?", "NOTHING_TO_UNDO")
    assert graph.notes == ("tests.unit.tools.test_graph:Partial step 'check' request: not a plain function; "
                           "its message type is shown as '?'",)


def test_only_the_classes_a_module_defines_are_drawn_unless_it_only_re_exports() -> None:
    assert classes_in(choreographed) == [choreographed.Inventory, choreographed.Order,
                                         choreographed.Payments, choreographed.Shipping]
    package = types.ModuleType("shop_api")
    package.Inventory = orchestrated.Inventory  # type: ignore[attr-defined]
    package.Alias = orchestrated.Inventory  # type: ignore[attr-defined]  # one class under two names
    package.Actor = Actor  # type: ignore[attr-defined]  # the base class is never drawn
    assert classes_in(package) == [orchestrated.Inventory]


def test_building_from_something_that_is_not_an_actor_or_a_saga_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="is not an Actor or Saga subclass"):
        build_graph([sample.Check])


# -- Mermaid and text -----------------------------------------------------------------------------

NODE = re.compile(r'  ([A-Za-z][A-Za-z0-9_]*)(\["[^"]*"\]|\(\["[^"]*"\]\)|\{\{"[^"]*"\}\})')
EDGE = re.compile(r'  ([A-Za-z][A-Za-z0-9_]*) (-->|-\.->)(\|"[^"]*"\|)? ([A-Za-z][A-Za-z0-9_]*)')


def test_mermaid_is_a_flowchart_of_safe_ids_with_solid_declared_and_dashed_inferred_edges() -> None:
    graph = graph_of(choreographed, orchestrated, sample)
    lines = to_mermaid(graph).splitlines()
    assert lines[0] == "flowchart LR"
    ids: set[str] = set()
    edge_lines = []
    for line in lines[1:]:
        if line.startswith("  %%"):
            continue
        if (node := NODE.fullmatch(line)) is not None:
            ids.add(node.group(1))
        else:
            arrow = EDGE.fullmatch(line)
            assert arrow is not None, f"neither a node nor an edge: {line!r}"
            edge_lines.append(arrow)
    assert ids == {n.id for n in graph.nodes}
    assert len(edge_lines) == len(graph.edges)
    for match, edge in zip(edge_lines, graph.edges, strict=True):
        assert {match.group(1), match.group(4)} <= ids
        assert match.group(2) == ("-.->" if edge.inferred else "-->")
    assert '  event_OrderPlaced(["OrderPlaced"])' in lines
    assert '  saga_PlaceOrder -->|"1 reserve: ReserveStock / undo ReleaseStock"| actor_Inventory' in lines
    assert "  actor_InventoryEvents -.-> event_StockReserved" in lines


def test_mermaid_is_the_same_however_the_modules_are_given() -> None:
    once = to_mermaid(graph_of(choreographed, orchestrated, hybrid))
    assert once == to_mermaid(graph_of(hybrid, orchestrated, choreographed))
    assert once == to_mermaid(graph_of(choreographed, orchestrated, hybrid))


def test_ids_stay_unique_and_labels_are_escaped() -> None:
    class Inventory(Actor):  # a second actor labelled "Inventory"
        pass

    body = {"saga_name": 'Place "order" #1 <now>', "steps": orchestrated.PlaceOrder.steps}
    odd = types.new_class("Odd", (Saga[OrderRequest],), exec_body=lambda ns: ns.update(body))
    graph = build_graph([orchestrated.Inventory, Inventory, odd])
    assert sorted(n.id for n in graph.nodes if n.label == "Inventory") == ["actor_Inventory", "actor_Inventory_2"]
    assert graph.node('Place "order" #1 <now>').id == "saga_Place__order___1__now_"
    assert '  saga_Place__order___1__now_{{"Place #quot;order#quot; #35;1 #lt;now#gt;<br/>Saga[OrderRequest]"}}' \
        in to_mermaid(graph).splitlines()


def test_text_has_one_line_per_edge_and_per_handled_message_then_the_notes() -> None:
    graph = graph_of(sample)
    lines = to_text(graph).splitlines()
    handled = sum(len(n.handles) for n in graph.nodes)
    assert len(lines) == handled + len(graph.edges) + len(graph.notes)
    assert re.fullmatch(r"Cashier +\.\.> +Stock +ask Check in checkout \(inferred\)", lines[handled + 1])
    assert re.fullmatch(r"Fulfil +--> +Auditor +step 1 audit: Audit / undo Audit", lines[-4])
    assert lines[-1].startswith("note: tests.unit.tools.graph_sample:Cashier.paid")


# -- the command ----------------------------------------------------------------------------------


def corps_graph(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="corps")
    add_graph_parser(parser.add_subparsers(dest="command"), argparse.RawDescriptionHelpFormatter)
    args = parser.parse_args(["graph", *argv])
    code: int = args.func(args, parser)
    return code


def test_the_command_writes_mermaid_to_the_output_file_and_a_md_file_gets_a_fence(tmp_path: Path) -> None:
    plain, markdown = tmp_path / "shop.mmd", tmp_path / "shop.md"
    assert corps_graph("corps.examples.shop.choreographed", "--output", str(plain)) == 0
    assert plain.read_text() == to_mermaid(graph_of(choreographed))
    assert corps_graph("corps.examples.shop.choreographed", "-o", str(markdown)) == 0
    assert markdown.read_text() == f"```mermaid\n{to_mermaid(graph_of(choreographed))}```\n"


def test_the_command_prints_text_for_one_named_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert corps_graph("corps.examples.shop.orchestrated:PlaceOrder", "--format", "text") == 0
    assert capsys.readouterr().out == to_text(build_graph([orchestrated.PlaceOrder]))


@pytest.mark.parametrize(("target", "message"), [
    ("no_such_module_anywhere", "no module named 'no_such_module_anywhere'"),
    ("corps.examples.shop.messages", "module 'corps.examples.shop.messages' defines no Actor or Saga classes"),
    ("corps.examples.shop.messages:OrderPlaced", "is not an Actor subclass or a Saga subclass with steps"),
    ("actors/shop/hybrid.py", "is a file path; give a module name, such as actors.shop.hybrid"),
])
def test_the_command_fails_clearly_with_exit_2(target: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        corps_graph(target)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("corps graph: error: ")
    assert message in err


def test_corps_graph_is_a_command_of_corps(capsys: pytest.CaptureFixture[str]) -> None:
    from corps.cli._main import main

    assert main(["graph", "corps.examples.shop.orchestrated", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "PlaceOrder  -->      Inventory      step 1 reserve: ReserveStock / undo ReleaseStock" in out
