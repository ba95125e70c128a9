"""``corps schema``: the AsyncAPI 3.0 document of the shop, valid against the official JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from corps.examples.shop import choreographed, hybrid, orchestrated
from corps.tools._asyncapi import asyncapi
from corps.tools._graph import classes_in

# From npm @asyncapi/specs 6.11.1 (schemas/3.0.0-without-$id.json), Apache-2.0: tests/schemas/README.md.
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "asyncapi-3.0.0.json").read_text())


def shop() -> dict[str, Any]:
    classes = [*classes_in(orchestrated), *classes_in(choreographed), *classes_in(hybrid)]
    return asyncapi(classes, namespace="shop", title="shop", version="1.2.3")


def test_the_shop_document_is_valid_asyncapi_3() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(shop())


def test_an_invalid_document_is_caught_by_the_schema() -> None:
    broken = shop()
    broken["channels"]["Inventory"]["address"] = 42  # the validation can fail
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_actor_channels_operations_and_replies() -> None:
    doc = shop()
    inventory = doc["channels"]["Inventory"]
    assert inventory["address"] == "shop.actor.Inventory.{id}"
    assert set(inventory["messages"]) == {"GetStock", "ReleaseStock", "ReserveStock"}
    op = doc["operations"]["Inventory.ReserveStock"]
    assert op["action"] == "receive"
    assert op["reply"]["messages"] == [{"$ref": "#/channels/Inventory.replies/messages/StockReserved"}]
    schema = doc["components"]["schemas"]["ReserveStock"]
    assert schema["properties"]["$type"] == {"enum": ["ReserveStock"]}
    assert "$type" in schema["required"]
    assert doc["components"]["messages"]["ReserveStock"]["payload"] == {"$ref": "#/components/schemas/ReserveStock"}


def test_event_channels_consumers_publishers_and_saga_steps() -> None:
    doc = shop()
    assert doc["channels"]["events.OrderCompleted"]["address"] == "shop.events.OrderCompleted"
    assert doc["operations"]["Notifications.on.OrderCompleted"]["action"] == "receive"
    assert doc["operations"]["OrdersContext.publishes.OrderCompleted"]["action"] == "send"
    reserve = doc["operations"]["PlaceOrder.reserve"]
    assert reserve["action"] == "send"
    assert reserve["channel"] == {"$ref": "#/channels/Inventory"}
    assert doc["operations"]["PlaceOrder.reserve.undo"]["messages"] == [
        {"$ref": "#/channels/Inventory/messages/ReleaseStock"}]
    steps = doc["x-corps-sagas"]["PlaceOrder"]["steps"]
    assert [s["step"] for s in steps][:2] == ["reserve", "charge"]
    assert steps[0]["participant"] == "Inventory"
    assert steps[0]["request"] == ["ReserveStock"]
    assert steps[0]["undo"] == ["ReleaseStock"]
