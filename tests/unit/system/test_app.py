"""``corps.App``: every problem of a description at once, and the one-class form of ``corps run``."""

from __future__ import annotations

import pytest

from corps import App, AppDefinitionError
from corps.examples.demo import Account, Pricing
from corps.examples.shop import app as shop
from corps.examples.shop.choreographed import Order
from corps.examples.shop.orchestrated import PlaceOrder


def test_an_app_lists_every_problem_at_once() -> None:
    with pytest.raises(AppDefinitionError) as caught:
        App(name="bad", actors={Account: ["ok", "not.one"], int: "x"},  # type: ignore[dict-item]
            services={Account: {"a": 2}, Pricing: {"p": 0}}, serve_events=[Account], namespace="a b")
    problems = caught.value.problems
    assert len(problems) == 6, problems
    assert any("not.one" in p for p in problems)
    assert any("int" in p and "not an Actor subclass" in p for p in problems)
    assert any("Account is an entity class" in p for p in problems)
    assert any("instances must be 1..1024" in p for p in problems)
    assert any("Account has no @on_event handler" in p for p in problems)
    assert any("namespace" in p for p in problems)


def test_an_app_must_run_something_and_sagas_must_be_sagas() -> None:
    with pytest.raises(AppDefinitionError, match="it runs nothing"):
        App(name="empty")
    with pytest.raises(AppDefinitionError, match="not a Saga subclass"):
        App(name="x", sagas=[Account])  # type: ignore[list-item]


def test_the_one_class_form_spawns_services_in_groups_and_refuses_instances_of_an_entity() -> None:
    assert App.single(Pricing, ["p"], 3).services == {Pricing: {"p": 3}}
    assert App.single(Account, ["a", "b"]).ids(Account) == ["a", "b"]
    with pytest.raises(AppDefinitionError, match="needs a service class"):
        App.single(Account, ["a"], 2)


def test_the_shop_app_hosts_both_styles_and_coordinates_place_order() -> None:
    assert shop.app.namespace == "shop"
    assert shop.app.sagas == [PlaceOrder]
    assert Order in shop.app.actor_classes
    assert len(shop.app.actor_classes) == 7


def test_instances_are_bounded_1_to_1024_both_ends_included() -> None:
    assert App(name="x", services={Pricing: {"p": 1024}}).services == {Pricing: {"p": 1024}}
    assert App(name="x", services={Pricing: {"p": 1}}).services == {Pricing: {"p": 1}}
    for n in (0, 1025):
        with pytest.raises(AppDefinitionError, match=r"instances must be 1\.\.1024"):
            App(name="x", services={Pricing: {"p": n}})


def test_an_app_needs_a_name() -> None:
    with pytest.raises(AppDefinitionError, match="name must be a non-empty str"):
        App(name="", actors={Account: "a"})


def test_a_class_listed_twice_is_one_actor_class() -> None:
    app = App(name="x", actors={Order: "o1"}, serve_events=[Order, Order])
    assert app.actor_classes == [Order]


def test_the_system_of_an_app_takes_its_settings() -> None:
    app = App(name="x", actors={Account: "a"}, namespace="ns1", ask_timeout=2.5, drain_timeout=1.5)
    system = app.system("nats://127.0.0.1:4222")  # not started: nothing connects
    assert (system.namespace, system.ask_timeout, system.drain_timeout) == ("ns1", 2.5, 1.5)
    assert app.system("nats://127.0.0.1:4222", namespace="ns2").namespace == "ns2"
