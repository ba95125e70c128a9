"""corps authz: least-privilege grants derived from the declarations, and their two renderings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from corps.cli._authz import reply_window_ns, to_conf, to_json
from corps.examples.shop import choreographed, orchestrated
from corps.examples.shop.messages import OrderPlaced
from corps.tools._authz import authorize, identities_per_class
from corps.tools._graph import classes_in
from corps.wire._embedded import find_nats_server


def subjects(grants: tuple[object, ...]) -> set[str]:
    return {g.subject for g in grants}  # type: ignore[attr-defined]


def test_each_class_gets_an_identity_granted_only_its_own_subjects() -> None:
    authz = authorize(identities_per_class(classes_in(orchestrated)), "shop")
    inv = authz.identity("Inventory")
    assert "shop.actor.Inventory.*" in subjects(inv.subscribe)
    assert "$SRV.>" in subjects(inv.subscribe)  # the NATS services API (answers go to _INBOX.: responses)
    assert not any(s.startswith("shop.actor.") for s in subjects(inv.publish))  # it asks nobody
    assert "$KV.shop-idempotency.>" in subjects(inv.publish)  # a participant: @idempotent
    assert not any("sagas" in s for s in subjects(inv.publish))  # but not the saga log
    assert inv.responses
    assert inv.inbox_prefix == "_INBOX.Inventory"
    assert subjects(inv.subscribe) >= {"_INBOX.Inventory.>"}
    assert not any(s.startswith("shop.inbox") or s == "_INBOX.>" for s in subjects(inv.subscribe))
    coordinator = authz.identity("PlaceOrder")
    assert {"shop.actor.Inventory.*", "shop.actor.Payments.*", "shop.actor.Shipping.*",
            "$KV.shop-sagas.>"} <= subjects(coordinator.publish)
    assert not coordinator.responses
    assert not any("idempotency" in s for s in subjects(coordinator.publish))


def test_an_event_consumer_may_use_only_its_own_consumer_and_publish_what_its_source_publishes() -> None:
    authz = authorize(identities_per_class(classes_in(choreographed)), "shop")
    pay = authz.identity("PaymentsEvents")
    pub = subjects(pay.publish)
    assert {"$JS.API.CONSUMER.MSG.NEXT.shop_events.PaymentsEvents", "$JS.ACK.shop_events.PaymentsEvents.>",
            "shop.dlq.PaymentsEvents", "shop.events.PaymentCaptured", "shop.events.PaymentRefunded"} <= pub
    assert "shop.events.OrderPlaced" not in pub  # consumed, not published: read through its consumer
    assert not any("InventoryEvents" in s for s in pub)
    assert "shop.evin.*.PaymentsEvents.*" in subjects(pay.subscribe)


def test_services_may_be_grouped_and_clients_may_only_ask_and_publish_what_they_are_given() -> None:
    authz = authorize({"warehouse": [orchestrated.Inventory, orchestrated.Shipping]}, "shop",
                      clients={"web": [orchestrated.Inventory, OrderPlaced]}, admin=None)
    assert [i.name for i in authz.identities] == ["warehouse", "web"]
    warehouse = authz.identity("warehouse")
    assert {"shop.actor.Inventory.*", "shop.actor.Shipping.*"} <= subjects(warehouse.subscribe)
    web = authz.identity("web")
    assert {s for s in subjects(web.publish) if not s.startswith("$JS.API.STREAM.INFO")} == {
        "shop.actor.Inventory.*", "shop.events.OrderPlaced"}
    assert not web.responses


def test_provisioned_streams_leave_creation_to_the_admin() -> None:
    authz = authorize(identities_per_class(classes_in(orchestrated)), "shop", provision=False)
    for ident in authz.identities:
        if ident.role != "admin":
            assert [s for s in subjects(ident.publish) if ".STREAM.CREATE." in s] == []
    assert any("admin" in note for note in authz.notes)


def test_a_bad_identity_name_or_a_duplicate_is_refused() -> None:
    with pytest.raises(ValueError, match="identity name"):
        authorize({"a.b": [orchestrated.Inventory]}, "shop")
    with pytest.raises(ValueError, match="must differ"):
        authorize({"admin": [orchestrated.Inventory]}, "shop")


def test_the_config_is_valid_nats_server_config_with_no_password_in_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    authz = authorize(identities_per_class([*classes_in(orchestrated), *classes_in(choreographed)]), "shop",
                      clients={"web": [OrderPlaced]})
    conf = to_conf(authz)
    for ident in authz.identities:
        monkeypatch.setenv(ident.password_variable, "pw")
        assert f"password: ${ident.password_variable}" in conf
    path = tmp_path / "authz.conf"
    path.write_text(conf)
    check = subprocess.run([find_nats_server(), "-c", str(path), "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout
    assert "allow_responses: { max: 0, expires: \"1m\" }" in conf


def test_the_json_holds_jwt_shaped_permissions_and_the_reason_of_each_grant() -> None:
    doc = json.loads(to_json(authorize(identities_per_class(classes_in(orchestrated)), "shop", reply_window="30s")))
    inv = next(i for i in doc["identities"] if i["name"] == "Inventory")
    assert set(inv["permissions"]) == {"pub", "sub", "resp"}
    assert inv["permissions"]["resp"] == {"max": 0, "ttl": 30_000_000_000}
    assert all(g["why"] for g in inv["grants"]["publish"])
    assert reply_window_ns("500ms") == 500_000_000


def test_the_command_groups_services_names_clients_and_prints_config_or_json(
        capsys: pytest.CaptureFixture[str]) -> None:
    from corps.cli._main import main

    code = main(["authz", "corps.examples.shop.orchestrated", "--namespace", "shop",
                 "--service", "orders=corps.examples.shop.orchestrated:PlaceOrder",
                 "--client", "web=corps.examples.shop.orchestrated:Inventory"])
    out = capsys.readouterr().out
    assert code == 0
    assert 'user: "orders"' in out
    assert 'user: "PlaceOrder"' not in out
    assert 'user: "web"' in out
    assert 'user: "Inventory"' in out
    assert 'user: "admin"' in out
    assert main(["authz", "corps.examples.shop.orchestrated", "--json", "--no-admin"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in doc["identities"]] == ["Inventory", "Payments", "PlaceOrder", "Shipping"]


def test_the_command_refuses_a_malformed_group_with_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from corps.cli._main import main

    with pytest.raises(SystemExit) as stopped:
        main(["authz", "--service", "orders"])
    assert stopped.value.code == 2
    assert "NAME=MODULE:CLASS" in capsys.readouterr().err


def test_security_flags_replace_the_variables_and_none_given_reads_them() -> None:
    from corps.cli._connect import security_from
    from corps.cli._main import build_parser
    from corps.wire._security import Security

    args = build_parser().parse_args(["run", "m:C", "--id", "a", "--creds", "s.creds", "--tlsca", "ca.pem",
                                      "--tlsfirst", "--inbox-prefix", "_INBOX.s"])
    assert security_from(args) == Security(creds="s.creds", ca="ca.pem", tls_handshake_first=True,
                                           inbox_prefix="_INBOX.s")
    assert security_from(build_parser().parse_args(["dlq", "list"])) is None
