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
